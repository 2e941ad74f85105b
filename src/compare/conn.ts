/**
 * @module Per-connection compare state: the two queues, the TCP stream position and the
 * secondary's progress used by ack gating. Lives in the conntrack table (implements Tracked).
 */
import type { FlowTuple, ProtocolName } from "../conntrack/flow.ts";
import type { Tracked } from "../conntrack/table.ts";
import type { Held, HeldSide } from "./held.ts";
import type { SuspendReason } from "./types.ts";

// tsx does not inline imported const enums (see engine.ts).
const PRIMARY = 0 as HeldSide;

// Bits of CompareConn.bits: the flags a packet reads, packed into one small integer (one field
// instead of ten). Window scales are stored + 1 in four bits each (0 = not seen yet).
const CLOSED = 1 << 0;
const LIST_SHIFT = 1; // two bits: the table's list id
const LIST_MASK = 3 << LIST_SHIFT;
const PASSTHROUGH = 1 << 3;
const STREAM = 1 << 4;
const MISCOMPARED = 1 << 5;
const COMPARE_SEQ_SET = 1 << 6;
const PRIMARY_ACK_SET = 1 << 7;
const SECONDARY_ACK_SET = 1 << 8;
const SECONDARY_RIGHT_SET = 1 << 9;
const BASE_SET = 1 << 10;
const P_WSCALE_SHIFT = 11;
const S_WSCALE_SHIFT = 15;
const REUSED = 1 << 19;
const WSCALE_MASK = 15;
/** Compared byte/packet counts carry into their high part at 2^30 (stay small integers). */
const COUNT_LIMIT = 0x40000000;

const flag = (bits: number, mask: number, on: boolean): number => (on ? bits | mask : bits & ~mask);

/**
 * Implements the table's Tracked fields itself rather than extending TrackedConn, to control the
 * layout (V8 lays fields out in declaration order): with 100k connections nothing is in cache, and
 * each cache line of the connection a packet touches is a memory miss. So the fields every packet
 * reads or writes come first — 15 fields, 144 bytes with the object header, 3 cache lines — the
 * flags packed into `bits` behind accessors; everything touched only by handshakes, teardown,
 * flushes, limits, explanations and the table's list maintenance follows. The two per-side queues
 * are inlined (intrusive lists of Held) for the same reason. All sequence numbers are int32 (`| 0`,
 * see engine.ts seqAfter) so that they stay small integers: a uint32 >= 2^31 would turn the field
 * into a boxed double, one more object per field for every connection.
 */
export class CompareConn implements Tracked {
  // --- Per packet ---
  // Time fields get a number initializer: declared without one, the field is first defined as
  // undefined and V8 then stores any number as a pointer (see engine.ts activityTime).
  /** Whole milliseconds (see engine.ts activityTime). */
  lastActive = 0;
  /** @internal closed, the table's list id, the per-packet flags and the window scales (see above) */
  bits = 0;
  /** Primary queue (TCP: sequence order; datagrams: arrival order). */
  pHead: Held | null = null;
  pTail: Held | null = null;
  pCount = 0;
  /** Secondary queue. */
  sHead: Held | null = null;
  sTail: Held | null = null;
  sCount = 0;
  /** TCP: everything before compareSeq has been compared (or released by a flush). */
  compareSeq = 0;
  /** TCP: highest ack (sequence space) seen from each side on segments with ACK set. */
  primaryAck = 0;
  secondaryAck = 0;
  /** TCP: right edge (ack + scaled window) of the secondary's receive window, as last advertised. */
  secondaryRight = 0;
  /** The engine's checkpoint count when this connection's secondary state was last brought up to date. */
  generation = 0;
  /** Compared payload bytes and packets, low parts (below COUNT_LIMIT; see bytesCompared). */
  bytesLo = 0;
  packetsLo = 0;

