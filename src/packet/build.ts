/**
 * @module Frame builders for tests, benchmarks and tools: complete, valid Ethernet frames with
 * correct checksums from a friendly object description. Not for the hot path (they allocate).
 *
 * Every builder takes the L2 options (vnet header, MACs, 802.1Q / QinQ tags, padding) and, for
 * IP, the L3 options (IPv4 or IPv6 chosen by the address text; IPv4 options and fragment
 * fields; IPv6 extension headers). The API is stable: pcap cross-checks and other areas use it.
 */
import { parseIpv4, parseIpv6, parseMac } from "./addr.ts";
import { internetChecksum, sum16 } from "./checksum.ts";
import { type TcpOption, tcpOptionBytes } from "./tcp.ts";

export type { TcpOption };
export { tcpOptionBytes };

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_QINQ = 0x88a8;

export const IPPROTO_HOPOPTS = 0;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ROUTING = 43;
export const IPPROTO_FRAGMENT = 44;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_NONE = 59;
export const IPPROTO_DSTOPTS = 60;

export type Bytes = Uint8Array | string;

export interface VlanTag {
  /** 12-bit VLAN id. */
  id: number;
  /** 3-bit priority code point (default 0). */
  pcp?: number;
  /** Drop-eligible indicator (default false). */
  dei?: boolean;
}

export interface L2Options {
  /** Prefix the frame with this many zero bytes (a virtio-net header as QEMU sends it). */
  vnetLen?: number;
  /** Default 52:54:00:00:00:01. */
  srcMac?: string;
  /** Default 52:54:00:00:00:02 (ff:ff:ff:ff:ff:ff for an ARP request). */
  dstMac?: string;
  /** 802.1Q customer tag (TPID 0x8100). */
  vlan?: number | VlanTag;
  /** 802.1ad service tag (TPID 0x88a8) placed outside `vlan` (QinQ). Needs `vlan`. */
  outerVlan?: number | VlanTag;
  /** Pad the Ethernet frame (not counting the vnet header) with zeros up to this length, e.g. 60. */
  padTo?: number;
}

export type Ipv6ExtHeader =
  /** Option bytes (TLVs); padded with a Pad1/PadN option to a multiple of 8. */
  | { type: "hopByHop"; options?: Uint8Array }
  | { type: "destOpts"; options?: Uint8Array }
  /** Type-specific data after the first 4 bytes; zero-padded to a multiple of 8. */
  | { type: "routing"; routingType?: number; segmentsLeft?: number; data?: Uint8Array }
  /** `offset` in bytes (a multiple of 8). */
  | { type: "fragment"; offset?: number; more?: boolean; id?: number };

export interface IpOptions extends L2Options {
  /** Source address: dotted quad (IPv4) or IPv6 text; the family of `src` selects IPv4/IPv6. */
  src: string;
  dst: string;
  /** IPv4 TTL / IPv6 hop limit (default 64). */
  ttl?: number;
  /** IPv4 TOS / IPv6 traffic class (default 0). */
  tos?: number;
  /** IPv4 identification (default 0). */
  id?: number;
  /** IPv4 don't-fragment flag (default false). */
  df?: boolean;
  /** IPv4 more-fragments flag (default false). */
  mf?: boolean;
  /** IPv4 fragment offset in bytes, a multiple of 8 (default 0). */
  fragOffset?: number;
  /** Raw IPv4 option bytes; padded with EOL (0) bytes to a multiple of 4, at most 40. */
  ipOptions?: Uint8Array;
  /** IPv6 flow label (default 0). */
  flowLabel?: number;
  /** IPv6 extension headers, in order, between the fixed header and the upper layer. */
  extHeaders?: Ipv6ExtHeader[];
}

export interface TcpBuild extends IpOptions {
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  /** Flag byte, or letters from "FSRPAUEC" (e.g. "SA" for SYN+ACK, "PA"). Default "A". */
  flags?: number | string;
  /** Default 65535. */
  window?: number;
  urgent?: number;
  /** Options, padded with EOL bytes to a multiple of 4 (at most 40 bytes). */
  options?: TcpOption[];
  payload?: Bytes;
  /** Store this value instead of the correct checksum (bad-checksum tests). */
  checksum?: number;
}

export interface UdpBuild extends IpOptions {
  sport: number;
  dport: number;
  payload?: Bytes;
  /** Store this value instead of the correct checksum (0 = "no checksum" on IPv4). */
  checksum?: number;
}

