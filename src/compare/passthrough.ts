/**
 * @module Passthrough rules: flows whose primary traffic is released without comparison (and
 * whose secondary copies are discarded), e.g. `tcp 10.0.0.0/24:3389`, `udp [fd00::/64]:53`,
 * `10.0.0.5`, `vlan 20 icmp`, `tcp 10.0.0.5 192.168.1.0/24:1000-2000`.
 *
 * Grammar (whitespace-separated tokens, any order, each kind at most once, endpoints at most twice):
 *   vlan <id>                 outer (or only) VLAN id
 *   <protocol>                tcp udp icmp icmpv6 sctp udplite dccp gre esp ah arp, or `proto <0-255>`
 *   <endpoint>                address[/prefix][:port[-port]], [ipv6[/prefix]][:port[-port]],
 *                             bare IPv6 address[/prefix], `*:port[-port]`, `*` (any)
 * With one endpoint, a flow matches when either of its ends matches; with two, one end must
 * match each. Ports only match protocols that have ports. Rules are evaluated once per
 * connection (at creation, and again for every connection when the rule set changes).
 */
import { type FlowTuple, hasPorts } from "../conntrack/flow.ts";
import { ColoError } from "../errors.ts";
import { formatIpv6 } from "../packet/addr.ts";

export interface Endpoint {
  /** 0 = any address, 4 or 6. */
  family: number;
  /** Network address (host bits cleared). */
  addr: Uint8Array;
  prefix: number;
  /** -1 = any port. */
  portLo: number;
  portHi: number;
}

export interface PassthroughRule {
  /** -1 = any. 0x0806 selects ARP. */
  proto: number;
  arp: boolean;
  vlan: number;
  endpoints: Endpoint[];
  /** Canonical text, used for listing and duplicate detection. */
  text: string;
}

const PROTOCOLS: Record<string, number> = {
  icmp: 1,
  tcp: 6,
  udp: 17,
  dccp: 33,
  gre: 47,
  esp: 50,
  ah: 51,
  icmpv6: 58,
  sctp: 132,
  udplite: 136,
};
const PROTO_NAMES = new Map(Object.entries(PROTOCOLS).map(([k, v]) => [v, k]));

function fail(rule: string, why: string): ColoError {
  return new ColoError("COLO_ERR_COMPARE_RULE", `invalid passthrough rule '${rule}': ${why}`, { rule });
}

function parseV4(text: string): Uint8Array | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const n = Number(m[i + 1]);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

function parseV6(text: string): Uint8Array | null {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const words = (s: string): number[] | null => {
    if (s === "") return [];
    const out: number[] = [];
    const groups = s.split(":");
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      if (i === groups.length - 1 && g.includes(".")) {
        const v4 = parseV4(g);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(g)) out.push(Number.parseInt(g, 16));
      else return null;
    }
    return out;
  };
  const head = words(halves[0]!);
  const tail = halves.length === 2 ? words(halves[1]!) : [];
  if (!head || !tail) return null;
  const total = head.length + tail.length;
  if (halves.length === 2 ? total > 7 : total !== 8) return null;
  const all = [...head, ...new Array<number>(8 - total).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

function parsePorts(rule: string, text: string): [number, number] {
  if (text === "*") return [-1, -1];
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!m) throw fail(rule, `bad port '${text}'`);
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo > 65535 || hi > 65535) throw fail(rule, `port out of range in '${text}'`);
  if (lo > hi) throw fail(rule, `empty port range '${text}'`);
  return [lo, hi];
}