  // --- Rarely touched (handshake, teardown, flushes, limits, explanations, table upkeep) ---
  /** Stream offsets in explanations are relative to this (primary ISN + 1, or first data seen). */
  base = 0;
  /** The primary's SYN sequence number, to recognise a new incarnation of the same 4-tuple. */
  primaryIsn = 0;
  secondaryIsn = 0;
  /** Highest end of primary TCP data released uncompared (flush, passthrough), to advance compareSeq. */
  flushedEnd = 0;
  /** A queue-full request was raised for this connection (until the next flush). */
  queueFullRaised = false;
  primaryIsnSet = false;
  secondarySyn = false;
  secondaryRst = false;
  primaryFin = false;
  secondaryFin = false;
  primaryRst = false;
  flushedEndSet = false;
  /** High parts of the compared counts, in units of COUNT_LIMIT. */
  bytesHi = 0;
  packetsHi = 0;
  miscompareReason: SuspendReason = "payload-differs";
  readonly protocol: ProtocolName;
  /** Human-readable flow (computed once). */
  readonly flowText: string;
  // The table's cold fields (see Tracked).
  listedAt = 0;
  lPrev: Tracked | null = null;
  lNext: Tracked | null = null;
  slot = -1;
  oPrev: Tracked | null = null;
  oNext: Tracked | null = null;
  readonly key: string;
  readonly serial: number;
  readonly flow: FlowTuple;
  readonly createdAt: number = 0;

  constructor(
    key: string,
    serial: number,
    flow: FlowTuple,
    now: number,
    protocol: ProtocolName,
    text: string,
  ) {
    this.lastActive = now;
    if (protocol === "tcp") this.bits = STREAM;
    this.protocol = protocol;
    this.flowText = text;
    this.listedAt = now;
    this.key = key;
    this.serial = serial;
    this.flow = flow;
    this.createdAt = now;
  }

  /** Set when the flow has ended (FIN exchange, RST); the table prefers it for eviction. */
  get closed(): boolean {
    return (this.bits & CLOSED) !== 0;
  }
  set closed(v: boolean) {
    this.bits = flag(this.bits, CLOSED, v);
  }
  /** @internal the table's list id */
  get list(): number {
    return (this.bits & LIST_MASK) >>> LIST_SHIFT;
  }
  set list(v: number) {
    this.bits = (this.bits & ~LIST_MASK) | (v << LIST_SHIFT);
  }
  /** Matches a passthrough rule: nothing is held or compared. */
  get passthrough(): boolean {
    return (this.bits & PASSTHROUGH) !== 0;
  }
  set passthrough(v: boolean) {
    this.bits = flag(this.bits, PASSTHROUGH, v);
  }
  /** TCP connections compare in sequence space; everything else datagram by datagram. */
  get stream(): boolean {
    return (this.bits & STREAM) !== 0;
  }
  /**
   * TCP: a new connection began on this 4-tuple while the old one's packets were held (see
   * CheckpointReason "connection-reused"): until the flush, frames queue in arrival order and
   * the flush then forgets the stream state. Set together with `miscompared`.
   */
  get reused(): boolean {
    return (this.bits & REUSED) !== 0;
  }
  set reused(v: boolean) {
    this.bits = flag(this.bits, REUSED, v);
  }
  /** A miscompare was found (or `reused`); comparison is suspended until the next flush. */
  get miscompared(): boolean {
    return (this.bits & MISCOMPARED) !== 0;
  }
  set miscompared(v: boolean) {
    this.bits = flag(this.bits, MISCOMPARED, v);
  }
  get compareSeqSet(): boolean {
    return (this.bits & COMPARE_SEQ_SET) !== 0;
  }
  set compareSeqSet(v: boolean) {
    this.bits = flag(this.bits, COMPARE_SEQ_SET, v);
  }
  get primaryAckSet(): boolean {
    return (this.bits & PRIMARY_ACK_SET) !== 0;
  }
  set primaryAckSet(v: boolean) {
    this.bits = flag(this.bits, PRIMARY_ACK_SET, v);
  }
  get secondaryAckSet(): boolean {
    return (this.bits & SECONDARY_ACK_SET) !== 0;
  }
  set secondaryAckSet(v: boolean) {
    this.bits = flag(this.bits, SECONDARY_ACK_SET, v);
  }
  get secondaryRightSet(): boolean {
    return (this.bits & SECONDARY_RIGHT_SET) !== 0;
  }
  set secondaryRightSet(v: boolean) {
    this.bits = flag(this.bits, SECONDARY_RIGHT_SET, v);
  }
  get baseSet(): boolean {
    return (this.bits & BASE_SET) !== 0;
  }
  set baseSet(v: boolean) {
    this.bits = flag(this.bits, BASE_SET, v);
  }
  /** Window-scale shift from each side's SYN / SYN-ACK (0..14); -1 until that handshake segment is seen. */
  get primaryWscale(): number {
    return ((this.bits >>> P_WSCALE_SHIFT) & WSCALE_MASK) - 1;
  }
  set primaryWscale(v: number) {
    this.bits = (this.bits & ~(WSCALE_MASK << P_WSCALE_SHIFT)) | ((v + 1) << P_WSCALE_SHIFT);
  }
  get secondaryWscale(): number {
    return ((this.bits >>> S_WSCALE_SHIFT) & WSCALE_MASK) - 1;
  }
  set secondaryWscale(v: number) {
    this.bits = (this.bits & ~(WSCALE_MASK << S_WSCALE_SHIFT)) | ((v + 1) << S_WSCALE_SHIFT);
  }

