/**
 * @module ARP packet view (RFC 826), any hardware/protocol address size, and the Ethernet/IPv4
 * Repr.
 */
import { formatIpv4, formatMac, parseIpv4, parseMac } from "./addr.ts";
import { get16, set16 } from "./bytes.ts";
import { ParseStatus } from "./meta.ts";
import { View } from "./view.ts";

const field = { HTYPE: 0, PTYPE: 2, HLEN: 4, PLEN: 5, OPER: 6, SHA: 8, FIXED_LEN: 8 } as const;
export const ArpField = field;

export const enum ArpOp {
  Request = 1,
  Reply = 2,
}

export class ArpPacket extends View {
  /** Ok when the fixed part and the four addresses it announces fit. */
  check(): ParseStatus {
    if (this.off < 0 || this.off + field.FIXED_LEN > this.end) return ParseStatus.Truncated;
    if (this.off + this.packetLen > this.end) return ParseStatus.Truncated;
    return ParseStatus.Ok;
  }

  get hardwareType(): number {
    return get16(this.buf, this.off + field.HTYPE);
  }
  get protocolType(): number {
    return get16(this.buf, this.off + field.PTYPE);
  }
  get hardwareLen(): number {
    return this.buf[this.off + field.HLEN]!;
  }
  get protocolLen(): number {
    return this.buf[this.off + field.PLEN]!;
  }
  get operation(): number {
    return get16(this.buf, this.off + field.OPER);
  }
  set operation(v: number) {
    set16(this.buf, this.off + field.OPER, v);
  }
  /** Length of the ARP packet (fixed part + addresses), excluding Ethernet padding. */
  get packetLen(): number {
    return field.FIXED_LEN + 2 * this.hardwareLen + 2 * this.protocolLen;
  }
  /** Offsets of the four addresses in `buf`. */
  get senderHwOffset(): number {
    return this.off + field.SHA;
  }
  get senderProtoOffset(): number {
    return this.off + field.SHA + this.hardwareLen;
  }
  get targetHwOffset(): number {
    return this.senderProtoOffset + this.protocolLen;
  }
  get targetProtoOffset(): number {
    return this.targetHwOffset + this.hardwareLen;
  }
  /** True for Ethernet (1) / IPv4 (0x0800) with 6- and 4-byte addresses. */
  get isEthernetIpv4(): boolean {
    return (
      this.hardwareType === 1 &&
      this.protocolType === 0x0800 &&
      this.hardwareLen === 6 &&
      this.protocolLen === 4
    );
  }
}

export interface ArpRepr {
  operation: number;
  senderMac: string;
  senderIp: string;
  targetMac: string;
  targetIp: string;
}

/** Parses an Ethernet/IPv4 ARP packet; other address kinds give BadHeader. */
export function parseArpRepr(p: ArpPacket): ArpRepr | ParseStatus {
  const st = p.check();
  if (st !== ParseStatus.Ok) return st;
  if (!p.isEthernetIpv4) return ParseStatus.BadHeader;
  return {
    operation: p.operation,
    senderMac: formatMac(p.buf, p.senderHwOffset),
    senderIp: formatIpv4(p.buf, p.senderProtoOffset),
    targetMac: formatMac(p.buf, p.targetHwOffset),
    targetIp: formatIpv4(p.buf, p.targetProtoOffset),
  };
}

export const ARP_ETH_IPV4_LEN = 28;

/** Writes a 28-byte Ethernet/IPv4 ARP packet at `off`. */
export function emitArpRepr(r: ArpRepr, buf: Uint8Array, off = 0): void {
  set16(buf, off, 1);
  set16(buf, off + 2, 0x0800);
  buf[off + 4] = 6;
  buf[off + 5] = 4;
  set16(buf, off + 6, r.operation);
  buf.set(parseMac(r.senderMac), off + 8);
  buf.set(parseIpv4(r.senderIp), off + 14);
  buf.set(parseMac(r.targetMac), off + 18);
  buf.set(parseIpv4(r.targetIp), off + 24);
}
