/**
 * @module Test-side builder for Ethernet/VLAN/IPv4/IPv6(+extension headers)/TCP frames with valid
 * checksums, plus an independent full-recompute checksum verifier and field readers. Written
 * independently of src/packet on purpose, so tests do not check the code with itself.
 */

export type Flags = string; // letters: S=SYN A=ACK F=FIN R=RST P=PSH U=URG

export interface TcpSpec {
  family?: 4 | 6;
  src?: string;
  dst?: string;
  sport: number;
  dport: number;
  seq: number;
  ack?: number;
  flags: Flags;
  payload?: Uint8Array | string;
  window?: number;
  mss?: number;
  /** SACK blocks (left, right). */
  sack?: [number, number][];
  /** TSval, TSecr. */
  ts?: [number, number];
  /** Put a single NOP before the SACK option so its blocks sit at odd offsets. */
  oddSack?: boolean;
  /** 802.1Q tags, outermost first. */
  vlan?: readonly number[];
  /** IPv6 extension headers to insert before TCP (next-header numbers: 0, 43, 60). */
  ext?: readonly number[];
  /** Bytes of virtio-net header in front of the Ethernet header. */
  vnetLen?: number;
  /** Pad the frame with zeros to at least this many bytes (after the vnet header). */
  padTo?: number;
  ipId?: number;
}

const enc = new TextEncoder();

function flagByte(f: Flags): number {
  let b = 0;
  for (const c of f) {
    b |= { F: 1, S: 2, R: 4, P: 8, A: 16, U: 32 }[c] ?? 0;
  }
  return b;
}

function ip4(s: string): number[] {
  return s.split(".").map(Number);
}

function ip6(s: string): number[] {
  const [head, tail] = s.includes("::") ? s.split("::") : [s, undefined];
  const h = head ? head.split(":").filter((x) => x !== "") : [];
  const t = tail !== undefined ? tail.split(":").filter((x) => x !== "") : [];
  const words = [...h, ...new Array(8 - h.length - t.length).fill("0"), ...t].map((x) =>
    Number.parseInt(x, 16),
  );
  const out: number[] = [];
  for (const w of words) out.push(w >> 8, w & 0xff);
  return out;
}

function sum16(b: Uint8Array, off: number, len: number, acc = 0): number {
  let i = 0;
  for (; i + 1 < len; i += 2) acc += (b[off + i]! << 8) | b[off + i + 1]!;
  if (i < len) acc += b[off + i]! << 8;
  return acc;
}

function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return acc;
}

function tcpOptions(s: TcpSpec): number[] {
  const o: number[] = [];
  if (s.mss !== undefined) o.push(2, 4, s.mss >> 8, s.mss & 0xff);
  if (s.ts) {
    o.push(1, 1, 8, 10);
    for (const v of s.ts) o.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  }
  if (s.sack && s.sack.length > 0) {
    if (s.oddSack) o.push(1);
    else o.push(1, 1);
    o.push(5, 2 + 8 * s.sack.length);
    for (const [l, r] of s.sack)
      for (const v of [l, r]) o.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  }
  while (o.length % 4 !== 0) o.push(0);
  return o;
}

/** Builds one frame with valid IPv4 header and TCP checksums. */
export function tcpFrame(s: TcpSpec): Uint8Array {
  const family = s.family ?? 4;
  const src = s.src ?? (family === 4 ? "10.0.0.1" : "fd00::1");
  const dst = s.dst ?? (family === 4 ? "10.0.0.2" : "fd00::2");
  const payload = typeof s.payload === "string" ? enc.encode(s.payload) : (s.payload ?? new Uint8Array(0));
  const opts = tcpOptions(s);
  const tcpLen = 20 + opts.length + payload.length;
  const vnet = s.vnetLen ?? 0;
  const tags = s.vlan ?? [];
  const ext = family === 6 ? (s.ext ?? []) : [];
  const l2 = 14 + 4 * tags.length;
  const l3 = family === 4 ? 20 : 40 + 8 * ext.length;
  let total = vnet + l2 + l3 + tcpLen;
  if (s.padTo !== undefined && total - vnet < s.padTo) total = vnet + s.padTo;
  const f = new Uint8Array(total);
  const dv = new DataView(f.buffer);
  // vnet header: zeros (flags 0 = no offload), fine for every consumer.
  let p = vnet;
  f.set([0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1], p);
  p += 12;
  for (const t of tags) {
    dv.setUint16(p, 0x8100);
    dv.setUint16(p + 2, t);
    p += 4;
  }
  dv.setUint16(p, family === 4 ? 0x0800 : 0x86dd);
  p += 2;
  const l3o = p;
  if (family === 4) {
    f[p] = 0x45;
    dv.setUint16(p + 2, 20 + tcpLen);
    dv.setUint16(p + 4, s.ipId ?? 0x1234);
    f[p + 6] = 0x40; // DF
    f[p + 8] = 64;
    f[p + 9] = 6;
    f.set(ip4(src), p + 12);
    f.set(ip4(dst), p + 16);
    dv.setUint16(p + 10, ~fold(sum16(f, p, 20)) & 0xffff);
    p += 20;
  } else {
    dv.setUint32(p, 0x60000000);
    dv.setUint16(p + 4, 8 * ext.length + tcpLen);
    f[p + 6] = ext[0] ?? 6;
    f[p + 7] = 64;
    f.set(ip6(src), p + 8);
    f.set(ip6(dst), p + 24);
    p += 40;
    for (let i = 0; i < ext.length; i++) {
      f[p] = ext[i + 1] ?? 6;
      f[p + 1] = 0; // 8 bytes
      if (ext[i] === 43)
        f[p + 3] = 0; // routing header, segments left 0
      else f.set([1, 4, 0, 0, 0, 0], p + 2); // PadN
      p += 8;
    }
  }
  const t = p;
  dv.setUint16(t, s.sport);
  dv.setUint16(t + 2, s.dport);
  dv.setUint32(t + 4, s.seq >>> 0);
  dv.setUint32(t + 8, (s.ack ?? 0) >>> 0);
  f[t + 12] = ((20 + opts.length) / 4) << 4;
  f[t + 13] = flagByte(s.flags);
  dv.setUint16(t + 14, s.window ?? 64240);
  f.set(opts, t + 20);
  f.set(payload, t + 20 + opts.length);
  dv.setUint16(t + 16, ~fold(tcpSum(f, family, l3o, t, tcpLen)) & 0xffff);
  return f;
}

