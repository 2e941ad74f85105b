/**
 * @module fast-check arbitraries for valid frames of every protocol the builders cover
 * (shared by the packet property tests).
 */
import fc from "fast-check";
import * as b from "../../src/packet/build.ts";

const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join("."));
const v6 = fc
  .array(fc.nat(0xffff), { minLength: 8, maxLength: 8 })
  .map((w) => w.map((x) => x.toString(16)).join(":"));
const mac = fc
  .uint8Array({ minLength: 6, maxLength: 6 })
  .map((a) => Array.from(a, (x) => x.toString(16).padStart(2, "0")).join(":"));
const port = fc.nat(0xffff);
const u32 = fc.nat({ max: 0xffff_ffff });
const payload = fc.uint8Array({ maxLength: 64 });

export const l2 = fc
  .record(
    {
      vnetLen: fc.constantFrom(0, 0, 10, 12),
      vlan: fc.nat(4095),
      outerVlan: fc.nat(4095),
      padTo: fc.constantFrom(60, 64),
      srcMac: mac,
    },
    { requiredKeys: [] },
  )
  .map((o) => (o.outerVlan !== undefined && o.vlan === undefined ? { ...o, vlan: 1 } : o));

const ext6: fc.Arbitrary<b.Ipv6ExtHeader[]> = fc
  .record({
    hbh: fc.option(fc.uint8Array({ maxLength: 12 }).map((o) => Uint8Array.from([1, o.length, ...o]))),
    routing: fc.option(fc.uint8Array({ minLength: 4, maxLength: 20 })),
    frag: fc.option(fc.record({ more: fc.boolean(), id: u32 })),
    dst: fc.option(fc.constant(new Uint8Array(0))),
  })
  .map(({ hbh, routing, frag, dst }) => {
    const h: b.Ipv6ExtHeader[] = [];
    if (hbh !== null) h.push({ type: "hopByHop", options: hbh });
    if (routing !== null) h.push({ type: "routing", data: routing, segmentsLeft: 0 });
    if (frag !== null) h.push({ type: "fragment", offset: 0, ...frag });
    if (dst !== null) h.push({ type: "destOpts", options: dst });
    return h;
  });

/** IP addressing: IPv4 (with options, fragment flags) or IPv6 (with extension headers). */
export const ip = fc.oneof(
  fc.record({
    src: v4,
    dst: v4,
    ttl: fc.nat(255),
    id: fc.nat(0xffff),
    df: fc.boolean(),
    ipOptions: fc.constantFrom(
      new Uint8Array(0),
      Uint8Array.from([1, 1, 1, 0]),
      Uint8Array.from([7, 7, 4, 0, 0, 0, 0]),
    ),
  }),
  fc.record({ src: v6, dst: v6, ttl: fc.nat(255), flowLabel: fc.nat(0xfffff), extHeaders: ext6 }),
);

const tcpOption: fc.Arbitrary<b.TcpOption> = fc.oneof(
  fc.record({ kind: fc.constant("mss" as const), value: fc.nat(0xffff) }),
  fc.record({ kind: fc.constant("wscale" as const), shift: fc.nat(14) }),
  fc.constant({ kind: "sackPermitted" as const }),
  fc.constant({ kind: "nop" as const }),
  fc.record({ kind: fc.constant("timestamps" as const), tsval: u32, tsecr: u32 }),
  fc.record({
    kind: fc.constant("sack" as const),
    blocks: fc.array(fc.tuple(u32, u32), { minLength: 1, maxLength: 3 }),
  }),
  fc.record({
    kind: fc.constant("raw" as const),
    type: fc.integer({ min: 9, max: 254 }),
    data: fc.uint8Array({ maxLength: 4 }),
  }),
);
const tcpOptions = fc.array(tcpOption, { maxLength: 4 }).filter((o) => b.tcpOptionBytes(o).length <= 40);

export const tcpFrame = fc
  .record({
    l2,
    ip,
    sport: port,
    dport: port,
    seq: u32,
    ack: u32,
    flags: fc.nat(255),
    window: fc.nat(0xffff),
    options: tcpOptions,
    payload,
  })
  .map(({ l2, ip, ...t }) => ({
    frame: b.buildTcp({ ...l2, ...ip, ...t }),
    vnetLen: l2.vnetLen ?? 0,
    desc: { ...l2, ...ip, ...t } as b.TcpBuild & {
      payload: Uint8Array;
      seq: number;
      ack: number;
      flags: number;
    },
  }));

export const udpFrame = fc
  .record({ l2, ip, sport: port, dport: port, payload })
  .map(({ l2, ip, ...t }) => ({ frame: b.buildUdp({ ...l2, ...ip, ...t }), vnetLen: l2.vnetLen ?? 0 }));

export const echoFrame = fc
  .record({ l2, ip, id: port, seq: port, reply: fc.boolean(), payload })
  .map(({ l2, ip, ...t }) => ({ frame: b.buildIcmpEcho({ ...l2, ...ip, ...t }), vnetLen: l2.vnetLen ?? 0 }));

export const icmpOtherFrame = fc
  .record({ l2, src: v4, dst: v4, type: fc.constantFrom(3, 5, 11, 12), code: fc.nat(15), payload })
  .map(({ l2, ...t }) => ({ frame: b.buildIcmp({ ...l2, ...t }), vnetLen: l2.vnetLen ?? 0 }));

export const ndFrame = fc
  .record({ l2, src: v6, target: v6, dst: v6, lla: mac, adv: fc.boolean() })
  .map(({ l2, src, target, dst, lla, adv }) => ({
    frame: adv
      ? b.buildNeighborAdvert({ ...l2, src, dst, target, solicited: true, targetLinkAddr: lla })
      : b.buildNeighborSolicit({ ...l2, src, target, srcLinkAddr: lla }),
    vnetLen: l2.vnetLen ?? 0,
  }));

export const arpFrame = fc
  .record({ l2, op: fc.constantFrom(1 as const, 2 as const), senderMac: mac, senderIp: v4, targetIp: v4 })
  .map(({ l2, ...t }) => ({ frame: b.buildArp({ ...l2, ...t }), vnetLen: l2.vnetLen ?? 0 }));

export const etherFrame = fc
  .record({ l2, etherType: fc.constantFrom(0x88cc, 0x8863, 0x0842), payload })
  .map(({ l2, ...t }) => ({ frame: b.buildEthernet({ ...l2, ...t }), vnetLen: l2.vnetLen ?? 0 }));

export const anyFrame = fc.oneof(
  tcpFrame,
  udpFrame,
  echoFrame,
  icmpOtherFrame,
  ndFrame,
  arpFrame,
  etherFrame,
);

/**
 * anyFrame with up to four random byte changes after the vnet header: reaches the odd cases (ARP
 * of other sizes, 802.3 lengths, fragments, unknown protocols, truncated headers, which do not
 * parse). A fresh Buffer.
 */
export const mutatedFrame = fc
  .tuple(anyFrame, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }))
  .map(([{ frame, vnetLen }, flips]) => {
    const f = Buffer.from(frame);
    for (const [at, v] of flips) if (f.length > vnetLen) f[vnetLen + (at % (f.length - vnetLen))] = v;
    return { frame: f, vnetLen };
  });
