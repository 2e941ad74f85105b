/**
 * @module Interleaved before/after comparison of the compare engine against an older commit, in one
 * process (docs/benchmarks.md, compare engine):
 *
 *     node --import tsx bench/engine-ab.ts <git-ref> [rounds=15] [pairs-per-slice=100000]
 *
 * Extracts `<git-ref>:src` into .cache/engine-baseline/<sha>/src and builds the engine task of
 * engine.bench.ts for both builds ("old" = that commit, "new" = this tree) at 64 B / 1448 B
 * payloads and 1 / 1k / 100k connections. Each round runs every task for one slice of pairs, in a
 * rotated order, so load changes on a shared machine hit old and new alike. Prints the median
 * ns/frame of each task, the median of the per-round ratios new/old, and for each build the median
 * of the per-round ratios (100k connections)/(1 connection): the flatness figure. Both builds share
 * one heap (every engine's connections are live throughout), so GC work is not fully separated.
 */
import { execFileSync, execSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type EngineClass, engineTask, PAIRS_PER_CALL, type Scenario } from "./engine.bench.ts";

const [ref = "main", roundsArg = "15", sliceArg = "100000"] = process.argv.slice(2);
const rounds = Number(roundsArg);
const callsPerSlice = Math.max(1, Math.round(Number(sliceArg) / PAIRS_PER_CALL));
const root = new URL("..", import.meta.url).pathname;
const sha = execFileSync("git", ["-C", root, "rev-parse", ref], { encoding: "utf8" }).trim();
const dir = join(root, ".cache", "engine-baseline", sha);
if (!existsSync(join(dir, "src"))) {
  mkdirSync(dir, { recursive: true });
  execSync(`git -C ${JSON.stringify(root)} archive ${sha} src | tar -x -C ${JSON.stringify(dir)}`);
}
const Old = (await import(join(dir, "src/compare/engine.ts"))).CompareEngine as EngineClass;
const New = (await import("../src/compare/engine.ts")).CompareEngine as EngineClass;

interface Task {
  build: "old" | "new";
  sc: Scenario;
  step: () => void;
  ns: number[];
}
const tasks: Task[] = [];
for (const payload of [64, 1448]) {
  for (const conns of [1, 1000, 100_000]) {
    for (const [build, E] of [
      ["old", Old],
      ["new", New],
    ] as const) {
      tasks.push({ build, sc: { payload, conns }, step: engineTask({ payload, conns }, E), ns: [] });
    }
  }
}

const framesPerSlice = 2 * PAIRS_PER_CALL * callsPerSlice;
for (let r = -1; r < rounds; r++) {
  // Round -1 warms up (JIT tiers, a full sweep over every connection); it is not recorded.
  for (let k = 0; k < tasks.length; k++) {
    const t = tasks[(k + Math.max(r, 0) * 5) % tasks.length]!;
    const t0 = process.hrtime.bigint();
    for (let c = 0; c < callsPerSlice; c++) t.step();
    const dt = Number(process.hrtime.bigint() - t0);
    if (r >= 0) t.ns.push(dt / framesPerSlice);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const find = (build: string, payload: number, conns: number) =>
  tasks.find((t) => t.build === build && t.sc.payload === payload && t.sc.conns === conns)!;
const ratios = (a: Task, b: Task) => median(a.ns.map((x, i) => x / b.ns[i]!));

console.log(
  `old = ${ref} (${sha.slice(0, 10)}), new = working tree; ${rounds} rounds of ${framesPerSlice} frames`,
);
const rows = [];
for (const payload of [64, 1448]) {
  for (const conns of [1, 1000, 100_000]) {
    const o = find("old", payload, conns);
    const n = find("new", payload, conns);
    rows.push({
      payload: `${payload} B`,
      connections: conns,
      "old ns/frame": Math.round(median(o.ns)),
      "new ns/frame": Math.round(median(n.ns)),
      "old frames/s": Math.round(1e9 / median(o.ns)),
      "new frames/s": Math.round(1e9 / median(n.ns)),
      "new/old time": ratios(n, o).toFixed(2),
    });
  }
}
console.table(rows);
for (const payload of [64, 1448]) {
  const line = (["old", "new"] as const).map((b) => {
    const one = find(b, payload, 1);
    return `${b}: 1k/1 ${ratios(find(b, payload, 1000), one).toFixed(2)}, 100k/1 ${ratios(find(b, payload, 100_000), one).toFixed(2)}`;
  });
  console.log(`${payload} B per-frame cost relative to 1 connection — ${line.join("; ")}`);
}
