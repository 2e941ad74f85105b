/**
 * @module Ethernet II header view with up to two VLAN tags (802.1Q C-tag; 802.1ad S-tag + C-tag
 * QinQ; legacy 0x9100 outer TPID), and its Repr.
 */
import { formatMac, parseMac } from "./addr.ts";
import { get16, set16 } from "./bytes.ts";
import { ParseStatus } from "./meta.ts";
import { View } from "./view.ts";

/** Field offsets relative to the start of the Ethernet header. */
const field = {
  DST: 0,
  SRC: 6,
  TYPE: 12,
  HEADER_LEN: 14,
  TAG_LEN: 4,
} as const;

export const EthernetField = field;

export const enum EtherType {
  Ipv4 = 0x0800,
  Arp = 0x0806,
  Vlan = 0x8100,
  Ipv6 = 0x86dd,
  QinQ = 0x88a8,
  QinQLegacy = 0x9100,
}

/** True for a TPID that starts a VLAN tag. */
export function isVlanTpid(t: number): boolean {
  return t === EtherType.Vlan || t === EtherType.QinQ || t === EtherType.QinQLegacy;
}

/**
 * A view over an Ethernet header at `off` (after any vnet header) in `buf[off, end)`.
 * Call `check()` before reading anything past the first 14 bytes.
 */
export class EthernetFrame extends View {
  /** Ok when the header and every tag it announces fit (at most two tags are parsed). */
  check(): ParseStatus {
    if (this.off < 0 || this.off + field.HEADER_LEN > this.end) return ParseStatus.Truncated;
    if (this.off + this.headerLen > this.end) return ParseStatus.Truncated;
    return ParseStatus.Ok;
  }

  get dst(): Uint8Array {
    return this.buf.subarray(this.off + field.DST, this.off + field.DST + 6);
  }
  get src(): Uint8Array {
    return this.buf.subarray(this.off + field.SRC, this.off + field.SRC + 6);
  }

  /** Number of VLAN tags (0, 1 or 2). Reads only bytes that exist. */
  get tagCount(): number {
    const b = this.buf;
    const o = this.off;
    if (o + field.HEADER_LEN > this.end || !isVlanTpid(get16(b, o + field.TYPE))) return 0;
    if (o + field.HEADER_LEN + field.TAG_LEN > this.end) return 1;
    return get16(b, o + field.TYPE + field.TAG_LEN) === EtherType.Vlan ? 2 : 1;
  }

  /** Ethernet header length including tags (14, 18 or 22). */
  get headerLen(): number {
    return field.HEADER_LEN + field.TAG_LEN * this.tagCount;
  }

  /** The EtherType after the tags. */
  get etherType(): number {
    return get16(this.buf, this.off + this.headerLen - 2);
  }
  set etherType(v: number) {
    set16(this.buf, this.off + this.headerLen - 2, v);
  }

  /** Tag `i` (0 = outer): TPID. */
  tpid(i: number): number {
    return get16(this.buf, this.off + field.TYPE + field.TAG_LEN * i);
  }
  /** Tag `i` TCI fields. */
  vlanId(i: number): number {
    return get16(this.buf, this.off + field.TYPE + field.TAG_LEN * i + 2) & 0xfff;
  }
  pcp(i: number): number {
    return this.buf[this.off + field.TYPE + field.TAG_LEN * i + 2]! >> 5;
  }
  dei(i: number): boolean {
    return (this.buf[this.off + field.TYPE + field.TAG_LEN * i + 2]! & 0x10) !== 0;
  }
  setVlanId(i: number, id: number): void {
    const o = this.off + field.TYPE + field.TAG_LEN * i + 2;
    set16(this.buf, o, (get16(this.buf, o) & 0xf000) | (id & 0xfff));
  }

  /** Offset of the L3 header in `buf`. */
  get payloadOffset(): number {
    return this.off + this.headerLen;
  }
}

export interface VlanTagRepr {
  tpid: number;
  id: number;
  pcp: number;
  dei: boolean;
}

export interface EthernetRepr {
  dst: string;
  src: string;
  /** Outer first. */
  vlans: VlanTagRepr[];
  etherType: number;
}

export function parseEthernetRepr(f: EthernetFrame): EthernetRepr | ParseStatus {
  const st = f.check();
  if (st !== ParseStatus.Ok) return st;
  const vlans: VlanTagRepr[] = [];
  for (let i = 0; i < f.tagCount; i++)
    vlans.push({ tpid: f.tpid(i), id: f.vlanId(i), pcp: f.pcp(i), dei: f.dei(i) });
  return { dst: formatMac(f.buf, f.off), src: formatMac(f.buf, f.off + 6), vlans, etherType: f.etherType };
}

export function ethernetHeaderLen(r: EthernetRepr): number {
  return field.HEADER_LEN + field.TAG_LEN * r.vlans.length;
}

/** Writes the header (not the payload) at `off`; returns the payload offset. */
export function emitEthernetRepr(r: EthernetRepr, buf: Uint8Array, off = 0): number {
  buf.set(parseMac(r.dst), off);
  buf.set(parseMac(r.src), off + 6);
  let p = off + 12;
  for (const t of r.vlans) {
    set16(buf, p, t.tpid);
    set16(buf, p + 2, ((t.pcp & 7) << 13) | (t.dei ? 0x1000 : 0) | (t.id & 0xfff));
    p += 4;
  }
  set16(buf, p, r.etherType);
  return p + 2;
}