export interface IcmpBuild extends IpOptions {
  type: number;
  code?: number;
  /** The 4 bytes after the checksum (e.g. id/seq, gateway, MTU), as a 32-bit number. */
  rest?: number;
  payload?: Bytes;
}

export interface IcmpEchoBuild extends IpOptions {
  /** Echo reply instead of request. */
  reply?: boolean;
  /** Echo identifier; on IPv4 also the IP identification unless `ipId` is given. */
  id: number;
  /** IPv4 identification when it should differ from the echo identifier. */
  ipId?: number;
  seq?: number;
  payload?: Bytes;
}

export interface Icmpv6Build extends IpOptions {
  type: number;
  code?: number;
  /** Everything after the 4-byte type/code/checksum header. */
  body?: Bytes;
}

export interface NeighborSolicitBuild extends Omit<IpOptions, "dst"> {
  /** Default: the target's solicited-node multicast address. */
  dst?: string;
  target: string;
  /** Source link-layer address option (type 1). */
  srcLinkAddr?: string;
}

export interface NeighborAdvertBuild extends IpOptions {
  target: string;
  router?: boolean;
  solicited?: boolean;
  override?: boolean;
  /** Target link-layer address option (type 2). */
  targetLinkAddr?: string;
}

export interface ArpBuild extends L2Options {
  /** 1 request, 2 reply. */
  op: 1 | 2 | "request" | "reply";
  senderMac: string;
  senderIp: string;
  /** Default 00:00:00:00:00:00. */
  targetMac?: string;
  targetIp: string;
}

export interface EthernetBuild extends L2Options {
  etherType: number;
  payload?: Bytes;
}

export interface IpBuild extends IpOptions {
  /** Upper-layer protocol number (final next header for IPv6). */
  proto: number;
  payload?: Bytes;
}

const DEFAULT_SRC_MAC = "52:54:00:00:00:01";
const DEFAULT_DST_MAC = "52:54:00:00:00:02";

function bytes(b: Bytes | undefined): Uint8Array {
  if (b === undefined) return new Uint8Array(0);
  return typeof b === "string" ? Buffer.from(b, "utf8") : b;
}

function tag(t: number | VlanTag): number {
  const v = typeof t === "number" ? { id: t } : t;
  return ((v.pcp ?? 0) << 13) | (v.dei ? 0x1000 : 0) | (v.id & 0xfff);
}

/** An Ethernet frame (with optional vnet header, tags and padding) around `payload`. */
export function buildEthernet(o: EthernetBuild): Buffer {
  const payload = bytes(o.payload);
  if (o.outerVlan !== undefined && o.vlan === undefined) throw new RangeError("outerVlan needs vlan");
  const vnet = o.vnetLen ?? 0;
  const tags = (o.vlan !== undefined ? 4 : 0) + (o.outerVlan !== undefined ? 4 : 0);
  const l2 = 14 + tags;
  const ethLen = Math.max(l2 + payload.length, o.padTo ?? 0);
  const buf = Buffer.alloc(vnet + ethLen);
  let p = vnet;
  buf.set(parseMac(o.dstMac ?? DEFAULT_DST_MAC), p);
  buf.set(parseMac(o.srcMac ?? DEFAULT_SRC_MAC), p + 6);
  p += 12;
  if (o.outerVlan !== undefined) {
    buf.writeUInt16BE(ETHERTYPE_QINQ, p);
    buf.writeUInt16BE(tag(o.outerVlan), p + 2);
    p += 4;
  }
  if (o.vlan !== undefined) {
    buf.writeUInt16BE(ETHERTYPE_VLAN, p);
    buf.writeUInt16BE(tag(o.vlan), p + 2);
    p += 4;
  }
  buf.writeUInt16BE(o.etherType, p);
  buf.set(payload, p + 2);
  return buf;
}

function isV6(o: IpOptions): boolean {
  const v6 = o.src.includes(":");
  if (v6 !== o.dst.includes(":")) throw new RangeError(`address families differ: ${o.src} ${o.dst}`);
  return v6;
}

/** Pseudo-header sum from address bytes (either family). */
function pseudoSum(src: Uint8Array, dst: Uint8Array, proto: number, len: number): number {
  return sum16(dst, 0, dst.length, sum16(src, 0, src.length)) + proto + (len >>> 16) + (len & 0xffff);
}

