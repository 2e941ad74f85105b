/**
 * @module `npm run bench`: runs every bench/*.bench.ts (or those named on the command line) and
 * prints their tables. Each bench module exports `run(): Promise<void>` and prints its own
 * results, always side by side with its baseline, as ratios. Nothing here asserts timings.
 */
import { readdirSync } from "node:fs";
import os from "node:os";

const dir = new URL(".", import.meta.url);
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".bench.ts"))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();

const cpu = os.cpus()[0]?.model ?? "unknown cpu";
console.log(
  `colo-proxy benchmarks — ${new Date().toISOString()} — node ${process.version} — ${os.cpus().length}× ${cpu}`,
);
for (const f of files) {
  console.log(`\n## ${f.replace(".bench.ts", "")}`);
  const mod = (await import(new URL(f, dir).href)) as { run: () => Promise<void> };
  await mod.run();
}
