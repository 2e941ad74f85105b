/**
 * @module The JavaScript counterpart of bench/native/lookup-floor.c (docs/benchmarks.md, compare
 * engine, "Session 6"): what finding a connection among N and touching its per-packet state costs
 * in JavaScript with the engine's own data structures — ConnTable (slab rows + connection array)
 * and real CompareConn objects — and nothing else of the engine: no parse (keys are precomputed),
 * no queues, no comparison. Frames come as the engine benchmark's chunks (32 consecutive
 * connections, then the same 32 again); "one by one" hashes, looks up and touches each in turn;
 * "batched" first hashes the chunk and warms it as CompareEngine.pushPrimaryBatch does
 * (ConnTable.warm, then a load from each hinted connection), then looks up and touches.
 *
 *     node --import tsx bench/lookup-floor.ts [lines=3] [connections=1,1000,100000]
 *
 * `lines`: connection cache lines touched per frame — 3 (lastActive, sCount, packetsLo: the
 * engine's per-packet lines), 1 (lastActive only) or 0 (lookup only, the connection not touched);
 * or `row`: no objects at all, the layout a flat engine would need — one 128-byte row per hash
 * slot in one ArrayBuffer, the key in its first 64 bytes and three per-packet int32 fields in the
 * second (what `lines` 3 touches), looked up and warmed the same way.
 * Not part of `npm run bench`: a reference measurement only.
 */
import { CompareConn } from "../src/compare/conn.ts";
import { extractFlow } from "../src/conntrack/flow.ts";
import { ConnTable } from "../src/conntrack/table.ts";
import { newFrameMeta } from "../src/packet/meta.ts";
import { flowKeyText, parseFrame } from "../src/packet/parse.ts";
import { frames, patch } from "./engine.bench.ts";

const CHUNK = 32;
const KEY_STRIDE = 32;

interface Setup {
  table: ConnTable<CompareConn>;
  keys: Uint16Array[];
  lens: Uint8Array;
}

function setup(n: number): Setup {
  const meta = newFrameMeta();
  const [p, s] = frames(64);
  const table = new ConnTable<CompareConn>();
  // One buffer for every key, in connection order (as the C model's key array).
  const all = new Uint16Array(n * KEY_STRIDE);
  const keys: Uint16Array[] = [];
  const lens = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    patch(p, s, i, 0);
    parseFrame(p, 0, meta);
    table.add(new CompareConn(flowKeyText(meta), i, extractFlow(meta, p), 0, "tcp", ""), 0);
    all.set(meta.keyUnits.subarray(0, meta.keyLen), i * KEY_STRIDE);
    keys.push(all.subarray(i * KEY_STRIDE, i * KEY_STRIDE + meta.keyLen));
    lens[i] = meta.keyLen;
  }
  return { table, keys, lens };
}

function touch(c: CompareConn | undefined, lines: number): number {
  if (c === undefined) return 1;
  if (lines === 0) return 0;
  c.lastActive = (c.lastActive + 1) | 0;
  if (lines === 3) {
    c.sCount = (c.sCount + 1) & 7;
    c.packetsLo = (c.packetsLo + 1) | 0;
  }
  return 0;
}

function run(
  n: number,
  batched: boolean,
  lines: number,
  total: number,
  { table, keys, lens }: Setup,
): number {
  const hashes = new Int32Array(CHUNK);
  const blens = new Uint8Array(CHUNK);
  const hints: (CompareConn | undefined)[] = new Array(CHUNK).fill(undefined);
  let next = 0;
  let done = 0;
  let acc = 0;
  const t0 = process.hrtime.bigint();
  while (done < total) {
    for (let side = 0; side < 2; side++) {
      if (batched) {
        for (let j = 0; j < CHUNK; j++) {
          const id = (next + j) % n;
          hashes[j] = table.hashOf(keys[id]!, lens[id]!);
          blens[j] = lens[id]!;
        }
        acc ^= table.warm(hashes, blens, CHUNK, hints);
        for (let j = 0; j < CHUNK; j++) {
          const c = hints[j];
          if (c === undefined) continue;
          if (lines === 3) acc ^= c.lastActive ^ c.sCount ^ c.packetsLo;
          else if (lines === 1) acc ^= c.lastActive;
          hints[j] = undefined;
        }
        for (let j = 0; j < CHUNK; j++) {
          const id = (next + j) % n;
          acc ^= touch(table.findHashed(keys[id]!, lens[id]!, hashes[j]!), lines);
        }
      } else {
        for (let j = 0; j < CHUNK; j++) {
          const id = (next + j) % n;
          acc ^= touch(table.findHashed(keys[id]!, lens[id]!, table.hashOf(keys[id]!, lens[id]!)), lines);
        }
      }
      done += CHUNK;
    }
    next = (next + CHUNK) % n;
  }
  const ns = Number(process.hrtime.bigint() - t0) / done;
  if (acc === 0.5) console.log(acc); // keeps acc (and the loads feeding it) alive
  return ns;
}

