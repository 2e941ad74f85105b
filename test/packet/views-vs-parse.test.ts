import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ArpPacket } from "../../src/packet/arp.ts";
import { EthernetFrame } from "../../src/packet/ethernet.ts";
import { IcmpPacket } from "../../src/packet/icmp.ts";
import { Ipv4Packet } from "../../src/packet/ipv4.ts";
import { Ipv6Packet, newIpv6Walk } from "../../src/packet/ipv6.ts";
import { newFrameMeta, ParseStatus } from "../../src/packet/meta.ts";
import { parseFrame } from "../../src/packet/parse.ts";
import { TcpPacket } from "../../src/packet/tcp.ts";
import { UdpPacket } from "../../src/packet/udp.ts";
import { anyFrame } from "./arb.ts";

/** Random-input runs are scaled up 10x in CI (time-boxed locally, like undici's fuzz tests). */
const FUZZ_SCALE = process.env.CI ? 10 : 1;

/** A slow reference parser composed of the views; must agree with parseFrame's status and offsets. */
function viaViews(f: Uint8Array, vnet: number): { status: ParseStatus; l4: number; end: number } {
  const e = new EthernetFrame(f, vnet);
  let st = e.check();
  if (st !== ParseStatus.Ok) return { status: st, l4: -1, end: 0 };
  const l3 = e.payloadOffset;
  const l4check = (proto: number, l4: number, end: number, v: number): ParseStatus => {
    if (proto === 6) return new TcpPacket(f, l4, end).check();
    if (proto === 17) return new UdpPacket(f, l4, end).check();
    if ((proto === 1 && v === 4) || (proto === 58 && v === 6)) return new IcmpPacket(f, l4, end).check();
    return ParseStatus.Ok;
  };
  switch (e.etherType) {
    case 0x0800: {
      const ip = new Ipv4Packet(f, l3);
      st = ip.check();
      if (st !== ParseStatus.Ok) return { status: st, l4: -1, end: 0 };
      if (ip.isFragment)
        return {
          status: ParseStatus.Ok,
          l4: ip.fragOffset === 0 ? ip.payloadOffset : -1,
          end: ip.datagramEnd,
        };
      st = l4check(ip.protocol, ip.payloadOffset, ip.datagramEnd, 4);
      return { status: st, l4: ip.payloadOffset, end: ip.datagramEnd };
    }
    case 0x86dd: {
      const ip = new Ipv6Packet(f, l3);
      st = ip.check();
      if (st !== ParseStatus.Ok) return { status: st, l4: -1, end: 0 };
      const w = newIpv6Walk();
      st = ip.walk(w);
      if (st !== ParseStatus.Ok) return { status: st, l4: -1, end: 0 };
      if (w.fragment)
        return { status: ParseStatus.Ok, l4: w.fragOffset === 0 ? w.l4Offset : -1, end: ip.datagramEnd };
      return { status: l4check(w.proto, w.l4Offset, ip.datagramEnd, 6), l4: w.l4Offset, end: ip.datagramEnd };
    }
    case 0x0806: {
      const a = new ArpPacket(f, l3);
      st = a.check();
      return { status: st, l4: -1, end: st === ParseStatus.Ok ? l3 + a.packetLen : 0 };
    }
    default:
      return { status: ParseStatus.Ok, l4: -1, end: f.length };
  }
}

test("the views and parseFrame agree on every truncation of every valid frame", () => {
  const m = newFrameMeta();
  fc.assert(
    fc.property(anyFrame, ({ frame, vnetLen }) => {
      for (let n = vnetLen; n <= frame.length; n++) {
        const f = frame.subarray(0, n);
        const st = parseFrame(f, vnetLen, m);
        const r = viaViews(f, vnetLen);
        assert.equal(st, r.status, `cut at ${n}`);
        if (st === ParseStatus.Ok) {
          assert.equal(m.l4Offset, r.l4);
          assert.equal(m.ipEnd, r.end);
        }
      }
    }),
    { numRuns: 200 },
  );
});

test("the views and parseFrame agree on random mutations of valid frames", () => {
  const m = newFrameMeta();
  fc.assert(
    fc.property(
      anyFrame,
      fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 4 }),
      ({ frame, vnetLen }, muts) => {
        const f = Buffer.from(frame);
        for (const [i, v] of muts) f[vnetLen + (i % (f.length - vnetLen))] = v;
        const st = parseFrame(f, vnetLen, m);
        const r = viaViews(f, vnetLen);
        assert.equal(st, r.status);
        if (st === ParseStatus.Ok) assert.equal(m.l4Offset, r.l4);
      },
    ),
    { numRuns: 3000 * FUZZ_SCALE },
  );
});
