/**
 * @module A seeded generator of varied, valid Ethernet frames built with src/packet/build.ts:
 * every protocol colo-proxy parses (802.1Q, QinQ, ARP, IPv4 with options and fragments, IPv6
 * with extension headers and fragments, TCP with every option, UDP, ICMPv4, ICMPv6 echo/ND/
 * errors, other EtherTypes), plus a few deliberately truncated ones. Used by the tshark
 * cross-check and the pcap-inspect tests.
 */
import {
  buildArp,
  buildEthernet,
  buildIcmp,
  buildIcmpEcho,
  buildIcmpv6,
  buildIp,
  buildNeighborAdvert,
  buildNeighborSolicit,
  buildTcp,
  buildUdp,
  type IpOptions,
  type Ipv6ExtHeader,
  type TcpOption,
} from "../../src/packet/build.ts";

export interface VariedFrame {
  frame: Buffer;
  /** What the generator meant to build, e.g. "tcp6 ext", "ipv4 frag", "truncated". */
  kind: string;
}

/** mulberry32: a tiny seeded PRNG, so a failing case can be rebuilt from its seed. */
export function rng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n: number) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * n;
  };
}

export function variedFrames(seed: number, count: number): VariedFrame[] {
  const r0 = rng(seed);
  const r = (n: number) => Math.floor(r0(n));
  const pick = <T>(xs: readonly T[]): T => xs[r(xs.length)]!;
  const u32 = () => (r(0x10000) * 0x10000 + r(0x10000)) >>> 0;
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => r(256));
  const ip4 = () => `10.${r(256)}.${r(256)}.${1 + r(254)}`;
  const ip6 = () => `2001:db8:${r(0x10000).toString(16)}::${(1 + r(0xfffe)).toString(16)}`;
  // Dynamic ports only: registered ones make tshark dissect (and judge) the random payload.
  const port = () => 49_152 + r(16_384);
  const vlanId = () => 1 + r(4094);

  function l2(): Partial<IpOptions> {
    const x = r(10);
    if (x < 2) return { vlan: vlanId() };
    if (x < 3) return { vlan: { id: vlanId(), pcp: r(8) }, outerVlan: vlanId() };
    return {};
  }
  function ipv4Options(): Uint8Array | undefined {
    switch (r(5)) {
      case 0:
        return Uint8Array.of(1, 1, 1, 1); // NOPs
      case 1:
        return Uint8Array.of(148, 4, 0, 0); // router alert
      case 2:
        return Uint8Array.of(7, 11, 4, ...new Array<number>(8).fill(0), 0); // record route, 2 slots
      default:
        return undefined;
    }
  }
  function ext6(): Ipv6ExtHeader[] {
    const hs: Ipv6ExtHeader[] = [];
    if (r(3) === 0) hs.push({ type: "hopByHop" });
    if (r(3) === 0) hs.push({ type: "destOpts", options: Uint8Array.of(0x1e, 2, 0, 0) });
    if (r(4) === 0) {
      // Type 0 routing header with no segments left: the destination stays final, so the
      // pseudo-header (and every checksum) uses the fixed header's destination.
      hs.push({ type: "routing", routingType: 0, segmentsLeft: 0, data: new Uint8Array(20) });
    }
    return hs;
  }
  function ipBase(v6: boolean): IpOptions {
    const o: IpOptions = v6
      ? { src: ip6(), dst: ip6(), ttl: 1 + r(255), tos: r(256), flowLabel: r(0x100000) }
      : { src: ip4(), dst: ip4(), ttl: 1 + r(255), tos: r(256), id: r(0x10000), df: r(2) === 1 };
    if (!v6) {
      const opts = ipv4Options();
      if (opts) o.ipOptions = opts;
    } else {
      const hs = ext6();
      if (hs.length) o.extHeaders = hs;
    }
    Object.assign(o, l2());
    if (r(5) === 0) o.padTo = 60 + r(20);
    return o;
  }
  function tcpOptions(): TcpOption[] {
    const all: TcpOption[][] = [
      [],
      [{ kind: "mss", value: 536 + r(9000) }],
      [
        { kind: "mss", value: 1460 },
        { kind: "sackPermitted" },
        { kind: "timestamps", tsval: u32(), tsecr: u32() },
        { kind: "nop" },
        { kind: "wscale", shift: r(15) },
      ],
      [{ kind: "nop" }, { kind: "nop" }, { kind: "timestamps", tsval: u32(), tsecr: u32() }],
      [
        { kind: "nop" },
        { kind: "nop" },
        { kind: "timestamps", tsval: u32(), tsecr: u32() },
        { kind: "nop" },
        { kind: "nop" },
        {
          kind: "sack",
          blocks: Array.from({ length: 1 + r(3) }, () => {
            const l = u32();
            return [l, (l + 1 + r(65_000)) >>> 0] as const;
          }),
        },
      ],
      [{ kind: "nop" }, { kind: "nop" }, { kind: "sack", blocks: [[u32(), u32()]] }],
    ];
    return pick(all);
  }

  const kinds = [
    "tcp4",
    "tcp4",
    "tcp6",
    "tcp6",
    "udp4",
    "udp6",
    "icmp4 echo",
    "icmp4 error",
    "icmp6 echo",
    "icmp6 ns",
    "icmp6 na",
    "icmp6 error",
    "arp",
    "ipv4 frag",
    "ipv6 frag",
    "ether",
    "truncated",
  ] as const;

  const out: VariedFrame[] = [];
  for (let i = 0; i < count; i++) {
    const kind = pick(kinds);
    let frame: Buffer;
    switch (kind) {
      case "tcp4":
      case "tcp6":
        frame = buildTcp({
          ...ipBase(kind === "tcp6"),
          sport: port(),
          dport: port(),
          seq: u32(),
          ack: u32(),
          flags: pick(["S", "SA", "A", "PA", "FA", "R", "RA", "PAU", "SEC", "FPA"]),
          window: r(0x10000),
          options: tcpOptions(),
          payload: bytes(pick([0, 0, 1, 7, 100, 536, 1200])),
        });
        break;
      case "udp4":
      case "udp6":
        frame = buildUdp({
          ...ipBase(kind === "udp6"),
          sport: port(),
          dport: port(),
          payload: bytes(r(300)),
        });
        break;
      case "icmp4 echo":
      case "icmp6 echo":
        frame = buildIcmpEcho({
          ...ipBase(kind === "icmp6 echo"),
          id: r(0x10000),
          seq: r(0x10000),
          reply: r(2) === 1,
          payload: bytes(r(64)),
        });
        break;
      case "icmp4 error": {
        // Port unreachable quoting a UDP datagram's IP header and first 8 bytes.
        const inner = buildUdp({ src: ip4(), dst: ip4(), sport: port(), dport: port(), payload: bytes(20) });
        frame = buildIcmp({ ...ipBase(false), type: 3, code: 3, payload: inner.subarray(14, 14 + 28) });
        break;
      }
      case "icmp6 error": {
        const inner = buildUdp({ src: ip6(), dst: ip6(), sport: port(), dport: port(), payload: bytes(8) });
        frame = buildIcmpv6({
          ...ipBase(true),
          type: 1,
          code: 4,
          body: Buffer.concat([Buffer.alloc(4), inner.subarray(14)]),
        });
        break;
      }
      case "icmp6 ns":
        frame = buildNeighborSolicit({
          ...l2(),
          src: ip6(),
          target: ip6(),
          srcLinkAddr: "52:54:00:12:34:56",
        });
        break;
      case "icmp6 na":
        frame = buildNeighborAdvert({
          ...l2(),
          src: ip6(),
          dst: ip6(),
          target: ip6(),
          solicited: r(2) === 1,
          override: r(2) === 1,
          targetLinkAddr: "52:54:00:ab:cd:ef",
        });
        break;
      case "arp":
        frame = buildArp({
          ...l2(),
          op: r(2) === 0 ? "request" : "reply",
          senderMac: "52:54:00:00:00:0a",
          senderIp: ip4(),
          targetMac: "52:54:00:00:00:0b",
          targetIp: ip4(),
          padTo: 60,
        });
        break;
      case "ipv4 frag": {
        const first = r(2) === 0;
        frame = buildIp({
          ...ipBase(false),
          proto: pick([6, 17]),
          mf: first || r(2) === 0,
          fragOffset: first ? 0 : 8 * (1 + r(100)),
          payload: bytes(8 * (3 + r(10))),
        });
        break;
      }
      case "ipv6 frag": {
        const first = r(2) === 0;
        const base = ipBase(true);
        base.extHeaders = [
          ...(base.extHeaders ?? []),
          { type: "fragment", offset: first ? 0 : 8 * (1 + r(100)), more: first || r(2) === 0, id: u32() },
        ];
        frame = buildIp({ ...base, proto: pick([6, 17, 58]), payload: bytes(8 * (3 + r(10))) });
        break;
      }
      case "ether":
        frame = buildEthernet({
          ...l2(),
          etherType: pick([0x88b5, 0x88b6, 0x9000]),
          payload: bytes(46 + r(100)),
        });
        break;
      case "truncated": {
        const whole = buildTcp({ ...ipBase(r(2) === 0), sport: port(), dport: port(), payload: bytes(40) });
        // Cut inside the IP or TCP header: the IP length then claims more than the frame holds.
        const l3 = whole.length - 40 - 20;
        frame = whole.subarray(0, l3 - 1 - r(10));
        break;
      }
    }
    out.push({ frame, kind });
  }
  return out;
}
