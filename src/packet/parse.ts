/**
 * @module parseFrame(): one pass over an Ethernet frame filling a preallocated FrameMeta, plus
 * the flow key (a compact string usable as a Map key), its reverse, and its human-readable form.
 *
 * Hot path: no allocation but the key string (none at all with `m.keyString` false: the key is
 * then only in `m.keyUnits`), no DataView, no exceptions. Every malformed frame
 * ends in a ParseStatus (see meta.ts and `parseStatusCode()`), never a throw.
 *
 * Status rules, in the order they are checked:
 * - Truncated: the bytes end before a header (Ethernet, VLAN tag, IPv4 header incl. options,
 *   IPv6 fixed header, TCP header incl. options, UDP/ICMP 8-byte header, ARP body) that the
 *   frame or the IP datagram claims. L4 headers are checked against the IP datagram end.
 * - BadLength: IPv4 total length < header length or beyond the frame; IPv6 payload length beyond
 *   the frame; UDP length < 8 or beyond the IP datagram. Bytes after the IP datagram are padding.
 * - BadHeader: IP version nibble wrong for the EtherType, IHL < 5, TCP data offset < 5, a vnet
 *   header length that is negative.
 * - ExtChain: an IPv6 extension header runs past the datagram, hop-by-hop not first, a routing
 *   or fragment header repeated, more than two destination-options headers, or more than
 *   MAX_EXT_HEADERS headers.
 * Header checksums are not verified here (the compare engine compares bytes anyway; views
 * offer `verifyChecksum()` for tools).
 *
 * ## Flow key layout
 * The key is a string of 16-bit code units built with one String.fromCharCode call:
 *
 *     [0] vlanOuter + 1 (0 = untagged)   [1] vlanInner + 1
 *     [2] FlowKind                       [3] IP protocol, or EtherType for ARP / non-IP
 *     then addresses: IPv4 2+2 units (src, dst), IPv6 8+8 units; ARP: sender IP, target IP
 *     then the tail: Ports -> sport, dport; Echo -> identifier; Icmp -> type << 8 | code
 *
 * - TCP/UDP: addresses + ports (FlowKind.Ports4/6).
 * - ICMP echo request and reply (v4 types 8/0, v6 128/129) use FlowKind.Echo4/6 with the
 *   identifier and NOT the type, so a reply's key equals `reverseKey()` of its request's key and
 *   both directions of a ping pair onto one entry, like TCP.
 * - Other ICMP (errors, ND, ...): addresses + type/code (FlowKind.Icmp4/6).
 * - IP fragments (IPv4 MF or offset != 0, any IPv6 fragment header, even an atomic one) and
 *   other IP protocols: addresses + protocol only (FlowKind.Proto4/6), so every fragment of a
 *   datagram lands on the same key whatever its offset.
 * - ARP (Ethernet/IPv4): sender and target protocol address, no opcode, so a reply's key is the
 *   reverse of its request's key. Other ARP variants and all non-IP frames: VLANs + EtherType
 *   (an 802.3 length field, < 0x0600, is keyed as 0 so every LLC frame shares one key).
 *
 * The key is an opaque in-memory string: its code units are raw 16-bit words, lone surrogates
 * included, so it must not be written out as UTF-8 text (logs, JSON, sockets) and must be
 * handled by code unit (charCodeAt), never by code point. Print it with formatFlowKey(); take it
 * apart with decodeFlowKey().
 */

import type { ErrorCode } from "../errors.ts";
import { formatIpv4, formatIpv6 } from "./addr.ts";
import { newIpv6Walk, walkIpv6Ext } from "./ipv6.ts";
import { type FrameMeta, ParseStatus } from "./meta.ts";

/** The third code unit of a flow key. */
export const enum FlowKind {
  Ports4 = 1,
  Echo4 = 2,
  Icmp4 = 3,
  Proto4 = 4,
  Ports6 = 5,
  Echo6 = 6,
  Icmp6 = 7,
  Proto6 = 8,
  Arp = 9,
  Ether = 10,
}

export { MAX_EXT_HEADERS } from "./ipv6.ts";

const walk6 = newIpv6Walk();

const fcc = String.fromCharCode;

