/**
 * @module Flow tuples: the addresses, ports, protocol and VLAN ids of one tracked connection,
 * captured once when the connection is created (never per packet), for human-readable output
 * and passthrough-rule matching. The Map key itself comes from FrameMeta.key.
 */
import { formatIpv4, formatIpv6 } from "../packet/addr.ts";
import type { FrameMeta } from "../packet/meta.ts";
import { unitsToBytes } from "../packet/parse.ts";

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_ARP = 0x0806;

/** Protocol label used in stats, per-flow tables and checkpoint explanations. */
export type ProtocolName = "tcp" | "udp" | "icmp" | "icmpv6" | "ip" | "arp" | "l2";

export const PROTOCOL_NAMES: readonly ProtocolName[] = ["tcp", "udp", "icmp", "icmpv6", "ip", "arp", "l2"];

export interface FlowTuple {
  vlanOuter: number;
  vlanInner: number;
  etherType: number;
  /** 4 or 6 for IP (and 4 for ARP over IPv4, whose sender/target addresses fill src/dst); 0 otherwise. */
  family: number;
  /** IP protocol number, -1 when not IP. */
  proto: number;
  /** Source/destination address bytes (4 or 16), empty when unknown. */
  src: Uint8Array;
  dst: Uint8Array;
  /** Ports (TCP/UDP/SCTP/...), ICMP echo identifier in srcPort; -1 when the protocol has none. */
  srcPort: number;
  dstPort: number;
  fragment: boolean;
}

/** Protocols whose first four L4 bytes are a source and destination port. */
export function hasPorts(proto: number): boolean {
  return proto === 6 || proto === 17 || proto === 33 || proto === 132 || proto === 136;
}

export function protocolName(meta: FrameMeta): ProtocolName {
  if (meta.ipVersion === 0) return meta.etherType === ETHERTYPE_ARP ? "arp" : "l2";
  if (meta.fragment) return "ip";
  switch (meta.proto) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 1:
      return "icmp";
    case 58:
      return "icmpv6";
    default:
      return "ip";
  }
}

const EMPTY = new Uint8Array(0);

/**
 * Bytes [start, end) of `frame` in memory of their own. Not `frame.slice()`: on a Node Buffer
 * that is a view, and a connection keeps its tuple for life, so the view would keep the frame's
 * whole receive slab (256 KiB, receive-slab.ts) alive with it: up to one slab per connection.
 */
function copyOf(frame: Uint8Array, start: number, end: number): Uint8Array {
  return new Uint8Array(frame.subarray(start, end));
}

/** Copies the tuple out of a parsed frame (a few small allocations). */
export function extractFlow(meta: FrameMeta, frame: Uint8Array): FlowTuple {
  const t: FlowTuple = {
    vlanOuter: meta.vlanOuter,
    vlanInner: meta.vlanInner,
    etherType: meta.etherType,
    family: meta.ipVersion,
    proto: meta.proto,
    src: EMPTY,
    dst: EMPTY,
    srcPort: -1,
    dstPort: -1,
    fragment: meta.fragment,
  };
  const l3 = meta.l3Offset;
  if (meta.ipVersion === 4 && l3 + 20 <= frame.length) {
    t.src = copyOf(frame, l3 + 12, l3 + 16);
    t.dst = copyOf(frame, l3 + 16, l3 + 20);
  } else if (meta.ipVersion === 6 && l3 + 40 <= frame.length) {
    t.src = copyOf(frame, l3 + 8, l3 + 24);
    t.dst = copyOf(frame, l3 + 24, l3 + 40);
  } else if (isArpIpv4(meta, frame)) {
    t.family = 4;
    t.src = copyOf(frame, l3 + 14, l3 + 18);
    t.dst = copyOf(frame, l3 + 24, l3 + 28);
  }
  if (meta.ipVersion !== 0 && !meta.fragment) {
    if (hasPorts(meta.proto)) {
      t.srcPort = meta.srcPort;
      t.dstPort = meta.dstPort;
    } else if (meta.proto === 1 || meta.proto === 58) {
      t.srcPort = meta.srcPort;
    }
  }
  return t;
}

