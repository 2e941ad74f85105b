/**
 * @module TCP header view (RFC 9293): fields, an allocation-free option cursor (MSS, window
 * scale, SACK-permitted, SACK blocks, timestamps; unknown options kept opaque), setters that keep
 * the checksum valid by RFC 1624 incremental update (for the seq/ack rewriter), and the Repr.
 */
import { get16, get32, set16, set32 } from "./bytes.ts";
import { checksumUpdate16, checksumUpdate32, internetChecksum, verifyChecksum } from "./checksum.ts";
import { ParseStatus } from "./meta.ts";
import { OptionCursor, View } from "./view.ts";

const field = {
  SRC_PORT: 0,
  DST_PORT: 2,
  SEQ: 4,
  ACK: 8,
  DATA_OFF: 12,
  FLAGS: 13,
  WINDOW: 14,
  CHECKSUM: 16,
  URGENT: 18,
  OPTIONS: 20,
  MIN_HEADER_LEN: 20,
} as const;
export const TcpField = field;

export const enum TcpOptionKind {
  End = 0,
  Nop = 1,
  Mss = 2,
  WindowScale = 3,
  SackPermitted = 4,
  Sack = 5,
  Timestamps = 8,
}

/** A TCP option as a plain object (builders, Repr). */
export type TcpOption =
  | { kind: "eol" }
  | { kind: "nop" }
  | { kind: "mss"; value: number }
  | { kind: "wscale"; shift: number }
  | { kind: "sackPermitted" }
  /** SACK blocks as [left, right) edges. */
  | { kind: "sack"; blocks: ReadonlyArray<readonly [number, number]> }
  | { kind: "timestamps"; tsval: number; tsecr: number }
  /** An option emitted as kind, length (2 + data length), data; unknown options parse to this. */
  | { kind: "raw"; type: number; data?: Uint8Array }
  /** Bytes copied verbatim (for malformed-option tests). */
  | { kind: "bytes"; bytes: Uint8Array };

/**
 * Allocation-free option iterator: `c.reset(...)` (or `tcp.options(c)`), then
 * `while (c.next()) switch (c.kind) ...`. Stops at End of Option List. `malformed` is set (and
 * iteration stops) when an option's length is < 2 or runs past the header.
 */
export class TcpOptionCursor extends OptionCursor {
  /** Current option: kind, start offset in buf, total length (1 for NOP), data offset/length. */
  kind = 0;
  offset = 0;
  len = 0;
  dataOffset = 0;
  dataLen = 0;

  next(): boolean {
    const b = this.buf;
    const p = this.pos;
    if (p >= this.end) return false;
    const k = b[p]!;
    if (k === TcpOptionKind.End) {
      this.pos = this.end;
      return false;
    }
    this.kind = k;
    this.offset = p;
    if (k === TcpOptionKind.Nop) {
      this.len = 1;
      this.dataOffset = p + 1;
      this.dataLen = 0;
      this.pos = p + 1;
      return true;
    }
    const l = p + 1 < this.end ? b[p + 1]! : 0;
    if (l < 2 || p + l > this.end) {
      return this.stop();
    }
    this.len = l;
    this.dataOffset = p + 2;
    this.dataLen = l - 2;
    this.pos = p + l;
    return true;
  }

  /** True when the current option has the length its kind requires (known kinds only). */
  get wellFormed(): boolean {
    switch (this.kind) {
      case TcpOptionKind.Mss:
        return this.len === 4;
      case TcpOptionKind.WindowScale:
        return this.len === 3;
      case TcpOptionKind.SackPermitted:
        return this.len === 2;
      case TcpOptionKind.Sack:
        return this.len >= 10 && (this.len - 2) % 8 === 0;
      case TcpOptionKind.Timestamps:
        return this.len === 10;
      default:
        return true;
    }
  }
}

/**
 * A view over a TCP header at `off`; `end` is the end of the TCP segment (the IP datagram end,
 * not the frame end, so that Ethernet padding is not payload).
 */
