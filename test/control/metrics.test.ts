import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { ControlClient } from "../../src/control/client.ts";
import type { StatsReply } from "../../src/control/commands.ts";
import { startControl } from "../../src/control/index.ts";
import { FakeTarget } from "./fake-target.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "colo-metrics-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A minimal Prometheus text-format parser (enough for what we emit). */
function parseProm(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line.startsWith("# TYPE ")) {
      const [, , name, type] = line.split(" ");
      types.set(name as string, type as string);
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparsable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1] as string] = l[2] as string;
    }
    samples.push({ name: m[1] as string, labels, value: m[3] === "+Inf" ? Infinity : Number(m[3]) });
  }
  return { samples, types };
}

function pick(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    ?.value;
}

/** Every colo_proxy_* series must equal the corresponding query-stats value. */
function assertAgree(samples: Sample[], st: StatsReply): void {
  const series = (name: string) => samples.filter((s) => s.name === name);
  for (const [ep, c] of Object.entries(st.endpoints)) {
    assert.equal(pick(samples, "colo_proxy_frames_total", { endpoint: ep, direction: "in" }), c.framesIn);
    assert.equal(pick(samples, "colo_proxy_frames_total", { endpoint: ep, direction: "out" }), c.framesOut);
    assert.equal(pick(samples, "colo_proxy_bytes_total", { endpoint: ep, direction: "in" }), c.bytesIn);
    assert.equal(pick(samples, "colo_proxy_bytes_total", { endpoint: ep, direction: "out" }), c.bytesOut);
  }
  assert.equal(series("colo_proxy_frames_total").length, Object.keys(st.endpoints).length * 2);
  for (const [cause, v] of Object.entries(st.released)) {
    assert.equal(pick(samples, "colo_proxy_released_frames_total", { cause }), v);
  }
  assert.equal(series("colo_proxy_released_frames_total").length, Object.keys(st.released).length);
  for (const [reason, v] of Object.entries(st.discarded ?? {})) {
    assert.equal(pick(samples, "colo_proxy_discarded_frames_total", { reason }), v);
  }
  for (const [name, v] of Object.entries(st.counters ?? {}))
    assert.equal(pick(samples, "colo_proxy_other_total", { name }), v);
  for (const [name, v] of Object.entries(st.gauges ?? {}))
    assert.equal(pick(samples, "colo_proxy_other", { name }), v);
  for (const [reason, v] of Object.entries(st.dropped)) {
    assert.equal(pick(samples, "colo_proxy_dropped_frames_total", { reason }), v);
  }
  let nMis = 0;
  for (const [reason, byProto] of Object.entries(st.miscompares)) {
    for (const [protocol, v] of Object.entries(byProto)) {
      nMis++;
      assert.equal(pick(samples, "colo_proxy_miscompares_total", { reason, protocol }), v);
    }
  }
  assert.equal(series("colo_proxy_miscompares_total").length, nMis);
  for (const [reason, v] of Object.entries(st.checkpointRequests)) {
    assert.equal(pick(samples, "colo_proxy_checkpoint_requests_total", { reason }), v);
  }
  assert.equal(pick(samples, "colo_proxy_checkpoints_total"), st.checkpoints);
  for (const [name, h] of [
    ["colo_proxy_hold_time_seconds", st.holdTime],
    ["colo_proxy_checkpoint_interval_seconds", st.checkpointInterval],
  ] as const) {
    assert.equal(pick(samples, `${name}_count`), h.count);
    assert.equal(pick(samples, `${name}_sum`), h.sum);
    let cum = 0;
    h.bounds.forEach((b, i) => {
      cum += h.counts[i] as number;
      assert.equal(pick(samples, `${name}_bucket`, { le: String(b) }), cum, `${name} le=${b}`);
    });
    assert.equal(pick(samples, `${name}_bucket`, { le: "+Inf" }), h.count);
  }
  assert.equal(pick(samples, "colo_proxy_queue_frames", { side: "primary" }), st.queues.primary);
  assert.equal(pick(samples, "colo_proxy_queue_frames", { side: "secondary" }), st.queues.secondary);
  assert.equal(pick(samples, "colo_proxy_connections"), st.connections.active);
  assert.equal(pick(samples, "colo_proxy_connections_opened_total"), st.connections.opened);
  for (const [code, v] of Object.entries(st.badInput))
    assert.equal(pick(samples, "colo_proxy_bad_input_total", { code }), v);
  for (const [link, up] of Object.entries(st.links)) {
    assert.equal(pick(samples, "colo_proxy_link_up", { link }), up ? 1 : 0);
  }
  assert.equal(pick(samples, "colo_proxy_control_requests_total"), st.control.requests);
  for (const [code, v] of Object.entries(st.control.errors)) {
    assert.equal(pick(samples, "colo_proxy_control_errors_total", { code }), v);
  }
}

