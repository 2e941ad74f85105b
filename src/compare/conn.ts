/**
 * @module Per-connection compare state: the two queues, the TCP stream position and the
 * secondary's progress used by ack gating. Lives in the conntrack table (a TrackedConn).
 *
 * Everything a packet reads or writes is in the connection's hot row (conntrack/table.ts: 16
 * int32 words, one cache line, found by the lookup without touching this object): the word
 * offsets W_* below, the flags in ROW_FLAGS. The engine's per-packet path works on the row by
 * index; this class's accessors read and write the same words, for everything else (handshakes,
 * flushes, explanations, introspection, tests). The queues' ends are held-record ids.
 */
import { type FlowTuple, flowFromKey, formatFlow, type ProtocolName } from "../conntrack/flow.ts";
import { ROW_FLAGS, ROW_OWNER, type StagedRow, TrackedConn } from "../conntrack/table.ts";
import type { FrameMeta } from "../packet/meta.ts";
import { type Held, type HeldSide, type HeldStore, NO_HELD } from "./held.ts";
import type { SuspendReason } from "./types.ts";

// tsx does not inline imported const enums (see engine.ts).
const PRIMARY = 0 as HeldSide;

// Row words (see the module doc). Sequence numbers are int32 (`| 0`, see engine.ts seqAfter).
/** Primary queue (TCP: sequence order; datagrams: arrival order): first and last record id, length. */
export const W_P_HEAD = ROW_OWNER;
export const W_P_TAIL = ROW_OWNER + 1;
export const W_P_COUNT = ROW_OWNER + 2;
/** Secondary queue. */
export const W_S_HEAD = ROW_OWNER + 3;
export const W_S_TAIL = ROW_OWNER + 4;
export const W_S_COUNT = ROW_OWNER + 5;
/** TCP: everything before it has been compared (or released by a flush). */
export const W_COMPARE_SEQ = ROW_OWNER + 6;
/** TCP: highest ack (sequence space) seen from each side on segments with ACK set. */
export const W_PRIMARY_ACK = ROW_OWNER + 7;
export const W_SECONDARY_ACK = ROW_OWNER + 8;
/** TCP: right edge (ack + scaled window) of the secondary's receive window, as last advertised. */
export const W_SECONDARY_RIGHT = ROW_OWNER + 9;
/** The engine's checkpoint count when the secondary state was last brought up to date. */
export const W_GENERATION = ROW_OWNER + 10;
/** Compared payload bytes and packets, low parts (below COUNT_LIMIT; see bytesCompared). */
export const W_BYTES_LO = ROW_OWNER + 11;
export const W_PACKETS_LO = ROW_OWNER + 12;
/** The engine's flush epoch when a flush last collected this connection. */
export const W_FLUSH_MARK = ROW_OWNER + 13;

// Bits of ROW_FLAGS that are the compare state's (the table has bits 0–2 and 30). Window scales
// are stored + 1 in four bits each (0 = not seen yet).
export const F_PASSTHROUGH = 1 << 3;
export const F_STREAM = 1 << 4;
export const F_MISCOMPARED = 1 << 5;
export const F_COMPARE_SEQ_SET = 1 << 6;
export const F_PRIMARY_ACK_SET = 1 << 7;
export const F_SECONDARY_ACK_SET = 1 << 8;
export const F_SECONDARY_RIGHT_SET = 1 << 9;
export const F_BASE_SET = 1 << 10;
export const F_P_WSCALE_SHIFT = 11;
export const F_S_WSCALE_SHIFT = 15;
export const F_WSCALE_MASK = 15;
export const F_REUSED = 1 << 19;
/** Compared byte/packet counts carry into their high part at 2^30 (stay small integers). */
export const COUNT_LIMIT = 0x40000000;

