/**
 * @module pcapng writing: one section, one or more Ethernet interfaces, Enhanced Packet Blocks
 * with an optional per-packet comment (opt_comment). The comments are how miscompare captures
 * say which side (PVM or SVM) each frame came from; Wireshark shows them as `frame.comment`.
 */
import { PcapError } from "../errors.ts";
import {
  BlockType,
  LINKTYPE_ETHERNET,
  MAX_PACKET_LEN,
  OptionCode,
  PCAPNG_BOM,
  type WritablePacket,
} from "./pcap-format.ts";
import { BatchOutput, type ByteSink, fileSink } from "./pcap-sink.ts";
import { assertFrameFits } from "./pcap-writer.ts";

export interface PcapngInterfaceSpec {
  /** if_name, e.g. "primary" or "secondary". */
  name?: string;
  /** if_description. */
  description?: string;
  /** Timestamp resolution written as if_tsresol (default "ns"). */
  resolution?: "us" | "ns";
  /** Snap length (default MAX_PACKET_LEN). */
  snapLen?: number;
}

export interface PcapngWriteOptions {
  /** The interfaces packets refer to by index (default: one unnamed nanosecond interface). */
  interfaces?: PcapngInterfaceSpec[];
  /** Byte order of the section (default little-endian). */
  bigEndian?: boolean;
  /** shb_userappl (default "colo-proxy"). */
  userAppl?: string;
  /** A comment on the whole section. */
  comment?: string;
}

const pad4 = (n: number) => (n + 3) & ~3;
const MAX_U64 = (1n << 64n) - 1n;

/** Option list encoding: code, length, value padded to 4, then opt_endofopt if any. */
type Option = [code: number, value: Buffer];

function optionsLen(opts: Option[]): number {
  if (opts.length === 0) return 0;
  let n = 4;
  for (const [, v] of opts) n += 4 + pad4(v.length);
  return n;
}

function textOption(code: number, text: string): Option {
  const v = Buffer.from(text, "utf8");
  if (v.length > 0xffff) {
    throw new PcapError("COLO_ERR_PCAP_UNWRITABLE", `pcapng option ${code} longer than 65535 bytes`);
  }
  return [code, v];
}

class Enc {
  constructor(
    readonly b: Buffer,
    public o: number,
    readonly be: boolean,
  ) {}
  u16(v: number): void {
    this.o = this.be ? this.b.writeUInt16BE(v, this.o) : this.b.writeUInt16LE(v, this.o);
  }
  u32(v: number): void {
    this.o = this.be ? this.b.writeUInt32BE(v, this.o) : this.b.writeUInt32LE(v, this.o);
  }
  bytes(v: Uint8Array): void {
    this.b.set(v, this.o);
    const end = this.o + pad4(v.length);
    this.b.fill(0, this.o + v.length, end);
    this.o = end;
  }
  options(opts: Option[]): void {
    if (opts.length === 0) return;
    for (const [code, v] of opts) {
      this.u16(code);
      this.u16(v.length);
      this.bytes(v);
    }
    this.u32(0); // opt_endofopt: code 0, length 0
  }
}

/** Encodes a block (type, lengths, body written by `body`) into dst at off; returns the end offset. */
function block(
  dst: Buffer,
  off: number,
  be: boolean,
  type: number,
  len: number,
  body: (e: Enc) => void,
): number {
  const e = new Enc(dst, off, be);
  e.u32(type);
  e.u32(len);
  body(e);
  e.u32(len);
  if (e.o !== off + len) throw new PcapError("COLO_ERR_INTERNAL", `pcapng block ${type} length mismatch`);
  return e.o;
}

/** The Section Header Block and one Interface Description Block per interface. */
export function pcapngHeader(opts: PcapngWriteOptions = {}): Buffer {
  const be = opts.bigEndian === true;
  const shbOpts: Option[] = [textOption(OptionCode.ShbUserAppl, opts.userAppl ?? "colo-proxy")];
  if (opts.comment !== undefined) shbOpts.unshift(textOption(OptionCode.Comment, opts.comment));
  const ifaces = opts.interfaces ?? [{}];
  const idbOpts = ifaces.map((i) => {
    const o: Option[] = [];
    if (i.name !== undefined) o.push(textOption(OptionCode.IfName, i.name));
    if (i.description !== undefined) o.push(textOption(OptionCode.IfDescription, i.description));
    o.push([OptionCode.IfTsresol, Buffer.of(i.resolution === "us" ? 6 : 9)]);
    return o;
  });
  const shbLen = 28 + optionsLen(shbOpts);
  const idbLens = idbOpts.map((o) => 20 + optionsLen(o));
  const out = Buffer.alloc(shbLen + idbLens.reduce((a, b) => a + b, 0));
  let off = block(out, 0, be, BlockType.SectionHeader, shbLen, (e) => {
    e.u32(PCAPNG_BOM);
    e.u16(1);
    e.u16(0);
    e.u32(0xffffffff); // section length -1: not specified, so the file can be streamed
    e.u32(0xffffffff);
    e.options(shbOpts);
  });
  ifaces.forEach((iface, i) => {
    off = block(out, off, be, BlockType.InterfaceDescription, idbLens[i]!, (e) => {
      e.u16(LINKTYPE_ETHERNET);
      e.u16(0);
      e.u32(iface.snapLen ?? MAX_PACKET_LEN);
      e.options(idbOpts[i]!);
    });
  });
  return out;
}