  /** Counts compared payload bytes. */
  addBytes(n: number): void {
    const lo = this.bytesLo + n;
    if (lo < COUNT_LIMIT) this.bytesLo = lo;
    else {
      this.bytesHi += Math.floor(lo / COUNT_LIMIT);
      this.bytesLo = lo % COUNT_LIMIT;
    }
  }

  /** Counts one compared packet. */
  addPacket(): void {
    if (++this.packetsLo === COUNT_LIMIT) {
      this.packetsHi++;
      this.packetsLo = 0;
    }
  }

  get bytesCompared(): number {
    return this.bytesHi * COUNT_LIMIT + this.bytesLo;
  }

  get packetsCompared(): number {
    return this.packetsHi * COUNT_LIMIT + this.packetsLo;
  }

  holding(): boolean {
    return this.pCount + this.sCount > 0;
  }

  /** Appends a record to its side's queue (h.side). */
  push(h: Held): void {
    if (h.side === PRIMARY) {
      h.prev = this.pTail;
      h.next = null;
      if (this.pTail !== null) this.pTail.next = h;
      else this.pHead = h;
      this.pTail = h;
      this.pCount++;
    } else {
      h.prev = this.sTail;
      h.next = null;
      if (this.sTail !== null) this.sTail.next = h;
      else this.sHead = h;
      this.sTail = h;
      this.sCount++;
    }
  }

  /**
   * Inserts into its side's queue keeping ascending TCP sequence order (signed 32-bit difference,
   * so it survives wraparound); equal sequence numbers keep arrival order. Scans from the tail:
   * in-order arrivals, the common case, cost O(1). On a `reused` connection the new segments are
   * in another sequence space: they go to the tail, in arrival order.
   */
  insertBySeq(h: Held): void {
    if (this.reused) {
      this.push(h);
      return;
    }
    const primary = h.side === PRIMARY;
    const tail = primary ? this.pTail : this.sTail;
    let at = tail;
    while (at !== null && ((at.seq - h.seq) | 0) > 0) at = at.prev;
    if (at === tail) {
      this.push(h);
      return;
    }
    h.prev = at;
    h.next = at === null ? (primary ? this.pHead : this.sHead) : at.next;
    if (h.next !== null) h.next.prev = h;
    if (at !== null) at.next = h;
    else if (primary) this.pHead = h;
    else this.sHead = h;
    if (primary) this.pCount++;
    else this.sCount++;
  }

  /** Unlinks a record from its side's queue. */
  remove(h: Held): void {
    const primary = h.side === PRIMARY;
    if (h.prev !== null) h.prev.next = h.next;
    else if (primary) this.pHead = h.next;
    else this.sHead = h.next;
    if (h.next !== null) h.next.prev = h.prev;
    else if (primary) this.pTail = h.prev;
    else this.sTail = h.prev;
    h.prev = null;
    h.next = null;
    if (primary) this.pCount--;
    else this.sCount--;
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