/** Set by parseL4() on success: which key tail to use (0 ports, 1 echo id, 2 ICMP type/code, 3 none). */
let l4Tail = 0;

function fail(m: FrameMeta, s: ParseStatus): ParseStatus {
  m.status = s;
  m.key = "";
  m.keyLen = 0;
  return s;
}

/**
 * Parses `frame` (which starts with a `vnetLen`-byte virtio-net header, then Ethernet) into `m`.
 * Returns and stores `m.status`. Fields are reset first, so a failed parse leaves no stale data.
 */
export function parseFrame(frame: Uint8Array, vnetLen: number, m: FrameMeta): ParseStatus {
  const f = frame;
  const len = f.length;
  m.vnetLen = vnetLen;
  m.frameLen = len;
  m.vlanOuter = -1;
  m.vlanInner = -1;
  m.etherType = 0;
  m.l3Offset = 0;
  m.ipVersion = 0;
  m.proto = -1;
  m.l4Offset = -1;
  m.ipEnd = 0;
  m.fragment = false;
  m.srcPort = 0;
  m.dstPort = 0;
  m.tcpSeq = 0;
  m.tcpAck = 0;
  m.tcpFlags = 0;
  m.tcpHeaderLen = 0;
  m.payloadOffset = 0;
  m.payloadLen = 0;
  m.key = "";
  m.keyLen = 0;
  if (!(vnetLen >= 0) || (vnetLen | 0) !== vnetLen) return fail(m, ParseStatus.BadHeader);
  let p = vnetLen + 14;
  if (p > len) return fail(m, ParseStatus.Truncated);
  let et = (f[p - 2]! << 8) | f[p - 1]!;
  let vo = 0;
  let vi = 0;
  if (et === 0x8100 || et === 0x88a8 || et === 0x9100) {
    if (p + 4 > len) return fail(m, ParseStatus.Truncated);
    vo = ((f[p]! << 8) | f[p + 1]!) & 0xfff;
    m.vlanOuter = vo;
    vo++;
    et = (f[p + 2]! << 8) | f[p + 3]!;
    p += 4;
    if (et === 0x8100) {
      if (p + 4 > len) return fail(m, ParseStatus.Truncated);
      vi = ((f[p]! << 8) | f[p + 1]!) & 0xfff;
      m.vlanInner = vi;
      vi++;
      et = (f[p + 2]! << 8) | f[p + 3]!;
      p += 4;
    }
  }
  m.etherType = et;
  m.l3Offset = p;

  if (et === 0x0800) {
    if (p + 20 > len) return fail(m, ParseStatus.Truncated);
    const vihl = f[p]!;
    if (vihl >> 4 !== 4) return fail(m, ParseStatus.BadHeader);
    const ihl = (vihl & 15) << 2;
    if (ihl < 20) return fail(m, ParseStatus.BadHeader);
    if (p + ihl > len) return fail(m, ParseStatus.Truncated);
    const total = (f[p + 2]! << 8) | f[p + 3]!;
    if (total < ihl || p + total > len) return fail(m, ParseStatus.BadLength);
    const end = p + total;
    const proto = f[p + 9]!;
    const frag = ((f[p + 6]! << 8) | f[p + 7]!) & 0x3fff;
    m.ipVersion = 4;
    m.proto = proto;
    m.ipEnd = end;
    const l4 = p + ihl;
    const a = p + 12;
    const s0 = (f[a]! << 8) | f[a + 1]!;
    const s1 = (f[a + 2]! << 8) | f[a + 3]!;
    const d0 = (f[a + 4]! << 8) | f[a + 5]!;
    const d1 = (f[a + 6]! << 8) | f[a + 7]!;
    if (frag !== 0) {
      m.fragment = true;
      if ((frag & 0x1fff) === 0) {
        m.l4Offset = l4;
        if ((proto === 6 || proto === 17) && l4 + 4 <= end) {
          m.srcPort = (f[l4]! << 8) | f[l4 + 1]!;
          m.dstPort = (f[l4 + 2]! << 8) | f[l4 + 3]!;
        }
      }
      m.payloadOffset = l4;
      m.payloadLen = end - l4;
      key4(m, vo, vi, FlowKind.Proto4, proto, s0, s1, d0, d1, 0, 0, 0);
      m.status = ParseStatus.Ok;
      return ParseStatus.Ok;
    }
    m.l4Offset = l4;
    const st = parseL4(f, l4, end, proto, m, 4);
    if (st !== ParseStatus.Ok) return fail(m, st);
    const kind = l4Tail;
    if (kind === 0) key4(m, vo, vi, FlowKind.Ports4, proto, s0, s1, d0, d1, 2, m.srcPort, m.dstPort);
    else if (kind === 1) key4(m, vo, vi, FlowKind.Echo4, proto, s0, s1, d0, d1, 1, m.srcPort, 0);
    else if (kind === 2)
      key4(m, vo, vi, FlowKind.Icmp4, proto, s0, s1, d0, d1, 1, (f[l4]! << 8) | f[l4 + 1]!, 0);
    else key4(m, vo, vi, FlowKind.Proto4, proto, s0, s1, d0, d1, 0, 0, 0);
    m.status = ParseStatus.Ok;
    return ParseStatus.Ok;
  }

  if (et === 0x86dd) {
    if (p + 40 > len) return fail(m, ParseStatus.Truncated);
    if (f[p]! >> 4 !== 6) return fail(m, ParseStatus.BadHeader);
    const end = p + 40 + ((f[p + 4]! << 8) | f[p + 5]!);
    if (end > len) return fail(m, ParseStatus.BadLength);
    m.ipVersion = 6;
    m.ipEnd = end;
    let next = f[p + 6]!;
    let q = p + 40;
    let nonFirstFragment = false;
    // Only walk when the first header is an extension header (the common case is not).
    if (next === 0 || next === 43 || next === 44 || next === 60) {
      const st6 = walkIpv6Ext(f, q, end, next, walk6);
      if (st6 !== ParseStatus.Ok) return fail(m, st6);
      next = walk6.proto;
      q = walk6.l4Offset;
      nonFirstFragment = walk6.fragOffset !== 0;
      m.fragment = walk6.fragment;
    }
    m.proto = next;
    const a = p + 8;
    if (m.fragment) {
      if (!nonFirstFragment) {
        m.l4Offset = q;
        if ((next === 6 || next === 17) && q + 4 <= end) {
          m.srcPort = (f[q]! << 8) | f[q + 1]!;
          m.dstPort = (f[q + 2]! << 8) | f[q + 3]!;
        }
      }
      m.payloadOffset = q;
      m.payloadLen = end - q;
      key6(m, f, a, vo, vi, FlowKind.Proto6, next, 0, 0, 0);
      m.status = ParseStatus.Ok;
      return ParseStatus.Ok;
    }
    m.l4Offset = q;
    const st = parseL4(f, q, end, next, m, 6);
    if (st !== ParseStatus.Ok) return fail(m, st);
    const kind = l4Tail;
    if (kind === 0) key6(m, f, a, vo, vi, FlowKind.Ports6, next, 2, m.srcPort, m.dstPort);
    else if (kind === 1) key6(m, f, a, vo, vi, FlowKind.Echo6, next, 1, m.srcPort, 0);
    else if (kind === 2) key6(m, f, a, vo, vi, FlowKind.Icmp6, next, 1, (f[q]! << 8) | f[q + 1]!, 0);
    else key6(m, f, a, vo, vi, FlowKind.Proto6, next, 0, 0, 0);
    m.status = ParseStatus.Ok;
    return ParseStatus.Ok;
  }

  if (et === 0x0806) {
    if (p + 8 > len) return fail(m, ParseStatus.Truncated);
    const hlen = f[p + 4]!;
    const plen = f[p + 5]!;
    const end = p + 8 + 2 * hlen + 2 * plen;
    if (end > len) return fail(m, ParseStatus.Truncated);
    m.ipEnd = end;
    m.payloadOffset = p;
    m.payloadLen = end - p;
    if (((f[p + 2]! << 8) | f[p + 3]!) === 0x0800 && plen === 4) {
      const s = p + 8 + hlen;
      const t = s + 4 + hlen;
      key4(
        m,
        vo,
        vi,
        FlowKind.Arp,
        et,
        (f[s]! << 8) | f[s + 1]!,
        (f[s + 2]! << 8) | f[s + 3]!,
        (f[t]! << 8) | f[t + 1]!,
        (f[t + 2]! << 8) | f[t + 3]!,
        0,
        0,
        0,
      );
    } else keyEther(m, vo, vi, et);
    m.status = ParseStatus.Ok;
    return ParseStatus.Ok;
  }

  m.ipEnd = len;
  m.payloadOffset = p;
  m.payloadLen = len - p;
  // Values below 0x0600 are 802.3 lengths, not protocols: all such (LLC) frames share key unit 0.
  keyEther(m, vo, vi, et >= 0x0600 ? et : 0);
  m.status = ParseStatus.Ok;
  return ParseStatus.Ok;
}

