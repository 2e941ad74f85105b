/**
 * @module Compare engine throughput: frames/s (primary + secondary) of matching TCP traffic for
 * 64 B and 1448 B payloads spread over 1, 1k and 100k connections, next to three baselines over
 * the same frames: a parse-only loop (the floor: every frame must be parsed), parse + one Map.get
 * of the key string per frame in a Map of as many connections (the lookup the engine used before
 * its hash table), and parse + one ConnTable.find of the key units (the engine's lookup now).
 * Per-packet cost should stay flat from 1 to 100k connections. Two more engine rows take the frames
 * as socket reads bring them, in chunks of 32 primaries then their 32 twins: pushed frame by frame,
 * and with the batch calls (pushPrimaryBatch / pushSecondaryBatch). A last line measures connection
 * churn: a frame pair that opens a new flow against a pair on an open one, in a full table
 * (steadyChurnNsPerPair) and into a fresh engine (churnNsPerPair).
 *
 * Frames are two preallocated buffers (one per side) whose ports/addresses and sequence number are
 * patched before each push, so 100k connections cost no frame memory; the engine has released or
 * discarded both before the next patch (the pair matches), as the zero-copy contract requires.
 */
import { Bench } from "tinybench";
import { CompareEngine } from "../src/compare/engine.ts";
import type { CompareSink } from "../src/compare/types.ts";
import { extractFlow } from "../src/conntrack/flow.ts";
import { ConnTable, TrackedConn } from "../src/conntrack/table.ts";
import { buildTcp } from "../src/packet/build.ts";
import { newFrameMeta } from "../src/packet/meta.ts";
import { flowKeyText, parseFrame } from "../src/packet/parse.ts";

/** Pairs per call of a task (a power of two, so that every chunk size divides it). */
export const PAIRS_PER_CALL = 1024;
const L3 = 14;
const L4 = L3 + 20;

export interface Scenario {
  payload: number;
  conns: number;
  /**
   * Start every connection at a random sequence number (as real ISNs are) instead of 0. Values
   * >= 2^31 are not small integers to V8, so the connection's sequence fields become boxed
   * doubles: one more object per field for a cold connection.
   */
  randomIsn?: boolean;
  /**
   * Pass the daemon's kind of clock (performance.now(): fractional milliseconds) instead of 0.
   * Fractional times are not small integers to V8 either: time fields hold boxed doubles.
   */
  fractionalClock?: boolean;
  /**
   * Frames arrive in chunks, as socket reads bring them: `chunk` primary frames of `chunk`
   * consecutive connections (round-robin), then their `chunk` secondary twins (a power of two,
   * at most PAIRS_PER_CALL). Default 1: each primary is followed by its twin.
   */
  chunk?: number;
  /** Push each chunk with pushPrimaryBatch / pushSecondaryBatch instead of frame by frame. */
  batched?: boolean;
  /**
   * Chunked only: the secondary chunk pushed after a primary chunk is the twin of the one `lag`
   * chunks earlier (default 0), so with lag × chunk frames in flight (more than the caches hold)
   * the secondaries meet cold connections, as a secondary read arriving well after its primaries
   * would. Every connection then holds at most lag × chunk / conns primaries: use many connections.
   */
  lag?: number;
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
  // Byte by byte from an int32: a uint32 >= 2^31 passed to writeUInt32BE is a heap-allocated
  // double, i.e. an allocation per frame in the driver that is not the engine's.
  f[L4 + 4] = seq >>> 24;
  f[L4 + 5] = seq >>> 16;
  f[L4 + 6] = seq >>> 8;
  f[L4 + 7] = seq;
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
  /** Absent in builds before the batch API. */
  pushPrimaryBatch?(frames: readonly Buffer[], vnetLens: ArrayLike<number>, count: number, now: number): void;
  pushSecondaryBatch?(
    frames: readonly Buffer[],
    vnetLens: ArrayLike<number>,
    count: number,
    now: number,
  ): void;
};

