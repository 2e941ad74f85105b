import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import * as b from "../../src/packet/build.ts";
import { ipv4PseudoSum, ipv6PseudoSum, verifyChecksum } from "../../src/packet/checksum.ts";
import { newFrameMeta, ParseStatus } from "../../src/packet/meta.ts";
import { parseFrame } from "../../src/packet/parse.ts";
import { anyFrame } from "./arb.ts";

test("a TCP SYN with options matches the bytes tshark decodes as valid", () => {
  const f = b.buildTcp({
    src: "10.0.0.1",
    dst: "10.0.0.2",
    sport: 80,
    dport: 5000,
    seq: 1,
    ack: 2,
    flags: "SA",
    vlan: 10,
    options: [{ kind: "mss", value: 1460 }],
    payload: "hi",
  });
  assert.equal(
    f.toString("hex"),
    "5254000000025254000000018100000a08004500002e00000000400666c80a0000010a0000020050138800000001000000026012ffff07ce0000020405b46869",
  );
});

test("an ARP request: broadcast, sender MAC as source, 28-byte body", () => {
  const f = b.buildArp({
    op: "request",
    senderMac: "52:54:00:12:34:56",
    senderIp: "192.168.0.1",
    targetIp: "192.168.0.2",
  });
  assert.equal(
    f.toString("hex"),
    "ffffffffffff5254001234560806" + "0001080006040001" + "525400123456c0a80001" + "000000000000c0a80002",
  );
});

test("QinQ, vnet header and padding land where expected", () => {
  const f = b.buildEthernet({
    vnetLen: 10,
    outerVlan: { id: 100, pcp: 5 },
    vlan: { id: 7, dei: true },
    etherType: 0x88cc,
    payload: "x",
    padTo: 60,
  });
  assert.equal(f.length, 70);
  assert.deepEqual([...f.subarray(0, 10)], new Array(10).fill(0));
  assert.equal(f.readUInt16BE(22), 0x88a8);
  assert.equal(f.readUInt16BE(24), (5 << 13) | 100);
  assert.equal(f.readUInt16BE(26), 0x8100);
  assert.equal(f.readUInt16BE(28), 0x1000 | 7);
  assert.equal(f.readUInt16BE(30), 0x88cc);
});

test("tcpFlags letters", () => {
  assert.equal(b.tcpFlags("SA"), 0x12);
  assert.equal(b.tcpFlags("fpu"), 0x29);
  assert.equal(b.tcpFlags("EC"), 0xc0);
  assert.equal(b.tcpFlags(0x1ff), 0xff);
  assert.throws(() => b.tcpFlags("X"), RangeError);
});

test("TCP option encoding: every kind, EOL padding to 4", () => {
  const o = b.tcpOptionBytes([
    { kind: "mss", value: 0x5b4 },
    { kind: "sackPermitted" },
    { kind: "timestamps", tsval: 0x01020304, tsecr: 0xa0b0c0d0 },
    { kind: "nop" },
    { kind: "wscale", shift: 7 },
    { kind: "sack", blocks: [[0xffffffff, 5]] },
    { kind: "raw", type: 30, data: Uint8Array.from([9]) },
  ]);
  assert.equal(
    Buffer.from(o).toString("hex"),
    "020405b4" +
      "0402" +
      "080a01020304a0b0c0d0" +
      "01" +
      "030307" +
      "050affffffff00000005" +
      "1e0309" +
      "000000",
  );
});

test("the neighbour solicitation goes to the solicited-node address with hop limit 255", () => {
  const f = b.buildNeighborSolicit({
    src: "fe80::1",
    target: "2001:db8::12:3456",
    srcLinkAddr: "02:00:00:00:00:01",
  });
  assert.equal(b.solicitedNodeAddress("2001:db8::12:3456"), "ff02::1:ff12:3456");
  assert.equal(f[14 + 7], 255);
  assert.equal(f.subarray(14 + 24, 14 + 40).toString("hex"), "ff0200000000000000000001ff123456");
  assert.equal(f[14 + 40], 135);
});

test("bad builder input throws RangeError (tools and tests only)", () => {
  assert.throws(() => b.buildTcp({ src: "10.0.0.1", dst: "::1", sport: 1, dport: 2 }), RangeError);
  assert.throws(() => b.buildEthernet({ etherType: 1, outerVlan: 1 }), RangeError);
  assert.throws(() => b.buildIp({ src: "1.1.1.1", dst: "1.1.1.2", proto: 1, fragOffset: 3 }), RangeError);
  assert.throws(() => b.buildIcmp({ src: "::1", dst: "::2", type: 1 }), RangeError);
  assert.throws(() => b.buildIcmpv6({ src: "1.1.1.1", dst: "1.1.1.2", type: 1 }), RangeError);
  assert.throws(
    () =>
      b.buildTcp({
        src: "1.1.1.1",
        dst: "1.1.1.2",
        sport: 1,
        dport: 2,
        options: [{ kind: "bytes", bytes: new Uint8Array(41) }],
      }),
    RangeError,
  );
});

test("every built frame (all protocols, options, tags) parses and its checksums verify", () => {
  const m = newFrameMeta();
  fc.assert(
    fc.property(anyFrame, ({ frame, vnetLen }) => {
      assert.equal(parseFrame(frame, vnetLen, m), ParseStatus.Ok);
      if (m.ipVersion === 4) {
        const ihl = (frame[m.l3Offset]! & 15) * 4;
        assert.ok(verifyChecksum(frame, m.l3Offset, m.l3Offset + ihl), "IPv4 header checksum");
      }
      if (m.ipVersion === 0 || m.l4Offset < 0) return;
      const l4Len = m.ipEnd - m.l4Offset;
      const pseudo =
        m.ipVersion === 4
          ? ipv4PseudoSum(frame, m.l3Offset + 12, m.l3Offset + 16, m.proto, l4Len)
          : ipv6PseudoSum(frame, m.l3Offset + 8, m.l3Offset + 24, m.proto, l4Len);
      if (m.proto === 6 || m.proto === 17 || m.proto === 58) {
        assert.ok(verifyChecksum(frame, m.l4Offset, m.ipEnd, pseudo), `L4 checksum proto ${m.proto}`);
      } else if (m.proto === 1) {
        assert.ok(verifyChecksum(frame, m.l4Offset, m.ipEnd), "ICMP checksum");
      }
    }),
    { numRuns: 1000 },
  );
});

test("ICMP echo: the echo id doubles as the IPv4 id unless ipId is given", () => {
  const a = b.buildIcmpEcho({ src: "10.0.0.1", dst: "10.0.0.2", id: 0x1234, seq: 1 });
  assert.equal(a.readUInt16BE(18), 0x1234);
  assert.equal(a.readUInt16BE(38), 0x1234);
  const c = b.buildIcmpEcho({ src: "10.0.0.1", dst: "10.0.0.2", id: 0x1234, seq: 1, ipId: 7 });
  assert.equal(c.readUInt16BE(18), 7);
  assert.equal(c.readUInt16BE(38), 0x1234);
});
