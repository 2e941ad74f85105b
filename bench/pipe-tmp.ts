// Temporary: the daemon's in-process pipeline (decoder -> FrameBatch -> engine -> FrameWriter) for an A/B.
import { Writable } from "node:stream";
import { frames, patch } from "./engine.bench.ts";

const src = process.argv[2] ?? "/work/main/src";
const conns = Number(process.argv[3] ?? 4);
const CHUNK_BYTES = Number(process.argv[4] ?? 65536);
const { CompareEngine } = await import(`${src}/compare/engine.ts`);
const { FrameBatch } = await import(`${src}/compare/batch.ts`);
const { FrameDecoder } = await import(`${src}/wire/framing.ts`);
const { FrameWriter } = await import(`${src}/wire/frame-writer.ts`);

class NullSink extends Writable {
  constructor() {
    super({ highWaterMark: 1 << 30 });
  }
  override _write(_c: Buffer, _e: BufferEncoding, cb: (err?: Error | null) => void): void {
    cb();
  }
}
const writer = new FrameWriter();
writer.attach(new NullSink());
const hist = new Float64Array(64);
const sink = {
  release: (f: Buffer, v: number) => {
    writer.queue(f, v);
  },
  discard: () => undefined,
  checkpointRequest: (r: { message: string }) => {
    throw new Error(r.message);
  },
  backpressure: () => undefined,
  holdTime: (ms: number) => {
    hist[Math.clz32(ms * 1000)]!++;
  },
};
const engine = new CompareEngine({ maxConnections: 65536 }, sink);
// Encoded streams: PAIRS frames round-robin over `conns`, length-prefixed.
const PAIRS = 40_000;
const [p, s] = frames(64);
const seqs = new Int32Array(conns);
const encP: Buffer[] = [];
const encS: Buffer[] = [];
function hdr(n: number): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(n);
  return h;
}
for (let i = 0; i < PAIRS; i++) {
  const c = i % conns;
  patch(p, s, c, seqs[c]!);
  seqs[c] = (seqs[c]! + 64) | 0;
  encP.push(hdr(p.length), Buffer.from(p));
  encS.push(hdr(s.length), Buffer.from(s));
}
const streamP = Buffer.concat(encP);
const streamS = Buffer.concat(encS);
const decP = new FrameDecoder();
const decS = new FrameDecoder();
const bp = new FrameBatch();
const bs = new FrameBatch();
const addP = (f: Buffer, v: number) => bp.add(f, v);
const addS = (f: Buffer, v: number) => bs.add(f, v);
let now = 1000.123;
function round(): void {
  // The streams are replayed with advancing sequence numbers? No: the same bytes each round would
  // look like retransmissions. Rebuild the sequence space by a fresh engine per round instead.
  for (let off = 0; off < streamP.length; off += CHUNK_BYTES) {
    const endP = Math.min(streamP.length, off + CHUNK_BYTES);
    const cp = Buffer.from(streamP.subarray(off, endP)); // fresh memory, as a socket read
    decP.push(cp, addP);
    now += 0.01;
    bp.flushPrimary(eng, now);
    writer.flush();
    const cs = Buffer.from(streamS.subarray(off, Math.min(streamS.length, off + CHUNK_BYTES)));
    decS.push(cs, addS);
    bs.flushSecondary(eng, now);
    writer.flush();
  }
}
let eng = engine;
const res: number[] = [];
for (let r = 0; r < 25; r++) {
  eng = new CompareEngine({ maxConnections: 65536 }, sink);
  const t0 = process.hrtime.bigint();
  round();
  const ns = Number(process.hrtime.bigint() - t0) / (2 * PAIRS);
  if (r >= 5) res.push(ns);
  if (eng.stats().released !== PAIRS) throw new Error(`released ${eng.stats().released}`);
  await new Promise((r2) => setImmediate(r2));
}
res.sort((a, b) => a - b);
console.log(JSON.stringify(res.slice(0, 10).map((x) => Math.round(x))), "median", Math.round(res[res.length >> 1]!));
