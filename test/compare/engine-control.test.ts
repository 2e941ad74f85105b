import assert from "node:assert/strict";
import { test } from "node:test";
import { isColoError } from "../../src/errors.ts";
import { buildUdp } from "../../src/packet/build.ts";
import { setup, tcp, udp } from "./harness.ts";

const flowUdp = (sport: number, payload: string, side: "primary" | "secondary" = "primary") =>
  udp(side, { sport, payload });

test("timeout: strict compare_timeout, one request, coalesced until checkpointDone", () => {
  const { engine, sink } = setup({ compareTimeout: 3000 });
  engine.pushPrimary(flowUdp(1, "a"), 0, 1000);
  engine.tick(4000);
  assert.equal(sink.requests.length, 0, "exactly 3000 ms is not older than the timeout");
  engine.tick(4001);
  assert.equal(sink.requests.length, 1);
  const r = sink.requests[0]!;
  assert.equal(r.reason, "timeout");
  assert.equal(r.side, "primary");
  assert.equal(r.ageMs, 3001);
  assert.equal(r.repeat, false);
  assert.ok(engine.checkpointPending);
  engine.tick(5001);
  engine.tick(6001);
  assert.equal(sink.requests.length, 1);
  assert.equal(engine.stats().checkpointCoalesced, 2);
  engine.checkpointDone(6500);
  assert.equal(sink.released.length, 1);
  assert.equal(engine.checkpointPending, false);
  engine.checkInvariant();
});

test("timeout: secondary packets without a primary twin time out too", () => {
  const { engine, sink } = setup();
  engine.pushSecondary(flowUdp(1, "a", "secondary"), 0, 0);
  engine.tick(3001);
  assert.equal(sink.requests[0]?.side, "secondary");
  engine.checkpointDone(3002);
  assert.deepEqual(sink.discardReasons(), ["flush"]);
  engine.checkInvariant();
});

test("renotify mode re-sends on every tick and every packet of a miscompared flow, like QEMU", () => {
  const { engine, sink } = setup({ renotify: true });
  engine.pushPrimary(flowUdp(1, "a"), 0, 0);
  engine.tick(3001);
  engine.tick(4001);
  assert.deepEqual(
    sink.requests.map((r) => [r.reason, r.repeat]),
    [
      ["timeout", false],
      ["timeout", true],
    ],
  );
  engine.pushSecondary(flowUdp(1, "b", "secondary"), 0, 4002);
  engine.pushPrimary(flowUdp(1, "c"), 0, 4003);
  assert.deepEqual(
    sink.requests.slice(2).map((r) => r.reason),
    ["payload-differs", "payload-differs"],
  );
  engine.checkInvariant();
});

test("a pending request is retried after checkpointRetry ms without checkpointDone", () => {
  const { engine, sink } = setup({ checkpointRetry: 5000, compareTimeout: 100_000 });
  engine.pushPrimary(flowUdp(1, "a"), 0, 0);
  engine.pushSecondary(flowUdp(1, "b", "secondary"), 0, 0);
  assert.equal(sink.requests.length, 1);
  engine.tick(4999);
  assert.equal(sink.requests.length, 1);
  engine.tick(5000);
  assert.equal(sink.requests.length, 2);
  assert.equal(sink.requests[1]?.reason, "payload-differs");
  assert.equal(sink.requests[1]?.repeat, true);
  assert.equal(sink.requests[1]?.time, 5000);
  engine.checkpointDone(5001);
  engine.tick(20_000);
  assert.equal(sink.requests.length, 2, "nothing pending after the flush");
  engine.checkInvariant();
});