// CompareConn's packed parse scalars (#shape), below bit 30 so that it is a small integer on
// every V8 build: etherType in bits 0–15, ipVersion (0, 4, 6) in 16–18, proto + 1 (proto is -1
// for non-IP) in 19–27, then two flags.
const S_IP_VERSION_SHIFT = 16;
const S_PROTO_SHIFT = 19;
const S_FRAGMENT = 1 << 28;
const S_ARP_IPV4 = 1 << 29;
// CompareConn's cold booleans (#bits).
const C_QUEUE_FULL_RAISED = 1 << 0;
const C_PRIMARY_ISN_SET = 1 << 1;
const C_SECONDARY_SYN = 1 << 2;
const C_SECONDARY_RST = 1 << 3;
const C_PRIMARY_FIN = 1 << 4;
const C_SECONDARY_FIN = 1 << 5;
const C_PRIMARY_RST = 1 << 6;
const C_FLUSHED_END_SET = 1 << 7;

/** Appends a record to its side's queue (h.side) of the row at words [b, b + ROW_WORDS) of H. */
export function queuePush(H: Int32Array, b: number, held: HeldStore, h: Held): void {
  const headW = h.side === PRIMARY ? b + W_P_HEAD : b + W_S_HEAD;
  const tailId = H[headW + 1]!;
  h.next = null;
  if (tailId !== NO_HELD) {
    const tail = held.byId[tailId]!;
    h.prev = tail;
    tail.next = h;
  } else {
    h.prev = null;
    H[headW] = h.id;
  }
  H[headW + 1] = h.id;
  H[headW + 2] = H[headW + 2]! + 1;
}

/**
 * Inserts into its side's queue keeping ascending TCP sequence order (signed 32-bit difference,
 * so it survives wraparound); equal sequence numbers keep arrival order. Scans from the tail:
 * in-order arrivals, the common case, cost O(1). On a reused connection (F_REUSED) the new
 * segments are in another sequence space: they go to the tail, in arrival order.
 */
export function queueInsertBySeq(H: Int32Array, b: number, held: HeldStore, h: Held): void {
  const headW = h.side === PRIMARY ? b + W_P_HEAD : b + W_S_HEAD;
  const tailId = H[headW + 1]!;
  if (tailId === NO_HELD || (H[b + ROW_FLAGS]! & F_REUSED) !== 0) {
    queuePush(H, b, held, h);
    return;
  }
  const tail = held.byId[tailId]!;
  let at: Held | null = tail;
  while (at !== null && ((at.seq - h.seq) | 0) > 0) at = at.prev;
  if (at === tail) {
    queuePush(H, b, held, h);
    return;
  }
  h.prev = at;
  h.next = at === null ? held.byId[H[headW]!]! : at.next;
  h.next!.prev = h;
  if (at !== null) at.next = h;
  else H[headW] = h.id;
  H[headW + 2] = H[headW + 2]! + 1;
}

/** Unlinks a record from its side's queue. */
export function queueRemove(H: Int32Array, b: number, h: Held): void {
  const headW = h.side === PRIMARY ? b + W_P_HEAD : b + W_S_HEAD;
  const prev = h.prev;
  const next = h.next;
  if (prev !== null) prev.next = next;
  else H[headW] = next === null ? NO_HELD : next.id;
  if (next !== null) next.prev = prev;
  else H[headW + 1] = prev === null ? NO_HELD : prev.id;
  h.prev = null;
  h.next = null;
  H[headW + 2] = H[headW + 2]! - 1;
}

/**
 * Counts compared payload bytes in the row's low part; returns the carry into the high part
 * (CompareConn.bytesHi, cold: the caller adds it), usually 0.
 */
export function addBytes(H: Int32Array, b: number, n: number): number {
  const lo = H[b + W_BYTES_LO]! + n;
  if (lo < COUNT_LIMIT) {
    H[b + W_BYTES_LO] = lo;
    return 0;
  }
  H[b + W_BYTES_LO] = lo % COUNT_LIMIT;
  return Math.floor(lo / COUNT_LIMIT);
}