function parseEndpoint(rule: string, tok: string): Endpoint {
  let addrText: string;
  let portText: string | undefined;
  if (tok.startsWith("[")) {
    const close = tok.indexOf("]");
    if (close < 0) throw fail(rule, `missing ']' in '${tok}'`);
    addrText = tok.slice(1, close);
    const rest = tok.slice(close + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) throw fail(rule, `expected ':port' after ']' in '${tok}'`);
      portText = rest.slice(1);
    }
    if (!addrText.includes(":")) throw fail(rule, `brackets are for IPv6 addresses ('${tok}')`);
  } else if ((tok.match(/:/g) ?? []).length >= 2) {
    addrText = tok; // bare IPv6, no port
  } else {
    const colon = tok.indexOf(":");
    addrText = colon < 0 ? tok : tok.slice(0, colon);
    if (colon >= 0) portText = tok.slice(colon + 1);
  }
  const [portLo, portHi] = portText === undefined ? [-1, -1] : parsePorts(rule, portText);
  if (addrText === "*" || addrText === "") {
    if (addrText === "" && portText === undefined) throw fail(rule, `empty endpoint '${tok}'`);
    return { family: 0, addr: new Uint8Array(0), prefix: 0, portLo, portHi };
  }
  const slash = addrText.indexOf("/");
  const ipText = slash < 0 ? addrText : addrText.slice(0, slash);
  const addr = ipText.includes(":") ? parseV6(ipText) : parseV4(ipText);
  if (!addr) throw fail(rule, `bad address '${ipText}'`);
  const bits = addr.length * 8;
  let prefix = bits;
  if (slash >= 0) {
    const p = addrText.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > bits) throw fail(rule, `bad prefix length '/${p}'`);
    prefix = Number(p);
  }
  for (let i = 0; i < addr.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i));
    addr[i] = addr[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return { family: addr.length === 4 ? 4 : 6, addr, prefix, portLo, portHi };
}

function formatEndpoint(e: Endpoint): string {
  let a = "*";
  if (e.family === 4) a = `${[...e.addr].join(".")}/${e.prefix}`;
  else if (e.family === 6) a = `[${formatIpv6(e.addr)}/${e.prefix}]`;
  if (e.portLo < 0) return a;
  return `${a}:${e.portLo === e.portHi ? e.portLo : `${e.portLo}-${e.portHi}`}`;
}

/** Parses one rule; throws ColoError COLO_ERR_COMPARE_RULE with the reason. */
export function parsePassthroughRule(text: string): PassthroughRule {
  const toks = text
    .trim()
    .split(/\s+/)
    .filter((t) => t !== "");
  if (toks.length === 0) throw fail(text, "empty rule");
  let proto = -1;
  let arp = false;
  let vlan = -1;
  let protoSeen = false;
  const endpoints: Endpoint[] = [];
  for (let i = 0; i < toks.length; i++) {
    const tok = toks[i]!;
    const lower = tok.toLowerCase();
    if (lower === "vlan") {
      const v = toks[++i];
      if (v === undefined || !/^\d{1,4}$/.test(v) || Number(v) > 4095)
        throw fail(text, "vlan needs an id 0-4095");
      if (vlan >= 0) throw fail(text, "vlan given twice");
      vlan = Number(v);
    } else if (lower === "proto") {
      const v = toks[++i];
      if (v === undefined || !/^\d{1,3}$/.test(v) || Number(v) > 255)
        throw fail(text, "proto needs a number 0-255");
      if (protoSeen) throw fail(text, "protocol given twice");
      protoSeen = true;
      proto = Number(v);
    } else if (lower === "arp" || lower in PROTOCOLS) {
      if (protoSeen) throw fail(text, "protocol given twice");
      protoSeen = true;
      if (lower === "arp") arp = true;
      else proto = PROTOCOLS[lower]!;
    } else if (lower === "any" || tok === "*") {
      if (endpoints.length >= 2) throw fail(text, "at most two endpoints");
      endpoints.push({ family: 0, addr: new Uint8Array(0), prefix: 0, portLo: -1, portHi: -1 });
    } else {
      if (endpoints.length >= 2) throw fail(text, "at most two endpoints");
      endpoints.push(parseEndpoint(text, tok));
    }
  }
  const withPorts = endpoints.some((e) => e.portLo >= 0);
  if (withPorts && (arp || (proto >= 0 && !hasPorts(proto)))) {
    throw fail(text, "ports given for a protocol without ports");
  }
  if (arp && endpoints.some((e) => e.family === 6)) throw fail(text, "arp has no IPv6 addresses");
  const parts: string[] = [];
  if (vlan >= 0) parts.push(`vlan ${vlan}`);
  if (arp) parts.push("arp");
  else if (proto >= 0) parts.push(PROTO_NAMES.get(proto) ?? `proto ${proto}`);
  for (const e of endpoints) parts.push(formatEndpoint(e));
  return { proto, arp, vlan, endpoints, text: parts.join(" ") };
}