export function engineTask(sc: Scenario, Engine: EngineClass = CompareEngine): () => void {
  if ((sc.chunk ?? 1) > 1 || sc.batched === true) return chunkTask(sc, Engine);
  const { payload, conns, randomIsn = false, fractionalClock = false } = sc;
  const engine = new Engine({ maxConnections: Math.max(65536, conns) }, sink);
  const [p, s] = frames(payload);
  // int32 (not uint32) for the same reason as in patchOne: no boxed doubles in the driver.
  const seqs = new Int32Array(conns);
  if (randomIsn) for (let k = 0; k < conns; k++) seqs[k] = (Math.random() * 2 ** 32) | 0;
  let next = 0;
  let now = fractionalClock ? 1234.5678 : 0;
  const tick = fractionalClock ? 0.000123 : 0;
  const pair = () => {
    const i = next;
    next = next + 1 === conns ? 0 : next + 1;
    const seq = seqs[i]!;
    patch(p, s, i, seq);
    now += tick;
    engine.pushPrimary(p, 0, now);
    engine.pushSecondary(s, 0, now);
    seqs[i] = (seq + payload) | 0;
  };
  for (let k = 0; k < conns; k++) pair(); // create every connection before timing
  return () => {
    for (let k = 0; k < PAIRS_PER_CALL; k++) pair();
  };
}

/**
 * The engine task with frames in chunks (Scenario.chunk): `chunk` preallocated frame pairs, so
 * that no frame the engine holds (a primary waits for its twin in the next chunk) is patched
 * before its release; every pair matches, so all are released or discarded by the end of a chunk.
 */
function chunkTask(
  {
    payload,
    conns,
    randomIsn = false,
    fractionalClock = false,
    chunk = 1,
    batched = false,
    lag = 0,
  }: Scenario,
  Engine: EngineClass,
): () => void {
  if (chunk < 1 || PAIRS_PER_CALL % chunk !== 0)
    throw new Error(`chunk ${chunk} must divide ${PAIRS_PER_CALL}`);
  const engine = new Engine({ maxConnections: Math.max(65536, conns) }, sink);
  const pushP = engine.pushPrimaryBatch?.bind(engine);
  const pushS = engine.pushSecondaryBatch?.bind(engine);
  if (batched && (pushP === undefined || pushS === undefined)) throw new Error("this build has no batch API");
  // A ring of lag + 1 chunks of frame pairs: a chunk's primaries are patched again only after its
  // secondaries went in (lag steps later), i.e. after the engine released them.
  const ring: { ps: Buffer[]; ss: Buffer[] }[] = [];
  for (let r = 0; r <= lag; r++) {
    const ps: Buffer[] = [];
    const ss: Buffer[] = [];
    for (let j = 0; j < chunk; j++) {
      const [p, s] = frames(payload);
      ps.push(p);
      ss.push(s);
    }
    ring.push({ ps, ss });
  }
  const vnetLens = new Int32Array(chunk);
  const seqs = new Int32Array(conns);
  if (randomIsn) for (let k = 0; k < conns; k++) seqs[k] = (Math.random() * 2 ** 32) | 0;
  let next = 0;
  let now = fractionalClock ? 1234.5678 : 0;
  const tick = fractionalClock ? 0.000123 : 0;
  let steps = 0;
  const step = () => {
    // This slot's secondaries went in a step ago: both of its frames are free to patch.
    const slot = ring[steps % (lag + 1)]!;
    const ps = slot.ps;
    for (let j = 0; j < chunk; j++) {
      const i = next;
      next = next + 1 === conns ? 0 : next + 1;
      const seq = seqs[i]!;
      patch(ps[j]!, slot.ss[j]!, i, seq);
      seqs[i] = (seq + payload) | 0;
    }
    now += tick;
    // The twins of the chunk `lag` steps back (none yet in the first `lag` steps).
    const ss = steps >= lag ? ring[(steps - lag) % (lag + 1)]!.ss : null;
    steps++;
    if (batched) {
      pushP!(ps, vnetLens, chunk, now);
      if (ss !== null) pushS!(ss, vnetLens, chunk, now);
    } else {
      for (let j = 0; j < chunk; j++) engine.pushPrimary(ps[j]!, 0, now);
      if (ss !== null) for (let j = 0; j < chunk; j++) engine.pushSecondary(ss[j]!, 0, now);
    }
  };
  for (let k = 0; k < Math.max(conns, (lag + 1) * chunk); k += chunk) step(); // every connection first
  return () => {
    for (let k = 0; k < PAIRS_PER_CALL; k += chunk) step();
  };
}

