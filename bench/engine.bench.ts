/**
 * @module Compare engine throughput: frames/s (primary + secondary) of matching TCP traffic for
 * 64 B and 1448 B payloads spread over 1, 1k and 100k connections, next to two baselines over the
 * same frames: a parse-only loop (the floor: every frame must be parsed) and parse + one Map.get
 * per frame in a Map of as many connections (the cost of merely finding a connection, which grows
 * with table size through cache misses). Per-packet cost should stay flat from 1 to 100k
 * connections apart from that lookup.
 *
 * Frames are two preallocated buffers (one per side) whose ports/addresses and sequence number are
 * patched before each push, so 100k connections cost no frame memory; the engine has released or
 * discarded both before the next patch (the pair matches), as the zero-copy contract requires.
 */
import { Bench } from "tinybench";
import { CompareEngine } from "../src/compare/engine.ts";
import type { CompareSink } from "../src/compare/types.ts";
import { buildTcp } from "../src/packet/build.ts";
import { newFrameMeta } from "../src/packet/meta.ts";
import { parseFrame } from "../src/packet/parse.ts";

export const PAIRS_PER_CALL = 1000;
const L3 = 14;
const L4 = L3 + 20;

export interface Scenario {
  payload: number;
  conns: number;
}

/** A primary/secondary pair of equal TCP segments whose headers differ (TTL, IP id). */
export function frames(payload: number): [Buffer, Buffer] {
  const data = Buffer.alloc(payload, 0x5a);
  const mk = (ttl: number, id: number) =>
    buildTcp({
      src: "10.0.0.1",
      dst: "10.1.0.0",
      sport: 80,
      dport: 1,
      seq: 0,
      ack: 1,
      flags: "PA",
      payload: data,
      ttl,
      id,
    });
  return [mk(64, 1), mk(63, 2)];
}

/** Points both frames at connection `i` and stream position `seq`. */
export function patch(p: Buffer, s: Buffer, i: number, seq: number): void {
  // Two calls, not a loop over [p, s]: that array was the only per-pair allocation in the loop.
  patchOne(p, i, seq);
  patchOne(s, i, seq);
}

function patchOne(f: Buffer, i: number, seq: number): void {
  f.writeUInt16BE(1 + (i % 60000), L4 + 2); // client port
  f[L3 + 18] = Math.floor(i / 60000); // client address, 3rd byte
  f.writeUInt32BE(seq >>> 0, L4 + 4);
}

const sink: CompareSink = {
  release() {},
  discard() {},
  checkpointRequest(r) {
    throw new Error(`unexpected checkpoint request in a matching benchmark: ${r.message}`);
  },
  backpressure() {},
};

/** The engine's constructor, so engine-ab.ts can run an older build of it next to this one. */
export type EngineClass = new (
  config: { maxConnections: number },
  sink: CompareSink,
) => {
  pushPrimary(frame: Buffer, vnetLen: number, now: number): void;
  pushSecondary(frame: Buffer, vnetLen: number, now: number): void;
};

export function engineTask({ payload, conns }: Scenario, Engine: EngineClass = CompareEngine): () => void {
  const engine = new Engine({ maxConnections: Math.max(65536, conns) }, sink);
  const [p, s] = frames(payload);
  const seqs = new Uint32Array(conns);
  let next = 0;
  const pair = () => {
    const i = next;
    next = next + 1 === conns ? 0 : next + 1;
    const seq = seqs[i]!;
    patch(p, s, i, seq);
    engine.pushPrimary(p, 0, 0);
    engine.pushSecondary(s, 0, 0);
    seqs[i] = seq + payload;
  };
  for (let k = 0; k < conns; k++) pair(); // create every connection before timing
  return () => {
    for (let k = 0; k < PAIRS_PER_CALL; k++) pair();
  };
}

/** Baselines: parse both frames; optionally also look each key up in a Map of `conns` entries. */
function parseTask({ payload, conns }: Scenario, lookup: boolean): () => void {
  const meta = newFrameMeta();
  const [p, s] = frames(payload);
  const map = new Map<string, { n: number }>();
  if (lookup) {
    for (let i = 0; i < conns; i++) {
      patch(p, s, i, 0);
      parseFrame(p, 0, meta);
      map.set(meta.key, { n: 0 });
    }
  }
  let next = 0;
  let seq = 0;
  return () => {
    for (let k = 0; k < PAIRS_PER_CALL; k++) {
      const i = next;
      next = next + 1 === conns ? 0 : next + 1;
      patch(p, s, i, seq);
      seq += payload;
      parseFrame(p, 0, meta);
      if (lookup) map.get(meta.key)!.n++;
      parseFrame(s, 0, meta);
      if (lookup) map.get(meta.key)!.n++;
    }
  };
}

export async function run(): Promise<void> {
  const scenarios: Scenario[] = [];
  for (const payload of [64, 1448])
    for (const conns of [1, 1000, 100_000]) scenarios.push({ payload, conns });
  const bench = new Bench({ time: 1500, warmupTime: 300 });
  for (const sc of scenarios) {
    bench.add(`parse ${sc.payload}B ${sc.conns}`, parseTask(sc, false));
    bench.add(`lookup ${sc.payload}B ${sc.conns}`, parseTask(sc, true));
    bench.add(`engine ${sc.payload}B ${sc.conns}`, engineTask(sc));
  }
  await bench.run();
  const framesPerSec = (name: string): number => {
    const t = bench.tasks.find((x) => x.name === name);
    const r = t?.result;
    if (r === undefined || !("period" in r)) return Number.NaN;
    return (2 * PAIRS_PER_CALL * 1000) / r.period;
  };
  const rows = scenarios.map((sc) => {
    const parse = framesPerSec(`parse ${sc.payload}B ${sc.conns}`);
    const lookup = framesPerSec(`lookup ${sc.payload}B ${sc.conns}`);
    const engine = framesPerSec(`engine ${sc.payload}B ${sc.conns}`);
    return {
      payload: `${sc.payload} B`,
      connections: sc.conns,
      "parse frames/s": Math.round(parse),
      "parse+Map.get frames/s": Math.round(lookup),
      "engine frames/s": Math.round(engine),
      "engine ns/frame": Math.round(1e9 / engine),
      "engine/parse": (engine / parse).toFixed(2),
      "engine/(parse+get)": (engine / lookup).toFixed(2),
    };
  });
  console.table(rows);
  for (const payload of [64, 1448]) {
    const one = rows.find((r) => r.connections === 1 && r.payload === `${payload} B`)!;
    const many = rows.find((r) => r.connections === 100_000 && r.payload === `${payload} B`)!;
    console.log(
      `${payload} B: per-frame cost at 100k connections / at 1 connection = ${(many["engine ns/frame"] / one["engine ns/frame"]).toFixed(2)}`,
    );
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
