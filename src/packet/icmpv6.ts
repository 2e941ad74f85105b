/**
 * @module ICMPv6 message view (RFC 4443) with echo fields and Neighbor Discovery (RFC 4861)
 * solicitation/advertisement: target address, R/S/O flags, and an allocation-free NDP option
 * cursor (source/target link-layer address).
 */
import { formatIpv6, formatMac, parseIpv6, parseMac } from "./addr.ts";
import { get16, set16 } from "./bytes.ts";
import { internetChecksum, verifyChecksum } from "./checksum.ts";
import { ParseStatus } from "./meta.ts";
import { OptionCursor, View } from "./view.ts";

const field = {
  TYPE: 0,
  CODE: 1,
  CHECKSUM: 2,
  ECHO_IDENT: 4,
  ECHO_SEQ: 6,
  ND_FLAGS: 4,
  ND_TARGET: 8,
  ND_OPTIONS: 24,
  HEADER_LEN: 4,
} as const;
export const Icmpv6Field = field;

export const enum Icmpv6Type {
  DestUnreachable = 1,
  PacketTooBig = 2,
  TimeExceeded = 3,
  ParamProblem = 4,
  EchoRequest = 128,
  EchoReply = 129,
  RouterSolicit = 133,
  RouterAdvert = 134,
  NeighborSolicit = 135,
  NeighborAdvert = 136,
  Redirect = 137,
}

export const enum NdOptionType {
  SourceLinkAddr = 1,
  TargetLinkAddr = 2,
  PrefixInfo = 3,
  RedirectedHeader = 4,
  Mtu = 5,
}

/**
 * NDP option iterator (type, length in 8-byte units): `while (c.next()) ...`. A zero length or
 * an option past the end sets `malformed` (RFC 4861 says to drop such packets).
 */
export class NdOptionCursor extends OptionCursor {
  type = 0;
  offset = 0;
  /** Bytes, including type and length. */
  len = 0;
  next(): boolean {
    const p = this.pos;
    if (p >= this.end) return false;
    const l = p + 2 <= this.end ? this.buf[p + 1]! << 3 : 0;
    if (l === 0 || p + l > this.end) {
      return this.stop();
    }
    this.type = this.buf[p]!;
    this.offset = p;
    this.len = l;
    this.pos = p + l;
    return true;
  }
}

/** A view over an ICMPv6 message at `off`; `end` is the IPv6 datagram end. */
export class Icmpv6Packet extends View {
  readonly #cursor = new NdOptionCursor();

