import assert from "node:assert/strict";
import { test } from "node:test";
import {
  compileRule,
  formatRule,
  normalizeRule,
  parsePassthroughRule,
  ruleMatches,
} from "../../src/control/passthrough.ts";

for (const [proto, spec, want] of [
  ["tcp", "10.0.0.0/24:3389", { protocol: "tcp", address: "10.0.0.0/24", port: 3389 }],
  ["TCP", ":22", { protocol: "tcp", address: null, port: 22 }],
  ["tcp", "*:22", { protocol: "tcp", address: null, port: 22 }],
  ["udp", "[2001:db8::/32]:53", { protocol: "udp", address: "2001:db8::/32", port: 53 }],
  ["udp", "2001:0db8:0:0::1", { protocol: "udp", address: "2001:db8::1/128", port: null }],
  ["icmp", "10.0.0.5", { protocol: "icmp", address: "10.0.0.5/32", port: null }],
  ["any", "*", { protocol: "any", address: null, port: null }],
  ["tcp", "[::ffff:10.0.0.0/120]:80", { protocol: "tcp", address: "::ffff:a00:0/120", port: 80 }],
] as const) {
  test(`parsePassthroughRule(${proto}, ${spec})`, () => {
    const r = parsePassthroughRule(proto, spec);
    assert.deepEqual(r, want);
    const [p, s] = formatRule(r).split(" ") as [string, string];
    assert.deepEqual(parsePassthroughRule(p, s), r, "formatRule round-trips");
    assert.deepEqual(normalizeRule(r), r);
  });
}

for (const [proto, spec, why] of [
  ["sctp", "*", /unknown protocol/],
  ["tcp", "10.0.0.1/24", /host bits/],
  ["tcp", "10.0.0.0/33", /prefix length/],
  ["tcp", "10.0.0.256", /invalid address/],
  ["tcp", "10.0.0.0/24:0", /out of range/],
  ["tcp", "10.0.0.0/24:70000", /out of range/],
  ["tcp", "host:80", /invalid address/],
  ["icmp", "10.0.0.1:5", /needs protocol tcp or udp/],
  ["udp", "[2001:db8::1", /missing '\]'/],
] as const) {
  test(`parsePassthroughRule rejects ${proto} ${spec}`, () => {
    assert.throws(
      () => parsePassthroughRule(proto, spec),
      (e: unknown) => {
        assert.equal((e as { code: string }).code, "COLO_ERR_CTL_BAD_RULE");
        assert.match((e as Error).message, why);
        return true;
      },
    );
  });
}

test("ruleMatches: prefix, port and protocol, on either endpoint", () => {
  // src 10.0.0.7:40000 -> dst 192.168.1.1:3389 laid out as in an IPv4 header (src at 12, dst at 16).
  const ip = new Uint8Array(20);
  ip.set([10, 0, 0, 7], 12);
  ip.set([192, 168, 1, 1], 16);
  const m = (proto: string, spec: string, p = 6) =>
    ruleMatches(compileRule(parsePassthroughRule(proto, spec)), p, 4, ip, 12, 40000, 16, 3389);
  assert.equal(m("tcp", "10.0.0.0/24"), true);
  assert.equal(m("tcp", "10.0.1.0/24"), false);
  assert.equal(m("tcp", "192.168.0.0/23:3389"), true);
  assert.equal(m("tcp", "192.168.0.0/23:80"), false);
  assert.equal(m("tcp", "10.0.0.0/29:3389"), false, "port belongs to the other endpoint");
  assert.equal(m("tcp", ":3389"), true);
  assert.equal(m("udp", ":3389"), false);
  assert.equal(m("any", "*", 47), true);
  assert.equal(m("icmp", "10.0.0.0/8", 1), true);
  assert.equal(m("tcp", "2001:db8::/32"), false, "family mismatch");
  const v6 = new Uint8Array(40);
  v6.set([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 8);
  const r6 = compileRule(parsePassthroughRule("icmp", "2001:db8::/33"));
  assert.equal(ruleMatches(r6, 58, 6, v6, 8, 0, 24, 0), true);
  assert.equal(
    ruleMatches(compileRule(parsePassthroughRule("icmp", "2001:db8:8000::/33")), 58, 6, v6, 8, 0, 24, 0),
    false,
  );
});