function padOptions6(opts: Uint8Array): Uint8Array {
  // 2 bytes of next-header/length precede the options; the total must be a multiple of 8.
  const total = Math.ceil((opts.length + 2) / 8) * 8;
  const out = new Uint8Array(total - 2);
  out.set(opts);
  const pad = out.length - opts.length;
  if (pad === 1)
    out[opts.length] = 0; // Pad1
  else if (pad > 1) {
    out[opts.length] = 1; // PadN
    out[opts.length + 1] = pad - 2;
  }
  return out;
}

function extHeaderBytes(h: Ipv6ExtHeader, next: number): { code: number; data: Uint8Array } {
  switch (h.type) {
    case "hopByHop":
    case "destOpts": {
      const body = padOptions6(h.options ?? new Uint8Array(0));
      const data = new Uint8Array(2 + body.length);
      data[0] = next;
      data[1] = data.length / 8 - 1;
      data.set(body, 2);
      return { code: h.type === "hopByHop" ? IPPROTO_HOPOPTS : IPPROTO_DSTOPTS, data };
    }
    case "routing": {
      const extra = h.data ?? new Uint8Array(4);
      const total = Math.ceil((4 + extra.length) / 8) * 8;
      const data = new Uint8Array(total);
      data[0] = next;
      data[1] = total / 8 - 1;
      data[2] = h.routingType ?? 0;
      data[3] = h.segmentsLeft ?? 0;
      data.set(extra, 4);
      return { code: IPPROTO_ROUTING, data };
    }
    case "fragment": {
      const data = new Uint8Array(8);
      const off = h.offset ?? 0;
      if (off % 8 !== 0) throw new RangeError("fragment offset must be a multiple of 8");
      data[0] = next;
      const w = ((off / 8) << 3) | (h.more ? 1 : 0);
      data[2] = (w >> 8) & 0xff;
      data[3] = w & 0xff;
      const id = h.id ?? 0;
      data[4] = id >>> 24;
      data[5] = (id >>> 16) & 0xff;
      data[6] = (id >>> 8) & 0xff;
      data[7] = id & 0xff;
      return { code: IPPROTO_FRAGMENT, data };
    }
  }
}

/**
 * An IP datagram in an Ethernet frame. `fillChecksum(l4, pseudoSum)` is called with the
 * upper-layer bytes (already placed in their final buffer) to write the L4 checksum.
 */
function buildIpFrame(
  o: IpOptions,
  proto: number,
  l4: Uint8Array,
  fillChecksum?: (l4: Uint8Array, pseudo: number) => void,
): Buffer {
  if (isV6(o)) {
    const src = parseIpv6(o.src);
    const dst = parseIpv6(o.dst);
    const exts = o.extHeaders ?? [];
    const parts: Uint8Array[] = [];
    let next = proto;
    for (let i = exts.length - 1; i >= 0; i--) {
      const { code, data } = extHeaderBytes(exts[i]!, next);
      parts.unshift(data);
      next = code;
    }
    const extLen = parts.reduce((n, p) => n + p.length, 0);
    const ip = new Uint8Array(40 + extLen + l4.length);
    const tc = o.tos ?? 0;
    const fl = o.flowLabel ?? 0;
    ip[0] = 0x60 | (tc >> 4);
    ip[1] = ((tc & 0xf) << 4) | ((fl >> 16) & 0xf);
    ip[2] = (fl >> 8) & 0xff;
    ip[3] = fl & 0xff;
    const plen = extLen + l4.length;
    ip[4] = plen >> 8;
    ip[5] = plen & 0xff;
    ip[6] = next;
    ip[7] = o.ttl ?? 64;
    ip.set(src, 8);
    ip.set(dst, 24);
    let p = 40;
    for (const part of parts) {
      ip.set(part, p);
      p += part.length;
    }
    ip.set(l4, p);
    fillChecksum?.(ip.subarray(p), pseudoSum(src, dst, proto, l4.length));
    return buildEthernet({ ...o, etherType: ETHERTYPE_IPV6, payload: ip });
  }
  const src = parseIpv4(o.src);
  const dst = parseIpv4(o.dst);
  const opts = o.ipOptions ?? new Uint8Array(0);
  const optLen = Math.ceil(opts.length / 4) * 4;
  if (optLen > 40) throw new RangeError("IPv4 options exceed 40 bytes");
  const hl = 20 + optLen;
  const ip = new Uint8Array(hl + l4.length);
  ip[0] = 0x40 | (hl / 4);
  ip[1] = o.tos ?? 0;
  const total = ip.length;
  ip[2] = total >> 8;
  ip[3] = total & 0xff;
  const id = o.id ?? 0;
  ip[4] = (id >> 8) & 0xff;
  ip[5] = id & 0xff;
  const fo = o.fragOffset ?? 0;
  if (fo % 8 !== 0) throw new RangeError("fragment offset must be a multiple of 8");
  const ff = (o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | ((fo / 8) & 0x1fff);
  ip[6] = ff >> 8;
  ip[7] = ff & 0xff;
  ip[8] = o.ttl ?? 64;
  ip[9] = proto;
  ip.set(src, 12);
  ip.set(dst, 16);
  ip.set(opts, 20);
  const ck = internetChecksum(ip, 0, hl);
  ip[10] = ck >> 8;
  ip[11] = ck & 0xff;
  ip.set(l4, hl);
  fillChecksum?.(ip.subarray(hl), pseudoSum(src, dst, proto, l4.length));
  return buildEthernet({ ...o, etherType: ETHERTYPE_IPV4, payload: ip });
}

function put16(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff;
  b[off + 1] = v & 0xff;
}

function put32(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 24) & 0xff;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}