  /**
   * Ok when the 4-byte header fits and the type's fixed part fits (echo: 8 bytes; NS/NA: 24)
   * — Truncated otherwise; NS/NA with a malformed option area: BadLength.
   */
  check(): ParseStatus {
    if (this.off < 0 || this.off + field.HEADER_LEN > this.end) return ParseStatus.Truncated;
    const t = this.type;
    const need = t === 135 || t === 136 ? 24 : t >= 128 || t <= 4 ? 8 : 4;
    if (this.off + need > this.end) return ParseStatus.Truncated;
    if (t === 135 || t === 136) {
      const c = this.ndOptions(this.#cursor);
      while (c.next()) {}
      if (c.malformed) return ParseStatus.BadLength;
    }
    return ParseStatus.Ok;
  }

  get type(): number {
    return this.buf[this.off + field.TYPE]!;
  }
  get code(): number {
    return this.buf[this.off + field.CODE]!;
  }
  get checksum(): number {
    return get16(this.buf, this.off + field.CHECKSUM);
  }
  set checksum(v: number) {
    set16(this.buf, this.off + field.CHECKSUM, v);
  }
  get isEcho(): boolean {
    return this.type === Icmpv6Type.EchoRequest || this.type === Icmpv6Type.EchoReply;
  }
  get echoIdent(): number {
    return get16(this.buf, this.off + field.ECHO_IDENT);
  }
  get echoSeq(): number {
    return get16(this.buf, this.off + field.ECHO_SEQ);
  }
  /** NA flags. */
  get router(): boolean {
    return (this.buf[this.off + field.ND_FLAGS]! & 0x80) !== 0;
  }
  get solicited(): boolean {
    return (this.buf[this.off + field.ND_FLAGS]! & 0x40) !== 0;
  }
  get override(): boolean {
    return (this.buf[this.off + field.ND_FLAGS]! & 0x20) !== 0;
  }
  /** NS/NA target address offset in buf. */
  get targetOffset(): number {
    return this.off + field.ND_TARGET;
  }
  ndOptions(c: NdOptionCursor): NdOptionCursor {
    return c.reset(this.buf, this.off + field.ND_OPTIONS, this.end);
  }
  /** Offset of the link-layer address (6 bytes) in the first option of `type`, or -1. */
  linkAddrOffset(type: NdOptionType.SourceLinkAddr | NdOptionType.TargetLinkAddr): number {
    const c = this.ndOptions(this.#cursor);
    while (c.next()) if (c.type === type && c.len >= 8) return c.offset + 2;
    return -1;
  }
  /** Offset of the body after type/code/checksum. */
  get bodyOffset(): number {
    return this.off + field.HEADER_LEN;
  }
  verifyChecksum(pseudo: number): boolean {
    return verifyChecksum(this.buf, this.off, this.end, pseudo);
  }
  fillChecksum(pseudo: number): void {
    this.checksum = 0;
    this.checksum = internetChecksum(this.buf, this.off, this.end, pseudo);
  }
}

export type Icmpv6Repr =
  | { kind: "echo"; reply: boolean; ident: number; seq: number; payloadLen: number }
  | {
      kind: "neighborSolicit";
      target: string;
      srcLinkAddr: string | undefined;
    }
  | {
      kind: "neighborAdvert";
      target: string;
      router: boolean;
      solicited: boolean;
      override: boolean;
      targetLinkAddr: string | undefined;
    }
  | { kind: "other"; type: number; code: number; bodyLen: number };

export function parseIcmpv6Repr(p: Icmpv6Packet): Icmpv6Repr | ParseStatus {
  const st = p.check();
  if (st !== ParseStatus.Ok) return st;
  const t = p.type;
  if (p.isEcho)
    return {
      kind: "echo",
      reply: t === 129,
      ident: p.echoIdent,
      seq: p.echoSeq,
      payloadLen: p.end - p.off - 8,
    };
  if (t === 135) {
    const o = p.linkAddrOffset(NdOptionType.SourceLinkAddr);
    return {
      kind: "neighborSolicit",
      target: formatIpv6(p.buf, p.targetOffset),
      srcLinkAddr: o < 0 ? undefined : formatMac(p.buf, o),
    };
  }
  if (t === 136) {
    const o = p.linkAddrOffset(NdOptionType.TargetLinkAddr);
    return {
      kind: "neighborAdvert",
      target: formatIpv6(p.buf, p.targetOffset),
      router: p.router,
      solicited: p.solicited,
      override: p.override,
      targetLinkAddr: o < 0 ? undefined : formatMac(p.buf, o),
    };
  }
  return { kind: "other", type: t, code: p.code, bodyLen: p.end - p.off - 4 };
}

/** Bytes `emitIcmpv6Repr` writes for `r` (echo: 8 + payloadLen, NS/NA: 24 + 8 per link-address option). */
export function icmpv6ReprLen(r: Icmpv6Repr): number {
  switch (r.kind) {
    case "echo":
      return 8 + r.payloadLen;
    case "neighborSolicit":
      return 24 + (r.srcLinkAddr !== undefined ? 8 : 0);
    case "neighborAdvert":
      return 24 + (r.targetLinkAddr !== undefined ? 8 : 0);
    case "other":
      return 4 + r.bodyLen;
  }
}

/**
 * Writes the message header (echo: id/seq; NS/NA: flags, target, link-address option) at `off`
 * with a zero checksum; echo payload / other bodies are the caller's. Fill the checksum with
 * `Icmpv6Packet.fillChecksum(ip.pseudoSum(58, len))` once the whole message is in place.
 */
export function emitIcmpv6Repr(r: Icmpv6Repr, buf: Uint8Array, off = 0): number {
  // Everything this function owns: the whole message for NS/NA, the header otherwise.
  const owned = r.kind === "echo" ? 8 : r.kind === "other" ? 4 : icmpv6ReprLen(r);
  buf.fill(0, off, off + owned);
  switch (r.kind) {
    case "echo":
      buf[off] = r.reply ? Icmpv6Type.EchoReply : Icmpv6Type.EchoRequest;
      set16(buf, off + field.ECHO_IDENT, r.ident);
      set16(buf, off + field.ECHO_SEQ, r.seq);
      return off + 8;
    case "other":
      buf[off] = r.type;
      buf[off + 1] = r.code;
      return off + 4;
    case "neighborSolicit":
    case "neighborAdvert": {
      const na = r.kind === "neighborAdvert";
      buf[off] = na ? Icmpv6Type.NeighborAdvert : Icmpv6Type.NeighborSolicit;
      if (na)
        buf[off + field.ND_FLAGS] =
          (r.router ? 0x80 : 0) | (r.solicited ? 0x40 : 0) | (r.override ? 0x20 : 0);
      buf.set(parseIpv6(r.target), off + field.ND_TARGET);
      const lla = na ? r.targetLinkAddr : r.srcLinkAddr;
      if (lla === undefined) return off + 24;
      buf[off + 24] = na ? NdOptionType.TargetLinkAddr : NdOptionType.SourceLinkAddr;
      buf[off + 25] = 1;
      buf.set(parseMac(lla), off + 26);
      return off + 32;
    }
  }
}