/** Counts one compared packet; returns the carry into CompareConn.packetsHi (0 or 1). */
export function addPacket(H: Int32Array, b: number): number {
  const n = H[b + W_PACKETS_LO]! + 1;
  if (n < COUNT_LIMIT) {
    H[b + W_PACKETS_LO] = n;
    return 0;
  }
  H[b + W_PACKETS_LO] = 0;
  return 1;
}

/**
 * The connection object: its hot state is in the row (accessors below; the table's own —
 * lastActive, closed, list — are TrackedConn's); the rest is cold: touched by handshakes,
 * teardown, flushes, limits, explanations and the table's list upkeep.
 */
export class CompareConn extends TrackedConn {
  /** Stream offsets in explanations are relative to this (primary ISN + 1, or first data seen). */
  base = 0;
  /** The primary's SYN sequence number, to recognise a new incarnation of the same 4-tuple. */
  primaryIsn = 0;
  secondaryIsn = 0;
  /** Highest end of primary TCP data released uncompared (flush, passthrough), to advance compareSeq. */
  flushedEnd = 0;
  /** High parts of the compared counts, in units of COUNT_LIMIT. */
  bytesHi = 0;
  packetsHi = 0;
  miscompareReason: SuspendReason = "payload-differs";
  readonly protocol: ProtocolName;
  /** The records the queue ids name. */
  readonly held: HeldStore;
  // What flowFromKey needs besides the key, packed (S_* below): the tuple and its text are made
  // only when asked for (explanations, introspection, passthrough rules), so opening a connection
  // allocates neither (docs/benchmarks.md, compare daemon, "Many flows").
  readonly #shape: number;
  /** srcPort << 16 | dstPort (int32). */
  readonly #ports: number;
  /** The cold booleans' bits (C_* below). */
  #bits = 0;
  #text: string | null = null;

  /**
   * `m` is the parse of the frame that opens it; `arpIpv4` = isArpIpv4(m, frame); `row` as for
   * TrackedConn (a staged table row, or null).
   */
  constructor(
    held: HeldStore,
    key: string,
    serial: number,
    m: FrameMeta,
    arpIpv4: boolean,
    now: number,
    protocol: ProtocolName,
    row: StagedRow | null = null,
  ) {
    super(key, serial, null, now, row);
    this.held = held;
    this.protocol = protocol;
    // One word each instead of seven fields: every field is 8 bytes of every connection, and a
    // connection's bytes are copied twice by the young-generation collector before it settles.
    this.#shape =
      m.etherType |
      (m.ipVersion << S_IP_VERSION_SHIFT) |
      ((m.proto + 1) << S_PROTO_SHIFT) |
      (m.fragment ? S_FRAGMENT : 0) |
      (arpIpv4 ? S_ARP_IPV4 : 0);
    this.#ports = (m.srcPort << 16) | m.dstPort;
    const r = this.rowArr;
    const b = this.rowBase;
    r[b + W_P_HEAD] = r[b + W_P_TAIL] = r[b + W_S_HEAD] = r[b + W_S_TAIL] = NO_HELD;
    if (protocol === "tcp") r[b + ROW_FLAGS] = F_STREAM;
  }

  protected override makeFlow(): FlowTuple {
    const s = this.#shape;
    return flowFromKey(
      this.key,
      s & 0xffff,
      (s >>> S_IP_VERSION_SHIFT) & 7,
      ((s >>> S_PROTO_SHIFT) & 0x1ff) - 1,
      (s & S_FRAGMENT) !== 0,
      this.#ports >>> 16,
      this.#ports & 0xffff,
      (s & S_ARP_IPV4) !== 0,
    );
  }

