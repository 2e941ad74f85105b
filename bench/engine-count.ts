/**
 * @module For instruction/cache counting under valgrind: build `conns` connections, then push
 * `pairs` matching pairs round-robin. Usage: node --import tsx bench/engine-count.ts <payload> <conns> <pairs>
 */
import { CompareEngine } from "../src/compare/engine.ts";
import type { CompareSink } from "../src/compare/types.ts";
import { buildTcp } from "../src/packet/build.ts";

const [payload, conns, pairs] = process.argv.slice(2).map(Number) as [number, number, number];
const L3 = 14;
const L4 = L3 + 20;
const sink: CompareSink = {
  release() {},
  discard() {},
  checkpointRequest(r) {
    throw new Error(r.message);
  },
  backpressure() {},
};
const mk = (ttl: number) =>
  buildTcp({
    src: "10.0.0.1",
    dst: "10.1.0.0",
    sport: 80,
    dport: 1,
    seq: 0,
    ack: 1,
    flags: "PA",
    payload: Buffer.alloc(payload, 0x5a),
    ttl,
    id: ttl,
  });
const e = new CompareEngine({ maxConnections: Math.max(65536, conns) }, sink);
const p = mk(64);
const s = mk(63);
const seqs = new Uint32Array(conns);
let next = 0;
function pair(): void {
  const i = next;
  next = next + 1 === conns ? 0 : next + 1;
  const seq = seqs[i]!;
  for (const f of [p, s]) {
    f.writeUInt16BE(1 + (i % 60000), L4 + 2);
    f[L3 + 18] = Math.floor(i / 60000);
    f.writeUInt32BE(seq >>> 0, L4 + 4);
  }
  e.pushPrimary(p, 0, 0);
  e.pushSecondary(s, 0, 0);
  seqs[i] = seq + payload;
}
for (let k = 0; k < Math.max(conns, 200_000); k++) pair();
for (let k = 0; k < pairs; k++) pair();
