/**
 * @module Hexdumps of miscompare windows for terminals and logs: the primary's and the
 * secondary's rows interleaved, with a marker line under the bytes that differ, so the
 * difference is visible without colour (and highlighted when colour is on).
 */
import type { HexWindow } from "./target.ts";

/** Extracts a window of `radius` bytes either side of `at` from `buf` (whose byte 0 is at `base`). */
export function hexWindow(buf: Uint8Array, base: number, at: number, radius = 32): HexWindow {
  const rel = Math.max(0, at - base);
  const start = Math.max(0, rel - radius);
  const end = Math.min(buf.length, rel + radius);
  return {
    offset: base + start,
    hex: Buffer.from(buf.buffer, buf.byteOffset + start, Math.max(0, end - start)).toString("hex"),
  };
}

function bytesOf(w: HexWindow): string[] {
  // Tolerate the compare engine's spaced form (`de ad be ef`) as well as plain hex.
  return w.hex.replace(/\s+/g, "").match(/../g) ?? [];
}

const RED = "\x1b[31;1m";
const RESET = "\x1b[0m";

/**
 * Lines comparing two windows 16 bytes per row: `P 00004128  6f 76 …  |ov 2026|`, the
 * matching `S` row, and a `^^` marker row where they differ. Offsets are stream offsets
 * (decimal, as in the explanation text).
 */
export function hexdumpPair(
  primary: HexWindow | undefined,
  secondary: HexWindow | undefined,
  color = false,
): string[] {
  const p = primary === undefined ? [] : bytesOf(primary);
  const s = secondary === undefined ? [] : bytesOf(secondary);
  const start = Math.min(
    primary?.offset ?? Number.POSITIVE_INFINITY,
    secondary?.offset ?? Number.POSITIVE_INFINITY,
  );
  if (start === Number.POSITIVE_INFINITY) return [];
  const end = Math.max(
    primary === undefined ? 0 : primary.offset + p.length,
    secondary === undefined ? 0 : secondary.offset + s.length,
  );
  const width = Math.max(8, String(end).length);
  const at = (w: HexWindow | undefined, bytes: string[], off: number): string | undefined =>
    w === undefined ? undefined : bytes[off - w.offset];
  const lines: string[] = [];
  for (let row = start; row < end; row += 16) {
    const rows: [string, HexWindow | undefined, string[], HexWindow | undefined, string[]][] = [
      ["P", primary, p, secondary, s],
      ["S", secondary, s, primary, p],
    ];
    let marks = "";
    let anyDiff = false;
    for (const [tag, w, bytes, ow, obytes] of rows) {
      if (w === undefined) continue;
      let hex = "";
      let ascii = "";
      let m = "";
      for (let off = row; off < row + 16; off++) {
        const b = at(w, bytes, off);
        const o = at(ow, obytes, off);
        const differs = b !== o && (b !== undefined || o !== undefined);
        if (b === undefined) {
          hex += "   ";
          ascii += " ";
        } else {
          hex += `${differs && color ? `${RED}${b}${RESET}` : b} `;
          const c = Number.parseInt(b, 16);
          ascii += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : ".";
        }
        m += differs ? "^^ " : "   ";
        if (differs) anyDiff = true;
      }
      lines.push(`${tag} ${String(row).padStart(width, "0")}  ${hex} |${ascii}|`);
      marks = m;
    }
    if (anyDiff && primary !== undefined && secondary !== undefined) {
      lines.push(`  ${" ".repeat(width)}  ${marks.trimEnd()}`);
    }
  }
  return lines;
}