/**
 * Stores a key of 4 header units, 4 address units and `tailN` (0-2) tail units (IPv4, ARP) in
 * m.keyUnits, and as a string when m.keyString. One fromCharCode call per shape keeps the string flat.
 */
function key4(
  m: FrameMeta,
  vo: number,
  vi: number,
  kind: FlowKind,
  proto: number,
  s0: number,
  s1: number,
  d0: number,
  d1: number,
  tailN: number,
  t0: number,
  t1: number,
): void {
  const u = m.keyUnits;
  u[0] = vo;
  u[1] = vi;
  u[2] = kind;
  u[3] = proto;
  u[4] = s0;
  u[5] = s1;
  u[6] = d0;
  u[7] = d1;
  u[8] = t0;
  u[9] = t1;
  m.keyLen = 8 + tailN;
  if (!m.keyString) return;
  if (tailN === 2) m.key = fcc(vo, vi, kind, proto, s0, s1, d0, d1, t0, t1);
  else if (tailN === 1) m.key = fcc(vo, vi, kind, proto, s0, s1, d0, d1, t0);
  else m.key = fcc(vo, vi, kind, proto, s0, s1, d0, d1);
}

/** The 4-unit key of a non-IP frame (and of ARP that is not Ethernet/IPv4). */
function keyEther(m: FrameMeta, vo: number, vi: number, et: number): void {
  const u = m.keyUnits;
  u[0] = vo;
  u[1] = vi;
  u[2] = FlowKind.Ether;
  u[3] = et;
  m.keyLen = 4;
  if (m.keyString) m.key = fcc(vo, vi, FlowKind.Ether, et);
}

