import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { promisify } from "node:util";

const run = promisify(execFile);
const bin = new URL("../../bin/colo-proxy.mjs", import.meta.url).pathname;

test("colo-proxy --help lists commands and exits 0", async () => {
  const { stdout } = await run(process.execPath, [bin, "--help"]);
  assert.match(stdout, /Usage: colo-proxy <command>/);
});

test("an unknown command fails with exit 2 and the usage code", async () => {
  await assert.rejects(
    run(process.execPath, [bin, "no-such-command"]),
    (e: { code: number; stderr: string }) => {
      assert.equal(e.code, 2);
      assert.match(e.stderr, /COLO_ERR_USAGE/);
      return true;
    },
  );
});
