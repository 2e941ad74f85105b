/**
 * @module Hand-built capture bytes for the pcap tests, independent of src/wire's writers so
 * that the readers are checked against the file formats, not against our own encoders.
 */

export type Endian = "le" | "be";

/** Little helper that appends integers in a chosen byte order. */
export class Bytes {
  readonly parts: Buffer[] = [];
  constructor(readonly endian: Endian) {}
  u8(v: number): this {
    this.parts.push(Buffer.of(v));
    return this;
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    if (this.endian === "le") b.writeUInt16LE(v);
    else b.writeUInt16BE(v);
    this.parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    if (this.endian === "le") b.writeUInt32LE(v >>> 0);
    else b.writeUInt32BE(v >>> 0);
    this.parts.push(b);
    return this;
  }
  i64(v: bigint): this {
    const b = Buffer.alloc(8);
    if (this.endian === "le") b.writeBigInt64LE(v);
    else b.writeBigInt64BE(v);
    this.parts.push(b);
    return this;
  }
  raw(b: Uint8Array): this {
    this.parts.push(Buffer.from(b));
    return this;
  }
  /** Pads with zeros to a multiple of four bytes. */
  pad(): this {
    const n = this.length % 4;
    if (n !== 0) this.parts.push(Buffer.alloc(4 - n));
    return this;
  }
  get length(): number {
    return this.parts.reduce((a, b) => a + b.length, 0);
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** A deterministic frame of n bytes whose content depends on `seed`. */
export function frameOf(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}

/** Classic pcap global header. */
export function pcapHeader(endian: Endian, nanos: boolean, linkType = 1, major = 2): Buffer {
  return new Bytes(endian)
    .u32(nanos ? 0xa1b23c4d : 0xa1b2c3d4)
    .u16(major)
    .u16(4)
    .u32(0)
    .u32(0)
    .u32(65535)
    .u32(linkType)
    .bytes();
}

export function pcapRecord(
  endian: Endian,
  sec: number,
  frac: number,
  frame: Buffer,
  origLen = frame.length,
): Buffer {
  return new Bytes(endian).u32(sec).u32(frac).u32(frame.length).u32(origLen).raw(frame).bytes();
}

/** An option: code, length, padded value. */
export function option(endian: Endian, code: number, value: Buffer): Buffer {
  return new Bytes(endian).u16(code).u16(value.length).raw(value).pad().bytes();
}
export const endOfOpt = (endian: Endian) => new Bytes(endian).u32(0).bytes();

/** A block with the given type and body (body is padded; lengths are added front and back). */
export function block(endian: Endian, type: number, body: Buffer): Buffer {
  const padded = new Bytes(endian).raw(body).pad().bytes();
  const len = 12 + padded.length;
  return new Bytes(endian).u32(type).u32(len).raw(padded).u32(len).bytes();
}

export function shb(endian: Endian, options: Buffer[] = [], major = 1): Buffer {
  const body = new Bytes(endian).u32(0x1a2b3c4d).u16(major).u16(0).i64(-1n);
  for (const o of options) body.raw(o);
  return block(endian, 0x0a0d0d0a, body.bytes());
}

export function idb(endian: Endian, linkType = 1, snapLen = 0, options: Buffer[] = []): Buffer {
  const body = new Bytes(endian).u16(linkType).u16(0).u32(snapLen);
  for (const o of options) body.raw(o);
  return block(endian, 1, body.bytes());
}

export function epb(
  endian: Endian,
  iface: number,
  units: bigint,
  frame: Buffer,
  options: Buffer[] = [],
): Buffer {
  const body = new Bytes(endian)
    .u32(iface)
    .u32(Number(units >> 32n))
    .u32(Number(units & 0xffffffffn))
    .u32(frame.length)
    .u32(frame.length)
    .raw(frame)
    .pad();
  for (const o of options) body.raw(o);
  return block(endian, 6, body.bytes());
}

export function spb(endian: Endian, frame: Buffer, origLen = frame.length): Buffer {
  return block(endian, 3, new Bytes(endian).u32(origLen).raw(frame).bytes());
}

/** Obsolete Packet Block (type 2): 16-bit interface id and drop count. */
export function pb(endian: Endian, iface: number, units: bigint, frame: Buffer): Buffer {
  const body = new Bytes(endian)
    .u16(iface)
    .u16(0)
    .u32(Number(units >> 32n))
    .u32(Number(units & 0xffffffffn))
    .u32(frame.length)
    .u32(frame.length)
    .raw(frame);
  return block(endian, 2, body.bytes());
}
