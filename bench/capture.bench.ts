/**
 * @module Cost of `--capture` on the compare engine: matching TCP traffic (64 B and 1448 B,
 * 1 and 1000 connections) through the engine with a plain sink (capture off: the production
 * path, where the engine's observe hook is absent), with an empty observe hook (the price of the
 * call alone), and with a MiscompareCapture attached as the daemon wires it (every frame copied
 * into its connection's ring). Printed as frames/s and ratios to the capture-off run.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Bench } from "tinybench";
import { CompareEngine } from "../src/compare/engine.ts";
import type { CompareSink } from "../src/compare/types.ts";
import { MiscompareCapture } from "../src/node/capture.ts";
import { frames, PAIRS_PER_CALL, patch } from "./engine.bench.ts";

type Mode = "off" | "empty hook" | "capture";

function sinkFor(mode: Mode, dir: string): CompareSink {
  const base: CompareSink = {
    release() {},
    discard() {},
    checkpointRequest(r) {
      throw new Error(`unexpected checkpoint request: ${r.message}`);
    },
    backpressure() {},
  };
  if (mode === "empty hook") return { ...base, observe() {} };
  if (mode === "off") return base;
  const cap = new MiscompareCapture({ dir, frames: 64 });
  return {
    ...base,
    observe: (side, key, frame, vnetLen) => cap.observe(side, key, frame, vnetLen),
    release: (f) => cap.released(f),
    discard: (f, _v, _s, reason) => cap.discarded(f, reason),
    holdTime: (_ms, reason) => cap.releaseReason(reason),
  };
}

function task(mode: Mode, payload: number, conns: number, dir: string): () => void {
  const engine = new CompareEngine({ maxConnections: 65536 }, sinkFor(mode, dir));
  const [p, s] = frames(payload);
  const seqs = new Uint32Array(conns);
  let next = 0;
  const pair = () => {
    const i = next;
    next = next + 1 === conns ? 0 : next + 1;
    const seq = seqs[i]!;
    patch(p, s, i, seq);
    engine.pushPrimary(p, 0, 0);
    engine.pushSecondary(s, 0, 0);
    seqs[i] = seq + payload;
  };
  for (let k = 0; k < conns; k++) pair();
  return () => {
    for (let k = 0; k < PAIRS_PER_CALL; k++) pair();
  };
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "colo-capture-bench-"));
  const modes: Mode[] = ["off", "empty hook", "capture"];
  const scenarios = [64, 1448].flatMap((payload) => [1, 1000].map((conns) => ({ payload, conns })));
  const bench = new Bench({ time: 1000, warmupTime: 200 });
  for (const { payload, conns } of scenarios)
    for (const m of modes) bench.add(`${m} ${payload} ${conns}`, task(m, payload, conns, dir));
  await bench.run();
  rmSync(dir, { recursive: true, force: true });
  const fps = (name: string): number => {
    const r = bench.tasks.find((x) => x.name === name)?.result;
    return r === undefined || !("period" in r) ? Number.NaN : (2 * PAIRS_PER_CALL * 1000) / r.period;
  };
  console.table(
    scenarios.map(({ payload, conns }) => {
      const off = fps(`off ${payload} ${conns}`);
      const hook = fps(`empty hook ${payload} ${conns}`);
      const cap = fps(`capture ${payload} ${conns}`);
      return {
        payload: `${payload} B`,
        connections: conns,
        "off frames/s": Math.round(off),
        "empty hook frames/s": Math.round(hook),
        "capture frames/s": Math.round(cap),
        "hook/off": (hook / off).toFixed(2),
        "capture/off": (cap / off).toFixed(2),
      };
    }),
  );
}
