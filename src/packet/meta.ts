/**
 * @module FrameMeta: the high-level summary of one Ethernet frame that the compare engine,
 * the rewriter and the tools consume. `parseFrame()` (src/packet/parse.ts) fills one
 * preallocated FrameMeta in place, so the per-packet path allocates nothing but the key string
 * (and not even that when `keyString` is false: the compare engine looks connections up by the
 * key's code units in `keyUnits`).
 *
 * This is the contract between src/packet and its consumers (conntrack, compare, rewrite):
 * change it only together with them.
 */

/** parseFrame() result. 0 is success; the others map to stable error codes in errors.ts. */
export const enum ParseStatus {
  Ok = 0,
  /** Frame shorter than a header it claims (COLO_ERR_PKT_TRUNCATED). */
  Truncated = 1,
  /** A length field disagrees with the frame (COLO_ERR_PKT_BAD_LENGTH). */
  BadLength = 2,
  /** Impossible header value, e.g. IHL < 5, TCP data offset < 5 (COLO_ERR_PKT_BAD_HEADER). */
  BadHeader = 3,
  /** IPv6 extension chain loops or overruns (COLO_ERR_PKT_EXT_CHAIN). */
  ExtChain = 4,
}

export interface FrameMeta {
  /** ParseStatus of the last parse; other fields are only meaningful when Ok. */
  status: ParseStatus;
  /** Length of the virtio-net header in front of the Ethernet header (0 when none). */
  vnetLen: number;
  /** Total frame length including the vnet header. */
  frameLen: number;
  /**
   * Outer and inner VLAN id (12 bits), -1 when absent (802.1Q / 802.1ad QinQ). A single tag
   * (TPID 0x8100, 0x88a8 or 0x9100) fills vlanOuter; a second 0x8100 tag fills vlanInner.
   */
  vlanOuter: number;
  vlanInner: number;
  /** EtherType after any VLAN tags (0x0800 IPv4, 0x86dd IPv6, 0x0806 ARP, ...). */
  etherType: number;
  /** Offset of the L3 header (after vnet header, Ethernet header and tags). */
  l3Offset: number;
  /** 4, 6, or 0 when the frame is not IP. */
  ipVersion: number;
  /** Final L4 protocol number (after the IPv6 extension-header walk, which stops at the first
   * unknown header: that header's number is `proto`); -1 when not IP. */
  proto: number;
  /** Offset of the L4 header; -1 when not IP or not the first fragment. */
  l4Offset: number;
  /**
   * End of the IP datagram (l3Offset + IP total/payload length); bytes after are L2 padding.
   * ARP: end of the ARP body. Other non-IP: frameLen.
   */
  ipEnd: number;
  /**
   * True when the datagram is an IP fragment (IPv4 MF/offset or IPv6 fragment header). For a
   * fragment the payload is all of its data after the IP header(s) (the first fragment's L4
   * header included), ports are filled only for the first fragment, TCP fields stay 0, and the
   * key has no ports so every fragment of a datagram shares it (see parse.ts).
   */
  fragment: boolean;
  /** TCP/UDP source/destination port; ICMP/ICMPv6 echo: identifier in srcPort, 0 in dstPort. */
  srcPort: number;
  dstPort: number;
  /** TCP only (otherwise 0): sequence, acknowledgement (unsigned 32-bit), flags byte, header length. */
  tcpSeq: number;
  tcpAck: number;
  tcpFlags: number;
  tcpHeaderLen: number;
  /**
   * L4 payload: for TCP/UDP the bytes after the L4 header up to ipEnd (Ethernet padding excluded);
   * (for UDP bounded by the UDP length field); for ICMP the bytes after the 8-byte ICMP header;
   * for other protocols the bytes after the L3 header(s); for ARP the ARP body without padding;
   * for other non-IP frames the bytes after the L2 header.
   */
  payloadOffset: number;
  payloadLen: number;
  /**
   * Flow key as seen (direction-specific), usable as a Map key. Copies of the same flow from
   * PVM and SVM get the same key. Includes VLAN ids, L3 family, addresses, protocol, ports or
   * ICMP identifier. Empty string when status is not Ok. Layout, ICMP echo pairing, ARP and
   * fragment keys: see parse.ts; `reverseFlowKey()` gives the opposite direction and
   * `formatFlowKey()` a readable form.
   */
  key: string;
  /**
   * The same flow key as 16-bit code units (always filled on Ok, whatever `keyString` says):
   * `key.charCodeAt(i) === keyUnits[i]` for i < keyLen. Lets a lookup hash and compare the key
   * without building a string (see conntrack/table.ts).
   */
  readonly keyUnits: Uint16Array;
  /** Number of valid units in keyUnits (0 when status is not Ok). */
  keyLen: number;
  /** Input: build the `key` string too (default true). False leaves `key` empty. */
  keyString: boolean;
}

/** Longest flow key in code units (IPv6 with ports: 4 header units, 2 × 8 address units, 2 ports). */
export const MAX_KEY_UNITS = 22;

/** TCP flag bits (the low byte of the TCP flags field). */
export const enum TcpFlag {
  FIN = 0x01,
  SYN = 0x02,
  RST = 0x04,
  PSH = 0x08,
  ACK = 0x10,
  URG = 0x20,
  ECE = 0x40,
  CWR = 0x80,
}

export function newFrameMeta(): FrameMeta {
  return {
    status: ParseStatus.Truncated,
    vnetLen: 0,
    frameLen: 0,
    vlanOuter: -1,
    vlanInner: -1,
    etherType: 0,
    l3Offset: 0,
    ipVersion: 0,
    proto: -1,
    l4Offset: -1,
    ipEnd: 0,
    fragment: false,
    srcPort: 0,
    dstPort: 0,
    tcpSeq: 0,
    tcpAck: 0,
    tcpFlags: 0,
    tcpHeaderLen: 0,
    payloadOffset: 0,
    payloadLen: 0,
    key: "",
    keyUnits: new Uint16Array(MAX_KEY_UNITS),
    keyLen: 0,
    keyString: true,
  };
}
