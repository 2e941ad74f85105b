/**
 * @module IPv4 header view (RFC 791): fixed fields, options, fragment fields, header checksum
 * verify/fill, incremental-checksum setters for rewriting, and the Repr.
 */
import { formatIpv4, parseIpv4 } from "./addr.ts";
import { get16, get32, set16, set32 } from "./bytes.ts";
import {
  checksumUpdate16,
  checksumUpdate32,
  internetChecksum,
  ipv4PseudoSum,
  verifyChecksum,
} from "./checksum.ts";
import { ParseStatus } from "./meta.ts";
import { View } from "./view.ts";

const field = {
  VER_IHL: 0,
  TOS: 1,
  LENGTH: 2,
  IDENT: 4,
  FLG_OFF: 6,
  TTL: 8,
  PROTOCOL: 9,
  CHECKSUM: 10,
  SRC: 12,
  DST: 16,
  OPTIONS: 20,
  MIN_HEADER_LEN: 20,
} as const;
export const Ipv4Field = field;

const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;

/** IPv4 option types with a one-byte form (RFC 791). */
export const enum Ipv4OptionType {
  End = 0,
  Nop = 1,
}

/**
 * A view over an IPv4 header at `off` in `buf[off, end)`. `end` is where the received bytes
 * stop (the frame end); the datagram itself ends at `off + totalLen` once `check()` is Ok.
 */
export class Ipv4Packet extends View {
  /**
   * Ok when: 20 bytes exist, version is 4, IHL >= 5, the header with options fits, and the
   * total length covers the header and fits the received bytes (same rules as parseFrame).
   */
  check(): ParseStatus {
    const o = this.off;
    if (o < 0 || o + field.MIN_HEADER_LEN > this.end) return ParseStatus.Truncated;
    if (this.version !== 4) return ParseStatus.BadHeader;
    const hl = this.headerLen;
    if (hl < field.MIN_HEADER_LEN) return ParseStatus.BadHeader;
    if (o + hl > this.end) return ParseStatus.Truncated;
    const tl = this.totalLen;
    if (tl < hl || o + tl > this.end) return ParseStatus.BadLength;
    return ParseStatus.Ok;
  }

  get version(): number {
    return this.buf[this.off]! >> 4;
  }
  /** Header length in bytes (IHL x 4). */
  get headerLen(): number {
    return (this.buf[this.off]! & 0x0f) << 2;
  }
  get dscp(): number {
    return this.buf[this.off + field.TOS]! >> 2;
  }
  get ecn(): number {
    return this.buf[this.off + field.TOS]! & 3;
  }
  get tos(): number {
    return this.buf[this.off + field.TOS]!;
  }
  get totalLen(): number {
    return get16(this.buf, this.off + field.LENGTH);
  }
  get ident(): number {
    return get16(this.buf, this.off + field.IDENT);
  }
  get dontFragment(): boolean {
    return (get16(this.buf, this.off + field.FLG_OFF) & FLAG_DF) !== 0;
  }
  get moreFragments(): boolean {
    return (get16(this.buf, this.off + field.FLG_OFF) & FLAG_MF) !== 0;
  }
  /** Fragment offset in bytes. */
  get fragOffset(): number {
    return (get16(this.buf, this.off + field.FLG_OFF) & 0x1fff) << 3;
  }
  /** MF set or a non-zero offset. */
  get isFragment(): boolean {
    return (get16(this.buf, this.off + field.FLG_OFF) & 0x3fff) !== 0;
  }
  get ttl(): number {
    return this.buf[this.off + field.TTL]!;
  }
  get protocol(): number {
    return this.buf[this.off + field.PROTOCOL]!;
  }
  get checksum(): number {
    return get16(this.buf, this.off + field.CHECKSUM);
  }
  set checksum(v: number) {
    set16(this.buf, this.off + field.CHECKSUM, v);
  }
  /** Source/destination as unsigned 32-bit numbers. */
  get srcAddr(): number {
    return get32(this.buf, this.off + field.SRC);
  }
  get dstAddr(): number {
    return get32(this.buf, this.off + field.DST);
  }
  get srcOffset(): number {
    return this.off + field.SRC;
  }
  get dstOffset(): number {
    return this.off + field.DST;
  }
  get optionsOffset(): number {
    return this.off + field.OPTIONS;
  }
  get optionsLen(): number {
    return this.headerLen - field.MIN_HEADER_LEN;
  }
  get payloadOffset(): number {
    return this.off + this.headerLen;
  }
  /** End of the datagram in `buf` (bytes after it are Ethernet padding). */
  get datagramEnd(): number {
    return this.off + this.totalLen;
  }
  get payloadLen(): number {
    return this.totalLen - this.headerLen;
  }

