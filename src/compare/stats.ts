/**
 * @module Compare engine counters. Plain objects with a fixed shape (fast to bump on the hot
 * path); `snapshot()` copies them for the control socket / metrics.
 */
import { PROTOCOL_NAMES, type ProtocolName } from "../conntrack/flow.ts";
import {
  CHECKPOINT_REASONS,
  type CheckpointReason,
  DISCARD_REASONS,
  type DiscardReason,
  type MiscompareReason,
  RELEASE_REASONS,
  type ReleaseReason,
} from "./types.ts";

/** Bad-input counters are keyed by the stable error code of the parse status. */
export const PARSE_STATUS_CODES = [
  "COLO_ERR_PKT_TRUNCATED",
  "COLO_ERR_PKT_BAD_LENGTH",
  "COLO_ERR_PKT_BAD_HEADER",
  "COLO_ERR_PKT_EXT_CHAIN",
  /** Frame no longer than its vnet header: nothing to release (the only primary drop). */
  "COLO_ERR_FRAME_EMPTY",
] as const;
export type BadInputCode = (typeof PARSE_STATUS_CODES)[number];

function zeros<K extends string>(keys: readonly K[]): Record<K, number> {
  const o = {} as Record<K, number>;
  for (const k of keys) o[k] = 0;
  return o;
}

export interface CompareStats {
  primaryFrames: number;
  primaryBytes: number;
  secondaryFrames: number;
  secondaryBytes: number;
  /** Primary frames output, total and by reason. */
  released: number;
  releasedBytes: number;
  releasedBy: Record<ReleaseReason, number>;
  /** Primary frames released because they compared equal (= releasedBy.matched). */
  matched: number;
  /** Primary frames dropped by explicit policy (only empty frames, see PARSE_STATUS_CODES). */
  primaryDropped: number;
  /** Secondary frames discarded, total and by reason. */
  discarded: number;
  discardedBy: Record<DiscardReason, number>;
  /** Miscompares by protocol, then reason. */
  miscompares: Record<ProtocolName, Record<MiscompareReason, number>>;
  miscomparesTotal: number;
  /** Checkpoint requests sent to the sink, by reason. */
  checkpointRequests: Record<CheckpointReason, number>;
  /** Triggers that did not produce a request because one was pending (coalesced). */
  checkpointCoalesced: number;
  /** Flushes done (checkpointDone calls). */
  checkpoints: number;
  /** Frames held now. */
  heldPrimary: number;
  heldSecondary: number;
  heldPrimaryBytes: number;
  /** Primary frames held beyond max_queue_size (accepted; never dropped). */
  overQueueLimit: number;
  connections: number;
  connectionsCreated: number;
  connectionsExpired: number;
  connectionsEvicted: number;
  /** TCP connections begun on a 4-tuple whose previous connection still held packets. */
  connectionsReused: number;
  /** Connections admitted while the table was full and nothing was evictable. */
  connectionsOverLimit: number;
  /** Malformed frames by stable code, per side. */
  badInput: { primary: Record<BadInputCode, number>; secondary: Record<BadInputCode, number> };
  backpressureEvents: number;
  /** Released primary TCP segments whose window was lowered to the secondary's (window clamp). */
  windowClamped: number;
  failover: boolean;
}

export function newStats(): CompareStats {
  const miscompares = {} as Record<ProtocolName, Record<MiscompareReason, number>>;
  for (const p of PROTOCOL_NAMES) {
    miscompares[p] = { "payload-differs": 0, "size-differs": 0, "seq-mismatch": 0 };
  }
  return {
    primaryFrames: 0,
    primaryBytes: 0,
    secondaryFrames: 0,
    secondaryBytes: 0,
    released: 0,
    releasedBytes: 0,
    releasedBy: zeros(RELEASE_REASONS),
    matched: 0,
    primaryDropped: 0,
    discarded: 0,
    discardedBy: zeros(DISCARD_REASONS),
    miscompares,
    miscomparesTotal: 0,
    checkpointRequests: zeros(CHECKPOINT_REASONS),
    checkpointCoalesced: 0,
    checkpoints: 0,
    heldPrimary: 0,
    heldSecondary: 0,
    heldPrimaryBytes: 0,
    overQueueLimit: 0,
    connections: 0,
    connectionsCreated: 0,
    connectionsExpired: 0,
    connectionsEvicted: 0,
    connectionsReused: 0,
    connectionsOverLimit: 0,
    badInput: { primary: zeros(PARSE_STATUS_CODES), secondary: zeros(PARSE_STATUS_CODES) },
    backpressureEvents: 0,
    windowClamped: 0,
    failover: false,
  };
}

/** Deep copy, safe to hand out. */
export function snapshotStats(s: CompareStats): CompareStats {
  return structuredClone(s);
}
