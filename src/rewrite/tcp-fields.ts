/**
 * @module In-place rewriting of TCP sequence-space fields (seq, ack, SACK blocks, timestamps)
 * with RFC 1624 incremental checksum updates. Pure functions over a frame buffer and offsets
 * supplied by parseFrame(); nothing is allocated and no other byte changes.
 */
import { checksumUpdate32 } from "../packet/checksum.ts";

function rd32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

function wr32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

function swap16(v: number): number {
  return ((v & 0xff) << 8) | (v >>> 8);
}

/**
 * Adds `delta` (mod 2^32) to the 32-bit big-endian field at `field` and patches the TCP checksum
 * at `tcp + 16`. Fields at an odd distance from the TCP header (SACK blocks after a lone NOP)
 * straddle checksum words; the one's-complement sum commutes with byte swapping (RFC 1071 §2B),
 * so the aligned update is applied to the byte-swapped checksum.
 */
export function addToField(b: Uint8Array, tcp: number, field: number, delta: number): void {
  const old = rd32(b, field);
  const nv = (old + delta) >>> 0;
  wr32(b, field, nv);
  const c = tcp + 16;
  const hc = (b[c]! << 8) | b[c + 1]!;
  const upd =
    ((field - tcp) & 1) === 0 ? checksumUpdate32(hc, old, nv) : swap16(checksumUpdate32(swap16(hc), old, nv));
  b[c] = upd >>> 8;
  b[c + 1] = upd;
}

/** Reads the 32-bit big-endian value at `o`. */
export const read32 = rd32;

/** Offset of the timestamp option's TSval within the TCP header, or -1 (malformed options stop the walk). */
export function findTimestamp(b: Uint8Array, tcp: number, hdrLen: number): number {
  const end = tcp + hdrLen;
  let i = tcp + 20;
  while (i < end) {
    const kind = b[i]!;
    if (kind === 0) return -1;
    if (kind === 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) return -1;
    const len = b[i + 1]!;
    if (len < 2 || i + len > end) return -1;
    if (kind === 8 && len === 10) return i + 2;
    i += len;
  }
  return -1;
}

/**
 * Adds `seqDelta` to every SACK block edge and `tsecrDelta` to TSecr (when `tsecrDelta` is not
 * 0) in the options of the TCP header at `tcp`. Returns how many SACK blocks were shifted.
 * Options are walked defensively: a malformed length stops the walk, leaving later bytes as-is.
 */
export function shiftClientOptions(
  b: Uint8Array,
  tcp: number,
  hdrLen: number,
  seqDelta: number,
  tsecrDelta: number,
): number {
  const end = tcp + hdrLen;
  let i = tcp + 20;
  let blocks = 0;
  while (i < end) {
    const kind = b[i]!;
    if (kind === 0) break;
    if (kind === 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) break;
    const len = b[i + 1]!;
    if (len < 2 || i + len > end) break;
    if (kind === 5 && seqDelta !== 0) {
      const n = (len - 2) >>> 3;
      for (let k = 0; k < n; k++) {
        addToField(b, tcp, i + 2 + 8 * k, seqDelta);
        addToField(b, tcp, i + 6 + 8 * k, seqDelta);
      }
      blocks += n;
    } else if (kind === 8 && len === 10 && tsecrDelta !== 0) {
      addToField(b, tcp, i + 6, tsecrDelta);
    }
    i += len;
  }
  return blocks;
}
