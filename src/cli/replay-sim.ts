/**
 * @module The simulation behind `colo-proxy replay`: runs the compare engine over a PVM-output
 * capture and an SVM-output capture, merged by timestamp, with capture time as the engine's
 * clock. It plays the shell's part: ticks every expired_scan_cycle, completes each requested
 * checkpoint after a configurable delay, and records every request. Deterministic: the report
 * depends only on the captures and the options.
 */
import { CompareEngine } from "../compare/engine.ts";
import { parsePassthroughRule } from "../compare/passthrough.ts";
import type { CompareStats } from "../compare/stats.ts";
import type { CheckpointReason, CheckpointRequest, CompareConfig, Side } from "../compare/types.ts";
import { decodeFlowKey, FlowKind } from "../packet/parse.ts";
import type { CapturePacket } from "../wire/pcap-format.ts";

export interface ReplayOptions {
  /** Engine settings (compare_timeout, expired_scan_cycle, max_queue_size, ...). */
  config?: Partial<CompareConfig>;
  /** ms from a checkpoint request to its completion (checkpointDone); default 0. */
  checkpointMs?: number;
  /** Passthrough rules applied from the start. */
  passthrough?: string[];
  /** Most requests kept in the report's event list (all are counted); default 10,000. */
  maxEvents?: number;
  /** Flows listed as passthrough candidates; default 10. */
  top?: number;
}

export interface ReplayEvent {
  /** ms since the first frame of either capture. */
  timeMs: number;
  reason: CheckpointReason;
  repeat: boolean;
  flow: string | undefined;
  message: string;
  /** Raised while draining after the last frame (packets still waiting at the end of the captures). */
  afterEnd: boolean;
  request: CheckpointRequest;
}

export interface FlowSummary {
  flow: string;
  key: string | undefined;
  requests: number;
  byReason: Partial<Record<CheckpointReason, number>>;
  /** A passthrough rule covering the guest's end of this flow, when one can be written. */
  passthroughRule: string | undefined;
}

export interface ReplayReport {
  frames: { primary: number; secondary: number };
  /** First and last capture timestamp (ns since the epoch) over both captures; null when empty. */
  firstNs: bigint | null;
  lastNs: bigint | null;
  durationMs: number;
  /** Frames whose timestamp went backwards within a capture (the clock was held instead). */
  clockBackwards: number;
  /** Checkpoint requests raised while the captures lasted / while draining after them. */
  requests: number;
  requestsAfterEnd: number;
  byReason: Record<CheckpointReason, number>;
  /**
   * Checkpoints caused while the captures lasted (requests that were not repeats of a pending
   * one: each leads to exactly one checkpoint, even if it completes after the last frame), and
   * per minute of capture.
   */
  checkpoints: number;
  checkpointsPerMinute: number | null;
  heldAtEnd: { primary: number; secondary: number };
  backpressure: Record<Side, number>;
  events: ReplayEvent[];
  eventsDropped: number;
  topFlows: FlowSummary[];
  stats: CompareStats;
}

const ZERO_REASONS = (): Record<CheckpointReason, number> => ({
  "payload-differs": 0,
  "size-differs": 0,
  "seq-mismatch": 0,
  timeout: 0,
  "queue-full": 0,
  "table-full": 0,
  "connection-reused": 0,
});

/** Merges two timestamp-ordered packet streams; on equal timestamps the primary goes first. */
async function* merge(
  primary: AsyncIterator<CapturePacket>,
  secondary: AsyncIterator<CapturePacket>,
): AsyncGenerator<[Side, CapturePacket]> {
  try {
    let p = await primary.next();
    let s = await secondary.next();
    while (!p.done || !s.done) {
      if (!p.done && (s.done || p.value.timestampNs <= s.value.timestampNs)) {
        yield ["primary", p.value];
        p = await primary.next();
      } else if (!s.done) {
        yield ["secondary", s.value];
        s = await secondary.next();
      }
    }
  } finally {
    // On an error in one capture, close the other's file too.
    await Promise.allSettled([primary.return?.(), secondary.return?.()]);
  }
}

/**
 * A passthrough rule for the guest's end of a flow (both captures hold guest output, so the
 * source is the guest): `tcp 10.0.0.1:80`, `udp [fd00::1]:53`, `icmp 10.0.0.1`, `vlan 5 arp 10.0.0.1`.
 */
export function suggestRule(key: string): string | undefined {
  let k: ReturnType<typeof decodeFlowKey>;
  try {
    k = decodeFlowKey(key);
  } catch {
    return undefined;
  }
  const parts: string[] = [];
  if (k.vlanOuter >= 0) parts.push(`vlan ${k.vlanOuter}`);
  const host = k.family === 6 ? `[${k.src}]` : k.src;
  const names: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };
  switch (k.kind) {
    case FlowKind.Ports4:
    case FlowKind.Ports6:
      parts.push(names[k.proto] ?? `proto ${k.proto}`, `${host}:${k.srcPort}`);
      break;
    case FlowKind.Arp:
      parts.push("arp", k.src);
      break;
    case FlowKind.Ether:
      return undefined; // rules select IP flows and ARP only
    default:
      parts.push(names[k.proto] ?? `proto ${k.proto}`, k.family === 6 ? k.src : host);
  }
  try {
    return parsePassthroughRule(parts.join(" ")).text;
  } catch {
    return undefined;
  }
}

