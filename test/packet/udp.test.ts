import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { buildUdp } from "../../src/packet/build.ts";
import { Ipv4Packet } from "../../src/packet/ipv4.ts";
import { Ipv6Packet } from "../../src/packet/ipv6.ts";
import { ParseStatus } from "../../src/packet/meta.ts";
import { emitUdpRepr, parseUdpRepr, UdpPacket } from "../../src/packet/udp.ts";
import { UDP6 } from "./fixtures.ts";

const pseudo = (b: Uint8Array) => new Ipv6Packet(b, 14).pseudoSum(17, 41);

test("deconstruct", () => {
  const u = new UdpPacket(UDP6, 54);
  assert.equal(u.check(), ParseStatus.Ok);
  assert.equal(u.srcPort, 53001);
  assert.equal(u.dstPort, 53);
  assert.equal(u.length, 41);
  assert.equal(u.checksum, 0xde5e);
  assert.equal(u.payloadOffset, 62);
  assert.equal(u.payloadLen, 33);
  assert.ok(u.verifyChecksum(pseudo(UDP6)));
});

test("construct: ports with checksum update; zero checksum stays zero", () => {
  const b = Buffer.from(UDP6);
  const u = new UdpPacket(b, 54);
  u.rewritePort("src", 1);
  u.rewritePort("dst", 65535);
  assert.ok(u.verifyChecksum(pseudo(b), false));
  u.checksum = 0;
  u.rewritePort("src", 2);
  assert.equal(u.checksum, 0);
  assert.equal(u.verifyChecksum(pseudo(b)), true);
  assert.equal(u.verifyChecksum(pseudo(b), false), false);
  u.srcPort = 7;
  u.dstPort = 8;
  assert.equal(b.subarray(54, 58).toString("hex"), "00070008");
});

test("parse and emit", () => {
  assert.deepEqual(parseUdpRepr(new UdpPacket(UDP6, 54)), { srcPort: 53001, dstPort: 53, payloadLen: 33 });
  const b = Buffer.from(UDP6);
  b.fill(0, 54, 62);
  emitUdpRepr({ srcPort: 53001, dstPort: 53, payloadLen: 33 }, b, 54);
  new UdpPacket(b, 54).fillChecksum(pseudo(b));
  assert.deepEqual(b, UDP6);
});

test("check(): truncation and lying length", () => {
  for (let n = 54; n < 62; n++) assert.equal(new UdpPacket(UDP6, 54, n).check(), ParseStatus.Truncated);
  const b = Buffer.from(UDP6);
  b.writeUInt16BE(7, 58);
  assert.equal(new UdpPacket(b, 54).check(), ParseStatus.BadLength);
  b.writeUInt16BE(42, 58);
  assert.equal(new UdpPacket(b, 54).check(), ParseStatus.BadLength);
});

test("a computed checksum of zero is sent as 0xffff and still verifies", () => {
  // Search a small space of payloads for one whose checksum computes to 0.
  let found = false;
  for (let x = 0; x < 0x10000 && !found; x++) {
    const f = buildUdp({
      src: "10.0.0.1",
      dst: "10.0.0.2",
      sport: 1,
      dport: 2,
      payload: Uint8Array.from([x >> 8, x & 255]),
    });
    const u = new UdpPacket(f, 34);
    if (u.checksum === 0xffff) {
      found = true;
      assert.ok(u.verifyChecksum(new Ipv4Packet(f, 14).pseudoSum()));
    }
  }
  assert.ok(found);
});

test("port rewrites keep random datagrams' checksums valid", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), fc.nat(0xffff), fc.nat(0xffff), (p, a, c) => {
      const f = buildUdp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 1, dport: 2, payload: p });
      const u = new UdpPacket(f, 34);
      u.rewritePort("src", a);
      u.rewritePort("dst", c);
      assert.ok(u.verifyChecksum(new Ipv4Packet(f, 14).pseudoSum(), false));
    }),
  );
});
