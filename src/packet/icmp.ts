/**
 * @module ICMPv4 message view (RFC 792): type/code/checksum, echo identifier/sequence, the
 * embedded datagram of error messages, and the Repr.
 */
import { get16, get32, set16, set32 } from "./bytes.ts";
import { internetChecksum, verifyChecksum } from "./checksum.ts";
import { ParseStatus } from "./meta.ts";
import { View } from "./view.ts";

const field = { TYPE: 0, CODE: 1, CHECKSUM: 2, REST: 4, ECHO_IDENT: 4, ECHO_SEQ: 6, HEADER_LEN: 8 } as const;
export const IcmpField = field;

export const enum IcmpType {
  EchoReply = 0,
  DestUnreachable = 3,
  Redirect = 5,
  EchoRequest = 8,
  TimeExceeded = 11,
  ParamProblem = 12,
  Timestamp = 13,
  TimestampReply = 14,
}

/** Error messages carry the offending IP header + 8 bytes after the 8-byte ICMP header. */
export function isIcmpError(type: number): boolean {
  return type === 3 || type === 5 || type === 11 || type === 12 || type === 4;
}

/** A view over an ICMPv4 message at `off`; `end` is the IP datagram end. */
export class IcmpPacket extends View {
  /** Ok when the 8-byte header fits. */
  check(): ParseStatus {
    return this.off >= 0 && this.off + field.HEADER_LEN <= this.end ? ParseStatus.Ok : ParseStatus.Truncated;
  }
  get type(): number {
    return this.buf[this.off + field.TYPE]!;
  }
  set type(v: number) {
    this.buf[this.off + field.TYPE] = v;
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
  /** The 4 bytes after the checksum as an unsigned 32-bit number. */
  get rest(): number {
    return get32(this.buf, this.off + field.REST);
  }
  set rest(v: number) {
    set32(this.buf, this.off + field.REST, v);
  }
  get isEcho(): boolean {
    const t = this.type;
    return t === IcmpType.EchoRequest || t === IcmpType.EchoReply;
  }
  get echoIdent(): number {
    return get16(this.buf, this.off + field.ECHO_IDENT);
  }
  get echoSeq(): number {
    return get16(this.buf, this.off + field.ECHO_SEQ);
  }
  get payloadOffset(): number {
    return this.off + field.HEADER_LEN;
  }
  get payloadLen(): number {
    return this.end - this.off - field.HEADER_LEN;
  }
  verifyChecksum(): boolean {
    return verifyChecksum(this.buf, this.off, this.end);
  }
  fillChecksum(): void {
    this.checksum = 0;
    this.checksum = internetChecksum(this.buf, this.off, this.end);
  }
}

export interface IcmpRepr {
  type: number;
  code: number;
  /** Echo: (identifier << 16 | sequence); others: the type-specific 4 bytes. */
  rest: number;
  payloadLen: number;
}

/** Parses a message; with `verify`, a bad checksum is BadHeader. */
export function parseIcmpRepr(p: IcmpPacket, verify = false): IcmpRepr | ParseStatus {
  const st = p.check();
  if (st !== ParseStatus.Ok) return st;
  if (verify && !p.verifyChecksum()) return ParseStatus.BadHeader;
  return { type: p.type, code: p.code, rest: p.rest, payloadLen: p.payloadLen };
}

/** Writes the header and, given the payload already at `off + 8`, the checksum. */
export function emitIcmpRepr(r: IcmpRepr, buf: Uint8Array, off = 0): number {
  buf[off] = r.type;
  buf[off + 1] = r.code;
  set32(buf, off + field.REST, r.rest);
  const p = new IcmpPacket(buf, off, off + field.HEADER_LEN + r.payloadLen);
  p.fillChecksum();
  return off + field.HEADER_LEN;
}