/** Any IP datagram: `payload` is placed after the IP header(s) as is (no L4 checksum computed). */
export function buildIp(o: IpBuild): Buffer {
  return buildIpFrame(o, o.proto, bytes(o.payload));
}

const FLAG_LETTERS = "FSRPAUEC";

/** Converts "SA"-style flag letters (F S R P A U E C) to the TCP flag byte. */
export function tcpFlags(f: number | string): number {
  if (typeof f === "number") return f & 0xff;
  let v = 0;
  for (const c of f.toUpperCase()) {
    const i = FLAG_LETTERS.indexOf(c);
    if (i < 0) throw new RangeError(`unknown TCP flag letter '${c}'`);
    v |= 1 << i;
  }
  return v;
}

/** A TCP segment in an IP datagram in an Ethernet frame. */
export function buildTcp(o: TcpBuild): Buffer {
  const opts = tcpOptionBytes(o.options ?? []);
  if (opts.length > 40) throw new RangeError("TCP options exceed 40 bytes");
  const payload = bytes(o.payload);
  const hl = 20 + opts.length;
  const t = new Uint8Array(hl + payload.length);
  put16(t, 0, o.sport);
  put16(t, 2, o.dport);
  put32(t, 4, o.seq ?? 0);
  put32(t, 8, o.ack ?? 0);
  t[12] = (hl / 4) << 4;
  t[13] = tcpFlags(o.flags ?? "A");
  put16(t, 14, o.window ?? 65535);
  put16(t, 18, o.urgent ?? 0);
  t.set(opts, 20);
  t.set(payload, hl);
  return buildIpFrame(o, IPPROTO_TCP, t, (l4, ps) => {
    put16(l4, 16, o.checksum ?? internetChecksum(l4, 0, l4.length, ps));
  });
}

/** A UDP datagram. A computed checksum of 0 is sent as 0xffff (RFC 768). */
export function buildUdp(o: UdpBuild): Buffer {
  const payload = bytes(o.payload);
  const u = new Uint8Array(8 + payload.length);
  put16(u, 0, o.sport);
  put16(u, 2, o.dport);
  put16(u, 4, u.length);
  u.set(payload, 8);
  return buildIpFrame(o, IPPROTO_UDP, u, (l4, ps) => {
    put16(l4, 6, o.checksum ?? (internetChecksum(l4, 0, l4.length, ps) || 0xffff));
  });
}

/** Any ICMPv4 message (type, code, 4 "rest of header" bytes, payload). IPv4 addresses only. */
export function buildIcmp(o: IcmpBuild): Buffer {
  if (isV6(o)) throw new RangeError("buildIcmp is ICMPv4; use buildIcmpv6");
  const payload = bytes(o.payload);
  const m = new Uint8Array(8 + payload.length);
  m[0] = o.type;
  m[1] = o.code ?? 0;
  put32(m, 4, o.rest ?? 0);
  m.set(payload, 8);
  put16(m, 2, internetChecksum(m, 0, m.length));
  return buildIpFrame(o, IPPROTO_ICMP, m);
}

