/**
 * @module Classic pcap writing: pure encoders (`pcapFileHeader`, `encodePcapRecord`,
 * `encodePcap`) and a streaming `PcapWriter` over a ByteSink. Microsecond or nanosecond
 * timestamps, either byte order, LINKTYPE_ETHERNET.
 */
import { PcapError } from "../errors.ts";
import {
  LINKTYPE_ETHERNET,
  MAX_PACKET_LEN,
  PCAP_FILE_HEADER_LEN,
  PCAP_MAGIC_NS,
  PCAP_MAGIC_US,
  PCAP_RECORD_HEADER_LEN,
  type WritablePacket,
} from "./pcap-format.ts";
import { BatchOutput, type ByteSink, fileSink } from "./pcap-sink.ts";

export interface PcapWriteOptions {
  /** Timestamp resolution: "us" (the classic magic, default) or "ns". */
  resolution?: "us" | "ns";
  /** Byte order of the file (default little-endian). */
  bigEndian?: boolean;
  /** Snap length recorded in the header (default MAX_PACKET_LEN). */
  snapLen?: number;
}

const NS_PER_S = 1_000_000_000n;
const MAX_U32_SEC = 0xffff_ffffn;

/** The 24-byte global header. */
export function pcapFileHeader(opts: PcapWriteOptions = {}): Buffer {
  const b = Buffer.alloc(PCAP_FILE_HEADER_LEN);
  const be = opts.bigEndian === true;
  const u32 = (v: number, o: number) => (be ? b.writeUInt32BE(v, o) : b.writeUInt32LE(v, o));
  const u16 = (v: number, o: number) => (be ? b.writeUInt16BE(v, o) : b.writeUInt16LE(v, o));
  u32(opts.resolution === "ns" ? PCAP_MAGIC_NS : PCAP_MAGIC_US, 0);
  u16(2, 4);
  u16(4, 6);
  // thiszone and sigfigs stay 0, as every modern writer leaves them.
  u32(opts.snapLen ?? MAX_PACKET_LEN, 16);
  u32(LINKTYPE_ETHERNET, 20);
  return b;
}

/** Refuses frames no reader would accept back (and that would make a writer grow its buffer). */
export function assertFrameFits(len: number): void {
  if (len > MAX_PACKET_LEN) {
    throw new PcapError(
      "COLO_ERR_PCAP_UNWRITABLE",
      `frame of ${len} bytes exceeds the ${MAX_PACKET_LEN}-byte limit`,
    );
  }
}

/** Checks that a packet fits the format; returns [seconds, sub-second units]. */
function splitTimestamp(pkt: WritablePacket, ns: boolean): [number, number] {
  const ts = pkt.timestampNs;
  if (ts < 0n || ts / NS_PER_S > MAX_U32_SEC) {
    throw new PcapError("COLO_ERR_PCAP_UNWRITABLE", `timestamp ${ts} ns does not fit a pcap record`);
  }
  assertFrameFits(pkt.frame.length);
  const frac = Number(ts % NS_PER_S);
  return [Number(ts / NS_PER_S), ns ? frac : Math.floor(frac / 1000)];
}

/** Writes one record (header + frame) into dst at off; returns the offset after it. */
export function encodePcapRecord(
  dst: Buffer,
  off: number,
  pkt: WritablePacket,
  ns: boolean,
  bigEndian: boolean,
): number {
  const [sec, frac] = splitTimestamp(pkt, ns);
  const caplen = pkt.frame.length;
  const orig = pkt.origLen ?? caplen;
  if (bigEndian) {
    dst.writeUInt32BE(sec, off);
    dst.writeUInt32BE(frac, off + 4);
    dst.writeUInt32BE(caplen, off + 8);
    dst.writeUInt32BE(orig, off + 12);
  } else {
    dst.writeUInt32LE(sec, off);
    dst.writeUInt32LE(frac, off + 4);
    dst.writeUInt32LE(caplen, off + 8);
    dst.writeUInt32LE(orig, off + 12);
  }
  dst.set(pkt.frame, off + PCAP_RECORD_HEADER_LEN);
  return off + PCAP_RECORD_HEADER_LEN + caplen;
}

/** A whole classic pcap file in memory. */
export function encodePcap(packets: Iterable<WritablePacket>, opts: PcapWriteOptions = {}): Buffer {
  const list = [...packets];
  let size = PCAP_FILE_HEADER_LEN;
  for (const p of list) size += PCAP_RECORD_HEADER_LEN + p.frame.length;
  const out = Buffer.allocUnsafe(size);
  pcapFileHeader(opts).copy(out, 0);
  let off = PCAP_FILE_HEADER_LEN;
  for (const p of list)
    off = encodePcapRecord(out, off, p, opts.resolution === "ns", opts.bigEndian === true);
  return out;
}

/** Streams a classic pcap file to a sink, batching writes. */
export class PcapWriter {
  readonly #out: BatchOutput;
  readonly #ns: boolean;
  readonly #be: boolean;
  #closed = false;

  constructor(sink: ByteSink, opts: PcapWriteOptions = {}) {
    this.#out = new BatchOutput(sink);
    this.#ns = opts.resolution === "ns";
    this.#be = opts.bigEndian === true;
    const h = pcapFileHeader(opts);
    h.copy(this.#out.buf, 0);
    this.#out.len = h.length;
  }

  /** Creates (or truncates) a file and writes its header. */
  static async create(path: string, opts: PcapWriteOptions = {}): Promise<PcapWriter> {
    return new PcapWriter(await fileSink(path), opts);
  }

  async write(pkt: WritablePacket): Promise<void> {
    if (this.#closed) throw new PcapError("COLO_ERR_PCAP_UNWRITABLE", "write after close");
    assertFrameFits(pkt.frame.length);
    const n = PCAP_RECORD_HEADER_LEN + pkt.frame.length;
    const out = this.#out;
    if (!out.fits(n)) await out.makeRoom(n);
    out.len = encodePcapRecord(out.buf, out.len, pkt, this.#ns, this.#be);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#out.close();
  }
}