/**
 * The IPv6 key: 4 header units, the 16 address words at `a` (source then destination), then
 * `tailN` (0-2) tail units, into m.keyUnits (and m.key when m.keyString).
 */
function key6(
  m: FrameMeta,
  f: Uint8Array,
  a: number,
  vo: number,
  vi: number,
  kind: FlowKind,
  proto: number,
  tailN: number,
  t0: number,
  t1: number,
): void {
  const u = m.keyUnits;
  u[0] = vo;
  u[1] = vi;
  u[2] = kind;
  u[3] = proto;
  for (let i = 0; i < 16; i++) u[4 + i] = (f[a + 2 * i]! << 8) | f[a + 2 * i + 1]!;
  u[20] = t0;
  u[21] = t1;
  m.keyLen = 20 + tailN;
  if (!m.keyString) return;
  // biome-ignore format: one line per key shape reads better than one argument per line
  if (tailN === 2) m.key = fcc(vo, vi, kind, proto, u[4]!, u[5]!, u[6]!, u[7]!, u[8]!, u[9]!, u[10]!, u[11]!, u[12]!, u[13]!, u[14]!, u[15]!, u[16]!, u[17]!, u[18]!, u[19]!, t0, t1);
  // biome-ignore format: as above
  else if (tailN === 1) m.key = fcc(vo, vi, kind, proto, u[4]!, u[5]!, u[6]!, u[7]!, u[8]!, u[9]!, u[10]!, u[11]!, u[12]!, u[13]!, u[14]!, u[15]!, u[16]!, u[17]!, u[18]!, u[19]!, t0);
  // biome-ignore format: as above
  else m.key = fcc(vo, vi, kind, proto, u[4]!, u[5]!, u[6]!, u[7]!, u[8]!, u[9]!, u[10]!, u[11]!, u[12]!, u[13]!, u[14]!, u[15]!, u[16]!, u[17]!, u[18]!, u[19]!);
}

