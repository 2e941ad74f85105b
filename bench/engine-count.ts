/**
 * @module Compare engine work per packet for instruction and cache-miss counting under valgrind
 * (docs/benchmarks.md, compare engine): the engine task of engine.bench.ts with `conns`
 * connections, 200k warm-up pairs (at least one round over every connection), then `pairs` more.
 * Run it with pairs = 0 and pairs = N and divide the difference by N, so start-up cancels out:
 *   valgrind --tool=cachegrind --cache-sim=yes node --import tsx bench/engine-count.ts 64 100000 200000
 * An optional fourth argument names another build's src directory (e.g. one engine-ab.ts
 * extracted under .cache/engine-baseline/<sha>/src) to count that build's engine instead.
 * `--random-isn` starts every connection at a random sequence number (the random-ISN row of
 * engine-ab.ts); `--fractional-clock` passes fractional milliseconds as the daemon's clock does.
 */
import { type EngineClass, engineTask, PAIRS_PER_CALL } from "./engine.bench.ts";

const args = process.argv.slice(2);
const randomIsn = args.includes("--random-isn");
const fractionalClock = args.includes("--fractional-clock");
const [payloadArg = "64", connsArg = "1", pairsArg = "0", srcDir] = args.filter((a) => !a.startsWith("--"));
const [payload, conns, pairs] = [payloadArg, connsArg, pairsArg].map(Number) as [number, number, number];
const Engine =
  srcDir === undefined
    ? undefined
    : ((await import(`${srcDir}/compare/engine.ts`)).CompareEngine as EngineClass);
const step = engineTask({ payload, conns, randomIsn, fractionalClock }, Engine);
for (let k = 0; k < Math.max(conns, 200_000); k += PAIRS_PER_CALL) step();
for (let k = 0; k < pairs; k += PAIRS_PER_CALL) step();
