/**
 * @module Quick A/B helper: engine ns/frame at 1 vs 100k connections, interleaved rounds, medians.
 * Usage: node --import tsx bench/engine-scale.ts [rounds]
 */
import { CompareEngine } from "../src/compare/engine.ts";
import type { CompareSink } from "../src/compare/types.ts";
import { buildTcp } from "../src/packet/build.ts";

const L3 = 14;
const L4 = L3 + 20;
const sink: CompareSink = {
  release() {},
  discard() {},
  checkpointRequest(r) {
    throw new Error(r.message);
  },
  backpressure() {},
};
function mk(payload: number, ttl: number): Buffer {
  return buildTcp({
    src: "10.0.0.1",
    dst: "10.1.0.0",
    sport: 80,
    dport: 1,
    seq: 0,
    ack: 1,
    flags: "PA",
    payload: Buffer.alloc(payload, 0x5a),
    ttl,
    id: ttl,
  });
}
function task(payload: number, conns: number): (n: number) => void {
  const e = new CompareEngine({ maxConnections: Math.max(65536, conns) }, sink);
  const p = mk(payload, 64);
  const s = mk(payload, 63);
  const seqs = new Uint32Array(conns);
  let next = 0;
  const pair = () => {
    const i = next;
    next = next + 1 === conns ? 0 : next + 1;
    const seq = seqs[i]!;
    for (const f of [p, s]) {
      f.writeUInt16BE(1 + (i % 60000), L4 + 2);
      f[L3 + 18] = Math.floor(i / 60000);
      f.writeUInt32BE(seq >>> 0, L4 + 4);
    }
    e.pushPrimary(p, 0, 0);
    e.pushSecondary(s, 0, 0);
    seqs[i] = seq + payload;
  };
  for (let k = 0; k < conns; k++) pair();
  return (n) => {
    for (let k = 0; k < n; k++) pair();
  };
}
const rounds = Number(process.argv[2] ?? 9);
const only = process.argv[3];
const cases = [
  [64, 1],
  [64, 100_000],
  [1448, 1],
  [1448, 100_000],
] as const;
const tasks = cases.map(([pl, c]) => ({ name: `${pl}B ${c}`, run: task(pl, c), ns: [] as number[] }));
for (const t of tasks) t.run(200_000); // warm-up
for (let r = 0; r < rounds; r++) {
  for (const t of tasks) {
    if (only && !t.name.includes(only)) continue;
    const N = 200_000;
    const t0 = process.hrtime.bigint();
    t.run(N);
    t.ns.push(Number(process.hrtime.bigint() - t0) / (2 * N));
  }
}
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
for (const t of tasks)
  if (t.ns.length)
    console.log(`${t.name}: median ${med(t.ns).toFixed(0)} ns/frame, min ${Math.min(...t.ns).toFixed(0)}`);
for (const pl of [64, 1448]) {
  const a = tasks.find((t) => t.name === `${pl}B 1`)!;
  const b = tasks.find((t) => t.name === `${pl}B 100000`)!;
  if (a.ns.length && b.ns.length) console.log(`${pl} B: 100k/1 = ${(med(b.ns) / med(a.ns)).toFixed(2)}`);
}