type Baseline = "parse" | "map" | "table";

/**
 * Baselines over the same frames: `parse` parses both frames as the engine does (key units only,
 * no key string); `map` also builds the key string and looks it up in a Map of `conns` entries
 * (the lookup before the hash table); `table` looks the key units up in a ConnTable of `conns`
 * connections (the engine's lookup now). Each lookup touches the found object, as the engine does.
 */
function parseTask({ payload, conns }: Scenario, mode: Baseline): () => void {
  const meta = newFrameMeta();
  meta.keyString = mode === "map";
  const [p, s] = frames(payload);
  const map = new Map<string, { n: number }>();
  const table = new ConnTable<TrackedConn>();
  for (let i = 0; mode !== "parse" && i < conns; i++) {
    patch(p, s, i, 0);
    parseFrame(p, 0, meta);
    if (mode === "map") map.set(meta.key, { n: 0 });
    else table.add(new TrackedConn(flowKeyText(meta), i, extractFlow(meta, p), 0), 0);
  }
  let next = 0;
  let seq = 0;
  return () => {
    for (let k = 0; k < PAIRS_PER_CALL; k++) {
      const i = next;
      next = next + 1 === conns ? 0 : next + 1;
      patch(p, s, i, seq);
      seq = (seq + payload) | 0;
      parseFrame(p, 0, meta);
      if (mode === "map") map.get(meta.key)!.n++;
      else if (mode === "table") table.find(meta.keyUnits, meta.keyLen)!.lastActive++;
      parseFrame(s, 0, meta);
      if (mode === "map") map.get(meta.key)!.n++;
      else if (mode === "table") table.find(meta.keyUnits, meta.keyLen)!.lastActive++;
    }
  };
}

/** Frames per socket read in the chunked rows of run(). */
const CHUNK = 32;

