/**
 * @module pcapng decoder: a sans-IO state machine over a ByteQueue that takes one whole block
 * at a time. Handles Section Header Blocks in either byte order (and several sections per
 * file), Interface Description Blocks with if_tsresol/if_tsoffset, Enhanced, Simple and
 * obsolete Packet Blocks, and skips every other block type. Packets on a non-Ethernet
 * interface are refused with COLO_ERR_PCAP_LINKTYPE.
 */
import { PcapError } from "../errors.ts";
import type { ByteQueue } from "./pcap-byte-queue.ts";
import {
  BlockType,
  type CaptureInterface,
  type CapturePacket,
  LINKTYPE_ETHERNET,
  MAX_BLOCK_LEN,
  MAX_PACKET_LEN,
  OptionCode,
  PCAPNG_BOM,
} from "./pcap-format.ts";

/** Smallest block: type, length, trailing length. */
const MIN_BLOCK_LEN = 12;
/** Smallest Section Header Block: 12 + BOM, version, section length. */
const MIN_SHB_LEN = 28;

function badRecord(at: number, why: string, details: Record<string, unknown> = {}): PcapError {
  return new PcapError("COLO_ERR_PCAP_BAD_RECORD", `pcapng block at offset ${at}: ${why}`, {
    offset: at,
    ...details,
  });
}

export class PcapngDecoder {
  /** Every interface seen, numbered across sections. */
  readonly interfaces: CaptureInterface[] = [];
  /** Index into `interfaces` of the current section's interface 0; -1 before the first SHB. */
  #sectionBase = -1;
  #le = true;
  /** Last timestamp seen in this file: Simple Packet Blocks carry none and inherit it. */
  #lastTs = 0n;
  /** Number of sections seen. */
  sections = 0;

  /** True between blocks, so that ending the input here is clean. Blocks are taken whole. */
  get atBoundary(): boolean {
    return this.#sectionBase >= 0;
  }

