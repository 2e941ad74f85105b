/**
 * @module Public types of the compare engine: configuration, the output sink, checkpoint
 * requests (with their explanation), reasons and per-flow rows. See docs/compare.md.
 */
import type { ProtocolName } from "../conntrack/flow.ts";

export type Side = "primary" | "secondary";

/** Why a checkpoint was asked for. */
export type CheckpointReason =
  /** TCP: bytes at the same stream position differ; datagram: same length, different bytes. */
  | "payload-differs"
  /** Datagram (UDP/ICMP/other/ARP): the two copies' compared regions have different lengths. */
  | "size-differs"
  /** TCP: the two streams' next uncompared bytes start at different sequence numbers (a gap). */
  | "seq-mismatch"
  /** A held packet (either side) is older than compare_timeout at a tick. */
  | "timeout"
  /** A connection's queue on one side reached max_queue_size. */
  | "queue-full"
  /** The connection table is full and no connection can be evicted (all hold packets). */
  | "table-full"
  /**
   * TCP: a new connection (a SYN with a new ISN, or a SYN after the old one closed) began on a
   * 4-tuple whose previous connection still holds packets. Those belong to the old sequence
   * space, so neither can be compared with the other: comparison is suspended on the flow until
   * the flush, which releases both in arrival order and starts the stream state afresh.
   */
  | "connection-reused";

export const CHECKPOINT_REASONS: readonly CheckpointReason[] = [
  "payload-differs",
  "size-differs",
  "seq-mismatch",
  "timeout",
  "queue-full",
  "table-full",
  "connection-reused",
];

/** Miscompare reasons are the checkpoint reasons that come from comparing two packets. */
export type MiscompareReason = "payload-differs" | "size-differs" | "seq-mismatch";

/** Why comparison is suspended on a connection until the next flush. */
export type SuspendReason = MiscompareReason | "connection-reused";

/** Why a secondary frame was discarded (the secondary is never output). */
export type DiscardReason =
  /** Its bytes were compared and matched a primary packet. */
  | "matched"
  /** TCP segment without payload (pure ACK, SYN, FIN, RST): never compared, only tracked. */
  | "no-payload"
  /** TCP bytes entirely below the compared position (retransmission, stale pre-checkpoint output). */
  | "already-compared"
  /** Dropped by a checkpoint flush. */
  | "flush"
  /** The frame did not parse. */
  | "malformed"
  /** The flow matches a passthrough rule. */
  | "passthrough"
  /** compatPassthrough is on and the frame is one QEMU does not compare (non-IPv4, VLAN). */
  | "compat"
  /** The engine is in failover mode. */
  | "failover"
  /** The connection's secondary queue was full (a checkpoint has been requested). */
  | "queue-full";

export const DISCARD_REASONS: readonly DiscardReason[] = [
  "matched",
  "no-payload",
  "already-compared",
  "flush",
  "malformed",
  "passthrough",
  "compat",
  "failover",
  "queue-full",
];

/** Why a primary frame was released (for stats and the hold-time hook). */
export type ReleaseReason =
  /** Compared equal with the secondary. */
  | "matched"
  /** TCP segment without payload released once the secondary caught up. */
  | "no-payload"
  /** TCP retransmission of an already-compared range. */
  | "retransmit"
  /** Released by a checkpoint flush. */
  | "flush"
  /** Released because of failover (flush at failover and pass-through afterwards). */
  | "failover"
  /** The flow matches a passthrough rule. */
  | "passthrough"
  /** compatPassthrough (QEMU-like pass-through of non-IPv4 / VLAN frames). */
  | "compat"
  /** The frame did not parse: released unchanged, as QEMU does. */
  | "malformed";

export const RELEASE_REASONS: readonly ReleaseReason[] = [
  "matched",
  "no-payload",
  "retransmit",
  "flush",
  "failover",
  "passthrough",
  "compat",
  "malformed",
];

