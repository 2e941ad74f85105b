/**
 * @module Classic pcap decoder: a sans-IO state machine over a ByteQueue. Reads both
 * microsecond and nanosecond files in either byte order; accepts only LINKTYPE_ETHERNET.
 */
import { PcapError } from "../errors.ts";
import type { ByteQueue } from "./pcap-byte-queue.ts";
import {
  type CaptureInterface,
  type CapturePacket,
  LINKTYPE_ETHERNET,
  MAX_PACKET_LEN,
  PCAP_FILE_HEADER_LEN,
  PCAP_MAGIC_NS,
  PCAP_MAGIC_US,
  PCAP_RECORD_HEADER_LEN,
} from "./pcap-format.ts";

const enum State {
  FileHeader = 0,
  RecordHeader = 1,
  RecordData = 2,
}

export class PcapDecoder {
  #state = State.FileHeader;
  #le = true;
  #nanos = false;
  // The record header's fields while waiting for its data.
  #tsNs = 0n;
  #inclLen = 0;
  #origLen = 0;
  readonly interfaces: CaptureInterface[] = [];

  /** Timestamp resolution of the file, known once the header has been read. */
  get nanosecond(): boolean {
    return this.#nanos;
  }

  /** True when the decoder sits between records, so that ending the input here is clean. */
  get atBoundary(): boolean {
    return this.#state === State.RecordHeader;
  }

  /** The next packet, or null when more input is needed. Throws PcapError on bad input. */
  next(q: ByteQueue): CapturePacket | null {
    for (;;) {
      switch (this.#state) {
        case State.FileHeader: {
          if (!q.peek(PCAP_FILE_HEADER_LEN)) return null;
          this.#fileHeader(q.buf, q.off, q.consumed);
          q.skip(PCAP_FILE_HEADER_LEN);
          this.#state = State.RecordHeader;
          break;
        }
        case State.RecordHeader: {
          if (!q.peek(PCAP_RECORD_HEADER_LEN)) return null;
          this.#recordHeader(q.buf, q.off, q.consumed);
          q.skip(PCAP_RECORD_HEADER_LEN);
          this.#state = State.RecordData;
          break;
        }
        case State.RecordData: {
          const frame = q.take(this.#inclLen);
          if (frame === null) return null;
          this.#state = State.RecordHeader;
          return {
            timestampNs: this.#tsNs,
            frame,
            origLen: this.#origLen,
            interfaceId: 0,
            linkType: LINKTYPE_ETHERNET,
          };
        }
      }
    }
  }

  #fileHeader(b: Buffer, o: number, at: number): void {
    const magicLe = b.readUInt32LE(o);
    const magicBe = b.readUInt32BE(o);
    if (magicLe === PCAP_MAGIC_US || magicLe === PCAP_MAGIC_NS) {
      this.#le = true;
      this.#nanos = magicLe === PCAP_MAGIC_NS;
    } else if (magicBe === PCAP_MAGIC_US || magicBe === PCAP_MAGIC_NS) {
      this.#le = false;
      this.#nanos = magicBe === PCAP_MAGIC_NS;
    } else {
      throw new PcapError("COLO_ERR_PCAP_BAD_MAGIC", undefined, { offset: at });
    }
    const le = this.#le;
    const major = le ? b.readUInt16LE(o + 4) : b.readUInt16BE(o + 4);
    const minor = le ? b.readUInt16LE(o + 6) : b.readUInt16BE(o + 6);
    if (major !== 2) {
      throw new PcapError("COLO_ERR_PCAP_VERSION", `unsupported pcap version ${major}.${minor}`, {
        offset: at,
        major,
        minor,
      });
    }
    const snapLen = le ? b.readUInt32LE(o + 16) : b.readUInt32BE(o + 16);
    // The upper 16 bits of the link-type field carry FCS information (pcap draft); the type is below.
    const linkType = (le ? b.readUInt32LE(o + 20) : b.readUInt32BE(o + 20)) & 0xffff;
    if (linkType !== LINKTYPE_ETHERNET) {
      throw new PcapError("COLO_ERR_PCAP_LINKTYPE", `unsupported link type ${linkType} (only Ethernet, 1)`, {
        offset: at + 20,
        linkType,
      });
    }
    this.interfaces.push({
      linkType,
      snapLen,
      tsMul: this.#nanos ? 1n : 1000n,
      tsDiv: 1n,
      tsOffsetSec: 0n,
    });
  }

  #recordHeader(b: Buffer, o: number, at: number): void {
    const le = this.#le;
    const sec = le ? b.readUInt32LE(o) : b.readUInt32BE(o);
    const frac = le ? b.readUInt32LE(o + 4) : b.readUInt32BE(o + 4);
    const incl = le ? b.readUInt32LE(o + 8) : b.readUInt32BE(o + 8);
    const orig = le ? b.readUInt32LE(o + 12) : b.readUInt32BE(o + 12);
    if (incl > MAX_PACKET_LEN) {
      throw new PcapError(
        "COLO_ERR_PCAP_BAD_RECORD",
        `record at offset ${at} claims ${incl} bytes (maximum ${MAX_PACKET_LEN})`,
        { offset: at, inclLen: incl },
      );
    }
    if (frac >= (this.#nanos ? 1_000_000_000 : 1_000_000)) {
      throw new PcapError(
        "COLO_ERR_PCAP_BAD_RECORD",
        `record at offset ${at} has sub-second timestamp ${frac} out of range`,
        { offset: at, fraction: frac },
      );
    }
    // sec * 1e9 + ns stays below 2^63 but not below 2^53, hence bigint.
    this.#tsNs = BigInt(sec) * 1_000_000_000n + BigInt(this.#nanos ? frac : frac * 1000);
    this.#inclLen = incl;
    this.#origLen = orig;
  }
}
