/**
 * @module Compare engine work per packet for instruction and cache-miss counting under valgrind
 * (docs/benchmarks.md, compare engine): the engine task of engine.bench.ts with `conns`
 * connections, 200k warm-up pairs (at least one round over every connection), then `pairs` more.
 * Run it with pairs = 0 and pairs = N and divide the difference by N, so start-up cancels out:
 *   valgrind --tool=cachegrind --cache-sim=yes node --import tsx bench/engine-count.ts 64 100000 200000
 */
import { engineTask, PAIRS_PER_CALL } from "./engine.bench.ts";

const [payload = 64, conns = 1, pairs = 0] = process.argv.slice(2).map(Number);
const step = engineTask({ payload, conns });
for (let k = 0; k < Math.max(conns, 200_000); k += PAIRS_PER_CALL) step();
for (let k = 0; k < pairs; k += PAIRS_PER_CALL) step();