test("queue-full: checkpoint + backpressure, primary never dropped, flush in order lifts backpressure", () => {
  const { engine, sink } = setup({ maxQueueSize: 4 });
  const ps = [3, 1, 0, 2, 4, 5].map((i) => tcp("primary", { seq: 100 + i * 10, payload: "0123456789" }));
  for (const p of ps) engine.pushPrimary(p, 0, 0);
  assert.equal(sink.requests.length, 1);
  assert.equal(sink.requests[0]?.reason, "queue-full");
  assert.equal(sink.requests[0]?.side, "primary");
  assert.deepEqual(
    sink.events.filter((e) => e.kind === "backpressure").map((e) => [e.side, e.paused]),
    [["primary", true]],
  );
  assert.ok(engine.isPaused("primary"));
  assert.equal(engine.stats().heldPrimary, 6, "frames beyond max_queue_size are still held");
  assert.equal(engine.stats().overQueueLimit, 2);
  engine.checkInvariant();
  engine.checkpointDone(1);
  assert.deepEqual(
    sink.released,
    [2, 1, 3, 0, 4, 5].map((i) => ps[i]),
    "flushed in sequence order",
  );
  assert.deepEqual(sink.events.at(-1), { kind: "backpressure", side: "primary", paused: false });
  engine.checkInvariant();
});

test("queue-full on the secondary: extra secondary frames are discarded (counted), never a primary", () => {
  const { engine, sink } = setup({ maxQueueSize: 2 });
  for (let i = 0; i < 4; i++) engine.pushSecondary(flowUdp(1, `s${i}`, "secondary"), 0, 0);
  assert.equal(engine.stats().heldSecondary, 2);
  assert.equal(engine.stats().discardedBy["queue-full"], 2);
  assert.equal(sink.requests[0]?.reason, "queue-full");
  assert.ok(engine.isPaused("secondary"));
  engine.checkInvariant();
});

test("checkpoint flush: connections in first-seen order, TCP by sequence, datagrams FIFO; state kept", () => {
  const { engine, sink } = setup();
  const u1 = flowUdp(7, "first");
  const t2 = tcp("primary", { seq: 210, payload: "later" });
  const t1 = tcp("primary", { seq: 200, payload: "early12345" });
  const u2 = flowUdp(7, "second");
  const other = flowUdp(8, "x");
  engine.pushPrimary(u1, 0, 0);
  engine.pushPrimary(t2, 0, 0);
  engine.pushPrimary(other, 0, 0);
  engine.pushPrimary(t1, 0, 0);
  engine.pushPrimary(u2, 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: 200, payload: "early12345" }), 0, 0);
  assert.deepEqual(sink.released, [t1], "t1 matched (rule A)");
  engine.pushSecondary(tcp("secondary", { seq: 210, payload: "LATER" }), 0, 0);
  assert.equal(sink.requests[0]?.reason, "payload-differs");
  engine.checkpointDone(1);
  assert.deepEqual(sink.released, [t1, u1, u2, t2, other]);
  // compare position advanced past what the flush released: the secondary's stale copy is dropped.
  engine.pushSecondary(tcp("secondary", { seq: 210, payload: "later" }), 0, 2);
  assert.equal(sink.discarded.at(-1)?.reason, "already-compared");
  const next = tcp("primary", { seq: 215, payload: "z" });
  engine.pushPrimary(next, 0, 3);
  engine.pushSecondary(tcp("secondary", { seq: 215, payload: "z" }), 0, 3);
  assert.equal(sink.released.at(-1), next);
  engine.checkInvariant();
});

test("connection table: closed then least recently active idle connections are evicted", () => {
  const { engine } = setup({ maxConnections: 3 });
  const pair = (sport: number, t: number) => {
    engine.pushPrimary(flowUdp(sport, "x"), 0, t);
    engine.pushSecondary(flowUdp(sport, "x", "secondary"), 0, t);
  };
  pair(1, 0);
  pair(2, 1);
  pair(3, 2);
  pair(1, 3); // 1 becomes most recent
  pair(4, 4); // evicts 2
  assert.deepEqual(
    engine.connections(4).map((c) => c.flow.match(/:(\d+) >/)?.[1]),
    ["1", "3", "4"],
  );
  assert.equal(engine.stats().connectionsEvicted, 1);
  engine.checkInvariant();
});

test("full table of busy connections: table-full checkpoint, nothing lost, trimmed after flush", () => {
  const { engine, sink } = setup({ maxConnections: 2 });
  engine.pushPrimary(flowUdp(1, "a"), 0, 0);
  engine.pushPrimary(flowUdp(2, "b"), 0, 0);
  engine.pushPrimary(flowUdp(3, "c"), 0, 0);
  assert.equal(sink.requests[0]?.reason, "table-full");
  assert.equal(sink.requests[0]?.depth, 3);
  assert.equal(engine.stats().connectionsOverLimit, 1);
  assert.equal(engine.stats().heldPrimary, 3, "no packet lost");
  engine.checkInvariant();
  engine.checkpointDone(1);
  assert.equal(sink.released.length, 3);
  assert.equal(engine.stats().connections, 2);
  engine.checkInvariant();
});

