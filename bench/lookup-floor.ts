/**
 * @module The JavaScript counterpart of bench/native/lookup-floor.c (docs/benchmarks.md, compare
 * engine, "Session 6" and "Session 8"): what finding a connection among N and touching its
 * per-packet state costs in JavaScript, and nothing else of the engine: no parse (keys are
 * precomputed), no queues, no comparison. Frames come as the engine benchmark's chunks (32
 * consecutive connections, then the same 32 again); "one by one" hashes, looks up and touches each
 * in turn; "batched" first hashes the chunk and warms it as CompareEngine.pushPrimaryBatch does,
 * then looks up and touches.
 *
 *     node --import tsx bench/lookup-floor.ts [layout=3] [connections=1,1000,100000]
 *
 * `layout`:
 * - `table`: the engine's layout since session 8 — ConnTable.findIx, then three words of the
 *   connection's hot row (ConnTable.warm warms the slot and the row);
 * - `3`, `1`, `0`: the object layout the engine had before — the same lookup, then the
 *   connection's object (from an array by row index, as the table's old slot-indexed array) and
 *   3 cache lines of it (the old CompareConn's per-packet lines), 1 line, or none (lookup only);
 *   warming also loads the object's lines;
 * - `row`: one 128-byte row per hash slot in one ArrayBuffer, the key in its first 64 bytes and
 *   three per-packet int32 fields in the second (session 6's estimate of the best layout);
 * - `index`: a compact index of [hash, row index + 1] int32 pairs over 128-byte rows in creation
 *   order, per-packet state first, then the key (session 9); rows in pages of 2^PAGE_BITS rows
 *   (env, default 20: one page).
 * SCATTER=1 creates the connections in a random order, so that the frames do not visit their
 * rows (or objects) in creation order.
 * Not part of `npm run bench`: a reference measurement only.
 */
import { extractFlow } from "../src/conntrack/flow.ts";
import { ConnTable, PAGE_MASK, PAGE_SHIFT, ROW_WORDS, TrackedConn } from "../src/conntrack/table.ts";
import { newFrameMeta } from "../src/packet/meta.ts";
import { flowKeyText, parseFrame } from "../src/packet/parse.ts";
import { frames, patch } from "./engine.bench.ts";

const CHUNK = 32;
const KEY_STRIDE = 32;

/**
 * The old CompareConn's per-packet layout: 15 fields after the object header, 144 bytes, three
 * cache lines (the fields touched are on different ones).
 */
class ObjConn {
  lastActive = 0;
  bits = 0;
  pHead: object | null = null;
  pTail: object | null = null;
  pCount = 0;
  sHead: object | null = null;
  sTail: object | null = null;
  sCount = 0;
  compareSeq = 0;
  primaryAck = 0;
  secondaryAck = 0;
  secondaryRight = 0;
  generation = 0;
  bytesLo = 0;
  packetsLo = 0;
}

interface Setup {
  table: ConnTable<TrackedConn>;
  /** Object layout: the connection object by row index. */
  objs: ObjConn[];
  keys: Uint16Array[];
  lens: Uint8Array;
}

function setup(n: number): Setup {
  const meta = newFrameMeta();
  const [p, s] = frames(64);
  const table = new ConnTable<TrackedConn>();
  // One buffer for every key, in connection order (as the C model's key array).
  const all = new Uint16Array(n * KEY_STRIDE);
  const keys: Uint16Array[] = [];
  const objs: ObjConn[] = [];
  const lens = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    patch(p, s, i, 0);
    parseFrame(p, 0, meta);
    all.set(meta.keyUnits.subarray(0, meta.keyLen), i * KEY_STRIDE);
    keys.push(all.subarray(i * KEY_STRIDE, i * KEY_STRIDE + meta.keyLen));
    lens[i] = meta.keyLen;
  }
  // SCATTER=1: connections created in a random order, so their rows (and objects) are not in
  // the order the frames visit them (no hardware prefetcher can follow), as with real traffic.
  const order = creationOrder(n);
  for (const i of order) {
    patch(p, s, i, 0);
    parseFrame(p, 0, meta);
    const c = new TrackedConn(flowKeyText(meta), i, extractFlow(meta, p), 0);
    table.add(c, 0);
    objs[c.ix] = new ObjConn();
  }
  return { table, objs, keys, lens };
}

