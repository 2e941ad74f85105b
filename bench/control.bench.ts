/**
 * @module Cost of the operator interface: what a daemon pays per frame for its counters
 * (ColoStats endpoint bumps + the hold-time histogram) against a bare counter increment, and
 * what one /metrics scrape and one query-stats reply cost (they run per scrape, not per frame),
 * against serialising the same snapshot with JSON.stringify. Same run, ratios to the baseline.
 */
import { Bench } from "tinybench";
import { createMetricsRegistry } from "../src/control/metrics.ts";
import { ColoStats } from "../src/control/stats.ts";

function table(bench: Bench, baseline: number, unit: string, scale = 1): void {
  const base = bench.tasks[baseline]?.result;
  const baseHz = base && "throughput" in base ? base.throughput.mean : 0;
  console.table(
    bench.tasks.map((t) => {
      const r = t.result;
      const hz = r && "throughput" in r ? r.throughput.mean : 0;
      return {
        task: t.name,
        [unit]: Math.round(hz * scale).toLocaleString("en-US"),
        "vs baseline": baseHz > 0 ? `${(hz / baseHz).toFixed(2)}×` : "n/a",
      };
    }),
  );
}

export async function run(): Promise<void> {
  // Per-frame accounting.
  const st = new ColoStats();
  const ep = st.endpoint("primary_in");
  const plain = { n: 0 }; // a bare counter, kept in an object so it is not optimised away
  let k = 0;
  const holds = Float64Array.from({ length: 1024 }, (_, i) => (i % 97) * 0.037);
  const perFrame = new Bench({ time: 1000, warmupTime: 200 });
  perFrame
    .add("baseline: one counter increment", () => {
      plain.n++;
    })
    .add("endpoint frames+bytes (ColoStats.endpoint object)", () => {
      ep.framesIn++;
      ep.bytesIn += 1514;
    })
    .add("endpoint + release(reason) + observeHold(ms)", () => {
      ep.framesIn++;
      ep.bytesIn += 1514;
      st.release("matched");
      st.observeHold(holds[k++ & 1023] as number);
    });
  await perFrame.run();
  table(perFrame, 0, "ops/s");

  // Per scrape: a busy daemon's snapshot (8 endpoints, 200 reason/protocol pairs, 50 codes).
  for (let i = 0; i < 8; i++) st.endpoint(`ep${i}`).framesIn = i * 1000;
  for (let r = 0; r < 20; r++) for (let p = 0; p < 10; p++) st.miscompare(`reason${r}`, `proto${p}`);
  for (let c = 0; c < 50; c++) st.badInputSeen(`COLO_ERR_X${c}`);
  const control = {
    clients: 1,
    clientsTotal: 1,
    clientsDropped: 0,
    clientsRejected: 0,
    requests: 1,
    errors: {},
    events: 0,
  };
  const source = {
    stats: () => ({ ...st.snapshot(), control }),
    status: () => ({ role: "compare" as const, mode: "colo" as const, peers: [], checkpointEpoch: 3 }),
  };
  const registry = createMetricsRegistry(source, { processMetrics: false, version: "bench" });
  const perScrape = new Bench({ time: 1000, warmupTime: 200 });
  perScrape
    .add("baseline: JSON.stringify(query-stats snapshot)", () => {
      JSON.stringify(source.stats());
    })
    .add("/metrics text (colo_proxy_* from the same snapshot)", async () => {
      await registry.metrics();
      // The snapshot cache is dropped on the next macrotask, as between two real scrapes.
      await new Promise((r) => setImmediate(r));
    });
  await perScrape.run();
  table(perScrape, 0, "per s");
}
