import assert from "node:assert/strict";
import { test } from "node:test";
import { FrameBatch } from "../../src/compare/batch.ts";
import { CompareEngine } from "../../src/compare/engine.ts";
import type { CompareSink } from "../../src/compare/types.ts";
import { buildTcp, buildUdp } from "../../src/packet/build.ts";

const seg = (port: number, seq: number, fill: number) =>
  buildTcp({
    src: "10.0.0.1",
    dst: "10.0.0.2",
    sport: 80,
    dport: port,
    seq,
    ack: 1,
    flags: "PA",
    payload: Buffer.alloc(20, fill),
  });

function logSink(log: string[], ids: Map<Buffer, string>): CompareSink {
  return {
    release: (f) => log.push(`release ${ids.get(f)}`),
    discard: (f, _v, side, reason) => log.push(`discard ${ids.get(f)} ${side} ${reason}`),
    checkpointRequest: (r) => log.push(`checkpoint ${r.reason} ${r.flow}`),
    backpressure: (side, paused) => log.push(`backpressure ${side} ${paused}`),
  };
}

test("FrameBatch: a flush pushes the frames added since the last one, in order, as one batch call", () => {
  const ids = new Map<Buffer, string>();
  const mk = (name: string, f: Buffer) => {
    ids.set(f, name);
    return f;
  };
  const primaries = [
    mk("p0", seg(1, 0, 1)),
    mk("p1", seg(2, 0, 1)),
    mk("p2", seg(1, 20, 1)),
    mk("p3", Buffer.alloc(0)),
    mk("p4", seg(3, 0, 1).subarray(0, 40)),
  ];
  const secondaries = [mk("s0", seg(2, 0, 1)), mk("s1", seg(1, 0, 1)), mk("s2", seg(1, 20, 7))];
  const byOne: string[] = [];
  const one = new CompareEngine({}, logSink(byOne, ids));
  for (const f of primaries) one.pushPrimary(f, 0, 5);
  for (const f of secondaries) one.pushSecondary(f, 0, 6);

  const batched: string[] = [];
  const calls: string[] = [];
  const engine = new CompareEngine({}, logSink(batched, ids), { batchMinConnections: 0 });
  const spy = engine as unknown as Record<string, (...a: unknown[]) => void>;
  for (const name of ["pushPrimaryBatch", "pushSecondaryBatch"]) {
    const orig = spy[name]!.bind(engine);
    spy[name] = (frames, vnetLens, count, now) => {
      calls.push(`${name} ${count} ${now}`);
      orig(frames, vnetLens, count, now);
    };
  }
  const pb = new FrameBatch();
  const sb = new FrameBatch();
  sb.flushSecondary(engine, 1); // nothing added: no call
  for (const f of primaries) pb.add(f, 0);
  assert.equal(pb.count, primaries.length);
  pb.flushPrimary(engine, 5);
  assert.equal(pb.count, 0);
  pb.flushPrimary(engine, 5); // nothing new
  for (const f of secondaries) sb.add(f, 0);
  sb.flushSecondary(engine, 6);
  assert.deepEqual(calls, ["pushPrimaryBatch 5 5", "pushSecondaryBatch 3 6"]);
  assert.deepEqual(batched, byOne);
  assert.deepEqual(engine.stats(), one.stats());
  engine.checkInvariant();
});

test("FrameBatch: a frame added from a sink callback during a flush goes into the next batch", () => {
  const pb = new FrameBatch();
  const late = buildUdp({
    src: "10.0.0.1",
    dst: "10.0.0.3",
    sport: 1,
    dport: 2,
    payload: Buffer.from("late"),
  });
  const seen: Buffer[] = [];
  let engine: CompareEngine | null = null;
  const sink: CompareSink = {
    release: (f) => {
      seen.push(f);
      // Sabotage: add to the batch being flushed, with more frames than it holds.
      if (seen.length === 1) for (let k = 0; k < 4; k++) pb.add(late, 0);
    },
    discard() {},
    checkpointRequest() {},
    backpressure() {},
  };
  engine = new CompareEngine({}, sink, { batchMinConnections: 0 });
  // Malformed frames are released at once, so the first release happens mid-batch.
  const bad = [0, 1, 2].map((i) => seg(10 + i, 0, 1).subarray(0, 38));
  for (const f of bad) pb.add(f, 0);
  pb.flushPrimary(engine, 0);
  assert.deepEqual(seen, bad, "the batch being flushed is not disturbed");
  assert.equal(pb.count, 4, "the frames added meanwhile wait for the next flush");
  pb.flushPrimary(engine, 1);
  assert.equal(pb.count, 0);
  assert.equal(engine.stats().primaryFrames, 7);
  assert.equal(engine.stats().heldPrimary, 4, "the four UDP primaries wait for their twins");
});
