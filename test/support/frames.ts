/**
 * @module Test-side Ethernet frame builders (IPv4/IPv6, TCP/UDP/ICMP, VLAN, ARP) with correct
 * checksums and every header field overridable, so scenarios can vary exactly one field.
 * Independent of src/packet on purpose: differential tests must not share the product's bugs.
 */

export interface EthOpts {
  dst?: string;
  src?: string;
  /** 802.1Q VLAN id: inserts an 81 00 tag. */
  vlan?: number;
}

export interface Ip4Opts extends EthOpts {
  srcIp?: string;
  dstIp?: string;
  id?: number;
  ttl?: number;
  tos?: number;
  /** Overrides the computed IPv4 header checksum. */
  ipChecksum?: number;
}

export interface TcpOpts extends Ip4Opts {
  sport?: number;
  dport?: number;
  seq?: number;
  ack?: number;
  /** Flag letters: any of "FSRPAU", e.g. "PA". Default "PA" with payload, "A" without. */
  flags?: string;
  window?: number;
  /** Raw TCP option bytes (padded to 4 with NOP). */
  options?: Uint8Array;
  /** Overrides the computed TCP checksum. */
  checksum?: number;
  payload?: Uint8Array | string;
  /** Ethernet padding bytes appended after the IP datagram. */
  padding?: number;
}

export interface UdpOpts extends Ip4Opts {
  sport?: number;
  dport?: number;
  checksum?: number;
  payload?: Uint8Array | string;
}

export interface IcmpOpts extends Ip4Opts {
  type?: number;
  code?: number;
  ident?: number;
  seqNo?: number;
  payload?: Uint8Array | string;
}

const enc = new TextEncoder();
const bytes = (p: Uint8Array | string | undefined): Uint8Array =>
  p === undefined ? new Uint8Array(0) : typeof p === "string" ? enc.encode(p) : p;

function mac(s: string): number[] {
  return s.split(":").map((h) => Number.parseInt(h, 16));
}
function ip4(s: string): number[] {
  return s.split(".").map(Number);
}

function sum16(buf: Uint8Array, start: number, end: number, init = 0): number {
  let s = init;
  for (let i = start; i + 1 < end; i += 2) s += (buf[i]! << 8) | buf[i + 1]!;
  if ((end - start) % 2 === 1) s += buf[end - 1]! << 8;
  return s;
}
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** Ethernet header (+ optional VLAN tag); returns header bytes. */
export function ethHeader(etherType: number, o: EthOpts = {}): number[] {
  const h = [...mac(o.dst ?? "52:54:00:00:00:02"), ...mac(o.src ?? "52:54:00:00:00:01")];
  if (o.vlan !== undefined) h.push(0x81, 0x00, (o.vlan >> 8) & 0x0f, o.vlan & 0xff);
  h.push(etherType >> 8, etherType & 0xff);
  return h;
}

function ipv4Frame(
  proto: number,
  l4: Uint8Array,
  o: Ip4Opts,
  l4ChecksumAt: number,
  l4Checksum?: number,
): Buffer {
  const eth = ethHeader(0x0800, o);
  const total = 20 + l4.length;
  const f = Buffer.alloc(eth.length + total);
  f.set(eth, 0);
  const ip = eth.length;
  const src = ip4(o.srcIp ?? "10.0.0.1");
  const dst = ip4(o.dstIp ?? "10.0.0.2");
  f.set(
    [0x45, o.tos ?? 0, total >> 8, total & 0xff, ((o.id ?? 1) >> 8) & 0xff, (o.id ?? 1) & 0xff, 0x40, 0],
    ip,
  );
  f[ip + 8] = o.ttl ?? 64;
  f[ip + 9] = proto;
  f.set(src, ip + 12);
  f.set(dst, ip + 16);
  f.writeUInt16BE(o.ipChecksum ?? fold(sum16(f, ip, ip + 20)), ip + 10);
  f.set(l4, ip + 20);
  if (l4ChecksumAt >= 0) {
    const l4o = ip + 20;
    let ck: number;
    if (l4Checksum !== undefined) ck = l4Checksum;
    else if (proto === 1) ck = fold(sum16(f, l4o, l4o + l4.length));
    else {
      const pseudo = sum16(
        Uint8Array.from([...src, ...dst, 0, proto, l4.length >> 8, l4.length & 0xff]),
        0,
        12,
      );
      ck = fold(sum16(f, l4o, l4o + l4.length, pseudo));
      if (proto === 17 && ck === 0) ck = 0xffff;
    }
    f.writeUInt16BE(ck, l4o + l4ChecksumAt);
  }
  return f;
}

const FLAG_BITS: Record<string, number> = { F: 1, S: 2, R: 4, P: 8, A: 16, U: 32 };