/** The key string of a parsed frame built from its key units (same string as `key` with keyString on). */
export function flowKeyText(m: FrameMeta): string {
  return keyFromUnits(m.keyUnits, m.keyLen);
}

/**
 * A key string from `len` code units (allocates: for connection creation, not per packet).
 * Explicit arguments per key shape: spreading a typed array goes through the iterator protocol,
 * about 340 ns for an IPv4 key against 20 (a tenth of what opening a connection cost).
 */
export function keyFromUnits(u: Uint16Array, len: number): string {
  // biome-ignore format: one line per key shape, as in key6
  switch (len) {
    case 4: return fcc(u[0]!, u[1]!, u[2]!, u[3]!);
    case 8: return fcc(u[0]!, u[1]!, u[2]!, u[3]!, u[4]!, u[5]!, u[6]!, u[7]!);
    case 9: return fcc(u[0]!, u[1]!, u[2]!, u[3]!, u[4]!, u[5]!, u[6]!, u[7]!, u[8]!);
    case 10: return fcc(u[0]!, u[1]!, u[2]!, u[3]!, u[4]!, u[5]!, u[6]!, u[7]!, u[8]!, u[9]!);
    case 20: return fcc(u[0]!, u[1]!, u[2]!, u[3]!, u[4]!, u[5]!, u[6]!, u[7]!, u[8]!, u[9]!, u[10]!, u[11]!, u[12]!, u[13]!, u[14]!, u[15]!, u[16]!, u[17]!, u[18]!, u[19]!);
    case 21: return fcc(u[0]!, u[1]!, u[2]!, u[3]!, u[4]!, u[5]!, u[6]!, u[7]!, u[8]!, u[9]!, u[10]!, u[11]!, u[12]!, u[13]!, u[14]!, u[15]!, u[16]!, u[17]!, u[18]!, u[19]!, u[20]!);
    case 22: return fcc(u[0]!, u[1]!, u[2]!, u[3]!, u[4]!, u[5]!, u[6]!, u[7]!, u[8]!, u[9]!, u[10]!, u[11]!, u[12]!, u[13]!, u[14]!, u[15]!, u[16]!, u[17]!, u[18]!, u[19]!, u[20]!, u[21]!);
  }
  // No parsed key has another length; kept general for callers with their own units.
  let s = "";
  for (let i = 0; i < len; i++) s += fcc(u[i]!);
  return s;
}

/** Parses the L4 header at `l4` (datagram ends at `end`); on success sets `l4Tail`. */
function parseL4(
  f: Uint8Array,
  l4: number,
  end: number,
  proto: number,
  m: FrameMeta,
  v: number,
): ParseStatus {
  if (proto === 6) {
    if (l4 + 20 > end) return ParseStatus.Truncated;
    const hl = (f[l4 + 12]! >> 4) << 2;
    if (hl < 20) return ParseStatus.BadHeader;
    if (l4 + hl > end) return ParseStatus.Truncated;
    m.srcPort = (f[l4]! << 8) | f[l4 + 1]!;
    m.dstPort = (f[l4 + 2]! << 8) | f[l4 + 3]!;
    m.tcpSeq = ((f[l4 + 4]! << 24) | (f[l4 + 5]! << 16) | (f[l4 + 6]! << 8) | f[l4 + 7]!) >>> 0;
    m.tcpAck = ((f[l4 + 8]! << 24) | (f[l4 + 9]! << 16) | (f[l4 + 10]! << 8) | f[l4 + 11]!) >>> 0;
    m.tcpFlags = f[l4 + 13]!;
    m.tcpHeaderLen = hl;
    m.payloadOffset = l4 + hl;
    m.payloadLen = end - l4 - hl;
    l4Tail = 0;
    return ParseStatus.Ok;
  }
  if (proto === 17) {
    if (l4 + 8 > end) return ParseStatus.Truncated;
    const ulen = (f[l4 + 4]! << 8) | f[l4 + 5]!;
    if (ulen < 8 || l4 + ulen > end) return ParseStatus.BadLength;
    m.srcPort = (f[l4]! << 8) | f[l4 + 1]!;
    m.dstPort = (f[l4 + 2]! << 8) | f[l4 + 3]!;
    m.payloadOffset = l4 + 8;
    m.payloadLen = ulen - 8;
    l4Tail = 0;
    return ParseStatus.Ok;
  }
  if ((proto === 1 && v === 4) || (proto === 58 && v === 6)) {
    if (l4 + 8 > end) return ParseStatus.Truncated;
    const type = f[l4]!;
    m.payloadOffset = l4 + 8;
    m.payloadLen = end - l4 - 8;
    if (v === 4 ? type === 8 || type === 0 : type === 128 || type === 129) {
      m.srcPort = (f[l4 + 4]! << 8) | f[l4 + 5]!;
      l4Tail = 1;
    } else l4Tail = 2;
    return ParseStatus.Ok;
  }
  m.payloadOffset = l4;
  m.payloadLen = end - l4;
  l4Tail = 3;
  return ParseStatus.Ok;
}

