import assert from "node:assert/strict";
import { test } from "node:test";
import { CompareEngine } from "../../src/compare/engine.ts";
import type { CheckpointRequest, CompareSink } from "../../src/compare/types.ts";
import type { StatsReply } from "../../src/control/commands.ts";
import { checkpointEventData, compareSnapshot } from "../../src/control/compare-adapter.ts";
import { formatEvent } from "../../src/control/format.ts";
import { startControl } from "../../src/control/index.ts";
import { Histogram, HOLD_TIME_BOUNDS } from "../../src/control/stats.ts";
import type { ControlEvent, ControlTarget } from "../../src/control/target.ts";
import { stream, tcp } from "../compare/harness.ts";

const ISN = 1_000_000;

/** A minimal daemon shell around the real CompareEngine, as a compare daemon would wire it. */
function engineDaemon() {
  const hold = new Histogram(HOLD_TIME_BOUNDS);
  let epoch = 0;
  let emitRequest: (r: CheckpointRequest) => void = () => undefined;
  const sink: CompareSink = {
    release: () => undefined,
    discard: () => undefined,
    checkpointRequest: (r) => emitRequest(r),
    backpressure: () => undefined,
    holdTime: (ms) => hold.observe(ms / 1000),
  };
  const engine = new CompareEngine({}, sink);
  const target: ControlTarget = {
    status: () => ({
      role: "compare",
      mode: engine.inFailover ? "failover" : "colo",
      peers: [],
      checkpointEpoch: epoch,
    }),
    stats: () => compareSnapshot(engine.liveStats, { holdTime: hold }),
    connections: () => engine.connections(2),
    checkpointDone: () => {
      const before = engine.liveStats;
      const held = { p: before.heldPrimary, s: before.heldSecondary };
      engine.checkpointDone(3);
      epoch++;
      return { epoch, released: held.p, dropped: held.s };
    },
    passthroughAdd: (rule) => engine.addPassthrough(rule, 3),
    passthroughDel: (r) => engine.removePassthrough(r, 3),
    passthroughList: () => engine.listPassthrough(),
    params: () => ({
      compare_timeout: engine.config.compareTimeout,
      expired_scan_cycle: engine.config.expiredScanCycle,
      max_queue_size: engine.config.maxQueueSize,
    }),
    setParam: (name, value) => engine.setParam(name, value),
  };
  return {
    engine,
    target,
    setEmit: (f: (r: CheckpointRequest) => void) => (emitRequest = f),
    epoch: () => epoch,
  };
}