/** The `row` layout: open addressing over 128-byte rows (u16 view for the key, i32 view for state). */
class RowTable {
  readonly u16: Uint16Array;
  readonly i32: Int32Array;
  readonly mask: number;
  constructor(n: number) {
    let cap = 1024;
    while (cap < 2 * n) cap *= 2;
    const mem = new ArrayBuffer(cap * 128);
    this.u16 = new Uint16Array(mem);
    this.i32 = new Int32Array(mem);
    this.mask = cap - 1;
  }
  add(key: Uint16Array, len: number, h: number): void {
    let i = h & this.mask;
    while (this.u16[i * 64] !== 0) i = (i + 1) & this.mask;
    const b = i * 64;
    this.u16[b] = len + 1;
    this.u16[b + 1] = h >>> 16;
    this.u16[b + 2] = h & 0xffff;
    this.u16.set(key.subarray(0, len), b + 3);
  }
  /** The row index of the key, or -1. */
  find(key: Uint16Array, len: number, h: number): number {
    const u = this.u16;
    const tag = len + 1;
    const hi = h >>> 16;
    const lo = h & 0xffff;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const b = i * 64;
      const t = u[b]!;
      if (t === 0) return -1;
      if (t === tag && u[b + 1] === hi && u[b + 2] === lo) {
        let k = 0;
        while (k < len && u[b + 3 + k] === key[k]) k++;
        if (k === len) return i;
      }
    }
  }
}

/**
 * run() for the row layout. Its timing loop is run()'s, written out again on purpose: a shared
 * driver calling each variant per chunk through a closure measured 6–12 ns per frame more at
 * 100k connections (and moved the two layouts differently), so each variant keeps its own loop.
 */
function runRows(n: number, batched: boolean, total: number, st: Setup, rows: RowTable): number {
  const { keys, lens } = st;
  const hashes = new Int32Array(CHUNK);
  const u = rows.u16;
  const s = rows.i32;
  let next = 0;
  let done = 0;
  let acc = 0;
  const touch = (i: number): void => {
    const b = i * 32 + 16; // the row's second 64 bytes
    s[b] = (s[b]! + 1) | 0;
    s[b + 5] = (s[b + 5]! + 1) & 7;
    s[b + 10] = (s[b + 10]! + 1) | 0;
  };
  const t0 = process.hrtime.bigint();
  while (done < total) {
    for (let side = 0; side < 2; side++) {
      if (batched) {
        for (let j = 0; j < CHUNK; j++) {
          const id = (next + j) % n;
          hashes[j] = st.table.hashOf(keys[id]!, lens[id]!);
        }
        for (let j = 0; j < CHUNK; j++) {
          const i = hashes[j]! & rows.mask;
          acc ^= u[i * 64]! ^ s[i * 32 + 16]!;
        }
        for (let j = 0; j < CHUNK; j++) {
          const id = (next + j) % n;
          const i = rows.find(keys[id]!, lens[id]!, hashes[j]!);
          if (i >= 0) touch(i);
          else acc ^= 1;
        }
      } else {
        for (let j = 0; j < CHUNK; j++) {
          const id = (next + j) % n;
          const i = rows.find(keys[id]!, lens[id]!, st.table.hashOf(keys[id]!, lens[id]!));
          if (i >= 0) touch(i);
          else acc ^= 1;
        }
      }
      done += CHUNK;
    }
    next = (next + CHUNK) % n;
  }
  const ns = Number(process.hrtime.bigint() - t0) / done;
  if (acc === 0.5) console.log(acc);
  return ns;
}

const rowMode = process.argv[2] === "row";
const lines = rowMode ? 3 : Number(process.argv[2] ?? 3);
const sizes = (process.argv[3] ?? "1,1000,100000").split(",").map(Number);
console.log(
  rowMode
    ? "layout: 128-byte rows (key + per-packet state), no objects; best of 7 × 4 M frames"
    : `connection lines touched: ${lines}; best of 7 × 4 M frames`,
);
console.log("connections  one by one ns/frame  batched ns/frame");
for (const n of sizes) {
  const st = setup(n);
  let rows: RowTable | null = null;
  if (rowMode) {
    rows = new RowTable(n);
    for (let i = 0; i < n; i++) rows.add(st.keys[i]!, st.lens[i]!, st.table.hashOf(st.keys[i]!, st.lens[i]!));
  }
  let one = Number.POSITIVE_INFINITY;
  let batch = Number.POSITIVE_INFINITY;
  for (let r = 0; r < 7; r++) {
    one = Math.min(one, rows ? runRows(n, false, 4_000_000, st, rows) : run(n, false, lines, 4_000_000, st));
    batch = Math.min(
      batch,
      rows ? runRows(n, true, 4_000_000, st, rows) : run(n, true, lines, 4_000_000, st),
    );
  }
  console.log(`${String(n).padStart(11)}  ${one.toFixed(1).padStart(19)}  ${batch.toFixed(1).padStart(16)}`);
}
