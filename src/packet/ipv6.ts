/**
 * @module IPv6 header view (RFC 8200), the extension-header walk (hop-by-hop, routing, fragment,
 * destination options; stops at the first other header), extension-header and option views,
 * and the Repr of the fixed header.
 */
import { formatIpv6, parseIpv6 } from "./addr.ts";
import { get16, get32, set16, set32 } from "./bytes.ts";
import { ipv6PseudoSum } from "./checksum.ts";
import { ParseStatus } from "./meta.ts";
import { OptionCursor, View } from "./view.ts";

const field = {
  VER_TC_FLOW: 0,
  LENGTH: 4,
  NXT_HDR: 6,
  HOP_LIMIT: 7,
  SRC: 8,
  DST: 24,
  HEADER_LEN: 40,
} as const;
export const Ipv6Field = field;

export const enum Ipv6NextHeader {
  HopByHop = 0,
  Tcp = 6,
  Udp = 17,
  Routing = 43,
  Fragment = 44,
  Icmpv6 = 58,
  NoNext = 59,
  DestOpts = 60,
}

/** Upper bound on extension headers walked before declaring ExtChain. */
export const MAX_EXT_HEADERS = 8;

/** Result of walkIpv6Ext(); preallocate one and reuse it. */
export interface Ipv6Walk {
  /** Upper-layer protocol (the first next-header value that is not a walked extension). */
  proto: number;
  /** Offset of the upper-layer header (or, for a non-first fragment, of the fragment data). */
  l4Offset: number;
  /** Number of extension headers walked. */
  count: number;
  /** A fragment header was present. */
  fragment: boolean;
  /** Its offset in bytes, M flag and identification (0/false when absent). */
  fragOffset: number;
  fragMore: boolean;
  fragId: number;
  /** Offset of the fragment / routing header in buf, -1 when absent. */
  fragHeaderOffset: number;
  routingOffset: number;
}

export function newIpv6Walk(): Ipv6Walk {
  return {
    proto: 0,
    l4Offset: 0,
    count: 0,
    fragment: false,
    fragOffset: 0,
    fragMore: false,
    fragId: 0,
    fragHeaderOffset: -1,
    routingOffset: -1,
  };
}

/**
 * Walks the extension headers starting at `start` (just after the fixed header) with first
 * next-header value `next`, inside a datagram ending at `end`. Returns ExtChain when a header
 * runs past `end`, hop-by-hop is not first, a routing or fragment header repeats, more than two
 * destination-options headers appear, or more than MAX_EXT_HEADERS are chained. The walk stops
 * after a fragment header with a non-zero offset: the rest is opaque fragment data.
 */
export function walkIpv6Ext(
  b: Uint8Array,
  start: number,
  end: number,
  next: number,
  w: Ipv6Walk,
): ParseStatus {
  let q = start;
  let count = 0;
  let dstOpts = 0;
  w.fragment = false;
  w.fragOffset = 0;
  w.fragMore = false;
  w.fragId = 0;
  w.fragHeaderOffset = -1;
  w.routingOffset = -1;
  for (;;) {
    if (next === Ipv6NextHeader.HopByHop) {
      if (q !== start) return ParseStatus.ExtChain;
    } else if (next === Ipv6NextHeader.Routing) {
      if (w.routingOffset >= 0) return ParseStatus.ExtChain;
      w.routingOffset = q;
    } else if (next === Ipv6NextHeader.DestOpts) {
      if (++dstOpts > 2) return ParseStatus.ExtChain;
    } else if (next === Ipv6NextHeader.Fragment) {
      if (w.fragment) return ParseStatus.ExtChain;
      w.fragment = true;
      w.fragHeaderOffset = q;
    } else break;
    if (++count > MAX_EXT_HEADERS || q + 8 > end) return ParseStatus.ExtChain;
    const hl = next === Ipv6NextHeader.Fragment ? 8 : (b[q + 1]! + 1) << 3;
    if (q + hl > end) return ParseStatus.ExtChain;
    const isFrag = next === Ipv6NextHeader.Fragment;
    next = b[q]!;
    if (isFrag) {
      const v = get16(b, q + 2);
      w.fragOffset = v & 0xfff8;
      w.fragMore = (v & 1) !== 0;
      w.fragId = get32(b, q + 4);
      q += hl;
      if (w.fragOffset !== 0) break;
    } else q += hl;
  }
  w.proto = next;
  w.l4Offset = q;
  w.count = count;
  return ParseStatus.Ok;
}

/** A view over an IPv6 fixed header at `off` in `buf[off, end)`. */
export class Ipv6Packet extends View {
  /** Ok when the fixed header fits, version is 6, and the payload length fits the bytes. */
  check(): ParseStatus {
    if (this.off < 0 || this.off + field.HEADER_LEN > this.end) return ParseStatus.Truncated;
    if (this.version !== 6) return ParseStatus.BadHeader;
    if (this.datagramEnd > this.end) return ParseStatus.BadLength;
    return ParseStatus.Ok;
  }

