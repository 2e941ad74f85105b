/**
 * @module Capture reading: `CaptureDecoder` (sans-IO, push chunks, pull packets; detects
 * classic pcap or pcapng from the first bytes), `readCapture()` (an async iterator over a file
 * that reads it in chunks, so a capture of any size streams through bounded memory) and
 * `decodeCapture()` (a whole in-memory capture, for tests and small files).
 */
import { open } from "node:fs/promises";
import { PcapError } from "../errors.ts";
import { ByteQueue } from "./pcap-byte-queue.ts";
import { PcapDecoder } from "./pcap-decoder.ts";
import {
  BlockType,
  type CaptureFormat,
  type CaptureInterface,
  type CapturePacket,
  PCAP_MAGIC_NS,
  PCAP_MAGIC_US,
} from "./pcap-format.ts";
import { PcapngDecoder } from "./pcapng-decoder.ts";

function magicBytes(v: number): [Buffer, Buffer] {
  const le = Buffer.alloc(4);
  le.writeUInt32LE(v);
  const be = Buffer.alloc(4);
  be.writeUInt32BE(v);
  return [le, be];
}
/** Every byte sequence a capture file may start with. */
const MAGICS: Buffer[] = [
  ...magicBytes(PCAP_MAGIC_US),
  ...magicBytes(PCAP_MAGIC_NS),
  ...magicBytes(BlockType.SectionHeader).slice(0, 1),
];

/**
 * Push-parser for capture files. Feed it chunks with `push()`, take packets with `next()`
 * until it returns null, and call `end()` at end of input. Frames are views of the pushed
 * chunks (copied only when a record spans two chunks) and are never overwritten, so callers
 * may keep them; keeping one does keep its whole chunk alive.
 *
 * After the first PcapError the decoder is poisoned and throws that error again.
 */
export class CaptureDecoder {
  #q = new ByteQueue();
  #inner: PcapDecoder | PcapngDecoder | null = null;
  #error: PcapError | null = null;
  #packets = 0;

