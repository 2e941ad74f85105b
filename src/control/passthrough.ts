/**
 * @module Passthrough rules: flows that are released without comparison (e.g. RDP, whose
 * output legitimately differs between PVM and SVM). The spec syntax follows the operator's
 * mental model: `tcp 10.0.0.0/24:3389`, `udp [2001:db8::/32]:53`, `tcp :22`, `icmp 10.0.0.5`.
 *
 * A rule matches a flow when either endpoint matches (address within the prefix and, when a
 * port is given, that port). Parsing is strict and reports COLO_ERR_CTL_BAD_RULE; matching is a
 * pure function over address bytes so the compare engine can call it without allocation.
 */
import { isIPv4, isIPv6 } from "node:net";
import { ColoError } from "../errors.ts";

export const PASSTHROUGH_PROTOCOLS = ["tcp", "udp", "icmp", "any"] as const;
export type PassthroughProtocol = (typeof PASSTHROUGH_PROTOCOLS)[number];

/** A rule in canonical form (what `query-passthrough` returns and `passthrough-add` takes). */
export interface PassthroughRule {
  protocol: PassthroughProtocol;
  /** Network in CIDR form (`10.0.0.0/24`, `2001:db8::/32`), or null for any address. */
  address: string | null;
  /** Port (TCP/UDP only), or null for any port. */
  port: number | null;
}

function bad(msg: string): ColoError {
  return new ColoError("COLO_ERR_CTL_BAD_RULE", msg);
}

function parsePort(s: string): number {
  if (!/^\d{1,5}$/.test(s)) throw bad(`invalid port '${s}'`);
  const n = Number(s);
  if (n < 1 || n > 65535) throw bad(`port ${n} out of range 1-65535`);
  return n;
}

function ipv4Bytes(a: string): Uint8Array {
  return Uint8Array.from(a.split(".").map(Number));
}

function ipv6Bytes(a: string): Uint8Array {
  let s = a;
  const out = new Uint8Array(16);
  // Embedded IPv4 tail (::ffff:1.2.3.4) -> two hextets.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4 !== null) {
    const b = ipv4Bytes(v4[1] as string);
    s = `${s.slice(0, v4.index)}${(((b[0] as number) << 8) | (b[1] as number)).toString(16)}:${(((b[2] as number) << 8) | (b[3] as number)).toString(16)}`;
  }
  const [head = "", tail] = s.split("::");
  const h = head === "" ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups =
    tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill("0"), ...t];
  groups.forEach((g, i) => {
    const v = Number.parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  return out;
}

function bytesToString(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((b[i] as number) << 8) | (b[i + 1] as number)).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

function parseNetwork(s: string): string {
  const slash = s.indexOf("/");
  const addr = slash === -1 ? s : s.slice(0, slash);
  const v4 = isIPv4(addr);
  if (!v4 && !isIPv6(addr)) throw bad(`invalid address '${addr}'`);
  const max = v4 ? 32 : 128;
  let len = max;
  if (slash !== -1) {
    const l = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(l) || Number(l) > max) throw bad(`invalid prefix length '/${l}' (0-${max})`);
    len = Number(l);
  }
  const bytes = v4 ? ipv4Bytes(addr) : ipv6Bytes(addr);
  for (let bit = len; bit < max; bit++) {
    if (((bytes[bit >> 3] as number) >> (7 - (bit & 7))) & 1) {
      throw bad(`'${s}' has host bits set beyond /${len}`);
    }
  }
  return `${bytesToString(bytes)}/${len}`;
}

/**
 * Parses `PROTO SPEC` pieces: SPEC is `*`, `:PORT`, `*:PORT`, `ADDR[/LEN]`, `ADDR[/LEN]:PORT`,
 * `[V6ADDR[/LEN]]:PORT` or a bare IPv6 `V6ADDR[/LEN]`. Throws ColoError COLO_ERR_CTL_BAD_RULE.
 */