test("a real engine miscompare becomes a CHECKPOINT_REQUEST with explanation, offset and hex windows", async () => {
  const d = engineDaemon();
  const control = await startControl(d.target, { role: "compare", socket: null });
  const seen: ControlEvent[] = [];
  control.server.subscribe((e) => seen.push(e));
  d.setEmit((r) => control.emit("CHECKPOINT_REQUEST", checkpointEventData(r, d.epoch())));
  try {
    const data = stream(300, 3);
    const bad = Buffer.from(data);
    bad[217] = (bad[217] ?? 0) ^ 0x55;
    d.engine.pushPrimary(tcp("primary", { seq: ISN, flags: "SA", ack: 5000 }), 0, 0);
    d.engine.pushSecondary(tcp("secondary", { seq: ISN, flags: "SA", ack: 5000 }), 0, 0);
    d.engine.pushPrimary(tcp("primary", { seq: ISN + 1, payload: data.subarray(0, 200) }), 0, 1);
    d.engine.pushPrimary(tcp("primary", { seq: ISN + 201, payload: data.subarray(200) }), 0, 1);
    d.engine.pushSecondary(tcp("secondary", { seq: ISN + 1, payload: bad }), 0, 2);

    assert.equal(seen.length, 1);
    const ev = seen[0] as ControlEvent<"CHECKPOINT_REQUEST">;
    assert.equal(ev.data.reason, "payload-differs");
    assert.equal(ev.data.offset, 217);
    assert.equal(ev.data.flow, "tcp 10.0.0.1:80 > 10.0.0.2:40000");
    assert.equal(ev.data.seq, ISN + 1 + 217, "engine-specific fields are passed along");
    assert.match(ev.data.explanation, /stream offset 217/);
    assert.equal(ev.data.primary?.offset, 209);
    assert.equal(ev.data.primary?.hex.slice(16, 18), (data[217] ?? 0).toString(16).padStart(2, "0"));
    assert.equal(ev.data.secondary?.hex.slice(16, 18), (bad[217] ?? 0).toString(16).padStart(2, "0"));
    const text = formatEvent({
      event: ev.event,
      data: ev.data,
      timestamp: { seconds: 0, microseconds: 0 },
    });
    assert.match(text, /CHECKPOINT_REQUEST payload-differs tcp 10\.0\.0\.1:80 > 10\.0\.0\.2:40000 @ 217/);
    assert.match(
      text,
      /P 00000209 {2}ec 36 38 5f d2 d9 39 81 f6/,
      "rows start at the window's stream offset",
    );
    assert.match(text, /^ +\^\^$/m);

    // query-stats is the engine's counters, reshaped.
    const st = ((await control.server.execute("query-stats")) as { return: StatsReply }).return;
    assert.equal(st.miscompares["payload-differs"]?.tcp, 1);
    assert.equal(st.checkpointRequests["payload-differs"], 1);
    assert.deepEqual(
      Object.fromEntries(Object.entries(st.released).filter(([, n]) => n > 0)),
      { matched: 1, "no-payload": 1 },
      "the first matching segment, and the SYN-ACK (no payload)",
    );
    assert.equal(st.queues.primary, 1);
    assert.equal(st.holdTime.count, 2);
    assert.equal(st.counters?.checkpoint_coalesced, 0);
    assert.deepEqual(st.endpoints.primary_in, {
      framesIn: 3,
      bytesIn: d.engine.liveStats.primaryBytes,
      framesOut: 0,
      bytesOut: 0,
    });
    const conns = (
      (await control.server.execute("query-connections")) as {
        return: { state: string; primaryQueued: number }[];
      }
    ).return;
    assert.equal(conns[0]?.state, "miscompared");
    assert.equal(conns[0]?.primaryQueued, 1);

    // checkpoint-done flushes through the engine.
    const done = ((await control.server.execute("checkpoint-done")) as { return: unknown }).return;
    assert.deepEqual(done, { epoch: 1, released: 1, dropped: 1 });
    const after = ((await control.server.execute("query-stats")) as { return: StatsReply }).return;
    assert.equal(after.released.flush, 1);
    assert.equal(after.discarded?.flush, 1);
    assert.equal(after.checkpoints, 1);

    // Engine validation errors reach the client with the engine's codes.
    const bad1 = await control.server.execute("set-param", { name: "max_queue_size", value: 0 });
    assert.equal("error" in bad1 && bad1.error.code, "COLO_ERR_COMPARE_PARAM");
    const ok = await control.server.execute("set-param", { name: "max_queue_size", value: 64 });
    assert.equal("return" in ok && (ok.return as { max_queue_size: number }).max_queue_size, 64);
    const rule = await control.server.execute("passthrough-add", { rule: "tcp :3389" });
    assert.deepEqual("return" in rule && rule.return, { id: 1, rule: "tcp *:3389" });
  } finally {
    await control.close();
  }
});

test("compareSnapshot transposes miscompares, sums bad input over both sides and copies", () => {
  const d = engineDaemon();
  d.engine.pushPrimary(Buffer.alloc(10), 0, 0); // too short to parse: released as malformed
  d.engine.pushSecondary(Buffer.alloc(10), 0, 0);
  const s = compareSnapshot(d.engine.liveStats, { badInput: { COLO_ERR_FRAME_TOO_LARGE: 2 } });
  assert.equal(s.badInput.COLO_ERR_PKT_TRUNCATED, 2);
  assert.equal(s.badInput.COLO_ERR_FRAME_TOO_LARGE, 2);
  assert.equal(s.released.malformed, 1);
  assert.equal(s.miscompares["payload-differs"]?.udp, 0);
  d.engine.pushPrimary(Buffer.alloc(10), 0, 0);
  assert.equal(s.released.malformed, 1, "a copy, not a view of the live counters");
});
