/**
 * @module Regression: reverseKey() on IPv6 addresses whose 16-bit words form a UTF-16
 * surrogate pair (d800 dc00): the key is code units, not text, so nothing may merge them.
 * Found by the fast-check property in parse.test.ts (seed -1630057239).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { buildTcp } from "../../src/packet/build.ts";
import { newFrameMeta } from "../../src/packet/meta.ts";
import { parseFrame, reverseKey } from "../../src/packet/parse.ts";

test("reverseKey keeps surrogate-looking address words intact", () => {
  const a = "2001:db8::d800:dc00:0:1";
  const b = "fd00::dbff:dfff";
  const m = newFrameMeta();
  parseFrame(buildTcp({ src: a, dst: b, sport: 1, dport: 2 }), 0, m);
  const fwd = m.key;
  parseFrame(buildTcp({ src: b, dst: a, sport: 2, dport: 1 }), 0, m);
  assert.equal(reverseKey(fwd), m.key);
  assert.equal(reverseKey(reverseKey(fwd)), fwd);
});