  /** "pcap" or "pcapng" once the first bytes have been seen. */
  get format(): CaptureFormat | undefined {
    if (this.#inner === null) return undefined;
    return this.#inner instanceof PcapDecoder ? "pcap" : "pcapng";
  }
  /** Interfaces declared so far (one for classic pcap, numbered across sections for pcapng). */
  get interfaces(): readonly CaptureInterface[] {
    return this.#inner?.interfaces ?? [];
  }
  /** Classic pcap only: whether the file has nanosecond timestamps. */
  get nanosecond(): boolean {
    return this.#inner instanceof PcapDecoder && this.#inner.nanosecond;
  }
  /** Packets returned so far. */
  get packets(): number {
    return this.#packets;
  }
  /** Input offset of the next unread byte. */
  get offset(): number {
    return this.#q.consumed;
  }

  push(chunk: Buffer): void {
    this.#q.push(chunk);
  }

  next(): CapturePacket | null {
    if (this.#error !== null) throw this.#error;
    try {
      if (this.#inner === null && !this.#detect()) return null;
      const p = this.#inner!.next(this.#q);
      if (p !== null) this.#packets++;
      return p;
    } catch (e) {
      if (e instanceof PcapError) this.#error = e;
      throw e;
    }
  }

  /** Declares the end of input: throws COLO_ERR_PCAP_TRUNCATED if it stops mid-record. */
  end(): void {
    if (this.#error !== null) throw this.#error;
    if (this.#inner === null) {
      try {
        this.#detect();
      } catch (e) {
        if (e instanceof PcapError) this.#error = e;
        throw e;
      }
    }
    const q = this.#q;
    if (this.#inner === null || !this.#inner.atBoundary || q.available > 0) {
      const what = this.#inner === null || !this.#inner.atBoundary ? "file header" : "record";
      const msg =
        this.#inner === null && q.available === 0
          ? "capture file is empty"
          : `capture file ends inside a ${what} at offset ${q.consumed} (${q.available} bytes left over)`;
      this.#error = new PcapError("COLO_ERR_PCAP_TRUNCATED", msg, {
        offset: q.consumed,
        leftover: q.available,
        packets: this.#packets,
      });
      throw this.#error;
    }
  }

  /** Picks the format from the first four bytes; false while fewer are available. */
  #detect(): boolean {
    const q = this.#q;
    const n = Math.min(q.available, 4);
    if (!q.peek(n)) return false;
    const head = q.buf.subarray(q.off, q.off + n);
    if (!MAGICS.some((m) => m.subarray(0, n).equals(head))) {
      throw new PcapError(
        "COLO_ERR_PCAP_BAD_MAGIC",
        `not a pcap or pcapng file (starts with ${head.toString("hex")})`,
        { offset: 0 },
      );
    }
    if (n < 4) return false;
    this.#inner = head.readUInt32LE(0) === BlockType.SectionHeader ? new PcapngDecoder() : new PcapDecoder();
    return true;
  }
}

export interface ReadCaptureOptions {
  /** Bytes per read (default 64 KiB). */
  chunkSize?: number;
  /** Called once the file's header is known (format and first interfaces), before the first packet. */
  onHeader?: (decoder: CaptureDecoder) => void;
}

/**
 * Streams the packets of a pcap or pcapng file. Reads `chunkSize` bytes at a time, so memory
 * stays bounded by the chunk size plus one record (at most MAX_BLOCK_LEN) whatever the file's
 * size. Throws PcapError on a bad or truncated file; closes the file however iteration ends.
 */
export function readCapture(path: string, opts: ReadCaptureOptions = {}): AsyncGenerator<CapturePacket> {
  return readCaptureStream(fileChunks(path, opts.chunkSize ?? 65_536), opts);
}

/** A file's bytes in fresh chunks (fresh, because yielded frames are views of them). */
async function* fileChunks(path: string, chunkSize: number): AsyncGenerator<Buffer> {
  const fh = await open(path, "r");
  try {
    for (;;) {
      const buf = Buffer.allocUnsafe(chunkSize);
      const { bytesRead } = await fh.read(buf, 0, chunkSize, null);
      if (bytesRead === 0) return;
      yield bytesRead === chunkSize ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

/**
 * Streams the packets of a capture arriving on a readable stream (stdin, a pipe, a socket).
 * Memory is bounded as for readCapture, as long as the stream honours backpressure.
 */
export async function* readCaptureStream(
  stream: AsyncIterable<Buffer | string>,
  opts: Pick<ReadCaptureOptions, "onHeader"> = {},
): AsyncGenerator<CapturePacket> {
  const dec = new CaptureDecoder();
  let announced = false;
  for await (const chunk of stream) {
    if (typeof chunk === "string") {
      throw new PcapError("COLO_ERR_PCAP_BAD_MAGIC", "capture stream is in text mode (set no encoding)");
    }
    dec.push(chunk);
    for (let p = dec.next(); p !== null; p = dec.next()) {
      if (!announced) {
        announced = true;
        opts.onHeader?.(dec);
      }
      yield p;
    }
  }
  dec.end();
  if (!announced) opts.onHeader?.(dec);
}

export interface DecodedCapture {
  format: CaptureFormat;
  interfaces: readonly CaptureInterface[];
  nanosecond: boolean;
  packets: CapturePacket[];
}

/** Decodes a whole capture held in memory. Throws PcapError on bad or truncated input. */
export function decodeCapture(bytes: Uint8Array): DecodedCapture {
  const dec = new CaptureDecoder();
  dec.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  const packets: CapturePacket[] = [];
  for (let p = dec.next(); p !== null; p = dec.next()) packets.push(p);
  dec.end();
  return { format: dec.format!, interfaces: dec.interfaces, nanosecond: dec.nanosecond, packets };
}
