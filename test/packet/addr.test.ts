import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  formatIpv4,
  formatIpv6,
  formatMac,
  parseIp,
  parseIpv4,
  parseIpv6,
  parseMac,
} from "../../src/packet/addr.ts";

const v6cases: Array<[string, string]> = [
  ["2001:db8:0:0:0:0:2:1", "2001:db8::2:1"],
  ["2001:DB8::1", "2001:db8::1"],
  ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
  ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"],
  ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
  ["::", "::"],
  ["::1", "::1"],
  ["fe80::", "fe80::"],
  ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
  ["fe80::1%eth0", "fe80::1"],
];

for (const [input, canonical] of v6cases) {
  test(`IPv6 ${input} -> ${canonical} (RFC 5952)`, () => {
    assert.equal(formatIpv6(parseIpv6(input)), canonical);
  });
}

test("invalid addresses throw RangeError", () => {
  for (const bad of ["1.2.3", "1.2.3.256", "a.b.c.d", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", ":::"]) {
    assert.throws(() => parseIp(bad), RangeError, bad);
  }
  assert.throws(() => parseMac("00:11:22:33:44"), RangeError);
});

test("IPv4, IPv6 and MAC round-trip through text", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (a) => {
      assert.deepEqual(parseIpv6(formatIpv6(a)), a);
      assert.deepEqual(parseIpv4(formatIpv4(a)), a.subarray(0, 4));
      assert.deepEqual(parseMac(formatMac(a)), a.subarray(0, 6));
    }),
  );
});
