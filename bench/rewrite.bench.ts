/**
 * @module Rewriter throughput: frames/s of Rewriter.tx/rx on established connections (in-place
 * seq/ack + incremental checksum), against a copy-only baseline (what forwarding a frame costs
 * when it is merely copied, no parsing) and a parse-only step, measured in the same run.
 */
import { Bench } from "tinybench";
import { internetChecksum, ipv4PseudoSum } from "../src/packet/checksum.ts";
import { newFrameMeta } from "../src/packet/meta.ts";
import { parseFrame } from "../src/packet/parse.ts";
import { Rewriter } from "../src/rewrite/engine.ts";
import { stepFrame } from "../test/rewrite/scenarios.ts";

const CONNS = 1024;

function setup(opts: { timestamps?: boolean; family?: 4 | 6 } = {}) {
  const r = new Rewriter({ timestamps: opts.timestamps });
  const ts = opts.timestamps ? ([1, 2] as [number, number]) : undefined;
  const txFrames: Uint8Array[] = [];
  const rxFrames: Uint8Array[] = [];
  for (let i = 0; i < CONNS; i++) {
    const flow = { clientPort: 10000 + i, family: opts.family };
    const f = (dir: "tx" | "rx", seg: Parameters<typeof stepFrame>[1]["seg"]) =>
      stepFrame(flow, { dir, seg });
    r.tx(f("tx", { seq: 1000, flags: "S", ts }), 0, 0);
    r.rx(
      f("rx", { seq: 5000 + i, ack: 1001, flags: "SA", ts: opts.timestamps ? [70_000, 1] : undefined }),
      0,
      0,
    );
    r.tx(f("tx", { seq: 1001, ack: 3001, flags: "A", ts: opts.timestamps ? [2, 40_000] : undefined }), 0, 0);
    const payload = new Uint8Array(1400).fill(0x61);
    txFrames.push(
      f("tx", { seq: 1001, ack: 3001, flags: "A", ts, sack: opts.timestamps ? [[3100, 3200]] : undefined }),
    );
    rxFrames.push(f("rx", { seq: 5001 + i, ack: 1001, flags: "PA", payload, ts }));
  }
  return { r, txFrames, rxFrames };
}

export async function run(): Promise<void> {
  const plain = setup();
  const opt = setup({ timestamps: true });
  const v6 = setup({ family: 6 });
  const scratch = new Uint8Array(2048);
  const meta = newFrameMeta();
  let i = 0;
  const next = () => {
    i = (i + 1) & (CONNS - 1);
    return i;
  };
  const bench = new Bench({ time: 1000, warmupTime: 200 });
  bench
    .add("baseline: copy frame (tx ACK 54 B + rx 1454 B)", () => {
      const k = next();
      scratch.set(plain.txFrames[k]!);
      scratch.set(plain.rxFrames[k]!);
    })
    .add("parse only (tx + rx)", () => {
      const k = next();
      parseFrame(plain.txFrames[k]!, 0, meta);
      parseFrame(plain.rxFrames[k]!, 0, meta);
    })
    .add("parse + field write + full checksum recompute (QEMU's way)", () => {
      const k = next();
      for (const f of [plain.txFrames[k]!, plain.rxFrames[k]!]) {
        parseFrame(f, 0, meta);
        const t = meta.l4Offset;
        f[t + 11] = (f[t + 11]! + 1) & 0xff;
        f[t + 16] = 0;
        f[t + 17] = 0;
        const len = meta.ipEnd - t;
        const c = internetChecksum(
          f,
          t,
          meta.ipEnd,
          ipv4PseudoSum(f, meta.l3Offset + 12, meta.l3Offset + 16, 6, len),
        );
        f[t + 16] = c >>> 8;
        f[t + 17] = c;
      }
    })
    .add("rewrite IPv4 (tx ack + rx seq)", () => {
      const k = next();
      plain.r.tx(plain.txFrames[k]!, 0, 1);
      plain.r.rx(plain.rxFrames[k]!, 0, 1);
    })
    .add("rewrite IPv4 + SACK + timestamps option", () => {
      const k = next();
      opt.r.tx(opt.txFrames[k]!, 0, 1);
      opt.r.rx(opt.rxFrames[k]!, 0, 1);
    })
    .add("rewrite IPv6", () => {
      const k = next();
      v6.r.tx(v6.txFrames[k]!, 0, 1);
      v6.r.rx(v6.rxFrames[k]!, 0, 1);
    });
  await bench.run();
  const base = bench.tasks[0]!.result;
  const baseHz = base && "throughput" in base ? base.throughput.mean : 0;
  const rows = bench.tasks.map((t) => {
    const res = t.result;
    const hz = res && "throughput" in res ? res.throughput.mean : 0;
    // Each iteration forwards two frames (one per direction).
    return {
      task: t.name,
      "frames/s": Math.round(hz * 2).toLocaleString("en-US"),
      "vs copy": baseHz > 0 ? `${(hz / baseHz).toFixed(2)}×` : "n/a",
    };
  });
  console.table(rows);
  console.log(`${CONNS} established connections; frames alternate tx (ACK) / rx (1400-byte payload).`);
}
