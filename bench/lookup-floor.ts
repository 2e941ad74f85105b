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
 * engine's per-packet lines), 1 (lastActive only) or 0 (lookup only, the connection not touched).
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

const lines = Number(process.argv[2] ?? 3);
const sizes = (process.argv[3] ?? "1,1000,100000").split(",").map(Number);
console.log(`connection lines touched: ${lines}; best of 7 × 4 M frames`);
console.log("connections  one by one ns/frame  batched ns/frame");
for (const n of sizes) {
  const st = setup(n);
  let one = Number.POSITIVE_INFINITY;
  let batch = Number.POSITIVE_INFINITY;
  for (let r = 0; r < 7; r++) {
    one = Math.min(one, run(n, false, lines, 4_000_000, st));
    batch = Math.min(batch, run(n, true, lines, 4_000_000, st));
  }
  console.log(`${String(n).padStart(11)}  ${one.toFixed(1).padStart(19)}  ${batch.toFixed(1).padStart(16)}`);
}
