/**
 * @module Internet checksum (RFC 1071), IPv4/IPv6 pseudo-header sums, and RFC 1624 incremental
 * updates for rewriting 16- and 32-bit fields without re-reading the packet.
 *
 * Sums are kept as plain (unfolded) numbers: adding 16-bit words to a double is exact up to
 * 2^53, so a 64 KiB datagram (at most 2^15 words of 0xffff) never needs a fold inside the loop.
 * `fold()` reduces to 16 bits once at the end.
 */

/**
 * Adds the bytes `buf[start, end)` as big-endian 16-bit words to `initial` and returns the
 * unfolded sum. An odd trailing byte is padded with a zero on the right (RFC 1071).
 * Because words are aligned to `start`, chain calls only at even offsets from the first start.
 */
export function sum16(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  const even = end - ((end - start) & 1);
  // Unrolled by 4 words to cut loop overhead on large payloads.
  const end8 = start + ((even - start) & ~7);
  for (; i < end8; i += 8) {
    sum +=
      ((buf[i]! << 8) | buf[i + 1]!) +
      ((buf[i + 2]! << 8) | buf[i + 3]!) +
      ((buf[i + 4]! << 8) | buf[i + 5]!) +
      ((buf[i + 6]! << 8) | buf[i + 7]!);
  }
  for (; i < even; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (even < end) sum += buf[even]! << 8;
  return sum;
}

/** Folds a non-negative sum (any size up to 2^53) to 16 bits with end-around carry. */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/** The Internet checksum of `buf[start, end)` plus `initial` (e.g. a pseudo-header sum): ~fold(sum). */
export function internetChecksum(buf: Uint8Array, start: number, end: number, initial = 0): number {
  return ~fold(sum16(buf, start, end, initial)) & 0xffff;
}

/**
 * True when the region (which includes its checksum field) sums to 0xffff, i.e. the checksum
 * verifies. `initial` carries the pseudo-header sum for TCP/UDP/ICMPv6.
 */
export function verifyChecksum(buf: Uint8Array, start: number, end: number, initial = 0): boolean {
  return fold(sum16(buf, start, end, initial)) === 0xffff;
}

/**
 * IPv4 pseudo-header sum (RFC 793/768): source and destination addresses read from `buf` at
 * `srcOff`/`dstOff` (4 bytes each), zero+protocol, and the L4 length.
 */
export function ipv4PseudoSum(
  buf: Uint8Array,
  srcOff: number,
  dstOff: number,
  proto: number,
  l4Len: number,
): number {
  return (
    ((buf[srcOff]! << 8) | buf[srcOff + 1]!) +
    ((buf[srcOff + 2]! << 8) | buf[srcOff + 3]!) +
    ((buf[dstOff]! << 8) | buf[dstOff + 1]!) +
    ((buf[dstOff + 2]! << 8) | buf[dstOff + 3]!) +
    proto +
    l4Len
  );
}

/**
 * IPv6 pseudo-header sum (RFC 8200 section 8.1): 16-byte addresses at `srcOff`/`dstOff`, the
 * upper-layer length as 32 bits, and the next-header value. The destination must be the final
 * one (the last address of a routing header, if any); callers pass its offset.
 */
export function ipv6PseudoSum(
  buf: Uint8Array,
  srcOff: number,
  dstOff: number,
  nextHeader: number,
  l4Len: number,
): number {
  return (
    sum16(buf, dstOff, dstOff + 16, sum16(buf, srcOff, srcOff + 16)) +
    nextHeader +
    (l4Len >>> 16) +
    (l4Len & 0xffff)
  );
}

/**
 * RFC 1624 eqn. 3: the checksum `hc` after a 16-bit word covered by it changes from `oldWord`
 * to `newWord`: HC' = ~(~HC + ~m + m'). Equal to a full recomputation (property-tested),
 * including the 0x0000/0xffff corner that RFC 1141's eqn. 2 gets wrong. The one exception is
 * when every covered word becomes zero (0x0000 here, 0xffff recomputed); no IP, TCP, UDP or
 * ICMP header can be all zero (version, protocol and length are in the sum).
 */
export function checksumUpdate16(hc: number, oldWord: number, newWord: number, odd = false): number {
  if (odd) {
    // A field at an odd offset from the checksummed region's start contributes its bytes
    // swapped; ones'-complement sums commute with byte swapping (RFC 1071 2(B)).
    oldWord = swap16(oldWord);
    newWord = swap16(newWord);
  }
  const s = (~hc & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  return ~fold(s) & 0xffff;
}

/**
 * RFC 1624 update for a 32-bit field (e.g. TCP seq/ack, an IPv4 address). Pass `odd` when the
 * field sits at an odd offset from the start of the checksummed region (e.g. a SACK block after
 * a single NOP).
 */
export function checksumUpdate32(hc: number, oldValue: number, newValue: number, odd = false): number {
  if (odd) {
    oldValue = swapHalves(oldValue);
    newValue = swapHalves(newValue);
  }
  const s =
    (~hc & 0xffff) +
    (~(oldValue >>> 16) & 0xffff) +
    (~oldValue & 0xffff) +
    ((newValue >>> 16) & 0xffff) +
    (newValue & 0xffff);
  return ~fold(s) & 0xffff;
}

function swap16(v: number): number {
  return ((v & 0xff) << 8) | ((v >> 8) & 0xff);
}

/** Swaps the bytes inside each 16-bit half of a 32-bit value. */
function swapHalves(v: number): number {
  return (((v & 0x00ff00ff) << 8) | ((v >>> 8) & 0x00ff00ff)) >>> 0;
}
