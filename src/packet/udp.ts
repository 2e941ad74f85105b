/**
 * @module UDP header view (RFC 768) and Repr.
 */
import { get16, set16 } from "./bytes.ts";
import { checksumUpdate16, internetChecksum, verifyChecksum } from "./checksum.ts";
import { ParseStatus } from "./meta.ts";
import { View } from "./view.ts";

const field = { SRC_PORT: 0, DST_PORT: 2, LENGTH: 4, CHECKSUM: 6, HEADER_LEN: 8 } as const;
export const UdpField = field;

/** A view over a UDP header at `off`; `end` is the IP datagram end. */
export class UdpPacket extends View {
  /** Ok when 8 bytes exist (else Truncated) and 8 <= length <= bytes to `end` (else BadLength). */
  check(): ParseStatus {
    if (this.off < 0 || this.off + field.HEADER_LEN > this.end) return ParseStatus.Truncated;
    const l = this.length;
    if (l < field.HEADER_LEN || this.off + l > this.end) return ParseStatus.BadLength;
    return ParseStatus.Ok;
  }

  get srcPort(): number {
    return get16(this.buf, this.off + field.SRC_PORT);
  }
  set srcPort(v: number) {
    set16(this.buf, this.off + field.SRC_PORT, v);
  }
  get dstPort(): number {
    return get16(this.buf, this.off + field.DST_PORT);
  }
  set dstPort(v: number) {
    set16(this.buf, this.off + field.DST_PORT, v);
  }
  /** The UDP length field (header + payload). */
  get length(): number {
    return get16(this.buf, this.off + field.LENGTH);
  }
  get checksum(): number {
    return get16(this.buf, this.off + field.CHECKSUM);
  }
  set checksum(v: number) {
    set16(this.buf, this.off + field.CHECKSUM, v);
  }
  get payloadOffset(): number {
    return this.off + field.HEADER_LEN;
  }
  get payloadLen(): number {
    return this.length - field.HEADER_LEN;
  }

  /** Verifies with the pseudo-header sum; a zero checksum ("none", IPv4 only) passes when `allowZero`. */
  verifyChecksum(pseudo: number, allowZero = true): boolean {
    if (this.checksum === 0) return allowZero;
    return verifyChecksum(this.buf, this.off, this.off + this.length, pseudo);
  }
  /** Computes the checksum; 0 is sent as 0xffff (RFC 768). */
  fillChecksum(pseudo: number): void {
    this.checksum = 0;
    this.checksum = internetChecksum(this.buf, this.off, this.off + this.length, pseudo) || 0xffff;
  }
  /** Sets a port keeping the checksum valid (a zero "no checksum" stays zero). */
  rewritePort(which: "src" | "dst", v: number): void {
    const at = this.off + (which === "src" ? field.SRC_PORT : field.DST_PORT);
    const old = get16(this.buf, at);
    set16(this.buf, at, v);
    if (this.checksum !== 0) this.checksum = checksumUpdate16(this.checksum, old, v & 0xffff) || 0xffff;
  }
}

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  payloadLen: number;
}

export function parseUdpRepr(u: UdpPacket): UdpRepr | ParseStatus {
  const st = u.check();
  if (st !== ParseStatus.Ok) return st;
  return { srcPort: u.srcPort, dstPort: u.dstPort, payloadLen: u.payloadLen };
}

/** Writes the header with a zero checksum (fill it with UdpPacket.fillChecksum once the payload is in). */
export function emitUdpRepr(r: UdpRepr, buf: Uint8Array, off = 0): number {
  set16(buf, off + field.SRC_PORT, r.srcPort);
  set16(buf, off + field.DST_PORT, r.dstPort);
  set16(buf, off + field.LENGTH, field.HEADER_LEN + r.payloadLen);
  set16(buf, off + field.CHECKSUM, 0);
  return off + field.HEADER_LEN;
}