  #cold(mask: number): boolean {
    return (this.#bits & mask) !== 0;
  }
  #setCold(mask: number, on: boolean): void {
    this.#bits = on ? this.#bits | mask : this.#bits & ~mask;
  }

  /** A queue-full request was raised for this connection (until the next flush). */
  get queueFullRaised(): boolean {
    return this.#cold(C_QUEUE_FULL_RAISED);
  }
  set queueFullRaised(v: boolean) {
    this.#setCold(C_QUEUE_FULL_RAISED, v);
  }
  get primaryIsnSet(): boolean {
    return this.#cold(C_PRIMARY_ISN_SET);
  }
  set primaryIsnSet(v: boolean) {
    this.#setCold(C_PRIMARY_ISN_SET, v);
  }
  get secondarySyn(): boolean {
    return this.#cold(C_SECONDARY_SYN);
  }
  set secondarySyn(v: boolean) {
    this.#setCold(C_SECONDARY_SYN, v);
  }
  get secondaryRst(): boolean {
    return this.#cold(C_SECONDARY_RST);
  }
  set secondaryRst(v: boolean) {
    this.#setCold(C_SECONDARY_RST, v);
  }
  get primaryFin(): boolean {
    return this.#cold(C_PRIMARY_FIN);
  }
  set primaryFin(v: boolean) {
    this.#setCold(C_PRIMARY_FIN, v);
  }
  get secondaryFin(): boolean {
    return this.#cold(C_SECONDARY_FIN);
  }
  set secondaryFin(v: boolean) {
    this.#setCold(C_SECONDARY_FIN, v);
  }
  get primaryRst(): boolean {
    return this.#cold(C_PRIMARY_RST);
  }
  set primaryRst(v: boolean) {
    this.#setCold(C_PRIMARY_RST, v);
  }
  get flushedEndSet(): boolean {
    return this.#cold(C_FLUSHED_END_SET);
  }
  set flushedEndSet(v: boolean) {
    this.#setCold(C_FLUSHED_END_SET, v);
  }

  /** Human-readable flow (made on first use). */
  get flowText(): string {
    const text = this.#text ?? formatFlow(this.flow);
    this.#text = text;
    return text;
  }

  #get(w: number): number {
    return this.rowArr[this.rowBase + w]!;
  }
  #set(w: number, v: number): void {
    this.rowArr[this.rowBase + w] = v;
  }
  #bit(mask: number): boolean {
    return (this.rowArr[this.rowBase + ROW_FLAGS]! & mask) !== 0;
  }
  #setBit(mask: number, on: boolean): void {
    const i = this.rowBase + ROW_FLAGS;
    const f = this.rowArr[i]!;
    this.rowArr[i] = on ? f | mask : f & ~mask;
  }

  get pHead(): Held | null {
    return this.held.get(this.#get(W_P_HEAD));
  }
  get pCount(): number {
    return this.#get(W_P_COUNT);
  }
  get sHead(): Held | null {
    return this.held.get(this.#get(W_S_HEAD));
  }
  get sCount(): number {
    return this.#get(W_S_COUNT);
  }
  get compareSeq(): number {
    return this.#get(W_COMPARE_SEQ);
  }
  set compareSeq(v: number) {
    this.#set(W_COMPARE_SEQ, v);
  }
  get primaryAck(): number {
    return this.#get(W_PRIMARY_ACK);
  }
  set primaryAck(v: number) {
    this.#set(W_PRIMARY_ACK, v);
  }
  get secondaryAck(): number {
    return this.#get(W_SECONDARY_ACK);
  }
  set secondaryAck(v: number) {
    this.#set(W_SECONDARY_ACK, v);
  }
  get secondaryRight(): number {
    return this.#get(W_SECONDARY_RIGHT);
  }
  set secondaryRight(v: number) {
    this.#set(W_SECONDARY_RIGHT, v);
  }
  get generation(): number {
    return this.#get(W_GENERATION);
  }
  set generation(v: number) {
    this.#set(W_GENERATION, v);
  }
  get bytesLo(): number {
    return this.#get(W_BYTES_LO);
  }
  get packetsLo(): number {
    return this.#get(W_PACKETS_LO);
  }

  /** Matches a passthrough rule: nothing is held or compared. */
  get passthrough(): boolean {
    return this.#bit(F_PASSTHROUGH);
  }
  set passthrough(v: boolean) {
    this.#setBit(F_PASSTHROUGH, v);
  }
  /** TCP connections compare in sequence space; everything else datagram by datagram. */
  get stream(): boolean {
    return this.#bit(F_STREAM);
  }
  /**
   * TCP: a new connection began on this 4-tuple while the old one's packets were held (see
   * CheckpointReason "connection-reused"): until the flush, frames queue in arrival order and
   * the flush then forgets the stream state. Set together with `miscompared`.
   */
  get reused(): boolean {
    return this.#bit(F_REUSED);
  }
  set reused(v: boolean) {
    this.#setBit(F_REUSED, v);
  }
  /** A miscompare was found (or `reused`); comparison is suspended until the next flush. */
  get miscompared(): boolean {
    return this.#bit(F_MISCOMPARED);
  }
  set miscompared(v: boolean) {
    this.#setBit(F_MISCOMPARED, v);
  }
  get compareSeqSet(): boolean {
    return this.#bit(F_COMPARE_SEQ_SET);
  }
  set compareSeqSet(v: boolean) {
    this.#setBit(F_COMPARE_SEQ_SET, v);
  }
  get primaryAckSet(): boolean {
    return this.#bit(F_PRIMARY_ACK_SET);
  }
  set primaryAckSet(v: boolean) {
    this.#setBit(F_PRIMARY_ACK_SET, v);
  }
  get secondaryAckSet(): boolean {
    return this.#bit(F_SECONDARY_ACK_SET);
  }
  set secondaryAckSet(v: boolean) {
    this.#setBit(F_SECONDARY_ACK_SET, v);
  }
  get secondaryRightSet(): boolean {
    return this.#bit(F_SECONDARY_RIGHT_SET);
  }
  set secondaryRightSet(v: boolean) {
    this.#setBit(F_SECONDARY_RIGHT_SET, v);
  }
  get baseSet(): boolean {
    return this.#bit(F_BASE_SET);
  }
  set baseSet(v: boolean) {
    this.#setBit(F_BASE_SET, v);
  }
  /** Window-scale shift from each side's SYN / SYN-ACK (0..14); -1 until that handshake segment is seen. */
  get primaryWscale(): number {
    return ((this.#get(ROW_FLAGS) >>> F_P_WSCALE_SHIFT) & F_WSCALE_MASK) - 1;
  }
  set primaryWscale(v: number) {
    const f = this.#get(ROW_FLAGS);
    this.#set(ROW_FLAGS, (f & ~(F_WSCALE_MASK << F_P_WSCALE_SHIFT)) | ((v + 1) << F_P_WSCALE_SHIFT));
  }
  get secondaryWscale(): number {
    return ((this.#get(ROW_FLAGS) >>> F_S_WSCALE_SHIFT) & F_WSCALE_MASK) - 1;
  }
  set secondaryWscale(v: number) {
    const f = this.#get(ROW_FLAGS);
    this.#set(ROW_FLAGS, (f & ~(F_WSCALE_MASK << F_S_WSCALE_SHIFT)) | ((v + 1) << F_S_WSCALE_SHIFT));
  }

  get bytesCompared(): number {
    return this.bytesHi * COUNT_LIMIT + this.bytesLo;
  }

  get packetsCompared(): number {
    return this.packetsHi * COUNT_LIMIT + this.packetsLo;
  }

  override holding(): boolean {
    return this.pCount + this.sCount > 0;
  }

  /** Forget the TCP stream state (a new connection reusing the 4-tuple). */
  resetStream(): void {
    this.compareSeqSet = false;
    this.baseSet = false;
    this.primaryIsnSet = false;
    this.primaryAckSet = false;
    this.secondaryAckSet = false;
    this.secondarySyn = false;
    this.secondaryRst = false;
    this.primaryFin = false;
    this.secondaryFin = false;
    this.primaryRst = false;
    this.flushedEndSet = false;
    this.primaryWscale = -1;
    this.secondaryWscale = -1;
    this.secondaryRightSet = false;
    this.closed = false;
    this.reused = false;
  }
}
