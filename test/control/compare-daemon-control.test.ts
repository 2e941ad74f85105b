/**
 * @module The operator interface on the real `colo-proxy compare` daemon (in process, real
 * sockets): /metrics agrees with query-stats after live traffic and a miscompare, passthrough
 * rules go through to the engine, and the dashboard's state carries the miscompare.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { ControlClient } from "../../src/control/client.ts";
import type { StatsReply } from "../../src/control/commands.ts";
import type { EventMessage } from "../../src/control/protocol.ts";
import { CompareDaemon } from "../../src/node/compare-daemon.ts";
import { emptyRawOptions, resolveCompareConfig } from "../../src/node/config.ts";
import { tcp } from "../support/frames.ts";
import { FramedPeer, type TestCtx, tempDir, waitUntil } from "../support/qemu.ts";

async function start(t: TestCtx) {
  const dir = tempDir(t);
  const sock = (id: string) => path.join(dir, `${id}.sock`);
  const raw = emptyRawOptions();
  for (const id of ["pri", "sec", "out"])
    raw.chardevs.push(`socket,id=${id},path=${sock(id)},server=on,wait=off`);
  raw.objects.push("colo-compare,id=c,primary_in=pri,secondary_in=sec,outdev=out");
  const d = await CompareDaemon.start(resolveCompareConfig(raw), {
    controlSocket: sock("ctl"),
    controlExtra: { metrics: { host: "127.0.0.1", port: 0 }, dashboard: { host: "127.0.0.1", port: 0 } },
  });
  t.after(() => d.close());
  const pri = await FramedPeer.connect(sock("pri"), {}, t);
  const sec = await FramedPeer.connect(sock("sec"), {}, t);
  const out = await FramedPeer.connect(sock("out"), {}, t);
  const client = await ControlClient.connect({ path: sock("ctl") });
  t.after(() => client.close());
  const events: EventMessage[] = [];
  client.onEvent((e) => events.push(e));
  return { d, pri, sec, out, client, events };
}

test("compare daemon: metrics agree with query-stats, passthrough reaches the engine, dashboard shows the miscompare", async (t) => {
  const { d, pri, sec, out, client, events } = await start(t);
  for (let i = 0; i < 5; i++) {
    const p = tcp({ seq: 1000 + i * 10, payload: `hello ${i}...` });
    pri.send(p);
    sec.send(tcp({ seq: 1000 + i * 10, payload: `hello ${i}...` }));
  }
  assert.ok(await out.waitFrames(5, 20_000), "matched frames released");
  pri.send(tcp({ seq: 1050, payload: "Date: 01" }));
  sec.send(tcp({ seq: 1050, payload: "Date: 02" }));
  assert.ok(
    await waitUntil(() => events.some((e) => e.event === "CHECKPOINT_REQUEST"), 20_000),
    'waitUntil(() => events.some((e) => e.event === "CHECKPOINT_REQUEST"), 20_000)',
  );
  const req = events.find((e) => e.event === "CHECKPOINT_REQUEST")!;
  assert.equal(req.data.reason, "payload-differs");
  assert.equal(req.data.offset, 57);
  assert.match(
    String((req.data.primary as { hex: string }).hex),
    /^[0-9a-f]+$/,
    "compact hex from checkpointEventData",
  );

  const st = await client.execute<StatsReply>("query-stats");
  assert.equal(st.released.matched, 5);
  assert.equal(st.queues.primary, 1);
  assert.equal(st.miscompares["payload-differs"]?.tcp, 1);
  assert.equal(st.endpoints.primary_in?.framesIn, 6);
  const metrics = await (await fetch(`http://127.0.0.1:${d.control?.metrics?.port}/metrics`)).text();
  const value = (line: string) =>
    Number(
      metrics
        .split("\n")
        .find((l) => l.startsWith(`${line} `))
        ?.split(" ")[1],
    );
  assert.equal(value('colo_proxy_released_frames_total{cause="matched"}'), st.released.matched);
  assert.equal(value('colo_proxy_miscompares_total{reason="payload-differs",protocol="tcp"}'), 1);
  assert.equal(value('colo_proxy_queue_frames{side="primary"}'), st.queues.primary);
  assert.equal(value('colo_proxy_frames_total{endpoint="primary_in",direction="in"}'), 6);
  assert.equal(value("colo_proxy_hold_time_seconds_count"), st.holdTime.count);
  assert.equal(value("colo_proxy_connections"), st.connections.active);

  const state = (await (await fetch(`${d.control?.dashboard?.url}api/state`)).json()) as {
    miscompares: { flow: string; offset: number }[];
    tick: { connections: { state: string }[] };
  };
  assert.equal(state.miscompares.length, 1);
  assert.equal(state.miscompares[0]?.offset, 57);
  assert.equal(state.tick.connections[0]?.state, "miscompared");

  assert.deepEqual(await client.execute("passthrough-add", { rule: "tcp :80" }), { id: 1, rule: "tcp *:80" });
  const conns = await client.execute<{ state: string }[]>("query-connections");
  assert.equal(conns[0]?.state, "passthrough", "the engine re-applied the rule to the live connection");
  assert.deepEqual(await client.execute("query-passthrough"), [{ id: 1, rule: "tcp *:80" }]);
  assert.deepEqual(await client.execute("passthrough-del", { id: 1 }), { removed: "tcp *:80" });
});