/** Encodes Enhanced Packet Blocks for a fixed set of interfaces. */
export class EpbEncoder {
  readonly #be: boolean;
  /** Per interface: true when its timestamps are in microseconds. */
  readonly #micro: boolean[];

  constructor(opts: PcapngWriteOptions = {}) {
    this.#be = opts.bigEndian === true;
    this.#micro = (opts.interfaces ?? [{}]).map((i) => i.resolution === "us");
  }

  /** Bytes the packet's block will take (validates the packet, so call it first). */
  size(pkt: WritablePacket, comment: Option[]): number {
    assertFrameFits(pkt.frame.length);
    return 32 + pad4(pkt.frame.length) + optionsLen(comment);
  }

  /** Encodes pkt at dst[off]; returns the offset after the block. */
  encode(dst: Buffer, off: number, pkt: WritablePacket, comment: Option[], len: number): number {
    const id = pkt.interfaceId ?? 0;
    const micro = this.#micro[id];
    if (micro === undefined) {
      throw new PcapError(
        "COLO_ERR_PCAP_UNWRITABLE",
        `packet on interface ${id}, but only ${this.#micro.length} declared`,
      );
    }
    const units = micro ? pkt.timestampNs / 1000n : pkt.timestampNs;
    if (units < 0n || units > MAX_U64) {
      throw new PcapError(
        "COLO_ERR_PCAP_UNWRITABLE",
        `timestamp ${pkt.timestampNs} ns does not fit a pcapng block`,
      );
    }
    return block(dst, off, this.#be, BlockType.EnhancedPacket, len, (e) => {
      e.u32(id);
      e.u32(Number(units >> 32n));
      e.u32(Number(units & 0xffffffffn));
      e.u32(pkt.frame.length);
      e.u32(pkt.origLen ?? pkt.frame.length);
      e.bytes(pkt.frame);
      e.options(comment);
    });
  }

  static commentOption(pkt: WritablePacket): Option[] {
    return pkt.comment === undefined ? [] : [textOption(OptionCode.Comment, pkt.comment)];
  }
}

/** A whole pcapng file in memory. */
export function encodePcapng(packets: Iterable<WritablePacket>, opts: PcapngWriteOptions = {}): Buffer {
  const head = pcapngHeader(opts);
  const enc = new EpbEncoder(opts);
  const list = [...packets].map((p) => {
    const c = EpbEncoder.commentOption(p);
    return { p, c, n: enc.size(p, c) };
  });
  const out = Buffer.allocUnsafe(head.length + list.reduce((a, x) => a + x.n, 0));
  head.copy(out, 0);
  let off = head.length;
  for (const { p, c, n } of list) off = enc.encode(out, off, p, c, n);
  return out;
}

/** Streams a pcapng file to a sink, batching writes. */
export class PcapngWriter {
  readonly #out: BatchOutput;
  readonly #enc: EpbEncoder;
  #closed = false;

  constructor(sink: ByteSink, opts: PcapngWriteOptions = {}) {
    this.#out = new BatchOutput(sink);
    this.#enc = new EpbEncoder(opts);
    const h = pcapngHeader(opts);
    if (!this.#out.fits(h.length)) this.#out.buf = Buffer.allocUnsafe(h.length);
    h.copy(this.#out.buf, 0);
    this.#out.len = h.length;
  }

  /** Creates (or truncates) a file and writes the section and interface headers. */
  static async create(path: string, opts: PcapngWriteOptions = {}): Promise<PcapngWriter> {
    return new PcapngWriter(await fileSink(path), opts);
  }

  async write(pkt: WritablePacket): Promise<void> {
    if (this.#closed) throw new PcapError("COLO_ERR_PCAP_UNWRITABLE", "write after close");
    const c = EpbEncoder.commentOption(pkt);
    const n = this.#enc.size(pkt, c);
    const out = this.#out;
    if (!out.fits(n)) await out.makeRoom(n);
    out.len = this.#enc.encode(out.buf, out.len, pkt, c, n);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#out.close();
  }
}