export class TcpPacket extends View {
  readonly #cursor = new TcpOptionCursor();

  /** Ok when 20 bytes exist, data offset >= 5 (else BadHeader) and the header fits (else Truncated). */
  check(): ParseStatus {
    if (this.off < 0 || this.off + field.MIN_HEADER_LEN > this.end) return ParseStatus.Truncated;
    const hl = this.headerLen;
    if (hl < field.MIN_HEADER_LEN) return ParseStatus.BadHeader;
    if (this.off + hl > this.end) return ParseStatus.Truncated;
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
  /** Unsigned 32-bit. */
  get seq(): number {
    return get32(this.buf, this.off + field.SEQ);
  }
  set seq(v: number) {
    set32(this.buf, this.off + field.SEQ, v);
  }
  get ack(): number {
    return get32(this.buf, this.off + field.ACK);
  }
  set ack(v: number) {
    set32(this.buf, this.off + field.ACK, v);
  }
  /** Header length in bytes (data offset x 4). */
  get headerLen(): number {
    return (this.buf[this.off + field.DATA_OFF]! >> 4) << 2;
  }
  /** The flag byte (FIN 0x01 ... CWR 0x80; see TcpFlag in meta.ts). */
  get flags(): number {
    return this.buf[this.off + field.FLAGS]!;
  }
  set flags(v: number) {
    this.buf[this.off + field.FLAGS] = v;
  }
  get fin(): boolean {
    return (this.flags & 0x01) !== 0;
  }
  get syn(): boolean {
    return (this.flags & 0x02) !== 0;
  }
  get rst(): boolean {
    return (this.flags & 0x04) !== 0;
  }
  get psh(): boolean {
    return (this.flags & 0x08) !== 0;
  }
  get ackFlag(): boolean {
    return (this.flags & 0x10) !== 0;
  }
  get urg(): boolean {
    return (this.flags & 0x20) !== 0;
  }
  get window(): number {
    return get16(this.buf, this.off + field.WINDOW);
  }
  set window(v: number) {
    set16(this.buf, this.off + field.WINDOW, v);
  }
  get checksum(): number {
    return get16(this.buf, this.off + field.CHECKSUM);
  }
  set checksum(v: number) {
    set16(this.buf, this.off + field.CHECKSUM, v);
  }
  get urgent(): number {
    return get16(this.buf, this.off + field.URGENT);
  }
  get optionsOffset(): number {
    return this.off + field.OPTIONS;
  }
  get payloadOffset(): number {
    return this.off + this.headerLen;
  }
  get payloadLen(): number {
    return this.end - this.off - this.headerLen;
  }
  /** Sequence space consumed: payload + SYN + FIN. */
  get segmentLen(): number {
    return this.payloadLen + (this.syn ? 1 : 0) + (this.fin ? 1 : 0);
  }

  /** Points `c` at this header's options and returns it. */
  options(c: TcpOptionCursor): TcpOptionCursor {
    return c.reset(this.buf, this.optionsOffset, this.payloadOffset);
  }

  /** Offset (in buf) of the first well-formed option of `kind`, or -1. */
  findOption(kind: number): number {
    const c = this.options(this.#cursor);
    while (c.next()) if (c.kind === kind && c.wellFormed) return c.offset;
    return -1;
  }
  /** True when the option area parses to its end (no bad lengths). */
  get optionsWellFormed(): boolean {
    const c = this.options(this.#cursor);
    while (c.next()) if (!c.wellFormed) return false;
    return !c.malformed;
  }

  /** MSS option value, or -1. */
  get mss(): number {
    const o = this.findOption(TcpOptionKind.Mss);
    return o < 0 ? -1 : get16(this.buf, o + 2);
  }
  /** Window scale shift, or -1. */
  get windowScale(): number {
    const o = this.findOption(TcpOptionKind.WindowScale);
    return o < 0 ? -1 : this.buf[o + 2]!;
  }
  get sackPermitted(): boolean {
    return this.findOption(TcpOptionKind.SackPermitted) >= 0;
  }
  /** Offset of the timestamps option (tsval at +2, tsecr at +6), or -1. */
  get timestampsOffset(): number {
    return this.findOption(TcpOptionKind.Timestamps);
  }
  get tsval(): number {
    const o = this.timestampsOffset;
    return o < 0 ? -1 : get32(this.buf, o + 2);
  }
  get tsecr(): number {
    const o = this.timestampsOffset;
    return o < 0 ? -1 : get32(this.buf, o + 6);
  }
  /** Offset of the SACK option, or -1; blocks start at +2, 8 bytes each. */
  get sackOffset(): number {
    return this.findOption(TcpOptionKind.Sack);
  }
  get sackBlockCount(): number {
    const o = this.sackOffset;
    return o < 0 ? 0 : (this.buf[o + 1]! - 2) >> 3;
  }
  /** Left / right edge of SACK block `i` (no bounds check beyond sackBlockCount). */
  sackLeft(i: number): number {
    return get32(this.buf, this.sackOffset + 2 + 8 * i);
  }
  sackRight(i: number): number {
    return get32(this.buf, this.sackOffset + 6 + 8 * i);
  }

  /** Checksum over the segment with the given pseudo-header sum verifies. */
  verifyChecksum(pseudo: number): boolean {
    return verifyChecksum(this.buf, this.off, this.end, pseudo);
  }
  fillChecksum(pseudo: number): void {
    this.checksum = 0;
    this.checksum = internetChecksum(this.buf, this.off, this.end, pseudo);
  }

  /**
   * Writes a 32-bit value at `at` (an offset in buf inside this header) and updates the
   * checksum incrementally, whatever the alignment. The rewriter's primitive.
   */
  rewrite32(at: number, v: number): void {
    const old = get32(this.buf, at);
    set32(this.buf, at, v);
    this.checksum = checksumUpdate32(this.checksum, old, v >>> 0, ((at - this.off) & 1) === 1);
  }
  rewrite16(at: number, v: number): void {
    const old = get16(this.buf, at);
    set16(this.buf, at, v);
    this.checksum = checksumUpdate16(this.checksum, old, v & 0xffff, ((at - this.off) & 1) === 1);
  }
  rewriteSeq(v: number): void {
    this.rewrite32(this.off + field.SEQ, v);
  }
  rewriteAck(v: number): void {
    this.rewrite32(this.off + field.ACK, v);
  }
  rewriteWindow(v: number): void {
    this.rewrite16(this.off + field.WINDOW, v);
  }
  /** Sets tsval/tsecr (if the option is present; returns false otherwise). */
  rewriteTimestamps(tsval: number, tsecr: number): boolean {
    const o = this.timestampsOffset;
    if (o < 0) return false;
    this.rewrite32(o + 2, tsval);
    this.rewrite32(o + 6, tsecr);
    return true;
  }
  /** Adds `delta` (mod 2^32) to every SACK edge; returns the number of blocks shifted. */
  shiftSackBlocks(delta: number): number {
    const o = this.sackOffset;
    if (o < 0) return 0;
    const n = (this.buf[o + 1]! - 2) >> 3;
    for (let i = 0; i < 2 * n; i++) {
      const at = o + 2 + 4 * i;
      this.rewrite32(at, (get32(this.buf, at) + delta) >>> 0);
    }
    return n;
  }
}

export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  urgent: number;
  /** Decoded options; NOP and EOL padding are dropped, unknown kinds become `raw`. */
  options: TcpOption[];
  payloadLen: number;
}

/** Parses a segment; a malformed option area (bad length, wrong size for a known kind) is BadHeader. */
export function parseTcpRepr(t: TcpPacket): TcpRepr | ParseStatus {
  const st = t.check();
  if (st !== ParseStatus.Ok) return st;
  const options: TcpOption[] = [];
  const c = t.options(new TcpOptionCursor());
  const b = t.buf;
  while (c.next()) {
    if (!c.wellFormed) return ParseStatus.BadHeader;
    switch (c.kind) {
      case TcpOptionKind.Nop:
        break;
      case TcpOptionKind.Mss:
        options.push({ kind: "mss", value: get16(b, c.dataOffset) });
        break;
      case TcpOptionKind.WindowScale:
        options.push({ kind: "wscale", shift: b[c.dataOffset]! });
        break;
      case TcpOptionKind.SackPermitted:
        options.push({ kind: "sackPermitted" });
        break;
      case TcpOptionKind.Sack: {
        const blocks: Array<[number, number]> = [];
        for (let p = c.dataOffset; p < c.dataOffset + c.dataLen; p += 8)
          blocks.push([get32(b, p), get32(b, p + 4)]);
        options.push({ kind: "sack", blocks });
        break;
      }
      case TcpOptionKind.Timestamps:
        options.push({
          kind: "timestamps",
          tsval: get32(b, c.dataOffset),
          tsecr: get32(b, c.dataOffset + 4),
        });
        break;
      default:
        options.push({
          kind: "raw",
          type: c.kind,
          data: new Uint8Array(b.subarray(c.dataOffset, c.dataOffset + c.dataLen)),
        });
    }
  }
  if (c.malformed) return ParseStatus.BadHeader;
  return {
    srcPort: t.srcPort,
    dstPort: t.dstPort,
    seq: t.seq,
    ack: t.ack,
    flags: t.flags,
    window: t.window,
    urgent: t.urgent,
    options,
    payloadLen: t.payloadLen,
  };
}

/** Serialises options, padded with EOL to a multiple of 4. */
export function tcpOptionBytes(options: readonly TcpOption[]): Uint8Array {
  const out: number[] = [];
  const u32 = (v: number) => out.push(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  for (const o of options) {
    switch (o.kind) {
      case "eol":
        out.push(0);
        break;
      case "nop":
        out.push(1);
        break;
      case "mss":
        out.push(2, 4, (o.value >> 8) & 0xff, o.value & 0xff);
        break;
      case "wscale":
        out.push(3, 3, o.shift & 0xff);
        break;
      case "sackPermitted":
        out.push(4, 2);
        break;
      case "sack":
        out.push(5, 2 + 8 * o.blocks.length);
        for (const [l, r] of o.blocks) {
          u32(l);
          u32(r);
        }
        break;
      case "timestamps":
        out.push(8, 10);
        u32(o.tsval);
        u32(o.tsecr);
        break;
      case "raw": {
        const d = o.data ?? new Uint8Array(0);
        out.push(o.type, 2 + d.length, ...d);
        break;
      }
      case "bytes":
        out.push(...o.bytes);
        break;
    }
  }
  while (out.length % 4 !== 0) out.push(0);
  return Uint8Array.from(out);
}

export function tcpHeaderLen(r: TcpRepr): number {
  return field.MIN_HEADER_LEN + tcpOptionBytes(r.options).length;
}

/**
 * Writes the header at `off` with a zero checksum (the checksum needs the pseudo-header: call
 * `new TcpPacket(buf, off, end).fillChecksum(ip.pseudoSum(...))` once the payload is in place).
 * Returns the payload offset.
 */
export function emitTcpRepr(r: TcpRepr, buf: Uint8Array, off = 0): number {
  const opts = tcpOptionBytes(r.options);
  const hl = field.MIN_HEADER_LEN + opts.length;
  if (hl > 60) throw new RangeError("TCP options exceed 40 bytes");
  set16(buf, off + field.SRC_PORT, r.srcPort);
  set16(buf, off + field.DST_PORT, r.dstPort);
  set32(buf, off + field.SEQ, r.seq);
  set32(buf, off + field.ACK, r.ack);
  buf[off + field.DATA_OFF] = (hl >> 2) << 4;
  buf[off + field.FLAGS] = r.flags;
  set16(buf, off + field.WINDOW, r.window);
  set16(buf, off + field.CHECKSUM, 0);
  set16(buf, off + field.URGENT, r.urgent);
  buf.set(opts, off + field.OPTIONS);
  return off + hl;
}
