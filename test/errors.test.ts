import assert from "node:assert/strict";
import { test } from "node:test";
import { ColoError, codes, FramingError, isColoError } from "../src/errors.ts";

test("every error code is COLO_ERR_-prefixed and has a default message", () => {
  for (const [code, message] of Object.entries(codes)) {
    assert.match(code, /^COLO_ERR_[A-Z0-9_]+$/);
    assert.ok(message.length > 0, code);
  }
});

test("errors carry their stable code, default message and details", () => {
  const e = new FramingError("COLO_ERR_FRAME_TOO_LARGE", undefined, { length: 70000 });
  assert.ok(e instanceof ColoError);
  assert.ok(isColoError(e));
  assert.equal(e.code, "COLO_ERR_FRAME_TOO_LARGE");
  assert.equal(e.message, codes.COLO_ERR_FRAME_TOO_LARGE);
  assert.deepEqual(e.details, { length: 70000 });
  assert.equal(isColoError(new Error("x")), false);
});