/** A flow key taken apart (for formatting, tools and tests; allocates). */
export interface FlowKeyInfo {
  kind: FlowKind;
  vlanOuter: number;
  vlanInner: number;
  /** 4, 6, or 0 for ARP / non-IP. */
  family: number;
  /** IP protocol, or -1 for ARP / non-IP. */
  proto: number;
  /** EtherType for ARP / non-IP, else 0. */
  etherType: number;
  /** Addresses as text ("" for non-IP); for ARP the sender and target protocol addresses. */
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  /** ICMP echo identifier, or -1. */
  echoId: number;
  /** ICMP type and code for non-echo ICMP, or -1. */
  icmpType: number;
  icmpCode: number;
}

function addrLen(kind: number): number {
  if (kind >= FlowKind.Ports4 && kind <= FlowKind.Proto4) return 2;
  if (kind >= FlowKind.Ports6 && kind <= FlowKind.Proto6) return 8;
  if (kind === FlowKind.Arp) return 2;
  return 0;
}

/** `n` 16-bit code units of a key from unit `from`, as 2n big-endian bytes (addresses). */
export function unitsToBytes(key: string, from: number, n: number): Uint8Array {
  const b = new Uint8Array(2 * n);
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(from + i);
    b[2 * i] = c >> 8;
    b[2 * i + 1] = c & 0xff;
  }
  return b;
}

/** Decodes a key produced by parseFrame(). Throws RangeError on a string that is not one. */
export function decodeFlowKey(key: string): FlowKeyInfo {
  if (key.length < 4) throw new RangeError("not a flow key");
  const kind = key.charCodeAt(2) as FlowKind;
  const n = addrLen(kind);
  const tail =
    kind === FlowKind.Ports4 || kind === FlowKind.Ports6 ? 2 : kind % 4 === 2 || kind % 4 === 3 ? 1 : 0;
  const expected = 4 + 2 * n + (kind <= FlowKind.Proto6 ? tail : 0);
  if (kind < FlowKind.Ports4 || kind > FlowKind.Ether || key.length !== expected)
    throw new RangeError("not a flow key");
  const family = kind <= FlowKind.Proto4 ? 4 : kind <= FlowKind.Proto6 ? 6 : 0;
  const fmt = (b: Uint8Array) => (n === 8 ? formatIpv6(b) : formatIpv4(b));
  const info: FlowKeyInfo = {
    kind,
    vlanOuter: key.charCodeAt(0) - 1,
    vlanInner: key.charCodeAt(1) - 1,
    family,
    proto: family !== 0 ? key.charCodeAt(3) : -1,
    etherType: family === 0 ? key.charCodeAt(3) : 0,
    src: n > 0 ? fmt(unitsToBytes(key, 4, n)) : "",
    dst: n > 0 ? fmt(unitsToBytes(key, 4 + n, n)) : "",
    srcPort: 0,
    dstPort: 0,
    echoId: -1,
    icmpType: -1,
    icmpCode: -1,
  };
  const t = 4 + 2 * n;
  if (kind === FlowKind.Ports4 || kind === FlowKind.Ports6) {
    info.srcPort = key.charCodeAt(t);
    info.dstPort = key.charCodeAt(t + 1);
  } else if (kind === FlowKind.Echo4 || kind === FlowKind.Echo6) {
    info.echoId = key.charCodeAt(t);
  } else if (kind === FlowKind.Icmp4 || kind === FlowKind.Icmp6) {
    info.icmpType = key.charCodeAt(t) >> 8;
    info.icmpCode = key.charCodeAt(t) & 0xff;
  }
  return info;
}

