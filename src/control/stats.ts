/**
 * @module The one stats source a daemon keeps: plain numbers it bumps on the hot path, read
 * (never incremented separately) by `query-stats`, the Prometheus endpoint and the dashboard,
 * so all three always agree exactly.
 *
 * `StatsSnapshot` is the contract (what ControlTarget.stats() returns); `ColoStats` is a ready
 * mutable implementation a daemon may embed. Both are JSON-safe (records, not Maps).
 */

/** Frames and bytes through one endpoint (a chardev socket, the primary/secondary link, ...). */
export interface EndpointCounters {
  framesIn: number;
  bytesIn: number;
  framesOut: number;
  bytesOut: number;
}

/**
 * A fixed-bucket histogram. `bounds` are the bucket upper bounds in seconds, ascending, without
 * +Inf; `counts[i]` is the number of observations in bucket i (NOT cumulative), and
 * `counts[bounds.length]` those above the last bound.
 */
export interface HistogramSnapshot {
  bounds: number[];
  counts: number[];
  sum: number;
  count: number;
}

export interface StatsSnapshot {
  /** Per endpoint name (e.g. "primary_in", "secondary_in", "outdev", "link"). */
  endpoints: Record<string, EndpointCounters>;
  /** Primary frames released toward the client, by reason (compare engine: "matched", "flush", "passthrough", "failover", ...). */
  released: Record<string, number>;
  /** Secondary frames discarded (they are never output), by reason ("matched", "flush", ...). */
  discarded?: Record<string, number>;
  /** Frames lost, by reason (should stay empty: nothing is dropped silently). */
  dropped: Record<string, number>;
  /** Miscompares by reason, then by protocol ("tcp", "udp", "icmp", "icmpv6", "arp", "other"). */
  miscompares: Record<string, Record<string, number>>;
  /** Checkpoint requests sent (notify / DO_CHECKPOINT), by reason. */
  checkpointRequests: Record<string, number>;
  /** Completed checkpoints (checkpoint-done / COLO_CHECKPOINT received). */
  checkpoints: number;
  /** Seconds between consecutive completed checkpoints. */
  checkpointInterval: HistogramSnapshot;
  /** Seconds a primary frame was held, from arrival to release. */
  holdTime: HistogramSnapshot;
  /** Frames currently queued, per side. */
  queues: { primary: number; secondary: number };
  /** Tracked connections now, and opened since start. */
  connections: { active: number; opened: number };
  /** Bad input by stable error code (COLO_ERR_...). */
  badInput: Record<string, number>;
  /** Per link/peer name: true when up. */
  links: Record<string, boolean>;
  /** Further monotonic counters by snake_case name (e.g. "checkpoint_coalesced", "connections_expired"). */
  counters?: Record<string, number>;
  /** Further current values by snake_case name (e.g. "held_primary_bytes"). */
  gauges?: Record<string, number>;
}

/** Default hold-time buckets (seconds): sub-millisecond matches up to multi-second timeouts. */
export const HOLD_TIME_BOUNDS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** Default checkpoint-interval buckets (seconds). */
export const CHECKPOINT_INTERVAL_BOUNDS = [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300];

