/**
 * @module `npm run bench`: runs every bench/*.bench.ts (or those named on the command line) and
 * prints their tables. Each bench module exports `run(): Promise<void>` and prints its own
 * results, always side by side with its baseline, as ratios. Nothing here asserts timings.
 * In-process benchmarks run under the daemons' V8 inlining budget (tuneDaemonJit:
 * COLO_PROXY_INLINE_BUDGET, 0 = V8's own), so the engine here is compiled as in the daemons.
 */
import { readdirSync } from "node:fs";
import os from "node:os";
import { tuneDaemonJit } from "../src/cli/daemon-command.ts";

const budget = tuneDaemonJit();

const dir = new URL(".", import.meta.url);
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".bench.ts"))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();

const cpu = os.cpus()[0]?.model ?? "unknown cpu";
console.log(
  `colo-proxy benchmarks — ${new Date().toISOString()} — node ${process.version} — ${os.cpus().length}× ${cpu}` +
    ` — inlining budget ${budget === 0 ? "V8's own" : `${budget} B`}`,
);
for (const f of files) {
  console.log(`\n## ${f.replace(".bench.ts", "")}`);
  const mod = (await import(new URL(f, dir).href)) as { run: () => Promise<void> };
  await mod.run();
}