function addrMatches(e: Endpoint, family: number, addr: Uint8Array): boolean {
  if (e.family === 0) return true;
  if (e.family !== family || addr.length !== e.addr.length) return false;
  const full = e.prefix >> 3;
  for (let i = 0; i < full; i++) if (addr[i] !== e.addr[i]) return false;
  const rest = e.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((addr[full] ?? 0) & mask) === e.addr[full];
}

function endpointMatches(e: Endpoint, t: FlowTuple, addr: Uint8Array, port: number): boolean {
  if (!addrMatches(e, t.family, addr)) return false;
  if (e.portLo < 0) return true;
  if (!hasPorts(t.proto) || t.fragment || port < 0) return false;
  return port >= e.portLo && port <= e.portHi;
}

export function ruleMatches(r: PassthroughRule, t: FlowTuple): boolean {
  if (r.vlan >= 0 && t.vlanOuter !== r.vlan) return false;
  if (r.arp) {
    if (t.etherType !== 0x0806) return false;
  } else if (r.proto >= 0 && t.proto !== r.proto) return false;
  if (r.endpoints.length > 0 && t.src.length === 0) return false;
  const [a, b] = r.endpoints;
  if (a === undefined) return true;
  if (b === undefined) {
    return endpointMatches(a, t, t.src, t.srcPort) || endpointMatches(a, t, t.dst, t.dstPort);
  }
  return (
    (endpointMatches(a, t, t.src, t.srcPort) && endpointMatches(b, t, t.dst, t.dstPort)) ||
    (endpointMatches(a, t, t.dst, t.dstPort) && endpointMatches(b, t, t.src, t.srcPort))
  );
}

/** The rule set, with stable ids for removal. */
export class PassthroughRules {
  readonly #rules = new Map<number, PassthroughRule>();
  #nextId = 1;

  get size(): number {
    return this.#rules.size;
  }

  /** Adds a rule (text or parsed); returns its id. Adding an existing rule returns the existing id. */
  add(rule: string | PassthroughRule): { id: number; rule: PassthroughRule; added: boolean } {
    const r = typeof rule === "string" ? parsePassthroughRule(rule) : rule;
    for (const [id, existing] of this.#rules)
      if (existing.text === r.text) return { id, rule: existing, added: false };
    const id = this.#nextId++;
    this.#rules.set(id, r);
    return { id, rule: r, added: true };
  }

  /** Removes by id or by rule text (canonicalised); throws COLO_ERR_COMPARE_RULE_NOT_FOUND. */
  remove(idOrText: number | string): PassthroughRule {
    let id = typeof idOrText === "number" ? idOrText : -1;
    if (typeof idOrText === "string") {
      const asNumber = /^\d+$/.test(idOrText.trim()) ? Number(idOrText) : -1;
      if (asNumber >= 0 && this.#rules.has(asNumber)) id = asNumber;
      else {
        const text = parsePassthroughRule(idOrText).text;
        for (const [k, r] of this.#rules) if (r.text === text) id = k;
      }
    }
    const r = this.#rules.get(id);
    if (r === undefined) {
      throw new ColoError("COLO_ERR_COMPARE_RULE_NOT_FOUND", `no passthrough rule '${idOrText}'`, {
        rule: idOrText,
      });
    }
    this.#rules.delete(id);
    return r;
  }

  list(): { id: number; rule: string }[] {
    return [...this.#rules].map(([id, r]) => ({ id, rule: r.text }));
  }

  matches(t: FlowTuple): boolean {
    for (const r of this.#rules.values()) if (ruleMatches(r, t)) return true;
    return false;
  }
}
