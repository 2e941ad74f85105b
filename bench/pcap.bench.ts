/**
 * @module Capture I/O throughput: readCapture over classic pcap and pcapng files against a bare
 * chunked fs read of the same file (the I/O floor), the in-memory decoder against a minimal
 * hand-written record walk, PcapWriter against writing pre-encoded bytes, and peak memory while
 * streaming a file several times larger than the reader's chunk, and `replay` (the compare
 * engine over two captures) against reading the same two captures.
 */
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { replayCaptures } from "../src/cli/replay-sim.ts";
import { buildTcp } from "../src/packet/build.ts";
import { CaptureDecoder, readCapture } from "../src/wire/pcap-reader.ts";
import { encodePcap, PcapWriter } from "../src/wire/pcap-writer.ts";
import { encodePcapng } from "../src/wire/pcapng-writer.ts";

const FRAMES = 50_000;

/** Seeded frames of 60..1514 bytes (xorshift, so every run writes the same file). */
function frames(): Array<{ timestampNs: bigint; frame: Buffer }> {
  let s = 0x2545f491;
  const rnd = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  return Array.from({ length: FRAMES }, (_, i) => {
    const f = Buffer.allocUnsafe(60 + (rnd() % 1455));
    f.fill(i & 0xff);
    return { timestampNs: 1_700_000_000_000_000_000n + BigInt(i) * 10_000n, frame: f };
  });
}

/** Best of `runs` wall-clock times of fn, in ms. */
async function best(runs: number, fn: () => Promise<unknown> | unknown): Promise<number> {
  let min = Number.POSITIVE_INFINITY;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    min = Math.min(min, performance.now() - t);
  }
  return min;
}

