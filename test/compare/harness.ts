/**
 * @module Test harness for the compare engine: a recording sink and TCP/UDP frame helpers that
 * give the primary and secondary copies realistically different headers (IP id, TTL, MACs,
 * window, TCP timestamps) so that only payload differences can matter.
 */
import { CompareEngine } from "../../src/compare/engine.ts";
import type {
  CheckpointRequest,
  CompareConfig,
  CompareSink,
  DiscardReason,
  ReleaseReason,
  Side,
} from "../../src/compare/types.ts";
import { buildTcp, buildUdp, type TcpBuild, type UdpBuild } from "../../src/packet/build.ts";

export interface Event {
  kind: "release" | "discard" | "checkpoint" | "backpressure";
  frame?: Buffer;
  side?: Side;
  reason?: DiscardReason;
  request?: CheckpointRequest;
  paused?: boolean;
}

export class RecordingSink implements CompareSink {
  readonly events: Event[] = [];
  readonly released: Buffer[] = [];
  readonly discarded: { frame: Buffer; side: Side; reason: DiscardReason }[] = [];
  readonly requests: CheckpointRequest[] = [];
  readonly holds: { ms: number; reason: ReleaseReason }[] = [];
  release(frame: Buffer, _vnetLen: number): void {
    this.released.push(frame);
    this.events.push({ kind: "release", frame });
  }
  discard(frame: Buffer, _vnetLen: number, side: Side, reason: DiscardReason): void {
    this.discarded.push({ frame, side, reason });
    this.events.push({ kind: "discard", frame, side, reason });
  }
  checkpointRequest(request: CheckpointRequest): void {
    this.requests.push(request);
    this.events.push({ kind: "checkpoint", request });
  }
  backpressure(side: Side, paused: boolean): void {
    this.events.push({ kind: "backpressure", side, paused });
  }
  holdTime(ms: number, reason: ReleaseReason): void {
    this.holds.push({ ms, reason });
  }
  discardReasons(): DiscardReason[] {
    return this.discarded.map((d) => d.reason);
  }
}

export function setup(config: Partial<CompareConfig> = {}): { engine: CompareEngine; sink: RecordingSink } {
  const sink = new RecordingSink();
  return { engine: new CompareEngine(config, sink), sink };
}

export const GUEST = "10.0.0.1";
export const CLIENT = "10.0.0.2";

/** Per-side header variation that must never cause a miscompare. */
let ipId = 1000;
function sideHeaders(side: Side) {
  ipId = (ipId + 7) & 0xffff;
  return side === "primary"
    ? { srcMac: "52:54:00:00:00:01", id: ipId, ttl: 64, window: 64240, ts: 1000 }
    : { srcMac: "52:54:00:00:00:99", id: (ipId * 31) & 0xffff, ttl: 63, window: 64241, ts: 987654 };
}

export interface SegOpts extends Partial<TcpBuild> {
  seq: number;
  ack?: number;
  flags?: string;
  payload?: Uint8Array | string;
}

/** A guest->client TCP segment as `side` would send it (same stream, different headers). */
export function tcp(side: Side, o: SegOpts): Buffer {
  const h = sideHeaders(side);
  return buildTcp({
    src: GUEST,
    dst: CLIENT,
    sport: 80,
    dport: 40000,
    srcMac: h.srcMac,
    id: h.id,
    ttl: h.ttl,
    window: h.window,
    options: [{ kind: "timestamps", tsval: h.ts + o.seq, tsecr: 42 }],
    flags: o.flags ?? (o.payload !== undefined && o.payload.length > 0 ? "PA" : "A"),
    ack: o.ack ?? 5000,
    ...o,
  });
}

export function udp(side: Side, o: Partial<UdpBuild> & { payload: Uint8Array | string }): Buffer {
  const h = sideHeaders(side);
  return buildUdp({
    src: GUEST,
    dst: CLIENT,
    sport: 5353,
    dport: 53,
    srcMac: h.srcMac,
    id: h.id,
    ttl: h.ttl,
    ...o,
  });
}

/** Deterministic pseudo-random bytes. */
export function stream(len: number, seed = 1): Buffer {
  const b = Buffer.alloc(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