/** Ethernet/IPv4 ARP (protocol 0x0800, hlen 6, plen 4): the kind whose tuple has addresses. */
export function isArpIpv4(meta: FrameMeta, frame: Uint8Array): boolean {
  const l3 = meta.l3Offset;
  if (meta.etherType !== ETHERTYPE_ARP || l3 + 28 > frame.length) return false;
  const ptype = ((frame[l3 + 2] ?? 0) << 8) | (frame[l3 + 3] ?? 0);
  return ptype === ETHERTYPE_IPV4 && frame[l3 + 4] === 6 && frame[l3 + 5] === 4;
}

/**
 * The tuple extractFlow(meta, frame) returns, rebuilt later from the flow key (FrameMeta.key:
 * VLANs and addresses) and the parse's scalars, so that a connection need not build it (nor keep
 * anything of its frame) until something asks: a connection costs less to open. `arpIpv4` is
 * isArpIpv4(meta, frame).
 */
export function flowFromKey(
  key: string,
  etherType: number,
  ipVersion: number,
  proto: number,
  fragment: boolean,
  srcPort: number,
  dstPort: number,
  arpIpv4: boolean,
): FlowTuple {
  const t: FlowTuple = {
    vlanOuter: key.charCodeAt(0) - 1,
    vlanInner: key.charCodeAt(1) - 1,
    etherType,
    family: ipVersion,
    proto,
    src: EMPTY,
    dst: EMPTY,
    srcPort: -1,
    dstPort: -1,
    fragment,
  };
  if (ipVersion === 4 || arpIpv4) {
    if (arpIpv4) t.family = 4;
    t.src = unitsToBytes(key, 4, 2);
    t.dst = unitsToBytes(key, 6, 2);
  } else if (ipVersion === 6) {
    t.src = unitsToBytes(key, 4, 8);
    t.dst = unitsToBytes(key, 12, 8);
  }
  if (ipVersion !== 0 && !fragment) {
    if (hasPorts(proto)) {
      t.srcPort = srcPort;
      t.dstPort = dstPort;
    } else if (proto === 1 || proto === 58) {
      t.srcPort = srcPort;
    }
  }
  return t;
}

export function formatAddress(b: Uint8Array): string {
  if (b.length === 4) return formatIpv4(b);
  if (b.length === 16) return formatIpv6(b);
  return "?";
}

const PROTO_LABELS: Record<number, string> = {
  1: "icmp",
  6: "tcp",
  17: "udp",
  33: "dccp",
  47: "gre",
  50: "esp",
  51: "ah",
  58: "icmpv6",
  132: "sctp",
  136: "udplite",
};

function endpoint(addr: Uint8Array, port: number, withPort: boolean): string {
  const a = formatAddress(addr);
  if (!withPort) return a;
  return addr.length === 16 ? `[${a}]:${port}` : `${a}:${port}`;
}

/**
 * One line such as `tcp 10.0.0.1:80 > 10.0.0.2:5555`, `vlan 10.20 udp [fd00::1]:53 > [fd00::2]:4000`,
 * `icmp 10.0.0.1 > 10.0.0.2 id 7`, `arp 10.0.0.1 > 10.0.0.2`, `ethertype 0x88cc`.
 */
export function formatFlow(t: FlowTuple): string {
  let vlan = "";
  if (t.vlanOuter >= 0)
    vlan = t.vlanInner >= 0 ? `vlan ${t.vlanOuter}.${t.vlanInner} ` : `vlan ${t.vlanOuter} `;
  if (t.family === 0 || t.src.length === 0) {
    const name = t.etherType === 0x0806 ? "arp" : `ethertype 0x${t.etherType.toString(16).padStart(4, "0")}`;
    return `${vlan}${name}`;
  }
  if (t.proto < 0) return `${vlan}arp ${formatAddress(t.src)} > ${formatAddress(t.dst)}`;
  const name = PROTO_LABELS[t.proto] ?? `proto ${t.proto}`;
  const ports = hasPorts(t.proto) && !t.fragment;
  let s = `${vlan}${name} ${endpoint(t.src, t.srcPort, ports)} > ${endpoint(t.dst, t.dstPort, ports)}`;
  if ((t.proto === 1 || t.proto === 58) && t.srcPort > 0) s += ` id ${t.srcPort}`;
  if (t.fragment) s += " fragment";
  return s;
}
