/**
 * @module Miscompare capture bounds (src/node/capture.ts), driven through a real CompareEngine:
 * rings keep the last N frames per side, only miscompares write files, the per-minute and
 * total-bytes caps skip and count, ring memory is bounded by evicting the oldest connections.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { CompareEngine } from "../../src/compare/engine.ts";
import type { CheckpointRequest, CompareSink } from "../../src/compare/types.ts";
import { type MiscaptureOptions, MiscompareCapture } from "../../src/node/capture.ts";
import { readCapture } from "../../src/wire/pcap-reader.ts";
import { tcp } from "../support/frames.ts";
import { tempDir } from "../support/qemu.ts";

function rig(t: Parameters<typeof tempDir>[0], opts: Partial<MiscaptureOptions> = {}) {
  const dir = tempDir(t);
  let clockNs = 1_800_000_000_000_000_000n;
  const cap = new MiscompareCapture({ dir, frames: 4, wallNs: () => clockNs, ...opts });
  const writes: Promise<string | null>[] = [];
  const requests: CheckpointRequest[] = [];
  const sink: CompareSink = {
    release: (f) => cap.released(f),
    discard: (f, _v, _s, reason) => cap.discarded(f, reason),
    checkpointRequest: (req) => {
      requests.push(req);
      writes.push(cap.request(req));
    },
    backpressure: () => {},
    holdTime: (_ms, reason) => cap.releaseReason(reason),
    observe: (side, key, frame, vnetLen) => cap.observe(side, key, frame, vnetLen),
  };
  const engine = new CompareEngine({}, sink);
  let now = 0;
  /** One matched segment, or a differing one, on flow sport→80; checkpoint after a miscompare. */
  const pair = (sport: number, seq: number, differ = false, bytes = 8) => {
    now++;
    clockNs += 1_000_000n;
    const body = "x".repeat(bytes - 1);
    engine.pushPrimary(tcp({ sport, dport: 80, seq, payload: `${body}A` }), 0, now);
    engine.pushSecondary(tcp({ sport, dport: 80, seq, payload: `${body}${differ ? "B" : "A"}` }), 0, now);
    if (differ) engine.checkpointDone(now);
  };
  const advance = (ms: number) => {
    clockNs += BigInt(ms) * 1_000_000n;
  };
  return { dir, cap, engine, pair, writes, requests, advance };
}

test("a miscompare writes the connection's last N frames per side, in order, with their fate", async (t) => {
  const { dir, cap, pair, writes } = rig(t);
  for (let i = 0; i < 6; i++) pair(1000, 100 + i * 8);
  pair(2000, 5000); // another flow: not in the file
  assert.equal(writes.length, 0, "matched traffic writes nothing");
  pair(1000, 148, true);
  const files = (await Promise.all(writes)).filter((f) => f !== null);
  assert.equal(files.length, 1);
  assert.deepEqual(readdirSync(dir), [path.basename(files[0]!)]);
  const comments: string[] = [];
  const seqs: number[] = [];
  for await (const p of readCapture(files[0]!)) {
    comments.push(p.comment ?? "");
    seqs.push(Buffer.from(p.frame).readUInt32BE(14 + 20 + 4));
  }
  assert.equal(comments.length, 8, "4 frames per side");
  assert.deepEqual(seqs, [124, 124, 132, 132, 140, 140, 148, 148]);
  assert.deepEqual(comments.slice(0, 2), ["pvm: released (matched)", "svm: discarded (matched)"]);
  assert.deepEqual(comments.slice(-2), ["pvm: held", "svm: held"], "state when the file was written");
  assert.equal(cap.stats.written, 1);
});

test("the per-minute cap skips and counts; a minute later files are written again", async (t) => {
  const { cap, pair, writes, advance } = rig(t, { maxFilesPerMinute: 2 });
  for (let i = 0; i < 5; i++) pair(1000 + i, 100, true);
  assert.equal((await Promise.all(writes)).filter((f) => f !== null).length, 2);
  assert.equal(cap.stats.skippedRate, 3);
  advance(60_000);
  pair(3000, 100, true);
  assert.notEqual(await writes.at(-1), null);
  assert.equal(cap.stats.written, 3);
});

test("the total-bytes cap skips and counts", async (t) => {
  const { cap, pair, writes } = rig(t, { maxTotalBytes: 1200 });
  for (let i = 0; i < 4; i++) pair(1000 + i, 100, true);
  const written = (await Promise.all(writes)).filter((f) => f !== null).length;
  assert.ok(written >= 1 && written < 4, `${written} written`);
  assert.equal(cap.stats.skippedBytes, 4 - written);
  assert.ok(cap.stats.bytesWritten <= 1200);
});

test("ring memory is bounded: the oldest connections' rings go first", async (t) => {
  const { cap, pair, writes } = rig(t, { maxRingBytes: 20_000, maxConnections: 50 });
  for (let i = 0; i < 200; i++) pair(1000 + i, 100, false, 200);
  assert.ok(cap.connections <= 50);
  assert.ok(cap.stats.ringsEvicted >= 150);
  pair(1000, 300, true); // its ring was evicted: only what came after is there
  pair(1199, 300, true);
  const files = await Promise.all(writes);
  assert.equal(files.length, 2);
  let n = 0;
  for await (const _ of readCapture(files[1]!)) n++;
  assert.equal(n, 4, "the newest connection kept its frames");
});