/** A checkpoint request with everything needed to explain it in a log line or an event. */
export interface CheckpointRequest {
  reason: CheckpointReason;
  /** The engine clock (`now`) when raised. */
  time: number;
  /** True when this re-notifies a request that is still pending (renotify mode, or a retry). */
  repeat: boolean;
  /** Connection concerned (absent only when none applies). */
  key?: string;
  /** Human-readable flow, e.g. `tcp 10.0.0.1:80 > 10.0.0.2:5555`. */
  flow?: string;
  protocol?: ProtocolName;
  /** timeout / queue-full: the side whose queue is concerned. */
  side?: Side;
  /** TCP miscompare: absolute sequence number of the first differing byte (or the primary's gap start). */
  seq?: number;
  /** TCP miscompare: offset of that byte in the stream (from the primary's ISN+1, or its first data byte seen). */
  streamOffset?: number;
  /** Datagram miscompare: offset of the first differing byte in the compared region (L4 header for UDP/ICMP). */
  offset?: number;
  /** seq-mismatch: next uncompared sequence number on each side. */
  primarySeq?: number;
  secondarySeq?: number;
  /** Datagram: compared lengths on each side. */
  primaryLength?: number;
  secondaryLength?: number;
  /** Hexdump of up to 32 bytes around the first difference, and the offset its first byte has. */
  primaryHex?: string;
  secondaryHex?: string;
  hexOffset?: number;
  /** timeout: age of the oldest held packet in ms. */
  ageMs?: number;
  /** queue-full: queue depth; table-full: connections in the table. */
  depth?: number;
  /** One line for humans. */
  message: string;
}

/** Where the engine's decisions go. Callbacks must not call back into the engine synchronously. */
export interface CompareSink {
  /** Output this primary frame now (in call order). The engine no longer references it. */
  release(frame: Buffer, vnetLen: number): void;
  /** This secondary frame is dropped. The engine no longer references it. */
  discard(frame: Buffer, vnetLen: number, side: Side, reason: DiscardReason): void;
  checkpointRequest(request: CheckpointRequest): void;
  /** paused=true: stop reading that input until the next checkpoint flush (paused=false). */
  backpressure(side: Side, paused: boolean): void;
  /** Optional: time a primary frame spent in the engine (arrival → release), for a histogram. */
  holdTime?(ms: number, reason: ReleaseReason): void;
  /**
   * Optional: every frame that parsed, with its connection key, before the engine acts on it
   * (so a shell can keep per-connection history, e.g. miscompare captures, without parsing
   * again). Absent = not called.
   */
  observe?(side: Side, key: string, frame: Buffer, vnetLen: number): void;
}

export interface CompareConfig {
  /** ms a packet may wait for its twin before a checkpoint is requested (QEMU compare_timeout). */
  compareTimeout: number;
  /** ms between `tick()` calls the shell should make (QEMU expired_scan_cycle); stored, not used inside. */
  expiredScanCycle: number;
  /** Packets per connection per side before a checkpoint is requested and backpressure applied. */
  maxQueueSize: number;
  /** Connection table bound. */
  maxConnections: number;
  /** ms after which a connection holding nothing expires. */
  idleTimeout: number;
  /** ms after which a closed (FIN exchange / RST) connection holding nothing expires. */
  closedTimeout: number;
  /** Pass non-IPv4 and VLAN-tagged frames through uncompared, as QEMU does. */
  compatPassthrough: boolean;
  /**
   * Re-notify like QEMU: a checkpoint request on every trigger (every tick with an expired packet,
   * every packet on a miscompared connection) even while one is pending. Default: coalesce.
   */
  renotify: boolean;
  /** When coalescing: re-send a pending request after this many ms without checkpointDone (0 = never). */
  checkpointRetry: number;
}

export interface ConnectionInfo {
  key: string;
  flow: string;
  protocol: ProtocolName;
  /**
   * "open" | "closing" (one side sent FIN) | "closed" | "miscompared" (until the next flush) |
   * "reused" (a new TCP connection began while the old one held packets; until the next flush) |
   * "passthrough"
   */
  state: string;
  primaryQueued: number;
  secondaryQueued: number;
  /** ms since the oldest packet still held arrived; 0 when nothing is held. */
  oldestHeldMs: number;
  bytesCompared: number;
  packetsCompared: number;
  createdAt: number;
  lastActive: number;
}
