/**
 * @module Per-connection compare state: the two queues, the TCP stream position and the
 * secondary's progress used by ack gating. Lives in the conntrack table (TrackedConn).
 */
import type { FlowTuple, ProtocolName } from "../conntrack/flow.ts";
import { TrackedConn } from "../conntrack/table.ts";
import { HeldQueue } from "./held.ts";
import type { MiscompareReason } from "./types.ts";

export class CompareConn extends TrackedConn {
  readonly protocol: ProtocolName;
  /** TCP connections compare in sequence space; everything else datagram by datagram. */
  readonly stream: boolean;
  /** Human-readable flow (computed once). */
  readonly flowText: string;
  readonly primary = new HeldQueue();
  readonly secondary = new HeldQueue();
  /** Matches a passthrough rule: nothing is held or compared. */
  passthrough = false;
  /** A miscompare was found; comparison is suspended until the next flush. */
  miscompared = false;
  miscompareReason: MiscompareReason = "payload-differs";
  /** A queue-full request was raised for this connection (until the next flush). */
  queueFullRaised = false;
  bytesCompared = 0;
  packetsCompared = 0;

  // --- TCP stream state (sequence numbers are uint32) ---
  /** Everything before compareSeq has been compared (or released by a flush). */
  compareSeqSet = false;
  compareSeq = 0;
  /** Stream offsets in explanations are relative to this (primary ISN + 1, or first data seen). */
  baseSet = false;
  base = 0;
  /** The primary's SYN sequence number, to recognise a new incarnation of the same 4-tuple. */
  primaryIsnSet = false;
  primaryIsn = 0;
  /** Highest ack (sequence space) seen from each side on segments with ACK set. */
  primaryAckSet = false;
  primaryAck = 0;
  secondaryAckSet = false;
  secondaryAck = 0;
  secondarySyn = false;
  secondaryIsn = 0;
  secondaryRst = false;
  primaryFin = false;
  secondaryFin = false;
  primaryRst = false;
  /** Highest end of primary TCP data released uncompared (flush, passthrough), to advance compareSeq. */
  flushedEndSet = false;
  flushedEnd = 0;

  constructor(
    key: string,
    serial: number,
    flow: FlowTuple,
    now: number,
    protocol: ProtocolName,
    text: string,
  ) {
    super(key, serial, flow, now);
    this.protocol = protocol;
    this.stream = protocol === "tcp";
    this.flowText = text;
  }

  override holding(): boolean {
    return this.primary.count + this.secondary.count > 0;
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
    this.closed = false;
  }
}
