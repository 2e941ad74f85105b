import assert from "node:assert/strict";
import { test } from "node:test";
import { buildIcmpEcho, buildIcmpv6, buildNeighborAdvert } from "../../src/packet/build.ts";
import {
  emitIcmpv6Repr,
  Icmpv6Packet,
  icmpv6ReprLen,
  NdOptionCursor,
  NdOptionType,
  parseIcmpv6Repr,
} from "../../src/packet/icmpv6.ts";
import { Ipv6Packet } from "../../src/packet/ipv6.ts";
import { ParseStatus } from "../../src/packet/meta.ts";
import { NS } from "./fixtures.ts";

test("deconstruct the neighbour solicitation", () => {
  const p = new Icmpv6Packet(NS, 54);
  assert.equal(p.check(), ParseStatus.Ok);
  assert.equal(p.type, 135);
  assert.equal(p.code, 0);
  assert.equal(p.checksum, 0x7222);
  assert.equal(p.targetOffset, 62);
  assert.equal(NS.subarray(62, 78).toString("hex"), "fe800000000000000000000000000001");
  assert.equal(p.linkAddrOffset(NdOptionType.SourceLinkAddr), 80);
  assert.equal(p.linkAddrOffset(NdOptionType.TargetLinkAddr), -1);
  assert.ok(p.verifyChecksum(new Ipv6Packet(NS, 14).pseudoSum(58, 32)));
  const c = p.ndOptions(new NdOptionCursor());
  assert.ok(c.next());
  assert.equal(c.type, 1);
  assert.equal(c.len, 8);
  assert.equal(c.next(), false);
});

test("parse: NS, NA, echo, other", () => {
  assert.deepEqual(parseIcmpv6Repr(new Icmpv6Packet(NS, 54)), {
    kind: "neighborSolicit",
    target: "fe80::1",
    srcLinkAddr: "52:54:00:12:34:56",
  });
  const na = buildNeighborAdvert({
    src: "fe80::1",
    dst: "fe80::2",
    target: "fe80::1",
    router: true,
    override: true,
    targetLinkAddr: "02:00:00:00:00:01",
  });
  assert.deepEqual(parseIcmpv6Repr(new Icmpv6Packet(na, 54)), {
    kind: "neighborAdvert",
    target: "fe80::1",
    router: true,
    solicited: false,
    override: true,
    targetLinkAddr: "02:00:00:00:00:01",
  });
  const echo = buildIcmpEcho({ src: "::1", dst: "::2", id: 9, seq: 10, reply: true, payload: "abc" });
  const e = new Icmpv6Packet(echo, 54);
  assert.ok(e.isEcho);
  assert.deepEqual(parseIcmpv6Repr(e), { kind: "echo", reply: true, ident: 9, seq: 10, payloadLen: 3 });
  const ptb = buildIcmpv6({ src: "::1", dst: "::2", type: 2, body: new Uint8Array(12) });
  assert.deepEqual(parseIcmpv6Repr(new Icmpv6Packet(ptb, 54)), {
    kind: "other",
    type: 2,
    code: 0,
    bodyLen: 12,
  });
});

test("construct: the checksum fills and verifies", () => {
  const b = Buffer.from(NS);
  const p = new Icmpv6Packet(b, 54);
  p.checksum = 0;
  p.fillChecksum(new Ipv6Packet(b, 14).pseudoSum(58, 32));
  assert.deepEqual(b, NS);
});

test("check(): truncated NS, zero-length or overrunning ND option", () => {
  for (let n = 54; n < 78; n++)
    assert.equal(new Icmpv6Packet(NS, 54, n).check(), ParseStatus.Truncated, `${n}`);
  const b = Buffer.from(NS);
  b[79] = 0;
  assert.equal(new Icmpv6Packet(b, 54).check(), ParseStatus.BadLength);
  b[79] = 2;
  assert.equal(new Icmpv6Packet(b, 54).check(), ParseStatus.BadLength);
  assert.equal(new Icmpv6Packet(NS, 54, 79).check(), ParseStatus.BadLength);
});

test("emit: NS, NA and echo Reprs reproduce the built messages", () => {
  const ns = parseIcmpv6Repr(new Icmpv6Packet(NS, 54));
  assert.ok(typeof ns === "object");
  const b = Buffer.from(NS);
  b.fill(0xee, 54);
  assert.equal(icmpv6ReprLen(ns), 32);
  assert.equal(emitIcmpv6Repr(ns, b, 54), 86);
  new Icmpv6Packet(b, 54).fillChecksum(new Ipv6Packet(b, 14).pseudoSum(58, 32));
  assert.deepEqual(b, NS);
  const na = buildNeighborAdvert({ src: "fe80::1", dst: "fe80::2", target: "fe80::1", solicited: true });
  const r = parseIcmpv6Repr(new Icmpv6Packet(na, 54));
  assert.ok(typeof r === "object");
  const c = Buffer.from(na);
  c.fill(0xee, 54);
  emitIcmpv6Repr(r, c, 54);
  new Icmpv6Packet(c, 54).fillChecksum(new Ipv6Packet(c, 14).pseudoSum(58, 24));
  assert.deepEqual(c, na);
  const echo = buildIcmpEcho({ src: "::1", dst: "::2", id: 9, seq: 10, payload: "abc" });
  const e = parseIcmpv6Repr(new Icmpv6Packet(echo, 54));
  assert.ok(typeof e === "object");
  const d = Buffer.from(echo);
  d.fill(0xee, 54, 62);
  emitIcmpv6Repr(e, d, 54);
  new Icmpv6Packet(d, 54).fillChecksum(new Ipv6Packet(d, 14).pseudoSum(58, 11));
  assert.deepEqual(d, echo);
});