function tcpSum(f: Uint8Array, family: number, l3o: number, t: number, tcpLen: number): number {
  let acc = 0;
  if (family === 4) {
    acc = sum16(f, l3o + 12, 8, acc);
  } else {
    acc = sum16(f, l3o + 8, 32, acc);
  }
  acc += 6 + tcpLen;
  const saved0 = f[t + 16]!;
  const saved1 = f[t + 17]!;
  f[t + 16] = 0;
  f[t + 17] = 0;
  acc = sum16(f, t, tcpLen, acc);
  f[t + 16] = saved0;
  f[t + 17] = saved1;
  return acc;
}

export interface Located {
  family: 4 | 6;
  l3: number;
  tcp: number;
  tcpLen: number;
}

/** Finds the TCP header by walking the frame independently of src/packet. */
export function locate(f: Uint8Array, vnetLen = 0): Located {
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  let p = vnetLen + 12;
  let et = dv.getUint16(p);
  while (et === 0x8100 || et === 0x88a8) {
    p += 4;
    et = dv.getUint16(p);
  }
  p += 2;
  const l3 = p;
  if (et === 0x0800) {
    const ihl = (f[p]! & 0xf) * 4;
    const tot = dv.getUint16(p + 2);
    return { family: 4, l3, tcp: p + ihl, tcpLen: tot - ihl };
  }
  if (et !== 0x86dd) throw new Error("not IP");
  const plen = dv.getUint16(p + 4);
  let nh = f[p + 6]!;
  let q = p + 40;
  while (nh !== 6) {
    if (nh !== 0 && nh !== 43 && nh !== 60) throw new Error(`unexpected next header ${nh}`);
    nh = f[q]!;
    q += (f[q + 1]! + 1) * 8;
  }
  return { family: 6, l3, tcp: q, tcpLen: plen - (q - p - 40) };
}

/** Full recompute: true when the TCP checksum (and the IPv4 header checksum) verify. */
export function checksumsValid(f: Uint8Array, vnetLen = 0): boolean {
  const { family, l3, tcp, tcpLen } = locate(f, vnetLen);
  if (family === 4 && fold(sum16(f, l3, 20)) !== 0xffff) return false;
  let acc = family === 4 ? sum16(f, l3 + 12, 8) : sum16(f, l3 + 8, 32);
  acc += 6 + tcpLen;
  acc = sum16(f, tcp, tcpLen, acc);
  return fold(acc) === 0xffff;
}

export function readSeq(f: Uint8Array, vnetLen = 0): number {
  const { tcp } = locate(f, vnetLen);
  return new DataView(f.buffer, f.byteOffset).getUint32(tcp + 4);
}

export function readAck(f: Uint8Array, vnetLen = 0): number {
  const { tcp } = locate(f, vnetLen);
  return new DataView(f.buffer, f.byteOffset).getUint32(tcp + 8);
}

/** A non-TCP frame (ARP request) used as an in-band barrier: it passes every filter unchanged. */
export function arpFrame(tag = 0): Uint8Array {
  const f = new Uint8Array(42);
  f.fill(0xff, 0, 6);
  f.set([0x52, 0x54, 0, 0, 0, 9], 6);
  f.set([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1], 12);
  f[41] = tag & 0xff;
  return f;
}

export function hex(f: Uint8Array): string {
  return Buffer.from(f).toString("hex");
}
