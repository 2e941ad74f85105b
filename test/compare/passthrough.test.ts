import assert from "node:assert/strict";
import { test } from "node:test";
import { PassthroughRules, parsePassthroughRule, ruleMatches } from "../../src/compare/passthrough.ts";
import { extractFlow, type FlowTuple } from "../../src/conntrack/flow.ts";
import { isColoError } from "../../src/errors.ts";
import { buildArp, buildIcmpEcho, buildTcp, buildUdp } from "../../src/packet/build.ts";
import { newFrameMeta } from "../../src/packet/meta.ts";
import { parseFrame } from "../../src/packet/parse.ts";

function flowOf(frame: Buffer): FlowTuple {
  const m = newFrameMeta();
  assert.equal(parseFrame(frame, 0, m), 0);
  return extractFlow(m, frame);
}

const tcp4 = (src: string, sport: number, dst: string, dport: number, vlan?: number) =>
  flowOf(buildTcp({ src, dst, sport, dport, ...(vlan !== undefined ? { vlan } : {}) }));
const udp6 = (src: string, sport: number, dst: string, dport: number) =>
  flowOf(buildUdp({ src, dst, sport, dport }));

test("canonical text of valid rules", () => {
  const cases: [string, string][] = [
    ["tcp 10.0.0.0/24:3389", "tcp 10.0.0.0/24:3389"],
    ["udp [fd00::/64]:53", "udp [fd00::/64]:53"],
    ["10.0.0.5", "10.0.0.5/32"],
    ["10.0.0.77/24", "10.0.0.0/24"],
    ["  TCP   10.0.0.5  192.168.1.0/24:1000-2000 ", "tcp 10.0.0.5/32 192.168.1.0/24:1000-2000"],
    ["vlan 20 icmp", "vlan 20 icmp"],
    ["udp *:53", "udp *:53"],
    ["fd00::1", "[fd00::1/128]"],
    ["proto 47 10.1.0.0/16", "gre 10.1.0.0/16"],
    ["proto 253", "proto 253"],
    ["arp 10.0.0.1", "arp 10.0.0.1/32"],
    ["any", "*"],
    ["tcp [::ffff:10.0.0.1]:80", "tcp [::ffff:10.0.0.1/128]:80"],
  ];
  for (const [input, text] of cases) assert.equal(parsePassthroughRule(input).text, text, input);
});

test("invalid rules throw COLO_ERR_COMPARE_RULE with the reason", () => {
  const bad = [
    "",
    "   ",
    "tcp 10.0.0.0/33",
    "tcp 10.0.0.256",
    "tcp 10.0.0.1:70000",
    "tcp 10.0.0.1:20-10",
    "tcp 10.0.0.1:http",
    "udp [fd00::1",
    "udp [fd00::1]53",
    "udp [10.0.0.1]:53",
    "icmp 10.0.0.1:80",
    "arp *:80",
    "arp fd00::1",
    "vlan",
    "vlan 5000",
    "vlan 1 vlan 2",
    "tcp udp",
    "proto 300",
    "1.2.3.4 5.6.7.8 9.9.9.9",
    "fd00:::1",
    "tcp fd00::/129",
    "bogus",
  ];
  for (const rule of bad) {
    assert.throws(
      () => parsePassthroughRule(rule),
      (e: unknown) => isColoError(e) && e.code === "COLO_ERR_COMPARE_RULE" && e.message.includes("invalid"),
      JSON.stringify(rule),
    );
  }
});

test("matching: protocol, CIDR either end, port ranges, two endpoints, VLAN", () => {
  const f = tcp4("10.0.0.5", 3389, "192.168.1.7", 50000);
  const yes = [
    "tcp",
    "10.0.0.5",
    "192.168.1.0/24",
    "tcp 10.0.0.0/24:3389",
    "tcp *:3389",
    "tcp *:50000-50010",
    "10.0.0.5 192.168.1.7",
    "192.168.1.7 10.0.0.5:3389",
    "0.0.0.0/0",
    "*",
  ];
  const no = [
    "udp",
    "10.0.0.6",
    "tcp 10.0.0.0/24:3390",
    "tcp 10.0.0.5 10.0.0.0/8",
    "tcp 192.168.1.7:3389",
    "vlan 5",
    "fd00::/8",
    "arp",
  ];
  for (const r of yes) assert.ok(ruleMatches(parsePassthroughRule(r), f), r);
  for (const r of no) assert.ok(!ruleMatches(parsePassthroughRule(r), f), r);
  assert.ok(ruleMatches(parsePassthroughRule("vlan 5 tcp"), tcp4("1.1.1.1", 1, "2.2.2.2", 2, 5)));
  // Prefix lengths that are not a multiple of 8.
  assert.ok(ruleMatches(parsePassthroughRule("10.0.0.4/30"), f));
  assert.ok(!ruleMatches(parsePassthroughRule("10.0.0.0/30"), f));
});

test("matching IPv6, ICMP (no ports) and ARP flows", () => {
  const f6 = udp6("fd00::1", 5353, "fd00:1::53", 53);
  assert.ok(ruleMatches(parsePassthroughRule("udp [fd00:1::/32]:53"), f6));
  assert.ok(ruleMatches(parsePassthroughRule("fd00::1"), f6));
  assert.ok(!ruleMatches(parsePassthroughRule("udp [fd00:2::/32]:53"), f6));
  assert.ok(!ruleMatches(parsePassthroughRule("10.0.0.0/8"), f6));
  const icmp = flowOf(buildIcmpEcho({ src: "10.0.0.1", dst: "10.0.0.2", id: 5 }));
  assert.ok(ruleMatches(parsePassthroughRule("icmp 10.0.0.2"), icmp));
  assert.ok(!ruleMatches(parsePassthroughRule("*:5"), icmp), "echo id is not a port");
  const arp = flowOf(
    buildArp({ op: "request", senderMac: "52:54:00:00:00:01", senderIp: "10.0.0.1", targetIp: "10.0.0.9" }),
  );
  assert.ok(ruleMatches(parsePassthroughRule("arp"), arp));
  assert.ok(ruleMatches(parsePassthroughRule("10.0.0.9"), arp));
  assert.ok(!ruleMatches(parsePassthroughRule("tcp"), arp));
});

test("rule set: ids, duplicates by canonical text, removal by id or text", () => {
  const rules = new PassthroughRules();
  const a = rules.add("tcp 10.0.0.0/24:3389");
  const again = rules.add("tcp   10.0.0.7/24:3389");
  assert.equal(again.id, a.id);
  assert.equal(again.added, false);
  const b = rules.add("udp *:53");
  assert.deepEqual(rules.list(), [
    { id: a.id, rule: "tcp 10.0.0.0/24:3389" },
    { id: b.id, rule: "udp *:53" },
  ]);
  assert.equal(rules.remove("udp *:53").text, "udp *:53");
  assert.equal(rules.remove(String(a.id)).text, "tcp 10.0.0.0/24:3389");
  assert.equal(rules.size, 0);
  assert.throws(
    () => rules.remove("udp *:53"),
    (e: unknown) => isColoError(e) && e.code === "COLO_ERR_COMPARE_RULE_NOT_FOUND",
  );
});
