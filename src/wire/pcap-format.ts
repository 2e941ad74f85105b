/**
 * @module Capture-file constants (classic pcap and pcapng) and the packet record that every
 * capture reader yields and every capture writer accepts.
 */

/** Classic pcap magic numbers, as read in the file's own byte order. */
export const PCAP_MAGIC_US = 0xa1b2c3d4;
export const PCAP_MAGIC_NS = 0xa1b23c4d;
/** Classic pcap global header and per-record header sizes. */
export const PCAP_FILE_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;

/** pcapng block types we interpret; every other block is skipped. */
export const enum BlockType {
  InterfaceDescription = 0x00000001,
  /** Obsolete Packet Block: still written by some old tools. */
  Packet = 0x00000002,
  SimplePacket = 0x00000003,
  EnhancedPacket = 0x00000006,
  SectionHeader = 0x0a0d0d0a,
}
/** Byte-order magic inside a Section Header Block. */
export const PCAPNG_BOM = 0x1a2b3c4d;

/** pcapng option codes we use. */
export const enum OptionCode {
  EndOfOpt = 0,
  Comment = 1,
  /** IDB if_name. */
  IfName = 2,
  /** IDB if_description. */
  IfDescription = 3,
  /** IDB if_tsresol: one byte, 10^-n (or 2^-n when the top bit is set) seconds per unit. */
  IfTsresol = 9,
  /** IDB if_tsoffset: signed 64-bit seconds added to every timestamp. */
  IfTsoffset = 14,
  /** SHB shb_userappl. */
  ShbUserAppl = 4,
}

/** LINKTYPE_ETHERNET: the only link type colo-proxy reads or writes. */
export const LINKTYPE_ETHERNET = 1;

/**
 * Largest packet record we accept (libpcap's MAXIMUM_SNAPLEN, also Wireshark's limit for
 * Ethernet). Bigger lengths are garbage, and refusing them keeps a reader's memory bounded.
 */
export const MAX_PACKET_LEN = 262_144;
/** Largest pcapng block we accept: a maximal packet plus generous room for options. */
export const MAX_BLOCK_LEN = 16 * 1024 * 1024;

/** One captured frame. */
export interface CapturePacket {
  /** Capture time in nanoseconds since the Unix epoch. */
  timestampNs: bigint;
  /** The captured bytes (possibly fewer than origLen when the capture was snapped). */
  frame: Buffer;
  /** Length of the frame on the wire. */
  origLen: number;
  /**
   * Interface the frame was captured on. Classic pcap: always 0. pcapng: interfaces are
   * numbered across the whole file in the order their IDBs appear, so the second section's
   * first interface follows the first section's last one.
   */
  interfaceId: number;
  /** Link type of that interface (always LINKTYPE_ETHERNET once a reader has accepted it). */
  linkType: number;
  /** pcapng opt_comment of the packet, when present (joined with "\n" if several). */
  comment?: string | undefined;
}

/** Description of one capture interface (pcapng IDB; classic pcap has exactly one). */
export interface CaptureInterface {
  linkType: number;
  snapLen: number;
  name?: string | undefined;
  description?: string | undefined;
  /** Nanoseconds per timestamp unit as a rational: ns = units * tsMul / tsDiv. */
  tsMul: bigint;
  tsDiv: bigint;
  /** if_tsoffset in seconds. */
  tsOffsetSec: bigint;
}

export type CaptureFormat = "pcap" | "pcapng";

/** A packet handed to a capture writer. */
export interface WritablePacket {
  /** Capture time in nanoseconds since the Unix epoch (must be ≥ 0). */
  timestampNs: bigint;
  frame: Uint8Array;
  /** Length on the wire; defaults to frame.length. */
  origLen?: number | undefined;
  /** pcapng only: index of an interface given to the writer (default 0). */
  interfaceId?: number | undefined;
  /** pcapng only: written as the packet's opt_comment. */
  comment?: string | undefined;
}
