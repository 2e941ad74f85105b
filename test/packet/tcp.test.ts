import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { buildTcp } from "../../src/packet/build.ts";
import { Ipv4Packet } from "../../src/packet/ipv4.ts";
import { Ipv6Packet } from "../../src/packet/ipv6.ts";
import { newFrameMeta, ParseStatus } from "../../src/packet/meta.ts";
import { parseFrame } from "../../src/packet/parse.ts";
import {
  emitTcpRepr,
  parseTcpRepr,
  TcpOptionCursor,
  TcpOptionKind,
  TcpPacket,
  type TcpRepr,
  tcpHeaderLen,
} from "../../src/packet/tcp.ts";
import { tcpFrame } from "./arb.ts";
import { SACK, SYN } from "./fixtures.ts";

const SYN_REPR: TcpRepr = {
  srcPort: 42674,
  dstPort: 80,
  seq: 0x8f4b2c11,
  ack: 0,
  flags: 0x02,
  window: 64240,
  urgent: 0,
  options: [
    { kind: "mss", value: 1460 },
    { kind: "sackPermitted" },
    { kind: "timestamps", tsval: 0x0017a3b4, tsecr: 0 },
    { kind: "wscale", shift: 7 },
  ],
  payloadLen: 0,
};

const synTcp = (b: Uint8Array = SYN) => new TcpPacket(b, 34, 74);
const sackTcp = (b: Uint8Array = SACK) => new TcpPacket(b, 34, 78);
const pseudo4 = (b: Uint8Array, tcpLen: number) => new Ipv4Packet(b, 14).pseudoSum(tcpLen);

test("deconstruct the SYN", () => {
  const t = synTcp();
  assert.equal(t.check(), ParseStatus.Ok);
  assert.equal(t.srcPort, 42674);
  assert.equal(t.dstPort, 80);
  assert.equal(t.seq, 0x8f4b2c11);
  assert.equal(t.ack, 0);
  assert.equal(t.headerLen, 40);
  assert.equal(t.flags, 0x02);
  assert.ok(t.syn && !t.fin && !t.rst && !t.psh && !t.ackFlag && !t.urg);
  assert.equal(t.window, 64240);
  assert.equal(t.checksum, 0xda54);
  assert.equal(t.urgent, 0);
  assert.equal(t.payloadLen, 0);
  assert.equal(t.segmentLen, 1);
  assert.equal(t.mss, 1460);
  assert.equal(t.windowScale, 7);
  assert.equal(t.sackPermitted, true);
  assert.equal(t.tsval, 0x0017a3b4);
  assert.equal(t.tsecr, 0);
  assert.equal(t.sackBlockCount, 0);
  assert.ok(t.optionsWellFormed);
  assert.ok(t.verifyChecksum(pseudo4(SYN, 40)));
});

test("deconstruct the SACK segment: blocks at an odd offset", () => {
  const t = sackTcp();
  assert.equal(t.sackOffset - t.off, 33);
  assert.equal(t.sackBlockCount, 1);
  assert.equal(t.sackLeft(0), 0x8f4b3000);
  assert.equal(t.sackRight(0), 0x8f4b4000);
  assert.equal(t.tsval, 0x1000);
  assert.equal(t.tsecr, 0x0017a3b4);
  assert.equal(t.mss, -1);
  assert.equal(t.windowScale, -1);
  assert.equal(t.sackPermitted, false);
});

test("the option cursor walks without allocating and reports kinds, offsets, lengths", () => {
  const c = new TcpOptionCursor();
  const seen: Array<[number, number, number]> = [];
  sackTcp().options(c);
  while (c.next()) seen.push([c.kind, c.offset - 34, c.len]);
  assert.deepEqual(seen, [
    [TcpOptionKind.Nop, 20, 1],
    [TcpOptionKind.Nop, 21, 1],
    [TcpOptionKind.Timestamps, 22, 10],
    [TcpOptionKind.Nop, 32, 1],
    [TcpOptionKind.Sack, 33, 10],
  ]);
  assert.equal(c.malformed, false);
});

test("construct: rewrites keep the checksum equal to a full recomputation", () => {
  const b = Buffer.from(SACK);
  const t = sackTcp(b);
  t.rewriteSeq(0xdeadbeef);
  t.rewriteAck(0x00000001);
  t.rewriteWindow(1234);
  assert.equal(t.shiftSackBlocks(-0x1000), 1);
  assert.ok(t.rewriteTimestamps(7, 8));
  assert.ok(t.verifyChecksum(pseudo4(b, 44)));
  const inc = t.checksum;
  t.fillChecksum(pseudo4(b, 44));
  assert.equal(t.checksum, inc);
  assert.equal(t.seq, 0xdeadbeef);
  assert.equal(t.sackLeft(0), 0x8f4b2000);
  assert.equal(t.sackRight(0), 0x8f4b3000);
  assert.equal(t.tsval, 7);
  assert.equal(t.tsecr, 8);
  assert.equal(synTcp(Buffer.from(SYN)).shiftSackBlocks(5), 0);
});