/** An IPv4/TCP frame. */
export function tcp(o: TcpOpts = {}): Buffer {
  const payload = bytes(o.payload);
  const opts = o.options ?? new Uint8Array(0);
  const optLen = Math.ceil(opts.length / 4) * 4;
  const hl = 20 + optLen;
  const seg = new Uint8Array(hl + payload.length);
  const dv = new DataView(seg.buffer);
  dv.setUint16(0, o.sport ?? 40000);
  dv.setUint16(2, o.dport ?? 80);
  dv.setUint32(4, (o.seq ?? 1000) >>> 0);
  dv.setUint32(8, (o.ack ?? 5000) >>> 0);
  seg[12] = (hl / 4) << 4;
  let flags = 0;
  for (const c of o.flags ?? (payload.length > 0 ? "PA" : "A")) flags |= FLAG_BITS[c] ?? 0;
  seg[13] = flags;
  dv.setUint16(14, o.window ?? 64240);
  seg.set(opts, 20);
  seg.fill(1, 20 + opts.length, hl);
  seg.set(payload, hl);
  const f = ipv4Frame(6, seg, o, 16, o.checksum);
  return o.padding ? Buffer.concat([f, Buffer.alloc(o.padding)]) : f;
}

/** An IPv4/UDP frame. */
export function udp(o: UdpOpts = {}): Buffer {
  const payload = bytes(o.payload);
  const seg = new Uint8Array(8 + payload.length);
  const dv = new DataView(seg.buffer);
  dv.setUint16(0, o.sport ?? 5353);
  dv.setUint16(2, o.dport ?? 53);
  dv.setUint16(4, seg.length);
  seg.set(payload, 8);
  return ipv4Frame(17, seg, o, 6, o.checksum);
}

/** An IPv4/ICMP frame (echo reply by default). */
export function icmp(o: IcmpOpts = {}): Buffer {
  const payload = bytes(o.payload);
  const seg = new Uint8Array(8 + payload.length);
  const dv = new DataView(seg.buffer);
  seg[0] = o.type ?? 0;
  seg[1] = o.code ?? 0;
  dv.setUint16(4, o.ident ?? 0x1234);
  dv.setUint16(6, o.seqNo ?? 1);
  seg.set(payload, 8);
  return ipv4Frame(1, seg, o, 2);
}

/** An IPv4 frame of an arbitrary protocol (e.g. 47 GRE) with raw payload. */
export function ipv4Raw(proto: number, o: Ip4Opts & { payload?: Uint8Array | string } = {}): Buffer {
  return ipv4Frame(proto, bytes(o.payload), o, -1);
}

/** An IPv6/UDP frame. */
export function udp6(
  o: EthOpts & {
    srcIp?: string;
    dstIp?: string;
    sport?: number;
    dport?: number;
    hopLimit?: number;
    payload?: Uint8Array | string;
  } = {},
): Buffer {
  const payload = bytes(o.payload);
  const eth = ethHeader(0x86dd, o);
  const ulen = 8 + payload.length;
  const f = Buffer.alloc(eth.length + 40 + ulen);
  f.set(eth, 0);
  const ip = eth.length;
  f[ip] = 0x60;
  f.writeUInt16BE(ulen, ip + 4);
  f[ip + 6] = 17;
  f[ip + 7] = o.hopLimit ?? 64;
  const a6 = (s: string, at: number) => {
    // only "fd00::N" style addresses are needed by the tests
    const n = Number.parseInt(s.split("::")[1] ?? "1", 16);
    f.writeUInt16BE(0xfd00, at);
    f.writeUInt16BE(n, at + 14);
  };
  a6(o.srcIp ?? "fd00::1", ip + 8);
  a6(o.dstIp ?? "fd00::2", ip + 24);
  const u = ip + 40;
  f.writeUInt16BE(o.sport ?? 5353, u);
  f.writeUInt16BE(o.dport ?? 53, u + 2);
  f.writeUInt16BE(ulen, u + 4);
  f.set(payload, u + 8);
  let s = sum16(f, ip + 8, ip + 40);
  s += ulen + 17;
  f.writeUInt16BE(fold(sum16(f, u, u + ulen, s)) || 0xffff, u + 6);
  return f;
}

/** An ARP request frame. */
export function arp(o: EthOpts & { senderIp?: string; targetIp?: string; op?: number } = {}): Buffer {
  const eth = ethHeader(0x0806, { dst: "ff:ff:ff:ff:ff:ff", ...o });
  const body = [
    0,
    1,
    8,
    0,
    6,
    4,
    0,
    o.op ?? 1,
    ...mac(o.src ?? "52:54:00:00:00:01"),
    ...ip4(o.senderIp ?? "10.0.0.1"),
    0,
    0,
    0,
    0,
    0,
    0,
    ...ip4(o.targetIp ?? "10.0.0.2"),
  ];
  return Buffer.from([...eth, ...body]);
}

/** Prepends a virtio-net header of `len` bytes (zeroed, or filled with `fill`). */
export function withVnet(frame: Uint8Array, len: number, fill = 0): Buffer {
  return Buffer.concat([Buffer.alloc(len, fill), frame]);
}
