/**
 * @module Miscompare explanations: first differing byte and short hexdumps. Runs only when a
 * miscompare is found, never on the matching path.
 */

/** Bytes shown before the first difference, and in total. */
const BEFORE = 8;
const WINDOW = 32;

/** Index (0-based, relative to the starts) of the first differing byte in the first `n` bytes; -1 if equal. */
export function firstDifference(
  a: Uint8Array,
  aStart: number,
  b: Uint8Array,
  bStart: number,
  n: number,
): number {
  for (let i = 0; i < n; i++) if (a[aStart + i] !== b[bStart + i]) return i;
  return -1;
}

/** `de ad be ef` of buf[start, end). */
export function hex(buf: Uint8Array, start: number, end: number): string {
  const parts: string[] = [];
  for (let i = Math.max(0, start); i < Math.min(end, buf.length); i++) {
    parts.push((buf[i] ?? 0).toString(16).padStart(2, "0"));
  }
  return parts.join(" ");
}

export interface DumpWindow {
  /** Offset (relative to the compared region) of the first byte shown. */
  from: number;
  primaryHex: string;
  secondaryHex: string;
}

/**
 * Hexdumps of both sides around relative offset `diff`: up to 8 bytes before it and up to 32 in
 * all. `pBase`/`sBase` are the frame offsets of relative offset 0 on each side and `pLen`/`sLen`
 * the region lengths (the dump never reads past them).
 */
export function dumpAround(
  p: Uint8Array,
  pBase: number,
  pLen: number,
  s: Uint8Array,
  sBase: number,
  sLen: number,
  diff: number,
): DumpWindow {
  const from = Math.max(0, diff - BEFORE);
  const to = from + WINDOW;
  return {
    from,
    primaryHex: hex(p, pBase + from, pBase + Math.min(to, pLen)),
    secondaryHex: hex(s, sBase + from, sBase + Math.min(to, sLen)),
  };
}