/** 0..n-1, shuffled (seeded) when SCATTER=1. */
function creationOrder(n: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  if (process.env.SCATTER === "1") {
    let seed = 12345;
    for (let i = n - 1; i > 0; i--) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const j = seed % (i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
  }
  return order;
}

function touch(c: ObjConn | undefined, lines: number): number {
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
  { table, objs, keys, lens }: Setup,
): number {
  const hashes = new Int32Array(CHUNK);
  const found = new Int32Array(CHUNK);
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
        }
        // First pass: the lookups (warming the slots) and the objects' lines; the second pass
        // touches the objects by the looked-up index (no second lookup: if anything, this
        // favours the object layout over the engine's warm-then-look-up).
        for (let j = 0; j < CHUNK; j++) {
          const id = (next + j) % n;
          const x = table.findIx(keys[id]!, lens[id]!, hashes[j]!);
          found[j] = x;
          const c = lines === 0 ? undefined : objs[x];
          if (c === undefined) continue;
          if (lines === 3) acc ^= c.lastActive ^ c.sCount ^ c.packetsLo;
          else acc ^= c.lastActive;
        }
        for (let j = 0; j < CHUNK; j++) acc ^= touch(objs[found[j]!], lines);
      } else {
        for (let j = 0; j < CHUNK; j++) {
          const id = (next + j) % n;
          acc ^= touch(objs[table.findIx(keys[id]!, lens[id]!, table.hashOf(keys[id]!, lens[id]!))], lines);
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

/** run() for the `table` layout (its own loop, for the reason given at runRows). */
function runTable(n: number, batched: boolean, total: number, { table, keys, lens }: Setup): number {
  const hashes = new Int32Array(CHUNK);
  const blens = new Uint8Array(CHUNK);
  const pages = table.pages;
  let next = 0;
  let done = 0;
  let acc = 0;
  const touchRow = (x: number): void => {
    const H = pages[x >>> PAGE_SHIFT]!;
    const b = (x & PAGE_MASK) * ROW_WORDS;
    H[b] = (H[b]! + 1) | 0;
    H[b + 7] = (H[b + 7]! + 1) & 7;
    H[b + 14] = (H[b + 14]! + 1) | 0;
  };
  const t0 = process.hrtime.bigint();
  while (done < total) {
    for (let side = 0; side < 2; side++) {
      if (batched) {
        for (let j = 0; j < CHUNK; j++) {
          const id = (next + j) % n;
          hashes[j] = table.hashOf(keys[id]!, lens[id]!);
          blens[j] = lens[id]!;
        }
        acc ^= table.warm(hashes, blens, CHUNK);
        for (let j = 0; j < CHUNK; j++) {
          const id = (next + j) % n;
          const x = table.findIx(keys[id]!, lens[id]!, hashes[j]!);
          if (x >= 0) touchRow(x);
          else acc ^= 1;
        }
      } else {
        for (let j = 0; j < CHUNK; j++) {
          const id = (next + j) % n;
          const x = table.findIx(keys[id]!, lens[id]!, table.hashOf(keys[id]!, lens[id]!));
          if (x >= 0) touchRow(x);
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

/**
 * The `index` layout: a compact open-addressing index of [hash, row index + 1] int32 pairs (8 bytes
 * per slot, 2 MiB at 100k connections: it stays in L2) over 128-byte rows in connection order,
 * the per-packet state in the first 64 bytes and the key in the second; rows in pages of
 * 2^PAGE_BITS rows (env, default: one page for all).
 */
const IX_SHIFT = Number(process.env.PAGE_BITS ?? 20);
const IX_MASK = (1 << IX_SHIFT) - 1;
class IndexTable {
  readonly idx: Int32Array;
  readonly pages: Int32Array[] = [];
  readonly kpages: Uint16Array[] = [];
  readonly mask: number;
  n = 0;
  constructor(n: number) {
    let cap = 1024;
    while (cap < 2 * n) cap *= 2;
    this.idx = new Int32Array(cap * 2);
    for (let i = 0; i < Math.max(1, n); i += IX_MASK + 1) {
      const p = new Int32Array(Math.min(IX_MASK + 1, Math.max(1, n)) * 32);
      this.pages.push(p);
      this.kpages.push(new Uint16Array(p.buffer));
    }
    this.mask = cap - 1;
  }
  add(key: Uint16Array, len: number, h: number): void {
    const x = this.n++;
    let i = h & this.mask;
    while (this.idx[2 * i + 1] !== 0) i = (i + 1) & this.mask;
    this.idx[2 * i] = h;
    this.idx[2 * i + 1] = x + 1;
    const K = this.kpages[x >>> IX_SHIFT]!;
    const b = (x & IX_MASK) * 64 + 32;
    K[b] = len;
    K.set(key.subarray(0, len), b + 1);
  }
  find(key: Uint16Array, len: number, h: number): number {
    const idx = this.idx;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const v = idx[2 * i + 1]!;
      if (v === 0) return -1;
      if (idx[2 * i] === h) {
        const x = v - 1;
        const u = this.kpages[x >>> IX_SHIFT]!;
        const b = (x & IX_MASK) * 64 + 32;
        if (u[b] === len) {
          let k = 0;
          while (k < len && u[b + 1 + k] === key[k]) k++;
          if (k === len) return x;
        }
      }
    }
  }
}

/** run() for the index layout (its own loop, for the reason given at runRows). */
function runIndex(n: number, batched: boolean, total: number, st: Setup, t: IndexTable): number {
  const { keys, lens } = st;
  const hashes = new Int32Array(CHUNK);
  const P = t.pages;
  const idx = t.idx;
  let next = 0;
  let done = 0;
  let acc = 0;
  const touch = (x: number): void => {
    const s = P[x >>> IX_SHIFT]!;
    const b = (x & IX_MASK) * 32;
    s[b] = (s[b]! + 1) | 0;
    s[b + 7] = (s[b + 7]! + 1) & 7;
    s[b + 14] = (s[b + 14]! + 1) | 0;
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
          const v = idx[2 * (hashes[j]! & t.mask) + 1]!;
          if (v !== 0) {
            const s = P[(v - 1) >>> IX_SHIFT]!;
            const b = ((v - 1) & IX_MASK) * 32;
            acc ^= s[b]! ^ s[b + 16]!;
          }
        }
        for (let j = 0; j < CHUNK; j++) {
          const id = (next + j) % n;
          const x = t.find(keys[id]!, lens[id]!, hashes[j]!);
          if (x >= 0) touch(x);
          else acc ^= 1;
        }
      } else {
        for (let j = 0; j < CHUNK; j++) {
          const id = (next + j) % n;
          const x = t.find(keys[id]!, lens[id]!, st.table.hashOf(keys[id]!, lens[id]!));
          if (x >= 0) touch(x);
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
const tableMode = process.argv[2] === "table";
const indexMode = process.argv[2] === "index";
const lines = rowMode || tableMode || indexMode ? 3 : Number(process.argv[2] ?? 3);
const sizes = (process.argv[3] ?? "1,1000,100000").split(",").map(Number);
console.log(
  rowMode
    ? "layout: 128-byte rows (key + per-packet state), no objects; best of 7 × 4 M frames"
    : tableMode
      ? "layout: ConnTable hot rows (the engine's), no objects; best of 7 × 4 M frames"
      : `object layout, connection lines touched: ${lines}; best of 7 × 4 M frames`,
);
console.log("connections  one by one ns/frame  batched ns/frame");
for (const n of sizes) {
  const st = setup(n);
  let rows: RowTable | null = null;
  if (rowMode) {
    rows = new RowTable(n);
    for (let i = 0; i < n; i++) rows.add(st.keys[i]!, st.lens[i]!, st.table.hashOf(st.keys[i]!, st.lens[i]!));
  }
  let itab: IndexTable | null = null;
  if (indexMode) {
    itab = new IndexTable(n);
    for (const i of creationOrder(n))
      itab.add(st.keys[i]!, st.lens[i]!, st.table.hashOf(st.keys[i]!, st.lens[i]!));
  }
  let one = Number.POSITIVE_INFINITY;
  let batch = Number.POSITIVE_INFINITY;
  for (let r = 0; r < 7; r++) {
    const once = (batched: boolean): number =>
      itab
        ? runIndex(n, batched, 4_000_000, st, itab)
        : rows
          ? runRows(n, batched, 4_000_000, st, rows)
          : tableMode
            ? runTable(n, batched, 4_000_000, st)
            : run(n, batched, lines, 4_000_000, st);
    one = Math.min(one, once(false));
    batch = Math.min(batch, once(true));
  }
  console.log(`${String(n).padStart(11)}  ${one.toFixed(1).padStart(19)}  ${batch.toFixed(1).padStart(16)}`);
}
