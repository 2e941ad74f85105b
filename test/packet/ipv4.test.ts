import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { buildTcp } from "../../src/packet/build.ts";
import {
  emitIpv4Repr,
  Ipv4Packet,
  type Ipv4Repr,
  ipv4HeaderLen,
  parseIpv4Repr,
} from "../../src/packet/ipv4.ts";
import { ParseStatus } from "../../src/packet/meta.ts";
import { SYN } from "./fixtures.ts";

const REPR: Ipv4Repr = {
  src: "172.16.10.99",
  dst: "172.16.10.12",
  protocol: 6,
  ttl: 64,
  tos: 0,
  ident: 0x1c46,
  dontFragment: true,
  moreFragments: false,
  fragOffset: 0,
  options: new Uint8Array(0),
  payloadLen: 40,
};

test("deconstruct", () => {
  const ip = new Ipv4Packet(SYN, 14);
  assert.equal(ip.check(), ParseStatus.Ok);
  assert.equal(ip.version, 4);
  assert.equal(ip.headerLen, 20);
  assert.equal(ip.dscp, 0);
  assert.equal(ip.ecn, 0);
  assert.equal(ip.totalLen, 60);
  assert.equal(ip.ident, 0x1c46);
  assert.equal(ip.dontFragment, true);
  assert.equal(ip.moreFragments, false);
  assert.equal(ip.fragOffset, 0);
  assert.equal(ip.isFragment, false);
  assert.equal(ip.ttl, 64);
  assert.equal(ip.protocol, 6);
  assert.equal(ip.checksum, 0xb1e6);
  assert.equal(ip.srcAddr, 0xac100a63);
  assert.equal(ip.dstAddr, 0xac100a0c);
  assert.equal(ip.payloadOffset, 34);
  assert.equal(ip.datagramEnd, 74);
  assert.ok(ip.verifyChecksum());
  assert.equal(ip.checkOptions(), ParseStatus.Ok);
});

test("construct: checksum-preserving setters match a full recomputation", () => {
  const b = Buffer.from(SYN);
  const ip = new Ipv4Packet(b, 14);
  ip.setTtl(1);
  ip.setIdent(0xffff);
  ip.setSrcAddr(0x0a000001);
  ip.setDstAddr(0xc0a80101);
  assert.ok(ip.verifyChecksum());
  const c = ip.checksum;
  ip.fillChecksum();
  assert.equal(ip.checksum, c);
  assert.equal(b.subarray(26, 34).toString("hex"), "0a000001c0a80101");
});

test("parse and emit", () => {
  assert.deepEqual(parseIpv4Repr(new Ipv4Packet(SYN, 14), true), REPR);
  const out = new Uint8Array(ipv4HeaderLen(REPR));
  assert.equal(emitIpv4Repr(REPR, out), 20);
  assert.deepEqual(Buffer.from(out), SYN.subarray(14, 34));
});

test("options: record route parses; a bad option length is BadHeader", () => {
  const rr = Uint8Array.from([1, 7, 7, 4, 0, 0, 0, 0]);
  const f = buildTcp({ src: "1.1.1.1", dst: "2.2.2.2", sport: 1, dport: 2, ipOptions: rr });
  const ip = new Ipv4Packet(f, 14);
  assert.equal(ip.headerLen, 28);
  assert.equal(ip.optionsLen, 8);
  const r = parseIpv4Repr(ip, true);
  assert.ok(typeof r === "object");
  assert.deepEqual(r.options, rr);
  f[14 + 22] = 1; // option length 1
  assert.equal(ip.checkOptions(), ParseStatus.BadHeader);
  f[14 + 22] = 9; // runs past the header
  assert.equal(parseIpv4Repr(ip), ParseStatus.BadHeader);
});

test("check(): IHL < 5, version, lying total length, truncation", () => {
  const b = Buffer.from(SYN);
  const ip = new Ipv4Packet(b, 14);
  b[14] = 0x44;
  assert.equal(ip.check(), ParseStatus.BadHeader);
  b[14] = 0x55;
  assert.equal(ip.check(), ParseStatus.BadHeader);
  b[14] = 0x45;
  b.writeUInt16BE(61, 16);
  assert.equal(ip.check(), ParseStatus.BadLength);
  b.writeUInt16BE(19, 16);
  assert.equal(ip.check(), ParseStatus.BadLength);
  b.writeUInt16BE(60, 16);
  assert.equal(typeof parseIpv4Repr(ip, true), "object");
  b[20] = b[20]! ^ 0xff; // corrupt flags/offset: header checksum no longer verifies
  assert.equal(parseIpv4Repr(ip, true), ParseStatus.BadHeader);
  for (let n = 14; n < 34; n++) assert.equal(new Ipv4Packet(SYN, 14, n).check(), ParseStatus.Truncated);
});

test("setters keep the header checksum valid for random headers and values", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 20, maxLength: 20 }),
      fc.nat(255),
      fc.nat(0xffff),
      fc.nat({ max: 0xffff_ffff }),
      (h, ttl, id, addr) => {
        h[0] = 0x45;
        const ip = new Ipv4Packet(h);
        ip.fillChecksum();
        ip.setTtl(ttl);
        ip.setIdent(id);
        ip.setSrcAddr(addr);
        ip.setDstAddr(~addr >>> 0);
        assert.ok(ip.verifyChecksum());
      },
    ),
  );
});