  get version(): number {
    return this.buf[this.off]! >> 4;
  }
  get trafficClass(): number {
    return (get16(this.buf, this.off) >> 4) & 0xff;
  }
  get flowLabel(): number {
    return get32(this.buf, this.off) & 0xfffff;
  }
  set flowLabel(v: number) {
    set32(this.buf, this.off, (get32(this.buf, this.off) & 0xfff00000) | (v & 0xfffff));
  }
  get payloadLen(): number {
    return get16(this.buf, this.off + field.LENGTH);
  }
  get nextHeader(): number {
    return this.buf[this.off + field.NXT_HDR]!;
  }
  get hopLimit(): number {
    return this.buf[this.off + field.HOP_LIMIT]!;
  }
  set hopLimit(v: number) {
    this.buf[this.off + field.HOP_LIMIT] = v;
  }
  get srcOffset(): number {
    return this.off + field.SRC;
  }
  get dstOffset(): number {
    return this.off + field.DST;
  }
  get datagramEnd(): number {
    return this.off + field.HEADER_LEN + this.payloadLen;
  }
  /** Offset of the first extension header (or the upper layer). */
  get payloadOffset(): number {
    return this.off + field.HEADER_LEN;
  }

  /** Walks the extension headers (see walkIpv6Ext). Call after check() is Ok. */
  walk(w: Ipv6Walk): ParseStatus {
    return walkIpv6Ext(this.buf, this.payloadOffset, this.datagramEnd, this.nextHeader, w);
  }

  /**
   * Pseudo-header sum for an upper-layer checksum. Uses the destination field, which is the
   * final destination at the receiver (segments left 0) and whenever no routing header is used.
   */
  pseudoSum(proto: number, l4Len: number): number {
    return ipv6PseudoSum(this.buf, this.srcOffset, this.dstOffset, proto, l4Len);
  }
}

/** A view over one extension header at `off` (hop-by-hop, routing, destination options, fragment). */
export class Ipv6ExtHeaderView {
  buf: Uint8Array;
  off: number;
  /** The type of this header (the previous header's next-header value). */
  type: number;
  constructor(buf: Uint8Array, off: number, type: number) {
    this.buf = buf;
    this.off = off;
    this.type = type;
  }
  get nextHeader(): number {
    return this.buf[this.off]!;
  }
  /** Length in bytes (8 for a fragment header). */
  get headerLen(): number {
    return this.type === Ipv6NextHeader.Fragment ? 8 : (this.buf[this.off + 1]! + 1) << 3;
  }
  /** Routing header: routing type and segments left. */
  get routingType(): number {
    return this.buf[this.off + 2]!;
  }
  get segmentsLeft(): number {
    return this.buf[this.off + 3]!;
  }
  /** Fragment header: offset in bytes, M flag, identification. */
  get fragOffset(): number {
    return get16(this.buf, this.off + 2) & 0xfff8;
  }
  get moreFragments(): boolean {
    return (this.buf[this.off + 3]! & 1) !== 0;
  }
  get fragIdent(): number {
    return get32(this.buf, this.off + 4);
  }
  /** Hop-by-hop / destination options: the TLV area. */
  get optionsOffset(): number {
    return this.off + 2;
  }
  get optionsEnd(): number {
    return this.off + this.headerLen;
  }
}

/**
 * Allocation-free iterator over hop-by-hop / destination-option TLVs (RFC 8200 4.2):
 * `while (c.next()) use(c.type, c.dataOffset, c.dataLen)`. Pad1 and PadN are returned too.
 * `malformed` is set when an option runs past the end.
 */
export class Ipv6OptionCursor extends OptionCursor {
  type = 0;
  dataOffset = 0;
  dataLen = 0;
  next(): boolean {
    if (this.pos >= this.end) return false;
    const t = this.buf[this.pos]!;
    this.type = t;
    if (t === 0) {
      this.dataOffset = this.pos + 1;
      this.dataLen = 0;
      this.pos++;
      return true;
    }
    if (this.pos + 2 > this.end || this.pos + 2 + this.buf[this.pos + 1]! > this.end) {
      return this.stop();
    }
    this.dataOffset = this.pos + 2;
    this.dataLen = this.buf[this.pos + 1]!;
    this.pos += 2 + this.dataLen;
    return true;
  }
}

export interface Ipv6Repr {
  src: string;
  dst: string;
  nextHeader: number;
  hopLimit: number;
  trafficClass: number;
  flowLabel: number;
  payloadLen: number;
}

export function parseIpv6Repr(p: Ipv6Packet): Ipv6Repr | ParseStatus {
  const st = p.check();
  if (st !== ParseStatus.Ok) return st;
  return {
    src: formatIpv6(p.buf, p.srcOffset),
    dst: formatIpv6(p.buf, p.dstOffset),
    nextHeader: p.nextHeader,
    hopLimit: p.hopLimit,
    trafficClass: p.trafficClass,
    flowLabel: p.flowLabel,
    payloadLen: p.payloadLen,
  };
}

/** Writes the 40-byte fixed header at `off`; returns the payload offset. */
export function emitIpv6Repr(r: Ipv6Repr, buf: Uint8Array, off = 0): number {
  set32(buf, off, (0x6 << 28) | ((r.trafficClass & 0xff) << 20) | (r.flowLabel & 0xfffff));
  set16(buf, off + field.LENGTH, r.payloadLen);
  buf[off + field.NXT_HDR] = r.nextHeader;
  buf[off + field.HOP_LIMIT] = r.hopLimit;
  buf.set(parseIpv6(r.src), off + field.SRC);
  buf.set(parseIpv6(r.dst), off + field.DST);
  return off + field.HEADER_LEN;
}
