/**
 * @module The operator flags of the real `colo-proxy compare` binary, over real sockets:
 * --passthrough at startup and `ctl passthrough add` at run time let differing flows through
 * without a checkpoint request, --metrics agrees exactly with query-stats, and --capture writes
 * a pcapng of a miscompare that tshark reads and `colo-proxy replay` explains again.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { parseCompareArgs } from "../../src/cli/commands/compare.ts";
import { run as ctlRun } from "../../src/cli/commands/ctl.ts";
import { parsePrimaryArgs } from "../../src/cli/commands/primary.ts";
import { ControlClient } from "../../src/control/client.ts";
import type { StatsReply } from "../../src/control/commands.ts";
import type { EventMessage } from "../../src/control/protocol.ts";
import { resolveCompareConfig } from "../../src/node/config.ts";
import { tcp, udp } from "../support/frames.ts";
import { FramedPeer, sleep, spawnProc, type TestCtx, tempDir, waitUntil } from "../support/qemu.ts";

const execFileP = promisify(execFile);
const bin = new URL("../../bin/colo-proxy.mjs", import.meta.url).pathname;

async function ctl(...args: string[]): Promise<{ code: number; out: string }> {
  let out = "";
  const code = await ctlRun(args, {
    out: (x) => {
      out += `${x}\n`;
    },
    err: (x) => {
      out += `${x}\n`;
    },
    color: false,
  });
  return { code, out };
}

function tsharkMissing(): string | undefined {
  try {
    execFileSync("tshark", ["--version"], { stdio: "ignore" });
    return undefined;
  } catch {
    return "tshark is not installed";
  }
}

async function startCompare(t: TestCtx, extra: string[]) {
  const dir = tempDir(t);
  const sock = (id: string) => path.join(dir, `${id}.sock`);
  const proc = spawnProc(
    process.execPath,
    [
      bin,
      "compare",
      "--primary-in",
      `unix:${sock("pri")}`,
      "--secondary-in",
      `unix:${sock("sec")}`,
      "--outdev",
      `unix:${sock("out")}`,
      "--control",
      sock("ctl"),
      "--metrics",
      "127.0.0.1:0",
      ...extra,
    ],
    t,
  );
  t.after(() => proc.stop());
  const pri = await FramedPeer.connect(sock("pri"), { timeoutMs: 20_000 }, t);
  const sec = await FramedPeer.connect(sock("sec"), { timeoutMs: 20_000 }, t);
  const out = await FramedPeer.connect(sock("out"), { timeoutMs: 20_000 }, t);
  // The control socket is bound after the chardevs.
  assert.ok(await waitUntil(() => existsSync(sock("ctl")), 20_000), proc.stderr);
  const client = await ControlClient.connect({ path: sock("ctl") });
  t.after(() => client.close());
  const events: EventMessage[] = [];
  client.onEvent((e) => events.push(e));
  // The log line names the bound metrics port (asked for port 0).
  assert.ok(await waitUntil(() => /metrics listening/.test(proc.stderr), 20_000), proc.stderr);
  const line = proc.stderr.split("\n").find((l) => l.includes("metrics listening"))!;
  const metricsPort = (JSON.parse(line) as { port: number }).port;
  return { dir, sock, proc, pri, sec, out, client, events, metricsPort };
}

test("compare CLI: --passthrough and ctl passthrough add release differing flows without a checkpoint; --metrics agrees with query-stats", async (t) => {
  const { sock, pri, sec, out, client, events, metricsPort } = await startCompare(t, [
    "--passthrough",
    "udp *:53",
  ]);
  // Startup rule: a DNS answer that differs between the VMs goes out at once.
  pri.send(udp({ sport: 53, dport: 33000, payload: "answer A" }));
  sec.send(udp({ sport: 53, dport: 33000, payload: "answer B" }));
  assert.ok(await out.waitFrames(1, 10_000), "startup passthrough rule released the frame");

  // Run-time rule through the real ctl command.
  const add = await ctl("--socket", sock("ctl"), "passthrough", "add", "tcp", "10.0.0.0/24:3389");
  assert.equal(add.code, 0, add.out);
  const list = await ctl("--socket", sock("ctl"), "passthrough", "list");
  assert.match(list.out, /udp \*:53/);
  assert.match(list.out, /tcp 10\.0\.0\.0\/24:3389/);
  pri.send(tcp({ sport: 3389, dport: 50000, seq: 100, payload: "frame from PVM" }));
  sec.send(tcp({ sport: 3389, dport: 50000, seq: 100, payload: "frame from SVM" }));
  assert.ok(await out.waitFrames(2, 10_000), "run-time passthrough rule released the frame");

  // Matching traffic on another flow, then one miscompare, so the counters are not all zero.
  for (let i = 0; i < 3; i++) {
    pri.send(tcp({ sport: 80, dport: 40000, seq: 1000 + i * 5, payload: `ok ${i}.` }));
    sec.send(tcp({ sport: 80, dport: 40000, seq: 1000 + i * 5, payload: `ok ${i}.` }));
  }
  assert.ok(await out.waitFrames(5, 10_000), "out.waitFrames(5, 10_000)");
  pri.send(tcp({ sport: 80, dport: 40000, seq: 1015, payload: "Date: 01" }));
  sec.send(tcp({ sport: 80, dport: 40000, seq: 1015, payload: "Date: 02" }));
  assert.ok(
    await waitUntil(() => events.some((e) => e.event === "CHECKPOINT_REQUEST"), 10_000),
    'waitUntil(() => events.some((e) => e.event === "CHECKPOINT_REQUEST"), 10_000)',
  );
  const reqs = events.filter((e) => e.event === "CHECKPOINT_REQUEST");
  assert.equal(reqs.length, 1, "only the flow without a rule asked for a checkpoint");
  assert.equal(reqs[0]?.data.flow, "tcp 10.0.0.1:80 > 10.0.0.2:40000");

  const st = await client.execute<StatsReply>("query-stats");
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const value = (name: string) => {
    const l = metrics.split("\n").find((x) => x.startsWith(`${name} `));
    assert.ok(l !== undefined, `metric ${name} present`);
    return Number(l.split(" ")[1]);
  };
  assert.equal(st.released.passthrough, 2);
  assert.equal(value('colo_proxy_released_frames_total{cause="passthrough"}'), st.released.passthrough);
  assert.equal(value('colo_proxy_released_frames_total{cause="matched"}'), st.released.matched);
  assert.equal(st.released.matched, 3);
  assert.equal(value('colo_proxy_miscompares_total{reason="payload-differs",protocol="tcp"}'), 1);
  assert.equal(value('colo_proxy_queue_frames{side="primary"}'), st.queues.primary);
  assert.equal(value('colo_proxy_frames_total{endpoint="primary_in",direction="in"}'), 6);
  assert.equal(st.endpoints.primary_in?.framesIn, 6);
  assert.equal(value("colo_proxy_connections"), st.connections.active);
});

test("compare CLI --capture: a miscompare writes a pcapng that tshark reads and replay explains again", async (t) => {
  const dir = tempDir(t);
  const capDir = path.join(dir, "caps");
  const { proc, pri, sec, out, events, client, metricsPort } = await startCompare(t, [
    "--capture",
    capDir,
    "--capture-frames",
    "8",
    "--capture-max-per-minute",
    "1",
  ]);
  for (let i = 0; i < 10; i++) {
    pri.send(tcp({ sport: 80, dport: 40000, seq: 1000 + i * 5, payload: `ok ${i}.` }));
    sec.send(tcp({ sport: 80, dport: 40000, seq: 1000 + i * 5, payload: `ok ${i}.` }));
  }
  assert.ok(await out.waitFrames(10, 10_000), "out.waitFrames(10, 10_000)");
  pri.send(tcp({ sport: 80, dport: 40000, seq: 1050, payload: "Date: 01" }));
  sec.send(tcp({ sport: 80, dport: 40000, seq: 1050, payload: "Date: 02" }));
  assert.ok(
    await waitUntil(() => events.some((e) => e.event === "CHECKPOINT_REQUEST"), 10_000),
    'waitUntil(() => events.some((e) => e.event === "CHECKPOINT_REQUEST"), 10_000)',
  );
  assert.ok(await waitUntil(() => /miscompare capture written/.test(proc.stderr), 10_000), proc.stderr);
  const files = readdirSync(capDir);
  assert.equal(files.length, 1);
  const file = path.join(capDir, files[0]!);
  assert.match(files[0]!, /^\d{8}T\d{6}\.\d{3}Z-tcp_10\.0\.0\.1_80-10\.0\.0\.2_40000\.pcapng$/);
  const logLine = proc.stderr.split("\n").find((l) => l.includes("miscompare capture written"))!;
  assert.equal((JSON.parse(logLine) as { file: string }).file, file, "the log line names the file");

  let st = await client.execute<StatsReply>("query-stats");
  assert.equal(st.counters?.capture_files_written, 1);
  assert.equal(st.counters?.capture_skipped_rate, 0);
  // A second miscompare within the minute: --capture-max-per-minute 1 skips it, counted.
  await client.execute("checkpoint-done");
  pri.send(tcp({ sport: 81, dport: 40001, seq: 5000, payload: "Date: 03" }));
  sec.send(tcp({ sport: 81, dport: 40001, seq: 5000, payload: "Date: 04" }));
  assert.ok(
    await waitUntil(() => events.filter((e) => e.event === "CHECKPOINT_REQUEST").length >= 2, 10_000),
    'waitUntil(() => events.filter((e) => e.event === "CHECKPOINT_REQUEST").length >= 2, 10_000)',
  );
  for (let i = 0; i < 200 && st.counters?.capture_skipped_rate !== 1; i++) {
    await sleep(50);
    st = await client.execute<StatsReply>("query-stats");
  }
  assert.equal(st.counters?.capture_skipped_rate, 1, "the second capture was skipped by the per-minute cap");
  assert.equal(st.counters?.capture_files_written, 1);
  assert.equal(readdirSync(capDir).length, 1);
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.ok(metrics.includes('colo_proxy_other_total{name="capture_files_written"} 1'), "in /metrics too");

  const replay = await execFileP(process.execPath, [bin, "replay", "--json", file]);
  const report = JSON.parse(replay.stdout) as {
    events: { reason: string; flow?: string; seq?: number }[];
  };
  const live = events.find((e) => e.event === "CHECKPOINT_REQUEST")!.data;
  const first = report.events[0];
  assert.equal(first?.reason, "payload-differs", replay.stdout);
  assert.equal(first?.flow, live.flow);
  assert.equal(first?.seq, live.seq, "the same first differing byte");
  assert.equal(live.seq, 1057, '"Date: 01" vs "Date: 02" differ at byte 7');

  const skip = tsharkMissing();
  if (skip !== undefined) {
    t.skip(skip);
    return;
  }
  const { stdout } = await execFileP("tshark", [
    "-r",
    file,
    "-T",
    "fields",
    "-e",
    "frame.comment",
    "-e",
    "frame.interface_name",
  ]);
  const rows = stdout
    .trim()
    .split("\n")
    .map((l) => l.split("\t"));
  assert.equal(rows.length, 16, "the last 8 frames of each side (--capture-frames 8)");
  for (const [comment, iface] of rows) {
    assert.ok(iface === "pvm" || iface === "svm", `interface ${iface}`);
    assert.ok(comment?.startsWith(`${iface}: `), `comment ${comment} names its side`);
  }
  assert.equal(rows.filter(([, i]) => i === "pvm").length, 8);
  const last = rows.filter(([c]) => c?.endsWith(": held"));
  assert.deepEqual(
    last.sort(),
    [
      ["pvm: held", "pvm"],
      ["svm: held", "svm"],
    ],
    "the differing pair is still held when the file is written",
  );
  assert.ok(rows.some(([c]) => c === "pvm: released (matched)"));
  assert.ok(rows.some(([c]) => c === "svm: discarded (matched)"));
});

test("--passthrough and --capture reach the compare engine's config for compare and primary; bad values exit 2", async (t) => {
  const dir = tempDir(t);
  const common = ["--primary-in", "127.0.0.1:9001", "--outdev", "127.0.0.1:9005"];
  const flags = ["--passthrough", "tcp 10.0.0.0/24:3389", "--passthrough", "udp :53", "--capture", dir];
  const p = parsePrimaryArgs([
    ...common,
    "--mirror-in",
    "127.0.0.1:9000",
    "--secondary-out",
    "127.0.0.1:9003",
    "--secondary-in",
    "127.0.0.1:9004",
    ...flags,
  ]);
  assert.ok(!p.help);
  assert.deepEqual(p.config.compare.passthrough, ["tcp 10.0.0.0/24:3389", "udp *:53"]);
  assert.deepEqual(p.config.compare.capture, {
    dir,
    frames: 64,
    maxFilesPerMinute: 10,
    maxTotalBytes: 256 * 1024 * 1024,
  });
  const c = resolveCompareConfig(
    parseCompareArgs([...common, "--secondary-in", "127.0.0.1:9004", ...flags, "--capture-frames", "16"]).raw,
  );
  assert.deepEqual(c.passthrough, ["tcp 10.0.0.0/24:3389", "udp *:53"]);
  assert.deepEqual(c.capture, { dir, frames: 16, maxFilesPerMinute: 10, maxTotalBytes: 256 * 1024 * 1024 });
  const limited = resolveCompareConfig(
    parseCompareArgs([
      ...common,
      "--secondary-in",
      "127.0.0.1:9004",
      ...flags,
      "--capture-max-per-minute",
      "3",
      "--capture-max-mib",
      "5",
    ]).raw,
  );
  assert.deepEqual(limited.capture, {
    dir,
    frames: 64,
    maxFilesPerMinute: 3,
    maxTotalBytes: 5 * 1024 * 1024,
  });
  assert.equal(
    resolveCompareConfig(parseCompareArgs([...common, "--secondary-in", "127.0.0.1:9004"]).raw).capture,
    undefined,
  );
  // The JSON config file: its rules come first, the command line's are added; flags win for the rest.
  const file = path.join(dir, "compare.json");
  writeFileSync(
    file,
    JSON.stringify({
      passthrough: ["icmp"],
      capture: "/nowhere",
      capture_frames: 9,
      capture_max_per_minute: 2,
      capture_max_mib: 7,
    }),
  );
  const j = resolveCompareConfig(
    parseCompareArgs([...common, "--secondary-in", "127.0.0.1:9004", "--config", file, ...flags]).raw,
  );
  assert.deepEqual(j.passthrough, ["icmp", "tcp 10.0.0.0/24:3389", "udp *:53"]);
  assert.deepEqual(j.capture, { dir, frames: 9, maxFilesPerMinute: 2, maxTotalBytes: 7 * 1024 * 1024 });
  for (const bad of [
    ["--passthrough", "tcp 10.0.0.300"],
    ["--capture", dir, "--capture-frames", "100000"],
    ["--capture", dir, "--capture-max-per-minute", "60001"],
    ["--capture", dir, "--capture-max-mib", "2000000"],
  ]) {
    const r = await execFileP(process.execPath, [
      bin,
      "compare",
      ...common,
      "--secondary-in",
      "127.0.0.1:9004",
      ...bad,
    ]).then(
      () => ({ code: 0, stderr: "" }),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(r.code, 2, `${bad.join(" ")} is a configuration error`);
    assert.match(r.stderr, /COLO_ERR_CONFIG_VALUE/);
  }
});

test("primary CLI: --passthrough, ctl passthrough add and --capture work as on compare", async (t) => {
  const dir = tempDir(t);
  const s = (n: string) => path.join(dir, n);
  const capDir = s("caps");
  const proc = spawnProc(
    process.execPath,
    [
      bin,
      "primary",
      "--mirror-in",
      `unix:${s("mirror.sock")}`,
      "--primary-in",
      `unix:${s("pri.sock")}`,
      "--outdev",
      `unix:${s("out.sock")}`,
      "--secondary-out",
      `unix:${s("sec-out.sock")}`,
      "--secondary-in",
      `unix:${s("sec-in.sock")}`,
      "--control",
      s("ctl.sock"),
      "--passthrough",
      "udp *:53",
      "--capture",
      capDir,
    ],
    t,
  );
  t.after(() => proc.stop());
  const peer = (n: string) => FramedPeer.connect(s(n), { timeoutMs: 20_000 }, t);
  const [, pri, out, , sec] = await Promise.all([
    peer("mirror.sock"),
    peer("pri.sock"),
    peer("out.sock"),
    peer("sec-out.sock"),
    peer("sec-in.sock"),
  ]);
  assert.ok(await waitUntil(() => existsSync(s("ctl.sock")), 20_000), proc.stderr);
  const client = await ControlClient.connect({ path: s("ctl.sock") });
  t.after(() => client.close());
  const events: EventMessage[] = [];
  client.onEvent((e) => events.push(e));

  pri.send(udp({ sport: 53, dport: 33000, payload: "answer A" }));
  sec.send(udp({ sport: 53, dport: 33000, payload: "answer B" }));
  assert.ok(await out.waitFrames(1, 10_000), "startup rule");
  const add = await ctl("--socket", s("ctl.sock"), "passthrough", "add", "tcp", "10.0.0.0/24:3389");
  assert.equal(add.code, 0, add.out);
  pri.send(tcp({ sport: 3389, dport: 50000, seq: 100, payload: "frame from PVM" }));
  sec.send(tcp({ sport: 3389, dport: 50000, seq: 100, payload: "frame from SVM" }));
  assert.ok(await out.waitFrames(2, 10_000), "run-time rule");
  assert.equal(events.filter((e) => e.event === "CHECKPOINT_REQUEST").length, 0);

  pri.send(tcp({ sport: 80, dport: 40000, seq: 1000, payload: "Date: 01" }));
  sec.send(tcp({ sport: 80, dport: 40000, seq: 1000, payload: "Date: 02" }));
  assert.ok(await waitUntil(() => /miscompare capture written/.test(proc.stderr), 10_000), proc.stderr);
  assert.equal(events.filter((e) => e.event === "CHECKPOINT_REQUEST").length, 1);
  const files = readdirSync(capDir);
  assert.equal(files.length, 1);
  const replay = await execFileP(process.execPath, [bin, "replay", "--json", path.join(capDir, files[0]!)]);
  const report = JSON.parse(replay.stdout) as { events: { reason: string; flow?: string }[] };
  assert.equal(report.events[0]?.reason, "payload-differs");
  assert.equal(report.events[0]?.flow, "tcp 10.0.0.1:80 > 10.0.0.2:40000");
});

test("colo-primary takes the table settings too: max_connections etc. on its -object, or as flags", () => {
  const p = parsePrimaryArgs([
    "--object",
    "colo-primary,id=p,mirror_in=127.0.0.1:9000,primary_in=127.0.0.1:9001,outdev=127.0.0.1:9005," +
      "secondary_out=127.0.0.1:9003,secondary_in=127.0.0.1:9004,max_connections=300000,closed_timeout=500",
    "--idle-timeout",
    "9000",
  ]);
  assert.ok(!p.help);
  const c = p.config.compare;
  assert.deepEqual([c.maxConnections, c.idleTimeout, c.closedTimeout], [300_000, 9000, 500]);
});
