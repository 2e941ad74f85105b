/**
 * @module `colo-proxy compare` daemon wiring tests (in process, real sockets): checkpoint requests
 * on the control socket when there is no notify_dev, checkpoint-done flushing, bad input counted
 * and reset without losing held frames, outdev as a reconnecting client, and the Xen handshake.
 */
import assert from "node:assert/strict";
import net from "node:net";
import path from "node:path";
import { test } from "node:test";
import { ControlClient } from "../../src/control/client.ts";
import type { EventMessage } from "../../src/control/protocol.ts";
import { CompareDaemon } from "../../src/node/compare-daemon.ts";
import { emptyRawOptions, resolveCompareConfig } from "../../src/node/config.ts";
import { tcp, udp } from "../support/frames.ts";
import { MainLoopPeer } from "../support/main-loop-peer.ts";
import { FramedPeer, type TestCtx, tempDir, waitUntil } from "../support/qemu.ts";

/** A `colo-proxy compare` daemon on UNIX sockets in a temp dir (no peers connected yet). */
async function startDaemon(
  t: TestCtx,
  extra: string[] = [],
  opts: { notify?: boolean; outClient?: string; control?: boolean; now?: () => number } = {},
) {
  const dir = tempDir(t);
  const sock = (id: string) => path.join(dir, `${id}.sock`);
  const raw = emptyRawOptions();
  for (const id of ["pri", "sec", ...(opts.outClient ? [] : ["out"]), ...(opts.notify ? ["nfy"] : [])]) {
    raw.chardevs.push(`socket,id=${id},path=${sock(id)},server=on,wait=off`);
  }
  if (opts.outClient) raw.chardevs.push(`socket,id=out,path=${opts.outClient},reconnect-ms=20`);
  raw.objects.push(
    `colo-compare,id=c,primary_in=pri,secondary_in=sec,outdev=out${opts.notify ? ",notify_dev=nfy" : ""}${extra.map((e) => `,${e}`).join("")}`,
  );
  const ctl = sock("ctl");
  const d = await CompareDaemon.start(resolveCompareConfig(raw), {
    controlSocket: opts.control === false ? null : ctl,
    ...(opts.now ? { now: opts.now } : {}),
  });
  t.after(() => d.close());
  return { d, dir, sock, ctl };
}

async function daemon(
  t: TestCtx,
  extra: string[] = [],
  opts: { notify?: boolean; outClient?: string; now?: () => number } = {},
) {
  const { d, dir, sock, ctl } = await startDaemon(t, extra, opts);
  const pri = await FramedPeer.connect(sock("pri"), {}, t);
  const sec = await FramedPeer.connect(sock("sec"), {}, t);
  const out = opts.outClient ? undefined : await FramedPeer.connect(sock("out"), {}, t);
  const client = await ControlClient.connect({ path: ctl });
  t.after(() => client.close());
  await client.execute("qmp_capabilities");
  const events: EventMessage[] = [];
  client.onEvent((e) => events.push(e));
  return { d, dir, sock, pri, sec, out, client, events };
}

test("without notify_dev a miscompare is a CHECKPOINT_REQUEST event; checkpoint-done releases", async (t) => {
  const { pri, sec, out, client, events } = await daemon(t);
  const p = tcp({ payload: "hello" });
  pri.send(p);
  sec.send(tcp({ payload: "HELLO" }));
  assert.ok(
    await waitUntil(() => events.some((e) => e.event === "CHECKPOINT_REQUEST"), 20_000),
    'waitUntil(() => events.some((e) => e.event === "CHECKPOINT_REQUEST"), 20_000)',
  );
  const req = events.find((e) => e.event === "CHECKPOINT_REQUEST")!;
  assert.equal(req.data.reason, "payload-differs");
  assert.match(String(req.data.explanation), /differ/);
  assert.equal(out!.frames.length, 0, "held until the checkpoint");
  const done = await client.execute<{ epoch: number; released: number; dropped: number }>("checkpoint-done");
  assert.deepEqual(done, { epoch: 1, released: 1, dropped: 1 });
  assert.ok(await out!.waitFrames(1, 20_000), "out!.waitFrames(1, 20_000)");
  assert.deepEqual(out!.frames[0]!.data, p);
  const status = await client.execute<{
    role: string;
    checkpointEpoch: number;
    peers: { name: string; state: string }[];
  }>("query-status");
  assert.equal(status.role, "compare");
  assert.equal(status.checkpointEpoch, 1);
  assert.deepEqual(
    status.peers.map((x) => [x.name, x.state]),
    [
      ["primary_in", "up"],
      ["secondary_in", "up"],
      ["outdev", "up"],
    ],
  );
});