export async function run(): Promise<void> {
  const scenarios: Scenario[] = [];
  for (const payload of [64, 1448])
    for (const conns of [1, 1000, 100_000]) scenarios.push({ payload, conns });
  const bench = new Bench({ time: 1500, warmupTime: 300 });
  for (const sc of scenarios) {
    bench.add(`parse ${sc.payload}B ${sc.conns}`, parseTask(sc, "parse"));
    bench.add(`lookup ${sc.payload}B ${sc.conns}`, parseTask(sc, "map"));
    bench.add(`table ${sc.payload}B ${sc.conns}`, parseTask(sc, "table"));
    bench.add(`engine ${sc.payload}B ${sc.conns}`, engineTask(sc));
    // Chunked arrival (CHUNK primaries, then their twins), frame by frame and as batch calls.
    bench.add(`chunked ${sc.payload}B ${sc.conns}`, engineTask({ ...sc, chunk: CHUNK }));
    bench.add(`batched ${sc.payload}B ${sc.conns}`, engineTask({ ...sc, chunk: CHUNK, batched: true }));
  }
  await bench.run();
  const framesPerSec = (name: string): number => {
    const t = bench.tasks.find((x) => x.name === name);
    const r = t?.result;
    if (r === undefined || !("period" in r)) return Number.NaN;
    return (2 * PAIRS_PER_CALL * 1000) / r.period;
  };
  const rows = scenarios.map((sc) => {
    const at = `${sc.payload}B ${sc.conns}`;
    const parse = framesPerSec(`parse ${at}`);
    const lookup = framesPerSec(`lookup ${at}`);
    const table = framesPerSec(`table ${at}`);
    const engine = framesPerSec(`engine ${at}`);
    const chunked = framesPerSec(`chunked ${at}`);
    const batched = framesPerSec(`batched ${at}`);
    return {
      payload: `${sc.payload} B`,
      connections: sc.conns,
      "parse frames/s": Math.round(parse),
      "parse+Map.get frames/s": Math.round(lookup),
      "parse+table.find frames/s": Math.round(table),
      "engine frames/s": Math.round(engine),
      "engine ns/frame": Math.round(1e9 / engine),
      [`chunks of ${CHUNK}, one by one, ns/frame`]: Math.round(1e9 / chunked),
      [`chunks of ${CHUNK}, batch calls, ns/frame`]: Math.round(1e9 / batched),
      "batch/one by one": (chunked / batched).toFixed(2),
    };
  });
  console.table(rows);
  for (const payload of [64, 1448]) {
    const one = rows.find((r) => r.connections === 1 && r.payload === `${payload} B`)!;
    const many = rows.find((r) => r.connections === 100_000 && r.payload === `${payload} B`)!;
    const ratio = (col: string) =>
      ((many as Record<string, unknown>)[col] as number) / ((one as Record<string, unknown>)[col] as number);
    console.log(
      `${payload} B: per-frame cost at 100k connections / at 1 connection = ${ratio("engine ns/frame").toFixed(2)} ` +
        `(pairs); chunks of ${CHUNK}: ${ratio(`chunks of ${CHUNK}, one by one, ns/frame`).toFixed(2)} one by one, ` +
        `${ratio(`chunks of ${CHUNK}, batch calls, ns/frame`).toFixed(2)} with batch calls`,
    );
  }
  // Connections opened at a high rate: what a new flow costs against a pair on an open one.
  const churn = churnNsPerPair(20_000, 5);
  const steady = steadyChurnNsPerPair(16_384, 5);
  const open =
    2e9 / (rows.find((r) => r.connections === 1000 && r.payload === "64 B")!["engine frames/s"] as number);
  console.log(
    `64 B, connection churn: ${Math.round(steady)} ns per frame pair that opens a new flow in a full table ` +
      `(16 384 connections, each new flow evicts one), ${Math.round(churn)} ns into a fresh engine ` +
      `(20 000 new flows, table growth included); ${Math.round(open)} ns per pair on an open one at 1k ` +
      `connections: ${(steady / open).toFixed(1)}x / ${(churn / open).toFixed(1)}x`,
  );
}

/**
 * Connection churn: ns per frame pair when every pair is the first of a new flow (connection
 * created, first compare, release), `flows` new flows into a fresh engine per round; the median
 * of `rounds` rounds after one unmeasured.
 */
export function churnNsPerPair(flows: number, rounds: number): number {
  const out: number[] = [];
  for (let r = 0; r <= rounds; r++) {
    const engine = new CompareEngine({ maxConnections: Math.max(65536, flows) }, sink);
    const [p, s] = frames(64);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < flows; i++) {
      patch(p, s, i, 0);
      engine.pushPrimary(p, 0, 0);
      engine.pushSecondary(s, 0, 0);
    }
    if (r > 0) out.push(Number(process.hrtime.bigint() - t0) / flows);
  }
  out.sort((a, b) => a - b);
  return out[out.length >> 1]!;
}

/**
 * Steady connection churn: a table kept full at `conns` connections (max_connections), where
 * each new flow's first frame pair evicts the least recently active connection (no table
 * growth, a long-running daemon's state). ns per pair, the median of `rounds` rounds of `conns`
 * new flows each, after the table is filled unmeasured.
 */
export function steadyChurnNsPerPair(conns: number, rounds: number): number {
  const engine = new CompareEngine({ maxConnections: conns }, sink);
  const [p, s] = frames(64);
  let flow = 0;
  const out: number[] = [];
  for (let r = -1; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < conns; i++, flow++) {
      patch(p, s, flow, 0);
      engine.pushPrimary(p, 0, 0);
      engine.pushSecondary(s, 0, 0);
    }
    if (r >= 0) out.push(Number(process.hrtime.bigint() - t0) / conns);
  }
  out.sort((a, b) => a - b);
  return out[out.length >> 1]!;
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
