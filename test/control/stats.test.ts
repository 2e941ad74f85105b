import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ColoStats, Histogram, histogramQuantile, total } from "../../src/control/stats.ts";

test("Histogram puts each observation in the first bucket whose bound is >= it", () => {
  const h = new Histogram([1, 2, 5]);
  for (const v of [0, 1, 1.5, 2, 4.9, 5, 6, 100]) h.observe(v);
  assert.deepEqual(h.counts, [2, 2, 2, 2]);
  assert.equal(h.count, 8);
  assert.equal(h.sum, 0 + 1 + 1.5 + 2 + 4.9 + 5 + 6 + 100);
  assert.throws(() => new Histogram([2, 1]), /ascend/);
});

test("histogramQuantile interpolates inside buckets and is monotone in q", () => {
  const h = new Histogram([1, 2, 4]);
  assert.equal(histogramQuantile(h.snapshot(), 0.5), null);
  for (let i = 0; i < 10; i++) h.observe(1.5);
  assert.equal(histogramQuantile(h.snapshot(), 0.5), 1.5);
  assert.equal(histogramQuantile(h.snapshot(), 1), 2);
  fc.assert(
    fc.property(fc.array(fc.double({ min: 0, max: 10, noNaN: true }), { minLength: 1 }), (vals) => {
      const g = new Histogram([0.5, 1, 2, 4, 8]);
      for (const v of vals) g.observe(v);
      const s = g.snapshot();
      let prev = -1;
      for (const q of [0.01, 0.25, 0.5, 0.9, 0.99, 1]) {
        const x = histogramQuantile(s, q) as number;
        assert.ok(x >= prev);
        prev = x;
      }
    }),
  );
});

test("ColoStats: snapshot is a deep copy with every counter", () => {
  const s = new ColoStats();
  const ep = s.endpoint("primary_in");
  ep.framesIn += 3;
  ep.bytesIn += 180;
  assert.equal(s.endpoint("primary_in"), ep, "endpoint() returns the live object");
  s.release("match", 2);
  s.release("checkpoint");
  s.miscompare("payload", "tcp");
  s.miscompare("payload", "tcp");
  s.miscompare("timeout", "udp");
  s.checkpointRequest("payload");
  s.checkpointDone(1000);
  s.checkpointDone(3500);
  s.observeHold(0.3);
  s.badInputSeen("COLO_ERR_FRAME_TOO_LARGE", 2);
  s.setLink("secondary", false);
  s.drop("secondary-flushed", 4);
  const snap = s.snapshot();
  ep.framesIn++;
  s.miscompare("payload", "tcp");
  assert.equal(snap.endpoints.primary_in?.framesIn, 3);
  assert.deepEqual(snap.miscompares, { payload: { tcp: 2 }, timeout: { udp: 1 } });
  assert.equal(total(snap.released), 3);
  assert.equal(snap.checkpoints, 2);
  assert.equal(snap.checkpointInterval.count, 1);
  assert.equal(snap.checkpointInterval.sum, 2.5);
  assert.equal(snap.holdTime.count, 1);
  assert.ok(Math.abs(snap.holdTime.sum - 0.0003) < 1e-12);
  assert.deepEqual(snap.badInput, { COLO_ERR_FRAME_TOO_LARGE: 2 });
  assert.deepEqual(snap.links, { secondary: false });
  assert.deepEqual(snap.dropped, { "secondary-flushed": 4 });
  assert.deepEqual(JSON.parse(JSON.stringify(snap)), snap, "JSON-safe");
});
