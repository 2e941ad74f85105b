/**
 * @module Glue between the compare engine (src/compare) and the control layer, so a daemon
 * built on CompareEngine gets its query-stats / metrics / events with two calls:
 *
 * ```ts
 * const hold = new Histogram(HOLD_TIME_BOUNDS); // sink.holdTime = (ms) => hold.observe(ms / 1000)
 * stats: () => compareSnapshot(engine.liveStats, { holdTime: hold, checkpointInterval, endpoints, links }),
 * sink.checkpointRequest = (req) => control.emit("CHECKPOINT_REQUEST", checkpointEventData(req, epoch)),
 * ```
 */
import type { CompareStats } from "../compare/stats.ts";
import type { CheckpointRequest } from "../compare/types.ts";
import {
  CHECKPOINT_INTERVAL_BOUNDS,
  type EndpointCounters,
  type Histogram,
  type HistogramSnapshot,
  HOLD_TIME_BOUNDS,
  type StatsSnapshot,
} from "./stats.ts";
import type { CheckpointRequestData } from "./target.ts";

export interface CompareSnapshotExtra {
  /** Daemon-level endpoint counters (chardev sockets); default: derived from the engine's totals. */
  endpoints?: Record<string, EndpointCounters>;
  links?: Record<string, boolean>;
  /** Bad input seen outside the engine (framing errors ...), by code; added to the engine's. */
  badInput?: Record<string, number>;
  /** Frames lost outside the engine (e.g. an output queue overflow), by reason. */
  dropped?: Record<string, number>;
  holdTime?: Histogram;
  checkpointInterval?: Histogram;
}

function emptyHistogram(bounds: readonly number[]): HistogramSnapshot {
  return { bounds: [...bounds], counts: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 };
}

/** The control layer's StatsSnapshot from the engine's counters (copied; `cs` may be liveStats). */
export function compareSnapshot(cs: Readonly<CompareStats>, extra: CompareSnapshotExtra = {}): StatsSnapshot {
  const miscompares: Record<string, Record<string, number>> = {};
  for (const [proto, byReason] of Object.entries(cs.miscompares)) {
    for (const [reason, n] of Object.entries(byReason)) {
      let r = miscompares[reason];
      if (r === undefined) {
        r = {};
        miscompares[reason] = r;
      }
      r[proto] = n;
    }
  }
  const badInput: Record<string, number> = { ...extra.badInput };
  for (const side of [cs.badInput.primary, cs.badInput.secondary]) {
    for (const [code, n] of Object.entries(side)) badInput[code] = (badInput[code] ?? 0) + n;
  }
  const endpoints: Record<string, EndpointCounters> = {};
  if (extra.endpoints !== undefined) {
    for (const [k, v] of Object.entries(extra.endpoints)) endpoints[k] = { ...v };
  } else {
    endpoints.primary_in = {
      framesIn: cs.primaryFrames,
      bytesIn: cs.primaryBytes,
      framesOut: 0,
      bytesOut: 0,
    };
    endpoints.secondary_in = {
      framesIn: cs.secondaryFrames,
      bytesIn: cs.secondaryBytes,
      framesOut: 0,
      bytesOut: 0,
    };
    endpoints.outdev = { framesIn: 0, bytesIn: 0, framesOut: cs.released, bytesOut: cs.releasedBytes };
  }
  return {
    endpoints,
    released: { ...cs.releasedBy },
    discarded: { ...cs.discardedBy },
    dropped: { ...extra.dropped, "empty-frame": cs.primaryDropped },
    miscompares,
    checkpointRequests: { ...cs.checkpointRequests },
    checkpoints: cs.checkpoints,
    checkpointInterval: extra.checkpointInterval?.snapshot() ?? emptyHistogram(CHECKPOINT_INTERVAL_BOUNDS),
    holdTime: extra.holdTime?.snapshot() ?? emptyHistogram(HOLD_TIME_BOUNDS),
    queues: { primary: cs.heldPrimary, secondary: cs.heldSecondary },
    connections: { active: cs.connections, opened: cs.connectionsCreated },
    badInput,
    links: { ...extra.links },
    counters: {
      checkpoint_coalesced: cs.checkpointCoalesced,
      over_queue_limit: cs.overQueueLimit,
      connections_expired: cs.connectionsExpired,
      connections_evicted: cs.connectionsEvicted,
      connections_reused: cs.connectionsReused,
      connections_over_limit: cs.connectionsOverLimit,
      backpressure_events: cs.backpressureEvents,
      window_clamped: cs.windowClamped,
    },
    gauges: { held_primary_bytes: cs.heldPrimaryBytes, failover: cs.failover ? 1 : 0 },
  };
}

/** `de ad be ef` (the engine's dump format) → `deadbeef`. */
function compact(hex: string): string {
  return hex.replace(/\s+/g, "");
}

/**
 * The CHECKPOINT_REQUEST event data for an engine request: `message` becomes `explanation`,
 * the stream (TCP) or region (datagram) offset becomes `offset`, the dumps become hex windows;
 * every other field (seq, side, ageMs, depth, lengths, repeat ...) is passed along as is.
 */
export function checkpointEventData(req: CheckpointRequest, epoch: number): CheckpointRequestData {
  const { message, primaryHex, secondaryHex, hexOffset, streamOffset, offset, time: _time, ...rest } = req;
  const data: CheckpointRequestData = { ...rest, explanation: message, epoch };
  const at = streamOffset ?? offset;
  if (at !== undefined) data.offset = at;
  if (primaryHex !== undefined) data.primary = { offset: hexOffset ?? 0, hex: compact(primaryHex) };
  if (secondaryHex !== undefined) data.secondary = { offset: hexOffset ?? 0, hex: compact(secondaryHex) };
  return data;
}