test("a sink that completes the checkpoint inside the request: table full and queue full lose nothing, stay unpaused", () => {
  // Completing a checkpoint synchronously from checkpointRequest re-enters the engine in the
  // middle of a push. The table-full request must not let that checkpoint's table trimming evict
  // the connection being created (its frame would be held outside the table), and neither
  // request may leave an input paused once its checkpoint is done.
  for (const limit of ["table", "queue"] as const) {
    const { engine, sink } = setup(limit === "table" ? { maxConnections: 2 } : { maxQueueSize: 2 });
    const checkpointRequest = sink.checkpointRequest.bind(sink);
    sink.checkpointRequest = (r) => {
      checkpointRequest(r);
      engine.checkpointDone(1);
    };
    const frames =
      limit === "table"
        ? [flowUdp(1, "a"), flowUdp(2, "b"), flowUdp(3, "c")]
        : [flowUdp(1, "a"), flowUdp(1, "b"), flowUdp(1, "c")];
    for (const f of frames) engine.pushPrimary(f, 0, 0);
    assert.equal(sink.requests[0]?.reason, limit === "table" ? "table-full" : "queue-full", limit);
    engine.checkInvariant();
    const st = engine.stats();
    // Every frame is released (by the flush) or still held: none lost.
    assert.equal(sink.released.length + st.heldPrimary, 3, limit);
    assert.equal(engine.isPaused("primary"), false, `${limit}: left paused after its checkpoint`);
    const bp = sink.events.filter((e) => e.kind === "backpressure").map((e) => e.paused);
    assert.deepEqual(bp, [true, false], limit);
    // The third frame's connection is in the table and compares its twin.
    engine.pushSecondary(flowUdp(limit === "table" ? 3 : 1, "c", "secondary"), 0, 2);
    engine.checkInvariant();
    assert.equal(engine.stats().heldPrimary, 0, limit);
  }
});

test("idle connections expire at tick; connections holding packets never do", () => {
  const { engine } = setup({ idleTimeout: 1000, compareTimeout: 1_000_000 });
  engine.pushPrimary(flowUdp(1, "x"), 0, 0);
  engine.pushSecondary(flowUdp(1, "x", "secondary"), 0, 0);
  engine.pushPrimary(flowUdp(2, "held"), 0, 0);
  engine.tick(1001);
  assert.deepEqual(
    engine.connections(1001).map((c) => c.primaryQueued),
    [1],
  );
  assert.equal(engine.stats().connectionsExpired, 1);
  engine.checkInvariant();
});

test("a fractional clock: activity times are whole milliseconds, hold times exact, expiry within 1 ms", () => {
  const { engine, sink } = setup({ idleTimeout: 1000, compareTimeout: 1_000_000 });
  engine.pushPrimary(flowUdp(1, "x"), 0, 10.25);
  engine.pushSecondary(flowUdp(1, "x", "secondary"), 0, 20.75);
  assert.deepEqual(sink.holds, [{ ms: 10.5, reason: "matched" }], "the held packet's age is exact");
  const [row] = engine.connections(21);
  assert.equal(row?.createdAt, 10);
  assert.equal(row?.lastActive, 20);
  engine.tick(1019.5);
  assert.equal(engine.stats().connections, 1, "not idle for more than 1000 ms yet");
  engine.tick(1021);
  assert.equal(engine.stats().connections, 0);
  assert.equal(engine.stats().connectionsExpired, 1);
  engine.checkInvariant();
});