async function setup() {
  const target = new FakeTarget();
  const path = join(dir, `m${Math.random().toString(36).slice(2)}.sock`);
  const control = await startControl(target, {
    role: "compare",
    socket: path,
    metrics: { host: "127.0.0.1", port: 0 },
    now: () => target.nowMs,
  });
  target.emit = control.emit;
  const client = await ControlClient.connect({ path });
  const url = `http://127.0.0.1:${control.metrics?.port}/metrics`;
  const scrape = async () => {
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/plain; version=0\.0\.4/);
    return parseProm(await res.text());
  };
  return { target, control, client, scrape, url };
}

test("/metrics agrees exactly with query-stats after scripted traffic", async () => {
  const { target, control, client, scrape } = await setup();
  try {
    const flow = target.open("tcp 10.0.0.1:40000 > 10.0.0.2:80");
    target.matched(100, 1460, 0.4);
    target.matched(3, 60, 2500);
    target.miscompare(flow, 1000, Buffer.from("abc"), Buffer.from("abd"));
    target.st.badInputSeen("COLO_ERR_FRAME_TOO_LARGE", 2);
    target.st.setLink("secondary_in", false);
    await client.execute("checkpoint-done");
    target.nowMs += 1500;
    await client.execute("checkpoint-done");
    await client.execute("no-such-command").catch(() => undefined);
    const st = await client.execute<StatsReply>("query-stats");
    const { samples, types } = await scrape();
    assertAgree(samples, st);
    assert.equal(types.get("colo_proxy_hold_time_seconds"), "histogram");
    assert.equal(types.get("colo_proxy_miscompares_total"), "counter");
    assert.equal(types.get("colo_proxy_queue_frames"), "gauge");
    assert.equal(pick(samples, "colo_proxy_released_frames_total", { cause: "matched" }), 103);
    assert.equal(pick(samples, "colo_proxy_checkpoint_interval_seconds_sum"), 1.5);
    assert.equal(pick(samples, "colo_proxy_mode", { mode: "colo" }), 1);
    assert.equal(pick(samples, "colo_proxy_checkpoint_epoch"), 2);
    assert.equal(pick(samples, "colo_proxy_info", { role: "compare" }), 1);
    assert.ok(
      samples.some((s) => s.name.startsWith("colo_proxy_process_")),
      "process metrics present",
    );
  } finally {
    client.close();
    await control.close();
  }
});

test("property: /metrics and query-stats agree after any sequence of daemon activity", async () => {
  const { target, control, client, scrape } = await setup();
  const flow = target.open("udp [2001:db8::1]:53 > [2001:db8::2]:5353", "udp");
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({
              k: fc.constant("match" as const),
              n: fc.integer({ min: 1, max: 20 }),
              ms: fc.double({ min: 0, max: 20000, noNaN: true }),
            }),
            fc.record({ k: fc.constant("mis" as const) }),
            fc.record({
              k: fc.constant("bad" as const),
              code: fc.constantFrom("COLO_ERR_PKT_TRUNCATED", "COLO_ERR_FRAME_EMPTY"),
            }),
            fc.record({ k: fc.constant("done" as const), dt: fc.integer({ min: 0, max: 100000 }) }),
            fc.record({ k: fc.constant("link" as const), up: fc.boolean() }),
          ),
          { maxLength: 15 },
        ),
        async (ops) => {
          for (const op of ops) {
            if (op.k === "match") target.matched(op.n, 100, op.ms);
            else if (op.k === "mis") target.miscompare(flow, 0, Buffer.from([1]), Buffer.from([2]));
            else if (op.k === "bad") target.st.badInputSeen(op.code);
            else if (op.k === "link") target.st.setLink("link", op.up);
            else {
              target.nowMs += op.dt;
              await client.execute("checkpoint-done");
            }
          }
          const st = await client.execute<StatsReply>("query-stats");
          assertAgree((await scrape()).samples, st);
        },
      ),
      { numRuns: 25 },
    );
  } finally {
    client.close();
    await control.close();
  }
});

test("metrics endpoint: 404 elsewhere, 405 for POST, own registry (no global default metrics)", async () => {
  const { control, client, url } = await setup();
  try {
    assert.equal((await fetch(url.replace("/metrics", "/nope"))).status, 404);
    assert.equal((await fetch(url, { method: "POST", body: "x" })).status, 405);
    const { register } = await import("prom-client");
    assert.equal(await register.getSingleMetric("colo_proxy_frames_total"), undefined);
  } finally {
    client.close();
    await control.close();
  }
});
