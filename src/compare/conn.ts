/**
 * @module Per-connection compare state: the two queues, the TCP stream position and the
 * secondary's progress used by ack gating. Lives in the conntrack table (TrackedConn).
 */
import type { FlowTuple, ProtocolName } from "../conntrack/flow.ts";
import { TrackedConn } from "../conntrack/table.ts";
import type { Held, HeldSide } from "./held.ts";
import type { MiscompareReason } from "./types.ts";

// tsx does not inline imported const enums (see engine.ts).
const PRIMARY = 0 as HeldSide;

export class CompareConn extends TrackedConn {
  // Field order is layout order: the fields every packet touches come first so that, with 100k
  // connections (nothing in cache), a packet costs as few cache lines of its connection as possible.
  // The two per-side queues are inlined here (intrusive lists of Held) for the same reason: separate
  // queue objects cost two more cache misses per packet.

  /** Matches a passthrough rule: nothing is held or compared. */
  passthrough = false;
  /** TCP connections compare in sequence space; everything else datagram by datagram. */
  readonly stream: boolean;
  /** A miscompare was found; comparison is suspended until the next flush. */
  miscompared = false;
  /** Primary queue (TCP: sequence order; datagrams: arrival order). */
  pHead: Held | null = null;
  pTail: Held | null = null;
  pCount = 0;
  /** Secondary queue. */
  sHead: Held | null = null;
  sTail: Held | null = null;
  sCount = 0;

  // --- TCP stream state (sequence numbers are int32, `| 0`: kept unboxed, see engine.ts seqAfter) ---
  // Read or written by every TCP data packet (with the queues above: 24 fields, 3 cache lines):
  /** Everything before compareSeq has been compared (or released by a flush). */
  compareSeqSet = false;
  compareSeq = 0;
  /** Highest ack (sequence space) seen from each side on segments with ACK set. */
  primaryAckSet = false;
  primaryAck = 0;
  secondaryAckSet = false;
  secondaryAck = 0;
  /** The engine's checkpoint count when this connection's secondary state was last brought up to date. */
  generation = 0;
  /** Right edge (ack + scaled window) of the secondary's receive window, as last advertised. */
  secondaryRightSet = false;
  secondaryRight = 0;
  /** Window-scale shift from each side's SYN / SYN-ACK; -1 until that handshake segment is seen. */
  primaryWscale = -1;
  secondaryWscale = -1;
  bytesCompared = 0;
  packetsCompared = 0;
  /** Stream offsets in explanations are relative to this (primary ISN + 1, or first data seen). */
  baseSet = false;
  base = 0;
  // Rarely touched (handshake, teardown, limits):
  /** A queue-full request was raised for this connection (until the next flush). */
  queueFullRaised = false;
  /** The primary's SYN sequence number, to recognise a new incarnation of the same 4-tuple. */
  primaryIsnSet = false;
  primaryIsn = 0;
  secondarySyn = false;
  secondaryIsn = 0;
  secondaryRst = false;
  primaryFin = false;
  secondaryFin = false;
  primaryRst = false;
  /** Highest end of primary TCP data released uncompared (flush, passthrough), to advance compareSeq. */
  flushedEndSet = false;
  flushedEnd = 0;
  miscompareReason: MiscompareReason = "payload-differs";
  readonly protocol: ProtocolName;
  /** Human-readable flow (computed once). */
  readonly flowText: string;

  constructor(
    key: string,
    serial: number,
    flow: FlowTuple,
    now: number,
    protocol: ProtocolName,
    text: string,
  ) {
    super(key, serial, flow, now);
    this.stream = protocol === "tcp";
    this.protocol = protocol;
    this.flowText = text;
  }

  override holding(): boolean {
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
   * in-order arrivals, the common case, cost O(1).
   */
  insertBySeq(h: Held): void {
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
  }
}