test("passthrough rules: matching flows released uncompared, held packets flushed on add, removable", () => {
  const { engine, sink } = setup();
  const held = flowUdp(53, "q");
  engine.pushPrimary(held, 0, 0);
  engine.pushSecondary(flowUdp(53, "Q", "secondary"), 0, 0);
  assert.equal(sink.requests.length, 1);
  const { id, rule } = engine.addPassthrough("udp 10.0.0.1:53", 1);
  assert.equal(rule, "udp 10.0.0.1/32:53");
  assert.deepEqual(sink.released, [held], "held primary released by the new rule");
  assert.deepEqual(sink.discardReasons(), ["passthrough"]);
  const p = flowUdp(53, "z");
  engine.pushPrimary(p, 0, 2);
  assert.equal(sink.released.at(-1), p);
  engine.pushSecondary(flowUdp(53, "z", "secondary"), 0, 2);
  assert.equal(sink.discarded.at(-1)?.reason, "passthrough");
  assert.deepEqual(engine.listPassthrough(), [{ id, rule }]);
  engine.removePassthrough(id, 3);
  engine.pushPrimary(flowUdp(53, "w"), 0, 4);
  assert.equal(engine.stats().heldPrimary, 1, "compared again after removal");
  assert.throws(
    () => engine.removePassthrough(99, 5),
    (e: unknown) => isColoError(e) && e.code === "COLO_ERR_COMPARE_RULE_NOT_FOUND",
  );
  assert.throws(
    () => engine.addPassthrough("tcp 10.0.0.0/33", 5),
    (e: unknown) => isColoError(e) && e.code === "COLO_ERR_COMPARE_RULE",
  );
  engine.checkInvariant();
});

test("failover: everything held is released, then primary passes straight through", () => {
  const { engine, sink } = setup();
  const a = flowUdp(1, "a");
  const b = tcp("primary", { seq: 1, payload: "b" });
  engine.pushPrimary(a, 0, 0);
  engine.pushPrimary(b, 0, 0);
  engine.pushSecondary(flowUdp(9, "s", "secondary"), 0, 0);
  engine.failover(1);
  assert.deepEqual(sink.released, [a, b]);
  assert.deepEqual(sink.discardReasons(), ["failover"]);
  const c = flowUdp(1, "c");
  engine.pushPrimary(c, 0, 2);
  assert.equal(sink.released.at(-1), c);
  engine.pushSecondary(flowUdp(1, "c", "secondary"), 0, 2);
  assert.equal(sink.discarded.at(-1)?.reason, "failover");
  assert.ok(engine.stats().failover);
  engine.tick(100_000);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("setParam: QEMU names and camelCase, validated with a stable code", () => {
  const { engine } = setup();
  assert.equal(engine.setParam("compare_timeout", 500), 500);
  assert.equal(engine.setParam("max_queue_size", "16"), 16);
  assert.equal(engine.setParam("expiredScanCycle", 250), 250);
  assert.equal(engine.config.compareTimeout, 500);
  assert.equal(engine.config.expiredScanCycle, 250);
  for (const [name, value] of [
    ["compare_timeout", 0],
    ["max_queue_size", -1],
    ["max_queue_size", 1.5],
    ["expired_scan_cycle", "abc"],
    ["nope", 1],
  ] as const) {
    assert.throws(
      () => engine.setParam(name, value),
      (e: unknown) => isColoError(e) && e.code === "COLO_ERR_COMPARE_PARAM",
      `${name}=${value}`,
    );
  }
  // The new timeout applies at once.
  engine.pushPrimary(buildUdp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 1, dport: 2, payload: "t" }), 0, 0);
  engine.tick(501);
  assert.equal(engine.stats().checkpointRequests.timeout, 1);
  engine.checkInvariant();
});

test("stats: per-side frames and bytes, connections table fields", () => {
  const { engine } = setup();
  const p = flowUdp(1, "abc");
  engine.pushPrimary(p, 0, 10);
  engine.pushSecondary(flowUdp(2, "zz", "secondary"), 0, 11);
  const st = engine.stats();
  assert.equal(st.primaryFrames, 1);
  assert.equal(st.primaryBytes, p.length);
  assert.equal(st.secondaryFrames, 1);
  assert.equal(st.connections, 2);
  assert.equal(st.connectionsCreated, 2);
  const rows = engine.connections(20);
  assert.equal(rows[0]?.oldestHeldMs, 10);
  assert.equal(rows[0]?.primaryQueued, 1);
  assert.equal(rows[1]?.secondaryQueued, 1);
  assert.equal(rows[0]?.protocol, "udp");
  assert.equal(rows[0]?.state, "open");
  engine.checkInvariant();
});

