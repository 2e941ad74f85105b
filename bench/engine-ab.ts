/**
 * @module Interleaved before/after comparison of the compare engine against an older commit, in one
 * process (docs/benchmarks.md, compare engine):
 *
 *     node --import tsx bench/engine-ab.ts <git-ref> [rounds=15] [pairs-per-slice=100000] [--isolated]
 *         [--chunk=K] [--quick]
 *
 * Extracts `<git-ref>:src` into .cache/engine-baseline/<sha>/src and builds the engine task of
 * engine.bench.ts for both builds ("old" = that commit, "new" = this tree) at 64 B / 1448 B
 * payloads and 1 / 1k / 100k connections. Each round runs every task for one slice of pairs, in a
 * rotated order, so load changes on a shared machine hit old and new alike. Prints the median
 * ns/frame of each task, the median of the per-round ratios new/old, and for each build the median
 * of the per-round ratios (100k connections)/(1 connection): the flatness figure. Without
 * --isolated every engine shares one heap (all their connections stay live, ~1M objects), which
 * inflates the 100k rows through cache and TLB pressure; with --isolated each task of each round
 * runs in a fresh process (warm-up, then the median of 3 slices), rounds still rotating the order.
 *
 * --chunk=K: frames come in chunks of K primaries then their K secondary twins (as socket reads
 * bring them, Scenario.chunk), and a third build "batch" (this tree) pushes each chunk with
 * pushPrimaryBatch / pushSecondaryBatch while "old" and "new" push the same frames one by one.
 * --lag=L (with --chunk): one more row, 64 B at 100k connections with each secondary chunk pushed
 * L chunks after its primaries (Scenario.lag: the secondaries meet cold connections).
 * --quick: 64 B rows only.
 */
import { execFileSync, execSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tuneDaemonJit } from "../src/cli/daemon-command.ts";
import { type EngineClass, engineTask, PAIRS_PER_CALL, type Scenario } from "./engine.bench.ts";

const importEngine = async (srcDir: string) =>
  (await import(join(srcDir, "compare/engine.ts"))).CompareEngine as EngineClass;
const newSrc = fileURLToPath(new URL("../src", import.meta.url));

// Engines compiled as in the daemons (COLO_PROXY_INLINE_BUDGET; 0 = V8's own budget; children inherit it).
tuneDaemonJit();
const argv = process.argv.slice(2);
if (argv[0] === "--child") {
  // One task in a process of its own (--isolated): warm up, then print ns/frame of `slices` slices.
  const [, srcDir = newSrc, payload, conns, randomIsn, calls, slices, frac, chunk, batched, lag] = argv;
  const step = engineTask(
    {
      payload: Number(payload),
      conns: Number(conns),
      randomIsn: randomIsn === "1",
      fractionalClock: frac === "1",
      chunk: Number(chunk),
      batched: batched === "1",
      lag: Number(lag ?? "0"),
    },
    await importEngine(srcDir),
  );
  const n = Number(calls);
  for (let k = 0; k < Math.max(Number(conns), 200_000); k += PAIRS_PER_CALL) step();
  const out: number[] = [];
  for (let i = 0; i < Number(slices); i++) {
    const t0 = process.hrtime.bigint();
    for (let c = 0; c < n; c++) step();
    out.push(Number(process.hrtime.bigint() - t0) / (2 * PAIRS_PER_CALL * n));
  }
  console.log(JSON.stringify(out));
  process.exit(0);
}

const isolated = argv.includes("--isolated");
const quick = argv.includes("--quick");
const chunk = Number(argv.find((a) => a.startsWith("--chunk="))?.slice(8) ?? "1");
const lag = Number(argv.find((a) => a.startsWith("--lag="))?.slice(6) ?? "0");
const [ref = "main", roundsArg = "15", sliceArg = "100000"] = argv.filter((a) => !a.startsWith("--"));
const rounds = Number(roundsArg);
const callsPerSlice = Math.max(1, Math.round(Number(sliceArg) / PAIRS_PER_CALL));
const root = new URL("..", import.meta.url).pathname;
const sha = execFileSync("git", ["-C", root, "rev-parse", ref], { encoding: "utf8" }).trim();
const dir = join(root, ".cache", "engine-baseline", sha);
if (!existsSync(join(dir, "src"))) {
  mkdirSync(dir, { recursive: true });
  execSync(`git -C ${JSON.stringify(root)} archive ${sha} src | tar -x -C ${JSON.stringify(dir)}`);
}
type Build = "old" | "new" | "batch";
const builds: Build[] = chunk > 1 ? ["old", "new", "batch"] : ["old", "new"];
const srcOf: Record<Build, string> = { old: join(dir, "src"), new: newSrc, batch: newSrc };

interface Task {
  build: Build;
  sc: Scenario;
  step: () => void;
  ns: number[];
}
const tasks: Task[] = [];
const scenarios: Scenario[] = [];
for (const payload of quick ? [64] : [64, 1448])
  for (const conns of [1, 1000, 100_000]) scenarios.push({ payload, conns, chunk });