  /** The next packet, or null when more input is needed. Throws PcapError on bad input. */
  next(q: ByteQueue): CapturePacket | null {
    for (;;) {
      if (!q.peek(MIN_BLOCK_LEN)) return null;
      const at = q.consumed;
      const b = q.buf;
      const o = q.off;
      // The SHB type reads the same in both byte orders, which is how a reader finds the order.
      const isShb = b.readUInt32LE(o) === BlockType.SectionHeader;
      if (isShb) {
        const bom = b.readUInt32LE(o + 8);
        if (bom === PCAPNG_BOM) this.#le = true;
        else if (b.readUInt32BE(o + 8) === PCAPNG_BOM) this.#le = false;
        else if (this.#sectionBase < 0)
          throw new PcapError("COLO_ERR_PCAP_BAD_MAGIC", undefined, { offset: at });
        else throw badRecord(at, "section header without a byte-order magic");
      } else if (this.#sectionBase < 0) {
        throw new PcapError("COLO_ERR_PCAP_BAD_MAGIC", undefined, { offset: at });
      }
      const le = this.#le;
      const type = le ? b.readUInt32LE(o) : b.readUInt32BE(o);
      const len = le ? b.readUInt32LE(o + 4) : b.readUInt32BE(o + 4);
      if (len < (isShb ? MIN_SHB_LEN : MIN_BLOCK_LEN) || len % 4 !== 0 || len > MAX_BLOCK_LEN) {
        throw badRecord(at, `impossible block length ${len}`, { blockType: type, blockLen: len });
      }
      const block = q.take(len);
      if (block === null) return null;
      const trailer = le ? block.readUInt32LE(len - 4) : block.readUInt32BE(len - 4);
      if (trailer !== len) {
        throw badRecord(at, `trailing length ${trailer} differs from leading length ${len}`, {
          blockType: type,
          blockLen: len,
        });
      }
      let pkt: CapturePacket | null = null;
      switch (type) {
        case BlockType.SectionHeader:
          this.#section(block, at);
          break;
        case BlockType.InterfaceDescription:
          this.#interface(block, at);
          break;
        case BlockType.EnhancedPacket:
          pkt = this.#packet(block, at, true);
          break;
        case BlockType.Packet:
          pkt = this.#packet(block, at, false);
          break;
        case BlockType.SimplePacket:
          pkt = this.#simplePacket(block, at);
          break;
        default:
          // Name resolution, statistics, secrets, custom blocks...: nothing colo-proxy needs.
          break;
      }
      if (pkt !== null) return pkt;
    }
  }

  #u16(b: Buffer, o: number): number {
    return this.#le ? b.readUInt16LE(o) : b.readUInt16BE(o);
  }
  #u32(b: Buffer, o: number): number {
    return this.#le ? b.readUInt32LE(o) : b.readUInt32BE(o);
  }

  #section(block: Buffer, at: number): void {
    const major = this.#u16(block, 12);
    const minor = this.#u16(block, 14);
    if (major !== 1) {
      throw new PcapError("COLO_ERR_PCAP_VERSION", `unsupported pcapng version ${major}.${minor}`, {
        offset: at,
        major,
        minor,
      });
    }
    this.#forEachOption(block, 24, at, () => {});
    this.#sectionBase = this.interfaces.length;
    this.sections++;
  }

  #interface(block: Buffer, at: number): void {
    if (block.length < 20) throw badRecord(at, "interface description block too short");
    const iface: CaptureInterface = {
      linkType: this.#u16(block, 8),
      snapLen: this.#u32(block, 12),
      tsMul: 1000n,
      tsDiv: 1n,
      tsOffsetSec: 0n,
    };
    this.#forEachOption(block, 16, at, (code, vo, vl) => {
      switch (code) {
        case OptionCode.IfName:
          iface.name = block.toString("utf8", vo, vo + vl);
          break;
        case OptionCode.IfDescription:
          iface.description = block.toString("utf8", vo, vo + vl);
          break;
        case OptionCode.IfTsresol: {
          if (vl !== 1) throw badRecord(at, "if_tsresol option is not one byte long");
          const v = block[vo]!;
          if (v & 0x80) {
            iface.tsMul = 1_000_000_000n;
            iface.tsDiv = 1n << BigInt(v & 0x7f);
          } else if (v <= 9) {
            iface.tsMul = 10n ** BigInt(9 - v);
            iface.tsDiv = 1n;
          } else {
            iface.tsMul = 1n;
            iface.tsDiv = 10n ** BigInt(v - 9);
          }
          break;
        }
        case OptionCode.IfTsoffset:
          if (vl !== 8) throw badRecord(at, "if_tsoffset option is not eight bytes long");
          iface.tsOffsetSec = this.#le ? block.readBigInt64LE(vo) : block.readBigInt64BE(vo);
          break;
      }
    });
    this.interfaces.push(iface);
  }

  #iface(localId: number, at: number): [number, CaptureInterface] {
    const id = this.#sectionBase + localId;
    const iface = id < this.interfaces.length ? this.interfaces[id] : undefined;
    if (iface === undefined) {
      throw badRecord(at, `packet on undeclared interface ${localId}`, { interfaceId: localId });
    }
    if (iface.linkType !== LINKTYPE_ETHERNET) {
      throw new PcapError(
        "COLO_ERR_PCAP_LINKTYPE",
        `packet at offset ${at} is on interface ${localId} with link type ${iface.linkType} (only Ethernet, 1)`,
        { offset: at, linkType: iface.linkType, interfaceId: localId },
      );
    }
    return [id, iface];
  }

  /** Enhanced Packet Block, or the obsolete Packet Block (16-bit interface id + drop count). */
  #packet(block: Buffer, at: number, enhanced: boolean): CapturePacket {
    if (block.length < 32) throw badRecord(at, "packet block too short");
    const [id, iface] = this.#iface(enhanced ? this.#u32(block, 8) : this.#u16(block, 8), at);
    const hi = this.#u32(block, 12);
    const lo = this.#u32(block, 16);
    const capLen = this.#u32(block, 20);
    const origLen = this.#u32(block, 24);
    if (capLen > block.length - 32 || capLen > MAX_PACKET_LEN) {
      throw badRecord(at, `captured length ${capLen} does not fit the block`, { capLen });
    }
    // One bigint conversion when hi·2^32 + lo is exact as a double (until year 2255 in µs).
    const units = hi < 0x200000 ? BigInt(hi * 4294967296 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
    let timestampNs = units * iface.tsMul;
    if (iface.tsDiv !== 1n) timestampNs /= iface.tsDiv;
    if (iface.tsOffsetSec !== 0n) timestampNs += iface.tsOffsetSec * 1_000_000_000n;
    this.#lastTs = timestampNs;
    let comment: string | undefined;
    this.#forEachOption(block, 28 + ((capLen + 3) & ~3), at, (code, vo, vl) => {
      if (code === OptionCode.Comment) {
        const c = block.toString("utf8", vo, vo + vl);
        comment = comment === undefined ? c : `${comment}\n${c}`;
      }
    });
    const pkt: CapturePacket = {
      timestampNs,
      frame: block.subarray(28, 28 + capLen),
      origLen,
      interfaceId: id,
      linkType: iface.linkType,
    };
    if (comment !== undefined) pkt.comment = comment;
    return pkt;
  }

  #simplePacket(block: Buffer, at: number): CapturePacket {
    if (block.length < 16) throw badRecord(at, "simple packet block too short");
    const [id, iface] = this.#iface(0, at);
    const origLen = this.#u32(block, 8);
    // A Simple Packet Block's captured length is implied: the smallest of the original length,
    // the interface's snap length and the room in the block.
    let capLen = Math.min(origLen, block.length - 16);
    if (iface.snapLen > 0) capLen = Math.min(capLen, iface.snapLen);
    if (capLen > MAX_PACKET_LEN) throw badRecord(at, `captured length ${capLen} too large`, { capLen });
    return {
      timestampNs: this.#lastTs,
      frame: block.subarray(12, 12 + capLen),
      origLen,
      interfaceId: id,
      linkType: iface.linkType,
    };
  }

  /** Walks the options from `start` to the block's trailer, calling `fn(code, valueOffset, valueLen)`. */
  #forEachOption(
    block: Buffer,
    start: number,
    at: number,
    fn: (code: number, vo: number, vl: number) => void,
  ): void {
    const end = block.length - 4;
    let o = start;
    while (o + 4 <= end) {
      const code = this.#u16(block, o);
      const vl = this.#u16(block, o + 2);
      if (code === OptionCode.EndOfOpt) return;
      const vo = o + 4;
      if (vo + vl > end) throw badRecord(at, `option ${code} overruns the block`, { option: code });
      fn(code, vo, vl);
      o = vo + ((vl + 3) & ~3);
    }
    if (o > end) throw badRecord(at, "options overrun the block");
  }
}