test("connections(): states open, closing, closed, miscompared and passthrough", () => {
  const { engine } = setup({ compareTimeout: 1_000_000 });
  const t = (sport: number, o: Parameters<typeof tcp>[1], side: "primary" | "secondary" = "primary") =>
    tcp(side, { ...o, sport });
  engine.pushPrimary(t(1, { seq: 1, payload: "a" }), 0, 0); // open, held
  engine.pushPrimary(t(2, { seq: 1, flags: "FA", ack: 9 }), 0, 0); // closing (primary FIN)
  engine.pushPrimary(t(3, { seq: 1, flags: "R", ack: 0 }), 0, 0); // closed (primary RST)
  engine.pushPrimary(t(4, { seq: 1, payload: "x" }), 0, 0);
  engine.pushSecondary(t(4, { seq: 1, payload: "y" }, "secondary"), 0, 0); // miscompared
  engine.addPassthrough("tcp *:5", 0);
  engine.pushPrimary(t(5, { seq: 1, payload: "p" }), 0, 0);
  assert.deepEqual(
    engine.connections(1).map((c) => [c.flow.split(" ")[1], c.state]),
    [
      ["10.0.0.1:1", "open"],
      ["10.0.0.1:2", "closing"],
      ["10.0.0.1:3", "closed"],
      ["10.0.0.1:4", "miscompared"],
      ["10.0.0.1:5", "passthrough"],
    ],
  );
  assert.equal(engine.connections(1, 2).length, 2, "limit");
  engine.checkInvariant();
});

test("renotify applies to TCP too: every packet of a miscompared stream re-requests", () => {
  const { engine, sink } = setup({ renotify: true });
  engine.pushPrimary(tcp("primary", { seq: 1, payload: "abc" }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: 1, payload: "abd" }), 0, 0);
  engine.pushPrimary(tcp("primary", { seq: 4, payload: "more" }), 0, 1);
  engine.pushSecondary(tcp("secondary", { seq: 4, payload: "more" }), 0, 1);
  assert.deepEqual(
    sink.requests.map((r) => [r.reason, r.repeat]),
    [
      ["payload-differs", false],
      ["payload-differs", true],
      ["payload-differs", true],
    ],
  );
  engine.checkpointDone(2);
  assert.equal(engine.stats().heldPrimary, 0);
  engine.checkInvariant();
});

test("stats() is a snapshot; checkpointDone with nothing held only counts the checkpoint", () => {
  const { engine, sink } = setup();
  const before = engine.stats();
  engine.checkpointDone(0);
  assert.equal(before.checkpoints, 0, "the snapshot did not change");
  assert.equal(engine.stats().checkpoints, 1);
  assert.equal(sink.events.length, 0);
  engine.failover(1);
  engine.failover(2);
  assert.ok(engine.inFailover);
  engine.checkInvariant();
});

test("a full table evicts closed connections before idle ones, even more recent ones", () => {
  const { engine } = setup({ maxConnections: 2 });
  engine.pushPrimary(udp("primary", { sport: 2, payload: "x" }), 0, 0);
  engine.pushSecondary(udp("secondary", { sport: 2, payload: "x" }), 0, 0);
  // A TCP connection reset on both sides later: closed and more recently active than the UDP one.
  engine.pushPrimary(tcp("primary", { sport: 1, seq: 1, flags: "R", ack: 0 }), 0, 1);
  engine.pushSecondary(tcp("secondary", { sport: 1, seq: 1, flags: "R", ack: 0 }), 0, 1);
  assert.equal(engine.stats().heldPrimary, 0);
  engine.pushPrimary(udp("primary", { sport: 3, payload: "y" }), 0, 2);
  assert.deepEqual(
    engine.connections(2).map((c) => c.flow),
    ["udp 10.0.0.1:2 > 10.0.0.2:53", "udp 10.0.0.1:3 > 10.0.0.2:53"],
  );
  assert.equal(engine.stats().connectionsEvicted, 1);
  engine.checkInvariant();
});