test("bad input on primary_in is counted and reset; frames held before it survive", async (t) => {
  const { sock, pri, sec, out, client, events } = await daemon(t);
  const held = udp({ payload: "held" });
  pri.send(held);
  await pri.flush();
  const huge = Buffer.alloc(4);
  huge.writeUInt32BE(1_000_000);
  pri.sendRaw(huge);
  assert.ok(await waitUntil(() => pri.closed, 20_000), "the bad stream is closed");
  assert.ok(
    await waitUntil(() => events.some((e) => e.event === "BAD_INPUT"), 20_000),
    'waitUntil(() => events.some((e) => e.event === "BAD_INPUT"), 20_000)',
  );
  const bad = events.find((e) => e.event === "BAD_INPUT")!;
  assert.equal(bad.data.code, "COLO_ERR_FRAME_TOO_LARGE");
  assert.equal(bad.data.source, "primary_in");
  // secondary and outdev were not disturbed; a reconnected primary works again
  sec.send(held);
  assert.ok(await out!.waitFrames(1, 20_000), "the frame held before the bad input is released");
  assert.deepEqual(out!.frames[0]!.data, held);
  const pri2 = await FramedPeer.connect(sock("pri"), {}, t);
  const next = udp({ payload: "next" });
  pri2.send(next);
  sec.send(next);
  assert.ok(await out!.waitFrames(2, 20_000), "out!.waitFrames(2, 20_000)");
  assert.deepEqual(out!.frames[1]!.data, next);
  const stats = await client.execute<{ badInput: Record<string, number>; released: Record<string, number> }>(
    "query-stats",
  );
  assert.equal(stats.badInput.COLO_ERR_FRAME_TOO_LARGE, 1);
  assert.equal(stats.released.matched, 2);
});

test("outdev as a client (QEMU's compare_out0) connects, reconnects, and nothing released meanwhile is lost", async (t) => {
  const dir = tempDir(t);
  const outPath = path.join(dir, "redirector.sock");
  const received: FramedPeer[] = [];
  const server = net.createServer((s) => received.push(new FramedPeer(s, false)));
  await new Promise<void>((r) => server.listen(outPath, r));
  t.after(() => server.close());
  const { d, pri, sec } = await daemon(t, [], { outClient: outPath });
  const f1 = udp({ payload: "one" });
  pri.send(f1);
  sec.send(f1);
  assert.ok(
    await waitUntil(() => received[0] !== undefined && received[0].frames.length === 1, 20_000),
    "waitUntil(() => received[0] !== undefined && received[0].frames.length === 1, 20_000)",
  );
  assert.deepEqual(received[0]!.frames[0]!.data, f1);
  received[0]!.close();
  // f2 goes out only once the daemon saw the close (and reconnects); a frame written into the
  // closing connection would be lost, which is not what this test is about.
  assert.ok(await waitUntil(() => !d.outdev.connected, 20_000), "daemon saw the redirector go away");
  const f2 = udp({ payload: "two" });
  pri.send(f2);
  sec.send(f2);
  assert.ok(
    await waitUntil(() => received[1] !== undefined && received[1].frames.length === 1, 20_000),
    "reconnected",
  );
  assert.deepEqual(received[1]!.frames[0]!.data, f2);
});

test("notify_dev: INIT answered, DO_CHECKPOINT owed while Xen is away is sent when it connects", async (t) => {
  const { sock, pri, sec, out, events } = await daemon(t, [], { notify: true });
  pri.send(tcp({ payload: "a" }));
  sec.send(tcp({ payload: "b" }));
  // Xen connects only after the miscompare asked for the checkpoint: the request is owed.
  assert.ok(
    await waitUntil(() => events.some((e) => e.event === "CHECKPOINT_REQUEST"), 20_000),
    'waitUntil(() => events.some((e) => e.event === "CHECKPOINT_REQUEST"), 20_000)',
  );
  const nfy = await FramedPeer.connect(sock("nfy"), {}, t);
  assert.ok(await nfy.waitFrames(1, 20_000), "nfy.waitFrames(1, 20_000)");
  assert.equal(nfy.frames[0]!.data.toString(), "DO_CHECKPOINT");
  nfy.send(Buffer.from("COLO_USERSPACE_PROXY_INIT"));
  assert.ok(await nfy.waitFrames(2, 20_000), "nfy.waitFrames(2, 20_000)");
  assert.equal(nfy.frames[1]!.data.toString(), "COLO_COMPARE_GET_XEN_INIT");
  nfy.send(Buffer.from("COLO_CHECKPOINT"));
  assert.ok(await out!.waitFrames(1, 20_000), "out!.waitFrames(1, 20_000)");
  assert.deepEqual(out!.frames[0]!.data, tcp({ payload: "a" }));
});

