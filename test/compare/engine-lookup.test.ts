import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { CompareEngine, MAX_PRESIZED_CONNECTIONS } from "../../src/compare/engine.ts";
import { newFrameMeta } from "../../src/packet/meta.ts";
import { parseFrame } from "../../src/packet/parse.ts";
import { anyFrame } from "../packet/arb.ts";
import { RecordingSink, tcp } from "./harness.ts";

// The engine looks connections up by the key's code units (no key string per frame) and makes
// the key string only when it creates a connection: both must agree with the parser's key.
test("one connection per distinct parser flow key, in first-seen order, keyed by the same string", () => {
  const m = newFrameMeta();
  fc.assert(
    fc.property(fc.array(anyFrame, { minLength: 1, maxLength: 40 }), fc.boolean(), (frames, bothSides) => {
      const engine = new CompareEngine({ maxConnections: 1000 }, new RecordingSink());
      const keys: string[] = [];
      const observed: string[] = [];
      const withObserve = new CompareEngine(
        { maxConnections: 1000 },
        Object.assign(new RecordingSink(), {
          observe: (_side: string, key: string) => {
            observed.push(key);
          },
        }),
      );
      const expectObserved: string[] = [];
      for (const { frame, vnetLen } of frames) {
        parseFrame(frame, vnetLen, m);
        if (!keys.includes(m.key)) keys.push(m.key);
        const buf = Buffer.from(frame.buffer, frame.byteOffset, frame.length);
        engine.pushPrimary(buf, vnetLen, 0);
        withObserve.pushPrimary(buf, vnetLen, 0);
        expectObserved.push(m.key);
        if (bothSides) {
          engine.pushSecondary(buf, vnetLen, 0);
          withObserve.pushSecondary(buf, vnetLen, 0);
          expectObserved.push(m.key);
        }
      }
      assert.deepEqual(
        engine.connections(0).map((c) => c.key),
        keys,
      );
      assert.equal(engine.stats().connectionsCreated, keys.length);
      assert.deepEqual(observed, expectObserved, "sink.observe gets each frame's connection key");
      engine.checkInvariant();
    }),
    { numRuns: 200 },
  );
});

test("tableConnections sizes the table up front (two slots per connection); without it the table grows", () => {
  const frame = (i: number) => tcp("primary", { dport: 1000 + i, seq: 1, payload: "x" });
  const grown = new CompareEngine({}, new RecordingSink());
  assert.equal(grown.tableSlots, 64, "small by default");
  for (let i = 0; i < 100; i++) grown.pushPrimary(frame(i), 0, 0);
  assert.equal(grown.tableSlots, 256, "doubled to keep the load at most 1/2");
  const sized = new CompareEngine({}, new RecordingSink(), { tableConnections: 1000 });
  assert.equal(sized.tableSlots, 2048);
  for (let i = 0; i < 1000; i++) sized.pushPrimary(frame(i), 0, 0);
  assert.equal(sized.tableSlots, 2048, "1000 connections: no growth");
  assert.equal(sized.stats().connections, 1000);
  assert.equal(
    new CompareEngine({}, new RecordingSink(), { tableConnections: 1e9 }).tableSlots,
    2 * MAX_PRESIZED_CONNECTIONS,
    "capped",
  );
  // Raising max_connections at run time sizes a presized table again (the pause happens then);
  // an engine that grows on demand is left to grow.
  sized.setParam("max_connections", 5000);
  assert.equal(sized.tableSlots, 16_384);
  for (let i = 0; i < 1000; i++) sized.pushPrimary(frame(i), 0, 0);
  assert.equal(sized.stats().connections, 1000, "the same connections, found again after the rehash");
  grown.setParam("max_connections", 5000);
  assert.equal(grown.tableSlots, 256);
});