/** A fixed-bucket histogram cheap enough for the hot path: no allocation per observation. */
export class Histogram {
  readonly bounds: readonly number[];
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    for (let i = 1; i < bounds.length; i++) {
      if (!((bounds[i] as number) > (bounds[i - 1] as number))) throw new RangeError("bounds must ascend");
    }
    this.bounds = bounds;
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(seconds: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && seconds > (b[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += seconds;
    this.count++;
  }

  snapshot(): HistogramSnapshot {
    return { bounds: [...this.bounds], counts: [...this.counts], sum: this.sum, count: this.count };
  }
}

/**
 * Estimates quantile q (0..1) from a histogram snapshot by linear interpolation inside the
 * bucket, as Prometheus' histogram_quantile() does. Returns null when empty; observations above
 * the last bound are reported as the last bound.
 */
export function histogramQuantile(h: HistogramSnapshot, q: number): number | null {
  if (h.count === 0) return null;
  const rank = q * h.count;
  let seen = 0;
  for (let i = 0; i < h.counts.length; i++) {
    const c = h.counts[i] as number;
    if (seen + c >= rank && c > 0) {
      if (i >= h.bounds.length) return h.bounds[h.bounds.length - 1] ?? null;
      const lo = i === 0 ? 0 : (h.bounds[i - 1] as number);
      const hi = h.bounds[i] as number;
      return lo + (hi - lo) * ((rank - seen) / c);
    }
    seen += c;
  }
  return h.bounds[h.bounds.length - 1] ?? null;
}

function bump(rec: Record<string, number>, key: string, n: number): void {
  rec[key] = (rec[key] ?? 0) + n;
}

/**
 * Mutable stats for a daemon. Hot path: keep the object from `endpoint(name)` and bump its
 * fields directly; the record-keyed counters cost one property lookup.
 */
export class ColoStats {
  readonly endpoints: Record<string, EndpointCounters> = {};
  readonly released: Record<string, number> = {};
  readonly discarded: Record<string, number> = {};
  readonly dropped: Record<string, number> = {};
  readonly miscompares: Record<string, Record<string, number>> = {};
  readonly checkpointRequests: Record<string, number> = {};
  checkpoints = 0;
  readonly checkpointInterval = new Histogram(CHECKPOINT_INTERVAL_BOUNDS);
  readonly holdTime = new Histogram(HOLD_TIME_BOUNDS);
  readonly queues = { primary: 0, secondary: 0 };
  readonly connections = { active: 0, opened: 0 };
  readonly badInput: Record<string, number> = {};
  readonly links: Record<string, boolean> = {};
  #lastCheckpointMs = -1;

  /** The live counters of an endpoint, created on first use. */
  endpoint(name: string): EndpointCounters {
    let e = this.endpoints[name];
    if (e === undefined) {
      e = { framesIn: 0, bytesIn: 0, framesOut: 0, bytesOut: 0 };
      this.endpoints[name] = e;
    }
    return e;
  }

  release(cause: string, frames = 1): void {
    bump(this.released, cause, frames);
  }

  discard(reason: string, frames = 1): void {
    bump(this.discarded, reason, frames);
  }

  drop(reason: string, frames = 1): void {
    bump(this.dropped, reason, frames);
  }

  miscompare(reason: string, proto: string): void {
    let byProto = this.miscompares[reason];
    if (byProto === undefined) {
      byProto = {};
      this.miscompares[reason] = byProto;
    }
    bump(byProto, proto, 1);
  }

  checkpointRequest(reason: string): void {
    bump(this.checkpointRequests, reason, 1);
  }

  /** Records a completed checkpoint at `nowMs` (injected clock) and the interval since the last. */
  checkpointDone(nowMs: number): void {
    this.checkpoints++;
    if (this.#lastCheckpointMs >= 0) this.checkpointInterval.observe((nowMs - this.#lastCheckpointMs) / 1000);
    this.#lastCheckpointMs = nowMs;
  }

  /** A primary frame released after being held `ms` milliseconds. */
  observeHold(ms: number): void {
    this.holdTime.observe(ms / 1000);
  }

  badInputSeen(code: string, n = 1): void {
    bump(this.badInput, code, n);
  }

  setLink(name: string, up: boolean): void {
    this.links[name] = up;
  }

  /** A deep copy, safe to serialise or hand to another module. */
  snapshot(): StatsSnapshot {
    const endpoints: Record<string, EndpointCounters> = {};
    for (const [k, v] of Object.entries(this.endpoints)) endpoints[k] = { ...v };
    const miscompares: Record<string, Record<string, number>> = {};
    for (const [k, v] of Object.entries(this.miscompares)) miscompares[k] = { ...v };
    return {
      endpoints,
      released: { ...this.released },
      discarded: { ...this.discarded },
      dropped: { ...this.dropped },
      miscompares,
      checkpointRequests: { ...this.checkpointRequests },
      checkpoints: this.checkpoints,
      checkpointInterval: this.checkpointInterval.snapshot(),
      holdTime: this.holdTime.snapshot(),
      queues: { ...this.queues },
      connections: { ...this.connections },
      badInput: { ...this.badInput },
      links: { ...this.links },
    };
  }
}

/** Sum of a record's values (e.g. total released frames). */
export function total(rec: Record<string, number>): number {
  let n = 0;
  for (const v of Object.values(rec)) n += v;
  return n;
}