export function parsePassthroughRule(protocol: string, spec: string): PassthroughRule {
  const proto = protocol.toLowerCase();
  if (!(PASSTHROUGH_PROTOCOLS as readonly string[]).includes(proto)) {
    throw bad(`unknown protocol '${protocol}' (expected ${PASSTHROUGH_PROTOCOLS.join(", ")})`);
  }
  let addrPart: string;
  let portPart: string | null = null;
  if (spec.startsWith("[")) {
    const close = spec.indexOf("]");
    if (close === -1) throw bad(`missing ']' in '${spec}'`);
    addrPart = spec.slice(1, close);
    const rest = spec.slice(close + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) throw bad(`unexpected '${rest}' after ']'`);
      portPart = rest.slice(1);
    }
  } else if ((spec.match(/:/g)?.length ?? 0) > 1) {
    addrPart = spec; // bare IPv6, no port
  } else {
    const colon = spec.indexOf(":");
    addrPart = colon === -1 ? spec : spec.slice(0, colon);
    if (colon !== -1) portPart = spec.slice(colon + 1);
  }
  const address = addrPart === "" || addrPart === "*" ? null : parseNetwork(addrPart);
  const port = portPart === null || portPart === "*" ? null : parsePort(portPart);
  if (port !== null && proto !== "tcp" && proto !== "udp")
    throw bad(`a port needs protocol tcp or udp, not ${proto}`);
  return { protocol: proto as PassthroughProtocol, address, port };
}

/** Validates and canonicalises a rule given as structured fields (control-socket arguments). */
export function normalizeRule(rule: {
  protocol: string;
  address?: string | null | undefined;
  port?: number | null | undefined;
}): PassthroughRule {
  const addr = rule.address ?? "*";
  const spec = addr.includes(":") ? `[${addr}]` : addr;
  return parsePassthroughRule(rule.protocol, rule.port == null ? spec : `${spec}:${rule.port}`);
}

/** `tcp 10.0.0.0/24:3389` — the inverse of parsePassthroughRule (spec part joined by a space). */
export function formatRule(r: PassthroughRule): string {
  const addr =
    r.address === null ? "*" : r.address.includes(":") && r.port !== null ? `[${r.address}]` : r.address;
  return `${r.protocol} ${r.port === null ? addr : `${addr}:${r.port}`}`;
}

export function sameRule(a: PassthroughRule, b: PassthroughRule): boolean {
  return a.protocol === b.protocol && a.address === b.address && a.port === b.port;
}

/** A rule prepared for matching on the hot path. */
export interface CompiledRule {
  rule: PassthroughRule;
  /** IP protocol numbers the rule matches; empty for "any". */
  protos: number[];
  family: 0 | 4 | 6;
  net: Uint8Array;
  prefix: number;
}

export function compileRule(rule: PassthroughRule): CompiledRule {
  const protos =
    rule.protocol === "tcp" ? [6] : rule.protocol === "udp" ? [17] : rule.protocol === "icmp" ? [1, 58] : [];
  if (rule.address === null) return { rule, protos, family: 0, net: new Uint8Array(0), prefix: 0 };
  const [a = "", l = "0"] = rule.address.split("/");
  const v4 = isIPv4(a);
  return { rule, protos, family: v4 ? 4 : 6, net: v4 ? ipv4Bytes(a) : ipv6Bytes(a), prefix: Number(l) };
}

function addrMatches(c: CompiledRule, family: number, buf: Uint8Array, off: number): boolean {
  if (c.family === 0) return true;
  if (c.family !== family) return false;
  const full = c.prefix >> 3;
  for (let i = 0; i < full; i++) if (buf[off + i] !== c.net[i]) return false;
  const rem = c.prefix & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (((buf[off + full] as number) ^ (c.net[full] as number)) & mask) === 0;
}

/**
 * True when the rule matches a flow: `proto` the IP protocol number, `family` 4 or 6, addresses
 * read from `buf` at srcOff/dstOff (4 or 16 bytes), ports 0 for portless protocols.
 */
export function ruleMatches(
  c: CompiledRule,
  proto: number,
  family: number,
  buf: Uint8Array,
  srcOff: number,
  srcPort: number,
  dstOff: number,
  dstPort: number,
): boolean {
  if (c.protos.length > 0 && !c.protos.includes(proto)) return false;
  const port = c.rule.port;
  const srcOk = addrMatches(c, family, buf, srcOff) && (port === null || port === srcPort);
  return srcOk || (addrMatches(c, family, buf, dstOff) && (port === null || port === dstPort));
}