async function rawRead(path: string): Promise<number> {
  const fh = await open(path, "r");
  let total = 0;
  try {
    for (;;) {
      const buf = Buffer.allocUnsafe(65_536);
      const { bytesRead } = await fh.read(buf, 0, 65_536, null);
      if (bytesRead === 0) return total;
      total += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

async function countCapture(path: string): Promise<number> {
  let n = 0;
  for await (const _ of readCapture(path)) n++;
  return n;
}

/** The least a pcap walker can do: read each record header and slice the frame. */
function minimalWalk(b: Buffer): number {
  let n = 0;
  let o = 24;
  while (o + 16 <= b.length) {
    const incl = b.readUInt32LE(o + 8);
    const f = b.subarray(o + 16, o + 16 + incl);
    n += f.length > 0 ? 1 : 0;
    o += 16 + incl;
  }
  return n;
}

function decodeAll(b: Buffer): number {
  const d = new CaptureDecoder();
  d.push(b);
  let n = 0;
  while (d.next() !== null) n++;
  d.end();
  return n;
}

export async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "colo-pcap-bench-"));
  try {
    const pkts = frames();
    const pcap = encodePcap(pkts, { resolution: "ns" });
    const pcapng = encodePcapng(pkts.map((p, i) => (i % 10 === 0 ? { ...p, comment: "primary" } : p)));
    const pcapPath = join(dir, "a.pcap");
    const ngPath = join(dir, "a.pcapng");
    await writeFile(pcapPath, pcap);
    await writeFile(ngPath, pcapng);
    const mb = pcap.length / 1e6;
    const rows: Array<[string, number, number]> = [];
    const row = (name: string, ms: number, base: number) => rows.push([name, ms, base]);

    const tRaw = await best(3, () => rawRead(pcapPath));
    row("fs read, 64 KiB chunks (baseline)", tRaw, tRaw);
    row("readCapture, classic pcap", await best(3, () => countCapture(pcapPath)), tRaw);
    row("readCapture, pcapng", await best(3, () => countCapture(ngPath)), tRaw);
    const tWalk = await best(5, () => minimalWalk(pcap));
    row("in memory: minimal pcap record walk (baseline)", tWalk, tWalk);
    row("in memory: CaptureDecoder, classic pcap", await best(5, () => decodeAll(pcap)), tWalk);
    row("in memory: CaptureDecoder, pcapng", await best(5, () => decodeAll(pcapng)), tWalk);
    const outPath = join(dir, "out.pcap");
    const tWrite = await best(3, () => writeFile(outPath, pcap));
    row("writeFile of pre-encoded bytes (baseline)", tWrite, tWrite);
    row(
      "PcapWriter, one write() per packet",
      await best(3, async () => {
        const w = await PcapWriter.create(outPath, { resolution: "ns" });
        for (const p of pkts) await w.write(p);
        await w.close();
      }),
      tWrite,
    );

    console.log(
      `${FRAMES} frames, ${mb.toFixed(1)} MB (pcap), ${(pcapng.length / 1e6).toFixed(1)} MB (pcapng)`,
    );
    console.log("| case | ms | MB/s | frames/s | × baseline time |");
    console.log("|---|---:|---:|---:|---:|");
    for (const [name, ms, base] of rows) {
      const fps = Math.round(FRAMES / (ms / 1000));
      console.log(
        `| ${name} | ${ms.toFixed(1)} | ${(mb / (ms / 1000)).toFixed(0)} | ${fps} | ${(ms / base).toFixed(2)} |`,
      );
    }

    // Replay: the compare engine over a PVM and an SVM capture of the same TCP streams, against
    // just reading both files (the part of replay that is capture I/O).
    const pvm = join(dir, "pvm.pcap");
    const svm = join(dir, "svm.pcap");
    const flows = 64;
    const segs: Array<{ timestampNs: bigint; frame: Buffer }> = [];
    for (let i = 0; i < FRAMES; i++) {
      const f = i % flows;
      segs.push({
        timestampNs: 1_700_000_000_000_000_000n + BigInt(i) * 20_000n,
        frame: buildTcp({
          src: "10.0.0.10",
          dst: `10.0.1.${f}`,
          sport: 80,
          dport: 40_000 + f,
          seq: 1000 + Math.floor(i / flows) * 1000,
          ack: 1,
          flags: "PA",
          payload: Buffer.alloc(1000, i & 0xff),
        }),
      });
    }
    await writeFile(pvm, encodePcap(segs, { resolution: "ns" }));
    await writeFile(
      svm,
      encodePcap(
        segs.map((p) => ({ ...p, timestampNs: p.timestampNs + 5000n })),
        { resolution: "ns" },
      ),
    );
    const tRead2 = await best(3, async () => (await countCapture(pvm)) + (await countCapture(svm)));
    const tReplay = await best(3, () => replayCaptures(readCapture(pvm), readCapture(svm)));
    console.log(
      `\nreplay of ${FRAMES} + ${FRAMES} frames (${flows} TCP flows, 1000-byte segments, all matching):`,
    );
    console.log("| case | ms | frame pairs/s | × baseline time |");
    console.log("|---|---:|---:|---:|");
    for (const [name, ms] of [
      ["read both captures (baseline)", tRead2],
      ["colo-proxy replay (read + merge + compare engine)", tReplay],
    ] as const) {
      console.log(
        `| ${name} | ${ms.toFixed(1)} | ${Math.round(FRAMES / (ms / 1000))} | ${(ms / tRead2).toFixed(2)} |`,
      );
    }

    // Memory while streaming: build a file 4× bigger by repeating, and watch RSS.
    const bigPath = join(dir, "big.pcap");
    const fh = await open(bigPath, "w");
    await fh.write(pcap);
    for (let i = 0; i < 3; i++) await fh.write(pcap.subarray(24));
    await fh.close();
    const bigMb = (pcap.length * 4 - 72) / 1e6;
    // Drop what this process holds so the numbers reflect the reader alone.
    pkts.length = 0;
    globalThis.gc?.();
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    let n = 0;
    for await (const _ of readCapture(bigPath)) {
      if (++n % 2000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
    }
    console.log(
      `streaming ${bigMb.toFixed(0)} MB (${n} frames): RSS grew ${((peak - rss0) / 1e6).toFixed(1)} MB ` +
        `(${(((peak - rss0) / (bigMb * 1e6)) * 100).toFixed(1)}% of the file size)`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