test("construct: plain setters", () => {
  const b = Buffer.from(SYN);
  const t = synTcp(b);
  t.srcPort = 1;
  t.dstPort = 2;
  t.seq = 3;
  t.ack = 4;
  t.flags = 0x18;
  t.window = 5;
  t.checksum = 6;
  assert.equal(b.subarray(34, 54).toString("hex"), "000100020000000300000004a018000500060000");
});

test("parse and emit the SYN", () => {
  assert.deepEqual(parseTcpRepr(synTcp()), SYN_REPR);
  const out = new Uint8Array(tcpHeaderLen(SYN_REPR));
  // Repr drops NOP padding, so the emitted option order differs only by that NOP.
  assert.equal(emitTcpRepr(SYN_REPR, out), 40);
  const back = parseTcpRepr(new TcpPacket(out));
  assert.deepEqual(back, SYN_REPR);
});

test("parse: unknown options stay opaque; malformed ones are BadHeader", () => {
  const f = buildTcp({
    src: "1.1.1.1",
    dst: "2.2.2.2",
    sport: 1,
    dport: 2,
    options: [{ kind: "raw", type: 30, data: Uint8Array.from([1, 2]) }],
  });
  const t = new TcpPacket(f, 34);
  const r = parseTcpRepr(t);
  assert.ok(typeof r === "object");
  assert.deepEqual(r.options, [{ kind: "raw", type: 30, data: Uint8Array.from([1, 2]) }]);
  for (const bad of [
    [2, 3, 5, 0], // MSS of length 3
    [8, 1, 0, 0], // length 1
    [30, 9, 0, 0], // runs past the header
  ]) {
    const g = buildTcp({
      src: "1.1.1.1",
      dst: "2.2.2.2",
      sport: 1,
      dport: 2,
      options: [{ kind: "bytes", bytes: Uint8Array.from(bad) }],
    });
    const u = new TcpPacket(g, 34);
    assert.equal(u.check(), ParseStatus.Ok);
    assert.equal(parseTcpRepr(u), ParseStatus.BadHeader, String(bad));
    assert.equal(u.optionsWellFormed, false);
    assert.equal(u.mss, -1);
  }
});

test("check(): data offset < 5 or past the segment", () => {
  const b = Buffer.from(SYN);
  const t = synTcp(b);
  b[34 + 12] = 0x40;
  assert.equal(t.check(), ParseStatus.BadHeader);
  b[34 + 12] = 0xb0;
  assert.equal(t.check(), ParseStatus.Truncated);
  for (let n = 34; n < 54; n++) assert.equal(new TcpPacket(SYN, 34, n).check(), ParseStatus.Truncated);
});

test("rewriting seq/ack/SACK/timestamps keeps the checksum valid for any segment (v4/v6, any options)", () => {
  const m = newFrameMeta();
  fc.assert(
    fc.property(tcpFrame, fc.nat({ max: 0xffff_ffff }), fc.integer(), (fr, v, delta) => {
      const f = Buffer.from(fr.frame);
      assert.equal(parseFrame(f, fr.vnetLen, m), ParseStatus.Ok);
      fc.pre(!m.fragment);
      const t = new TcpPacket(f, m.l4Offset, m.ipEnd);
      const len = m.ipEnd - m.l4Offset;
      const pseudo =
        m.ipVersion === 4
          ? new Ipv4Packet(f, m.l3Offset).pseudoSum(len)
          : new Ipv6Packet(f, m.l3Offset).pseudoSum(6, len);
      assert.ok(t.verifyChecksum(pseudo));
      t.rewriteSeq(v);
      t.rewriteAck((v + delta) >>> 0);
      t.shiftSackBlocks(delta);
      t.rewriteTimestamps(v, ~v >>> 0);
      assert.ok(t.verifyChecksum(pseudo));
      assert.equal(t.seq, v);
    }),
    { numRuns: 500 },
  );
});

test("builder options round-trip through the Repr (NOP/EOL padding dropped)", () => {
  fc.assert(
    fc.property(tcpFrame, ({ frame, vnetLen, desc }) => {
      const m = newFrameMeta();
      parseFrame(frame, vnetLen, m);
      fc.pre(!m.fragment);
      const r = parseTcpRepr(new TcpPacket(frame, m.l4Offset, m.ipEnd));
      assert.ok(typeof r === "object");
      // fast-check records have a null prototype; the Repr builds plain objects.
      const expected = (desc.options ?? [])
        .filter((o) => o.kind !== "nop" && o.kind !== "eol")
        .map((o) => ({ ...o }));
      assert.deepEqual(r.options, expected);
      assert.equal(r.payloadLen, desc.payload.length);
      // and back: emit, then parse again
      const out = new Uint8Array(tcpHeaderLen(r));
      emitTcpRepr(r, out);
      assert.deepEqual(parseTcpRepr(new TcpPacket(out)), { ...r, payloadLen: 0 });
    }),
    { numRuns: 300 },
  );
});
