/**
 * @module IPv4/IPv6/MAC address text <-> bytes. Used by the builders and by human-readable output
 * (formatFlowKey, tools); never on the per-packet hot path.
 */

/** Parses a dotted-quad IPv4 address into 4 bytes; throws RangeError on bad text (tools/tests only). */
export function parseIpv4(text: string): Uint8Array {
  const parts = text.split(".");
  if (parts.length !== 4) throw new RangeError(`invalid IPv4 address: ${text}`);
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new RangeError(`invalid IPv4 address: ${text}`);
    out[i] = Number(p);
  }
  return out;
}

/** Parses an IPv6 address (RFC 4291 text forms, incl. `::` and an embedded dotted quad) into 16 bytes. */
export function parseIpv6(text: string): Uint8Array {
  const bad = () => new RangeError(`invalid IPv6 address: ${text}`);
  let s = text;
  const pct = s.indexOf("%");
  if (pct >= 0) s = s.slice(0, pct); // zone id is not part of the address bytes
  const words: number[] = [];
  const parseSide = (side: string, allowV4: boolean): number[] => {
    if (side === "") return [];
    const out: number[] = [];
    const groups = side.split(":");
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      if (allowV4 && i === groups.length - 1 && g.includes(".")) {
        const v4 = parseIpv4(g);
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw bad();
        out.push(Number.parseInt(g, 16));
      }
    }
    return out;
  };
  const dbl = s.indexOf("::");
  if (dbl >= 0) {
    if (s.indexOf("::", dbl + 1) >= 0) throw bad();
    const head = parseSide(s.slice(0, dbl), false);
    const tail = parseSide(s.slice(dbl + 2), true);
    if (head.length + tail.length > 7) throw bad();
    words.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  } else {
    words.push(...parseSide(s, true));
    if (words.length !== 8) throw bad();
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = words[i]! >> 8;
    out[2 * i + 1] = words[i]! & 0xff;
  }
  return out;
}

/** Parses either family: text containing ':' is IPv6. */
export function parseIp(text: string): Uint8Array {
  return text.includes(":") ? parseIpv6(text) : parseIpv4(text);
}

/** Parses `aa:bb:cc:dd:ee:ff` (or `-` separated) into 6 bytes. */
export function parseMac(text: string): Uint8Array {
  const parts = text.split(/[:-]/);
  if (parts.length !== 6) throw new RangeError(`invalid MAC address: ${text}`);
  const out = new Uint8Array(6);
  for (let i = 0; i < 6; i++) {
    const p = parts[i]!;
    if (!/^[0-9a-fA-F]{1,2}$/.test(p)) throw new RangeError(`invalid MAC address: ${text}`);
    out[i] = Number.parseInt(p, 16);
  }
  return out;
}

export function formatIpv4(b: Uint8Array, off = 0): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/** RFC 5952 canonical text: lower case, leading zeros dropped, longest run (>= 2) of zero words as `::`. */
export function formatIpv6(b: Uint8Array, off = 0): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push(((b[off + 2 * i] ?? 0) << 8) | (b[off + 2 * i + 1] ?? 0));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  // IPv4-mapped addresses keep their dotted-quad tail (RFC 5952 section 5).
  if (bestStart === 0 && bestLen === 5 && w[5] === 0xffff) return `::ffff:${formatIpv4(b, off + 12)}`;
  if (bestStart < 0) return w.map((x) => x.toString(16)).join(":");
  const head = w.slice(0, bestStart).map((x) => x.toString(16));
  const tail = w.slice(bestStart + bestLen).map((x) => x.toString(16));
  return `${head.join(":")}::${tail.join(":")}`;
}

export function formatMac(b: Uint8Array, off = 0): string {
  const parts: string[] = [];
  for (let i = 0; i < 6; i++) parts.push((b[off + i] ?? 0).toString(16).padStart(2, "0"));
  return parts.join(":");
}