/** The key of the opposite direction: addresses (and ports) swapped. Non-IP keys are their own reverse. */
export function reverseKey(key: string): string {
  const kind = key.charCodeAt(2);
  const n = addrLen(kind);
  if (n === 0) return key;
  // Code units, not code points: address words may form surrogate pairs.
  const u: number[] = new Array(key.length);
  for (let i = 0; i < key.length; i++) u[i] = key.charCodeAt(i);
  for (let i = 0; i < n; i++) {
    u[4 + i] = key.charCodeAt(4 + n + i);
    u[4 + n + i] = key.charCodeAt(4 + i);
  }
  if (kind === FlowKind.Ports4 || kind === FlowKind.Ports6) {
    u[4 + 2 * n] = key.charCodeAt(5 + 2 * n);
    u[5 + 2 * n] = key.charCodeAt(4 + 2 * n);
  }
  return fcc(...u);
}

/** The key of the frame's opposite direction (for the rewriter: guest->client vs client->guest). */
export function reverseFlowKey(meta: FrameMeta): string {
  return reverseKey(meta.key);
}

const PROTO_NAMES: Record<number, string> = {
  1: "icmp",
  6: "tcp",
  17: "udp",
  58: "icmpv6",
  47: "gre",
  50: "esp",
};

/**
 * Human-readable form of a flow key (or of meta.key), e.g. `tcp 10.0.0.1:80 > 10.0.0.2:5000 vlan 10`,
 * `tcp [fe80::1]:80 > [fe80::2]:5000`, `icmp 10.0.0.1 > 10.0.0.2 echo id 7`,
 * `arp 10.0.0.1 > 10.0.0.2`, `ether 0x88cc vlan 100.10` (QinQ: outer.inner), `ether 802.3`.
 */
export function formatFlowKey(keyOrMeta: string | FrameMeta): string {
  const key = typeof keyOrMeta === "string" ? keyOrMeta : keyOrMeta.key;
  if (key === "") return "(no key)";
  const k = decodeFlowKey(key);
  let s: string;
  if (k.kind === FlowKind.Ether)
    s = k.etherType === 0 ? "ether 802.3" : `ether 0x${k.etherType.toString(16).padStart(4, "0")}`;
  else if (k.kind === FlowKind.Arp) s = `arp ${k.src} > ${k.dst}`;
  else {
    const name = PROTO_NAMES[k.proto] ?? `proto ${k.proto}`;
    if (k.kind === FlowKind.Ports4) s = `${name} ${k.src}:${k.srcPort} > ${k.dst}:${k.dstPort}`;
    else if (k.kind === FlowKind.Ports6) s = `${name} [${k.src}]:${k.srcPort} > [${k.dst}]:${k.dstPort}`;
    else if (k.kind === FlowKind.Echo4 || k.kind === FlowKind.Echo6)
      s = `${name} ${k.src} > ${k.dst} echo id ${k.echoId}`;
    else if (k.kind === FlowKind.Icmp4 || k.kind === FlowKind.Icmp6)
      s = `${name} ${k.src} > ${k.dst} type ${k.icmpType} code ${k.icmpCode}`;
    else s = `${name} ${k.src} > ${k.dst}`;
  }
  if (k.vlanOuter >= 0) s += ` vlan ${k.vlanOuter}${k.vlanInner >= 0 ? `.${k.vlanInner}` : ""}`;
  return s;
}

/** The stable error code of a parse status (see src/errors.ts); undefined for Ok. */
export function parseStatusCode(status: ParseStatus): ErrorCode | undefined {
  switch (status) {
    case ParseStatus.Ok:
      return undefined;
    case ParseStatus.Truncated:
      return "COLO_ERR_PKT_TRUNCATED";
    case ParseStatus.BadLength:
      return "COLO_ERR_PKT_BAD_LENGTH";
    case ParseStatus.BadHeader:
      return "COLO_ERR_PKT_BAD_HEADER";
    case ParseStatus.ExtChain:
      return "COLO_ERR_PKT_EXT_CHAIN";
  }
  return "COLO_ERR_INTERNAL";
}