  /** Header checksum verifies. */
  verifyChecksum(): boolean {
    return verifyChecksum(this.buf, this.off, this.off + this.headerLen);
  }
  /** Recomputes the header checksum. */
  fillChecksum(): void {
    this.checksum = 0;
    this.checksum = internetChecksum(this.buf, this.off, this.off + this.headerLen);
  }

  /** Setters that keep the header checksum valid (RFC 1624), for rewriting. */
  setTtl(v: number): void {
    const o = this.off + field.TTL;
    const old = get16(this.buf, o);
    this.buf[o] = v;
    this.checksum = checksumUpdate16(this.checksum, old, get16(this.buf, o));
  }
  setIdent(v: number): void {
    const old = this.ident;
    set16(this.buf, this.off + field.IDENT, v);
    this.checksum = checksumUpdate16(this.checksum, old, v & 0xffff);
  }
  setSrcAddr(v: number): void {
    const old = this.srcAddr;
    set32(this.buf, this.off + field.SRC, v);
    this.checksum = checksumUpdate32(this.checksum, old, v >>> 0);
  }
  setDstAddr(v: number): void {
    const old = this.dstAddr;
    set32(this.buf, this.off + field.DST, v);
    this.checksum = checksumUpdate32(this.checksum, old, v >>> 0);
  }

  /** Pseudo-header sum for the L4 checksum of this datagram's payload. */
  pseudoSum(l4Len = this.payloadLen, proto = this.protocol): number {
    return ipv4PseudoSum(this.buf, this.off + field.SRC, this.off + field.DST, proto, l4Len);
  }

  /**
   * Validates the option TLVs (End, Nop, then type/length/data with length >= 2 that fits).
   * Returns Ok or BadHeader; bytes after End are ignored.
   */
  checkOptions(): ParseStatus {
    const b = this.buf;
    let p = this.optionsOffset;
    const end = this.payloadOffset;
    while (p < end) {
      const t = b[p]!;
      if (t === Ipv4OptionType.End) break;
      if (t === Ipv4OptionType.Nop) {
        p++;
        continue;
      }
      if (p + 2 > end) return ParseStatus.BadHeader;
      const l = b[p + 1]!;
      if (l < 2 || p + l > end) return ParseStatus.BadHeader;
      p += l;
    }
    return ParseStatus.Ok;
  }
}

export interface Ipv4Repr {
  src: string;
  dst: string;
  protocol: number;
  ttl: number;
  tos: number;
  ident: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** In bytes. */
  fragOffset: number;
  /** Raw option bytes (padding included). */
  options: Uint8Array;
  payloadLen: number;
}

/** Parses a checked header. With `verify`, a bad header checksum gives BadHeader. */
export function parseIpv4Repr(p: Ipv4Packet, verify = false): Ipv4Repr | ParseStatus {
  const st = p.check();
  if (st !== ParseStatus.Ok) return st;
  if (verify && !p.verifyChecksum()) return ParseStatus.BadHeader;
  if (p.checkOptions() !== ParseStatus.Ok) return ParseStatus.BadHeader;
  return {
    src: formatIpv4(p.buf, p.srcOffset),
    dst: formatIpv4(p.buf, p.dstOffset),
    protocol: p.protocol,
    ttl: p.ttl,
    tos: p.tos,
    ident: p.ident,
    dontFragment: p.dontFragment,
    moreFragments: p.moreFragments,
    fragOffset: p.fragOffset,
    options: new Uint8Array(p.buf.subarray(p.optionsOffset, p.payloadOffset)),
    payloadLen: p.payloadLen,
  };
}

export function ipv4HeaderLen(r: Ipv4Repr): number {
  return field.MIN_HEADER_LEN + Math.ceil(r.options.length / 4) * 4;
}

/** Writes the header (with a correct checksum) at `off`; returns the payload offset. */
export function emitIpv4Repr(r: Ipv4Repr, buf: Uint8Array, off = 0): number {
  const hl = ipv4HeaderLen(r);
  buf.fill(0, off, off + hl);
  buf[off] = 0x40 | (hl >> 2);
  buf[off + field.TOS] = r.tos;
  set16(buf, off + field.LENGTH, hl + r.payloadLen);
  set16(buf, off + field.IDENT, r.ident);
  set16(
    buf,
    off + field.FLG_OFF,
    (r.dontFragment ? FLAG_DF : 0) | (r.moreFragments ? FLAG_MF : 0) | ((r.fragOffset >> 3) & 0x1fff),
  );
  buf[off + field.TTL] = r.ttl;
  buf[off + field.PROTOCOL] = r.protocol;
  buf.set(parseIpv4(r.src), off + field.SRC);
  buf.set(parseIpv4(r.dst), off + field.DST);
  buf.set(r.options, off + field.OPTIONS);
  set16(buf, off + field.CHECKSUM, internetChecksum(buf, off, off + hl));
  return off + hl;
}