/** ICMPv4 echo request (type 8) or reply (type 0); for IPv6 addresses, ICMPv6 echo (128/129). */
export function buildIcmpEcho(o: IcmpEchoBuild): Buffer {
  const rest = (((o.id & 0xffff) << 16) | ((o.seq ?? 0) & 0xffff)) >>> 0;
  if (isV6(o)) {
    const body = new Uint8Array(4 + bytes(o.payload).length);
    put32(body, 0, rest);
    body.set(bytes(o.payload), 4);
    return buildIcmpv6({ ...o, type: o.reply ? 129 : 128, body });
  }
  return buildIcmp({ ...o, id: o.ipId ?? o.id, type: o.reply ? 0 : 8, code: 0, rest });
}

/** Any ICMPv6 message; the checksum covers the IPv6 pseudo-header. IPv6 addresses only. */
export function buildIcmpv6(o: Icmpv6Build): Buffer {
  if (!isV6(o)) throw new RangeError("buildIcmpv6 needs IPv6 addresses");
  const body = bytes(o.body);
  const m = new Uint8Array(4 + body.length);
  m[0] = o.type;
  m[1] = o.code ?? 0;
  m.set(body, 4);
  return buildIpFrame(o, IPPROTO_ICMPV6, m, (l4, ps) => {
    put16(l4, 2, internetChecksum(l4, 0, l4.length, ps));
  });
}

function linkAddrOption(type: number, mac: string): Uint8Array {
  const o = new Uint8Array(8);
  o[0] = type;
  o[1] = 1; // length in units of 8 bytes
  o.set(parseMac(mac), 2);
  return o;
}

/** The solicited-node multicast address ff02::1:ffXX:XXXX of an IPv6 address (RFC 4291). */
export function solicitedNodeAddress(addr: string): string {
  const a = parseIpv6(addr);
  const h = (i: number) => a[i]!.toString(16).padStart(2, "0");
  return `ff02::1:ff${h(13)}:${h(14)}${h(15)}`;
}

/** ICMPv6 neighbour solicitation (type 135), hop limit 255 (RFC 4861). */
export function buildNeighborSolicit(o: NeighborSolicitBuild): Buffer {
  const opt = o.srcLinkAddr !== undefined ? linkAddrOption(1, o.srcLinkAddr) : new Uint8Array(0);
  const body = new Uint8Array(20 + opt.length);
  body.set(parseIpv6(o.target), 4);
  body.set(opt, 20);
  return buildIcmpv6({ ttl: 255, ...o, dst: o.dst ?? solicitedNodeAddress(o.target), type: 135, body });
}

/** ICMPv6 neighbour advertisement (type 136), hop limit 255 (RFC 4861). */
export function buildNeighborAdvert(o: NeighborAdvertBuild): Buffer {
  const opt = o.targetLinkAddr !== undefined ? linkAddrOption(2, o.targetLinkAddr) : new Uint8Array(0);
  const body = new Uint8Array(20 + opt.length);
  body[0] = (o.router ? 0x80 : 0) | (o.solicited ? 0x40 : 0) | (o.override ? 0x20 : 0);
  body.set(parseIpv6(o.target), 4);
  body.set(opt, 20);
  return buildIcmpv6({ ttl: 255, ...o, type: 136, body });
}

/** An Ethernet/IPv4 ARP request or reply (28-byte body). */
export function buildArp(o: ArpBuild): Buffer {
  const op = o.op === "request" ? 1 : o.op === "reply" ? 2 : o.op;
  const a = new Uint8Array(28);
  put16(a, 0, 1); // hardware type Ethernet
  put16(a, 2, ETHERTYPE_IPV4);
  a[4] = 6;
  a[5] = 4;
  put16(a, 6, op);
  a.set(parseMac(o.senderMac), 8);
  a.set(parseIpv4(o.senderIp), 14);
  a.set(parseMac(o.targetMac ?? "00:00:00:00:00:00"), 18);
  a.set(parseIpv4(o.targetIp), 24);
  return buildEthernet({
    ...o,
    srcMac: o.srcMac ?? o.senderMac,
    dstMac: o.dstMac ?? (op === 1 ? "ff:ff:ff:ff:ff:ff" : (o.targetMac ?? DEFAULT_DST_MAC)),
    etherType: ETHERTYPE_ARP,
    payload: a,
  });
}