test("set-param changes compare_timeout at run time; query-params reports it", async (t) => {
  const { d, client } = await daemon(t, ["compare_timeout=100"]);
  assert.equal(d.engine.tableSlots, 131_072, "sized for the default 65,536 connections: never grows");
  const defaults = { max_connections: 65536, idle_timeout: 120_000, closed_timeout: 10_000 };
  assert.deepEqual(await client.execute("query-params"), {
    compare_timeout: 100,
    expired_scan_cycle: 1000,
    max_queue_size: 1024,
    ...defaults,
  });
  await client.execute("set-param", { name: "expired_scan_cycle", value: 10 });
  await client.execute("set-param", { name: "compare_timeout", value: 50 });
  await client.execute("set-param", { name: "max_connections", value: 70_000 });
  assert.equal(d.engine.tableSlots, 262_144, "raised at run time: sized again at once");
  defaults.max_connections = 70_000;
  assert.deepEqual(await client.execute("query-params"), {
    compare_timeout: 50,
    expired_scan_cycle: 10,
    max_queue_size: 1024,
    ...defaults,
  });
});

test("max_connections bounds the table from the start: a new flow evicts the least recent idle one", async (t) => {
  const { d, pri, sec, out, client } = await daemon(t, ["max_connections=2", "idle_timeout=600000"]);
  assert.equal((await client.execute<Record<string, number>>("query-params")).max_connections, 2);
  assert.equal(d.engine.tableSlots, 8, "sized for max_connections up front (at least 8 slots)");
  // One flow at a time, each released before the next opens: the table holds only idle
  // connections when the third flow arrives. (Were they all holding packets, the third would be
  // admitted over the limit with a table-full checkpoint request: the engine's tests cover that.)
  for (const sport of [1, 2, 3]) {
    pri.send(tcp({ sport, payload: "x" }));
    sec.send(tcp({ sport, payload: "x" }));
    assert.ok(await out!.waitFrames(sport, 20_000), `flow ${sport} released`);
  }
  const conns = await client.execute<Array<{ flow: string }>>("query-connections");
  assert.equal(conns.length, 2, "never more than max_connections");
  assert.ok(
    conns.every((c) => !/:1 /.test(`${c.flow} `)),
    `the first flow was evicted: ${conns.map((c) => c.flow).join(", ")}`,
  );
});

test("while traffic flows the expiry scan runs inside the input reads, not only from its timer", async (t) => {
  // A one-minute scan cycle: its timer cannot fire during the test. The injected clock jumps
  // past it, and the next read finds the primary held since the start timed out.
  let clock = 1000;
  const { pri, sec, events } = await daemon(t, ["compare_timeout=3000", "expired_scan_cycle=60000"], {
    now: () => clock,
  });
  pri.send(tcp({ sport: 1, payload: "lonely" }));
  const matched = tcp({ sport: 2, payload: "pair" });
  sec.send(matched);
  pri.send(matched);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(events.filter((e) => e.event === "CHECKPOINT_REQUEST").length, 0, "no scan yet");
  clock += 61_000;
  sec.send(tcp({ sport: 3, payload: "later" }));
  assert.ok(
    await waitUntil(() => events.some((e) => e.event === "CHECKPOINT_REQUEST"), 10_000),
    "the read after the clock jump scanned and found the timeout",
  );
  const req = events.find((e) => e.event === "CHECKPOINT_REQUEST")!;
  assert.equal(req.data.reason, "timeout");
});

test("a congested outdev never stops primary_in: QEMU reads outdev in the loop that writes primary_in", async (t) => {
  const { d, sock } = await startDaemon(t, [], { control: false });
  // Failover: every primary frame goes straight to outdev, as fast as the PVM sends (the stall
  // seen after a failover during a bulk transfer; docs/e2e.md).
  d.failover("test");
  const frame = udp({ payload: Buffer.alloc(1400, 0x61) });
  const peer = await MainLoopPeer.connect(sock("pri"), sock("out"), frame.length);
  t.after(() => peer.close());
  const n = 8000; // ~11 MB: far more than both sockets' buffers and outdev's 1 MiB high-water mark
  // Not awaited: with the old coupling (outdev congested → primary_in paused) this never finished.
  void peer.send(frame, n);
  assert.ok(
    await waitUntil(() => peer.received === n, 30_000),
    `${peer.received}/${n} frames reached outdev`,
  );
  assert.equal(d.stats().dropped["outdev-queue-full"] ?? 0, 0);
});
