import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { buildIp, buildUdp, type Ipv6ExtHeader } from "../../src/packet/build.ts";
import {
  emitIpv6Repr,
  Ipv6ExtHeaderView,
  Ipv6OptionCursor,
  Ipv6Packet,
  type Ipv6Repr,
  MAX_EXT_HEADERS,
  newIpv6Walk,
  parseIpv6Repr,
} from "../../src/packet/ipv6.ts";
import { ParseStatus } from "../../src/packet/meta.ts";
import { UDP6 } from "./fixtures.ts";

const REPR: Ipv6Repr = {
  src: "2001:db8::10",
  dst: "2001:db8::53",
  nextHeader: 17,
  hopLimit: 64,
  trafficClass: 0,
  flowLabel: 0x9b3f1,
  payloadLen: 41,
};

test("deconstruct", () => {
  const ip = new Ipv6Packet(UDP6, 14);
  assert.equal(ip.check(), ParseStatus.Ok);
  assert.equal(ip.version, 6);
  assert.equal(ip.trafficClass, 0);
  assert.equal(ip.flowLabel, 0x9b3f1);
  assert.equal(ip.payloadLen, 41);
  assert.equal(ip.nextHeader, 17);
  assert.equal(ip.hopLimit, 64);
  assert.equal(ip.srcOffset, 22);
  assert.equal(ip.dstOffset, 38);
  assert.equal(ip.payloadOffset, 54);
  assert.equal(ip.datagramEnd, UDP6.length);
  const w = newIpv6Walk();
  assert.equal(ip.walk(w), ParseStatus.Ok);
  assert.equal(w.proto, 17);
  assert.equal(w.l4Offset, 54);
  assert.equal(w.count, 0);
});

test("construct: hop limit and flow label setters", () => {
  const b = Buffer.from(UDP6);
  const ip = new Ipv6Packet(b, 14);
  ip.hopLimit = 1;
  ip.flowLabel = 0xfffff;
  assert.equal(b.subarray(14, 22).toString("hex"), "600fffff00291101");
});

test("parse and emit", () => {
  assert.deepEqual(parseIpv6Repr(new Ipv6Packet(UDP6, 14)), REPR);
  const out = new Uint8Array(40);
  assert.equal(emitIpv6Repr({ ...REPR, trafficClass: 0xb8 }, out), 40);
  assert.equal(Buffer.from(out.subarray(0, 4)).toString("hex"), "6b89b3f1");
  emitIpv6Repr(REPR, out);
  assert.deepEqual(Buffer.from(out), UDP6.subarray(14, 54));
});

test("the walk reports every extension header and the fragment fields", () => {
  const f = buildIp({
    src: "::1",
    dst: "::2",
    proto: 17,
    extHeaders: [
      { type: "hopByHop", options: Uint8Array.from([5, 2, 0, 0]) },
      { type: "destOpts" },
      { type: "routing", routingType: 4, segmentsLeft: 0, data: new Uint8Array(20) },
      { type: "fragment", offset: 1280, more: true, id: 0xabcdef01 },
    ],
    payload: "data",
  });
  const ip = new Ipv6Packet(f, 14);
  const w = newIpv6Walk();
  assert.equal(ip.walk(w), ParseStatus.Ok);
  assert.equal(w.count, 4);
  assert.equal(w.proto, 17);
  assert.equal(w.fragment, true);
  assert.equal(w.fragOffset, 1280);
  assert.equal(w.fragMore, true);
  assert.equal(w.fragId, 0xabcdef01);
  assert.equal(w.routingOffset, 54 + 8 + 8);
  assert.equal(w.l4Offset, 54 + 8 + 8 + 24 + 8);
  const hbh = new Ipv6ExtHeaderView(f, 54, 0);
  assert.equal(hbh.nextHeader, 60);
  assert.equal(hbh.headerLen, 8);
  const c = new Ipv6OptionCursor().reset(f, hbh.optionsOffset, hbh.optionsEnd);
  const opts: Array<[number, number]> = [];
  while (c.next()) opts.push([c.type, c.dataLen]);
  assert.deepEqual(opts, [
    [5, 2],
    [1, 0],
  ]);
  const rt = new Ipv6ExtHeaderView(f, w.routingOffset, 43);
  assert.equal(rt.routingType, 4);
  assert.equal(rt.segmentsLeft, 0);
  assert.equal(rt.headerLen, 24);
  const fr = new Ipv6ExtHeaderView(f, w.fragHeaderOffset, 44);
  assert.equal(fr.fragOffset, 1280);
  assert.equal(fr.moreFragments, true);
  assert.equal(fr.fragIdent, 0xabcdef01);
});

test("the option cursor flags an option past the end", () => {
  const b = Uint8Array.from([1, 5, 0, 0]);
  const c = new Ipv6OptionCursor().reset(b, 0, 4);
  assert.equal(c.next(), false);
  assert.equal(c.malformed, true);
});

test("chains that loop, repeat or overrun are ExtChain", () => {
  const w = newIpv6Walk();
  const chain = (ext: Ipv6ExtHeader[]) =>
    new Ipv6Packet(buildIp({ src: "::1", dst: "::2", proto: 59, extHeaders: ext }), 14);
  assert.equal(chain([{ type: "destOpts" }, { type: "destOpts" }]).walk(w), ParseStatus.Ok);
  assert.equal(
    chain([{ type: "destOpts" }, { type: "destOpts" }, { type: "destOpts" }]).walk(w),
    ParseStatus.ExtChain,
  );
  assert.equal(chain([{ type: "destOpts" }, { type: "hopByHop" }]).walk(w), ParseStatus.ExtChain);
  // A crafted "loop": every header names destination options as the next one.
  const f = buildIp({
    src: "::1",
    dst: "::2",
    proto: 60,
    payload: new Uint8Array(8 * (MAX_EXT_HEADERS + 2)).fill(0),
  });
  for (let i = 0; i < MAX_EXT_HEADERS + 2; i++) f[54 + 8 * i] = 60;
  assert.equal(new Ipv6Packet(f, 14).walk(w), ParseStatus.ExtChain);
  const g = Buffer.from(chain([{ type: "hopByHop" }]).buf);
  g[54 + 1] = 3; // 32 bytes claimed, 8 present
  assert.equal(new Ipv6Packet(g, 14).walk(w), ParseStatus.ExtChain);
});

test("check(): truncation, version, lying payload length", () => {
  for (let n = 14; n < 54; n++) assert.equal(new Ipv6Packet(UDP6, 14, n).check(), ParseStatus.Truncated);
  const b = Buffer.from(UDP6);
  b.writeUInt16BE(42, 18);
  assert.equal(new Ipv6Packet(b, 14).check(), ParseStatus.BadLength);
  b[14] = 0x40;
  assert.equal(new Ipv6Packet(b, 14).check(), ParseStatus.BadHeader);
});

test("walking random bytes never throws and stays inside the datagram", () => {
  const w = newIpv6Walk();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), fc.nat(255), (body, nh) => {
      const f = buildUdp({ src: "::1", dst: "::2", sport: 1, dport: 2 });
      const g = Buffer.concat([f.subarray(0, 54), body]);
      g.writeUInt16BE(body.length, 18);
      g[20] = nh;
      const ip = new Ipv6Packet(g, 14);
      assert.equal(ip.check(), ParseStatus.Ok);
      if (ip.walk(w) === ParseStatus.Ok) assert.ok(w.l4Offset <= g.length && w.l4Offset >= 54);
    }),
    { numRuns: 2000 },
  );
});