export async function replayCaptures(
  primary: AsyncIterable<CapturePacket>,
  secondary: AsyncIterable<CapturePacket>,
  opts: ReplayOptions = {},
): Promise<ReplayReport> {
  const checkpointMs = opts.checkpointMs ?? 0;
  const maxEvents = opts.maxEvents ?? 10_000;
  const events: ReplayEvent[] = [];
  let eventsDropped = 0;
  const byReason = ZERO_REASONS();
  const flows = new Map<string, FlowSummary>();
  const backpressure: Record<Side, number> = { primary: 0, secondary: 0 };
  let requests = 0;
  let requestsAfterEnd = 0;
  let draining = false;
  let now = 0;
  let doneAt: number | undefined;
  let checkpointsCaused = 0;

  const engine = new CompareEngine(opts.config ?? {}, {
    release() {},
    discard() {},
    backpressure(side, paused) {
      // A capture cannot be paused; the engine still holds every primary frame (never drops one).
      if (paused) backpressure[side]++;
    },
    checkpointRequest(req) {
      if (draining) requestsAfterEnd++;
      else {
        requests++;
        if (!req.repeat) checkpointsCaused++;
        byReason[req.reason]++;
        const name = req.flow ?? "(no connection)";
        let f = flows.get(name);
        if (f === undefined) {
          f = {
            flow: name,
            key: req.key,
            requests: 0,
            byReason: {},
            passthroughRule: req.key ? suggestRule(req.key) : undefined,
          };
          flows.set(name, f);
        }
        f.requests++;
        f.byReason[req.reason] = (f.byReason[req.reason] ?? 0) + 1;
      }
      if (events.length < maxEvents) {
        events.push({
          timeMs: req.time,
          reason: req.reason,
          repeat: req.repeat,
          flow: req.flow,
          message: req.message,
          afterEnd: draining,
          request: req,
        });
      } else eventsDropped++;
      // The checkpoint happens (the VMs pause, state is copied) and completes checkpointMs later.
      doneAt ??= now + checkpointMs;
    },
  });
  for (const rule of opts.passthrough ?? []) engine.addPassthrough(rule, 0);
  const cycle = engine.config.expiredScanCycle;
  const live = engine.liveStats;
  let nextTick = cycle;

  /** Runs every checkpoint completion and tick due up to time t, in time order. */
  const advance = (t: number) => {
    for (;;) {
      if (doneAt !== undefined && doneAt <= t && doneAt <= nextTick) {
        now = doneAt;
        doneAt = undefined;
        engine.checkpointDone(now);
        continue;
      }
      if (nextTick > t) return;
      if (live.heldPrimary + live.heldSecondary === 0 && doneAt === undefined) {
        // Nothing held: intermediate ticks would only expire idle connections, which the last
        // tick before t does as well. Skipping them keeps long gaps in a capture cheap.
        nextTick += Math.floor((t - nextTick) / cycle) * cycle;
      }
      now = nextTick;
      nextTick += cycle;
      engine.tick(now);
    }
  };

  let first: bigint | null = null;
  let last: bigint | null = null;
  let clockBackwards = 0;
  const frames = { primary: 0, secondary: 0 };
  const pIt = primary[Symbol.asyncIterator]();
  const sIt = secondary[Symbol.asyncIterator]();
  for await (const [side, pkt] of merge(pIt, sIt)) {
    first ??= pkt.timestampNs;
    let t = Number(pkt.timestampNs - first) / 1e6;
    if (t < now) {
      clockBackwards++;
      t = now;
    }
    if (last === null || pkt.timestampNs > last) last = pkt.timestampNs;
    advance(t);
    now = t;
    frames[side]++;
    // Copy: the reader's frames are views of 64 KiB chunks, and the engine may hold a frame for
    // seconds; a copy keeps memory proportional to what is held.
    const frame = Buffer.from(pkt.frame);
    if (side === "primary") engine.pushPrimary(frame, 0, t);
    else engine.pushSecondary(frame, 0, t);
  }
  const endMs = now;
  advance(endMs);
  const heldAtEnd = { primary: live.heldPrimary, secondary: live.heldSecondary };
  // Drain: what is still held at the end would time out; report those requests apart.
  draining = true;
  const c = engine.config;
  advance(endMs + c.compareTimeout + 2 * cycle + checkpointMs);
  if (doneAt !== undefined) engine.checkpointDone(doneAt);
  engine.checkInvariant();

  const durationMs = endMs;
  const top = [...flows.values()]
    .sort((a, b) => b.requests - a.requests || (a.flow < b.flow ? -1 : a.flow > b.flow ? 1 : 0))
    .slice(0, opts.top ?? 10);
  return {
    frames,
    firstNs: first,
    lastNs: last,
    durationMs,
    clockBackwards,
    requests,
    requestsAfterEnd,
    byReason,
    checkpoints: checkpointsCaused,
    checkpointsPerMinute: durationMs > 0 ? (checkpointsCaused * 60_000) / durationMs : null,
    heldAtEnd,
    backpressure,
    events,
    eventsDropped,
    topFlows: top,
    stats: engine.stats(),
  };
}