scenarios.push({ payload: 64, conns: 100_000, randomIsn: true, chunk });
// Like the daemon: random ISNs and a fractional clock (performance.now()).
scenarios.push({ payload: 64, conns: 100_000, randomIsn: true, fractionalClock: true, chunk });
// Secondaries `lag` chunks behind their primaries: they meet cold connections.
if (chunk > 1 && lag > 0) scenarios.push({ payload: 64, conns: 100_000, chunk, lag });
for (const base of scenarios) {
  for (const build of builds) {
    const sc = { ...base, batched: build === "batch" };
    // In-process tasks are built up front (all engines share one heap); isolated ones per run.
    const step = isolated ? () => {} : engineTask(sc, await importEngine(srcOf[build]));
    tasks.push({ build, sc, step, ns: [] });
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Runs one task in a fresh process; returns the median ns/frame of its slices. */
function runIsolated(t: Task): number {
  const r = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      fileURLToPath(import.meta.url),
      "--child",
      srcOf[t.build],
      String(t.sc.payload),
      String(t.sc.conns),
      t.sc.randomIsn ? "1" : "0",
      String(callsPerSlice),
      "3",
      t.sc.fractionalClock ? "1" : "0",
      String(t.sc.chunk ?? 1),
      t.sc.batched ? "1" : "0",
      String(t.sc.lag ?? 0),
    ],
    { encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return median(JSON.parse(r.stdout) as number[]);
}

const framesPerSlice = 2 * PAIRS_PER_CALL * callsPerSlice;
for (let r = isolated ? 0 : -1; r < rounds; r++) {
  // Round -1 warms up (JIT tiers, a full sweep over every connection); it is not recorded.
  for (let k = 0; k < tasks.length; k++) {
    const t = tasks[(k + Math.max(r, 0) * 5) % tasks.length]!;
    if (isolated) {
      t.ns.push(runIsolated(t));
      continue;
    }
    const t0 = process.hrtime.bigint();
    for (let c = 0; c < callsPerSlice; c++) t.step();
    const dt = Number(process.hrtime.bigint() - t0);
    if (r >= 0) t.ns.push(dt / framesPerSlice);
  }
}

const find = (build: Build, payload: number, conns: number, randomIsn = false, frac = false, lagged = 0) =>
  tasks.find(
    (t) =>
      t.build === build &&
      t.sc.payload === payload &&
      t.sc.conns === conns &&
      (t.sc.randomIsn ?? false) === randomIsn &&
      (t.sc.fractionalClock ?? false) === frac &&
      (t.sc.lag ?? 0) === lagged,
  )!;
const ratios = (a: Task, b: Task) => median(a.ns.map((x, i) => x / b.ns[i]!));

console.log(
  `old = ${ref} (${sha.slice(0, 10)}), new = working tree${chunk > 1 ? `, batch = working tree with push*Batch` : ""}; ` +
    `${rounds} rounds of ${framesPerSlice} frames; chunk ${chunk}${isolated ? "; isolated" : ""}`,
);
const rows = [];
for (const { payload, conns, randomIsn = false, fractionalClock = false, lag: l = 0 } of scenarios) {
  const row: Record<string, string | number> = {
    payload: `${payload} B`,
    connections: conns,
    isn: randomIsn ? "random" : "0",
    clock: fractionalClock ? "fractional" : "0",
  };
  if (lag > 0) row["secondaries behind"] = l > 0 ? `${l * chunk} frames` : "0";
  const get = (b: Build) => find(b, payload, conns, randomIsn, fractionalClock, l);
  const o = get("old");
  for (const b of builds) row[`${b} ns/frame`] = Math.round(median(get(b).ns));
  for (const b of builds) if (b !== "old") row[`${b}/old`] = ratios(get(b), o).toFixed(2);
  if (chunk > 1) row["batch/new"] = ratios(get("batch"), get("new")).toFixed(2);
  rows.push(row);
}
console.table(rows);
for (const payload of quick ? [64] : [64, 1448]) {
  const line = builds.map((b) => {
    const one = find(b, payload, 1);
    return `${b}: 1k/1 ${ratios(find(b, payload, 1000), one).toFixed(2)}, 100k/1 ${ratios(find(b, payload, 100_000), one).toFixed(2)}`;
  });
  console.log(`${payload} B per-frame cost relative to 1 connection — ${line.join("; ")}`);
}
const isn = builds.map((b) => `${b} ${ratios(find(b, 64, 100_000, true), find(b, 64, 1)).toFixed(2)}`);
console.log(`64 B, 100k connections with random ISNs, relative to 1 connection — ${isn.join("; ")}`);
const real = builds.map((b) => `${b} ${ratios(find(b, 64, 100_000, true, true), find(b, 64, 1)).toFixed(2)}`);
console.log(
  `64 B, 100k connections, random ISNs and fractional clock, relative to 1 connection (0 clock) — ${real.join("; ")}`,
);
if (chunk > 1 && lag > 0) {
  const cold = builds.map(
    (b) => `${b} ${ratios(find(b, 64, 100_000, false, false, lag), find(b, 64, 1)).toFixed(2)}`,
  );
  console.log(
    `64 B, 100k connections, secondaries ${lag * chunk} frames behind, relative to 1 connection — ${cold.join("; ")}`,
  );
}
