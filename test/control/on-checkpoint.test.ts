import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, mock, test } from "node:test";
import type { StatsReply } from "../../src/control/commands.ts";
import { startControl } from "../../src/control/index.ts";
import { checkpointEnv, OnCheckpointRunner } from "../../src/control/on-checkpoint.ts";
import type { CheckpointRequestData } from "../../src/control/target.ts";
import { createLogger } from "../../src/log.ts";
import { FakeTarget } from "./fake-target.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "colo-hook-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const req = (offset: number): CheckpointRequestData => ({
  reason: "payload",
  explanation: `tcp 10.0.0.1:40000 > 10.0.0.2:80: payload differs at stream offset ${offset}`,
  flow: "tcp 10.0.0.1:40000 > 10.0.0.2:80",
  protocol: "tcp",
  offset,
  primary: { offset, hex: "414243" },
  secondary: { offset, hex: "414244" },
  epoch: 7,
});

function captureLog(): { lines: Record<string, unknown>[]; logger: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, logger: createLogger({ level: "debug", destination }) };
}

test("checkpointEnv names every detail", () => {
  const env = checkpointEnv(req(1234), Date.UTC(2026, 0, 2, 3, 4, 5), 2, "compare");
  assert.deepEqual(env, {
    COLO_EVENT: "CHECKPOINT_REQUEST",
    COLO_REASON: "payload",
    COLO_EXPLANATION: "tcp 10.0.0.1:40000 > 10.0.0.2:80: payload differs at stream offset 1234",
    COLO_EPOCH: "7",
    COLO_TIME: "2026-01-02T03:04:05.000Z",
    COLO_TIME_MS: String(Date.UTC(2026, 0, 2, 3, 4, 5)),
    COLO_COALESCED: "2",
    COLO_ROLE: "compare",
    COLO_FLOW: "tcp 10.0.0.1:40000 > 10.0.0.2:80",
    COLO_PROTOCOL: "tcp",
    COLO_OFFSET: "1234",
    COLO_PRIMARY_HEX: "414243",
    COLO_PRIMARY_OFFSET: "1234",
    COLO_SECONDARY_HEX: "414244",
    COLO_SECONDARY_OFFSET: "1234",
  });
});

test("the hook runs with the details in its environment", async () => {
  const out = join(dir, "env.txt");
  const r = new OnCheckpointRunner({
    command: `printf '%s|%s|%s|%s' "$COLO_REASON" "$COLO_FLOW" "$COLO_OFFSET" "$COLO_ROLE" > "${out}"`,
    role: "compare",
  });
  r.request(req(99), Date.now());
  await r.idle();
  assert.equal(await readFile(out, "utf8"), "payload|tcp 10.0.0.1:40000 > 10.0.0.2:80|99|compare");
  assert.deepEqual(r.stats, { ok: 1, failed: 0, coalesced: 0, running: false });
});

test("at most one hook runs; requests meanwhile coalesce into one later run with the latest details", async () => {
  const go = join(dir, "go");
  const log = join(dir, "runs.txt");
  const r = new OnCheckpointRunner({
    // Waits (bounded) until the test creates $GO, then records which request it ran for.
    command: `i=0; while [ ! -e "${go}" ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done; echo "$COLO_OFFSET $COLO_COALESCED" >> "${log}"`,
    minIntervalMs: 0,
  });
  r.request(req(1), 0);
  assert.equal(r.stats.running, true);
  r.request(req(2), 0);
  r.request(req(3), 0);
  r.request(req(4), 0);
  assert.equal(r.stats.coalesced, 2);
  await writeFile(go, "");
  await r.idle();
  assert.equal(await readFile(log, "utf8"), "1 0\n4 2\n");
  assert.deepEqual(r.stats, { ok: 2, failed: 0, coalesced: 2, running: false });
});

test("runs start at least minIntervalMs apart (injected clock, mocked timers)", async () => {
  const log = join(dir, "interval.txt");
  let now = 1_000_000;
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const r = new OnCheckpointRunner({
      command: `echo "$COLO_OFFSET" >> "${log}"`,
      minIntervalMs: 5000,
      now: () => now,
    });
    r.request(req(1), now);
    await new Promise<void>((resolve) => {
      const poll = (): void => {
        if (r.stats.ok === 1) resolve();
        else setImmediate(poll);
      };
      poll();
    });
    now += 100;
    r.request(req(2), now);
    assert.equal(r.stats.running, false, "held back by the interval, not run");
    now += 4000;
    mock.timers.tick(4000);
    assert.equal(r.stats.running, false, "still inside the interval");
    now += 900;
    mock.timers.tick(900);
    assert.equal(r.stats.running, true, "runs once the interval has passed");
    await r.idle();
    assert.equal(await readFile(log, "utf8"), "1\n2\n");
  } finally {
    mock.timers.reset();
  }
});

test("failing, missing and hanging hooks are logged with a code and counted, never thrown", async () => {
  const { lines, logger } = captureLog();
  const fail = new OnCheckpointRunner({ command: "echo oops >&2; exit 3", minIntervalMs: 0, logger });
  fail.request(req(1), 0);
  await fail.idle();
  const missing = new OnCheckpointRunner({ command: "/nonexistent/hook", minIntervalMs: 0, logger });
  missing.request(req(2), 0);
  await missing.idle();
  const hang = new OnCheckpointRunner({ command: "sleep 30", minIntervalMs: 0, timeoutMs: 50, logger });
  hang.request(req(3), 0);
  await hang.idle();
  assert.equal(fail.stats.failed, 1);
  assert.equal(missing.stats.failed, 1);
  assert.equal(hang.stats.failed, 1);
  const failures = lines.filter(
    (l) => l.code === "COLO_ERR_CTL_ON_CHECKPOINT" && l.msg === "on-checkpoint hook failed",
  );
  assert.equal(failures.length, 3);
  assert.equal(failures[0]?.exitCode, 3);
  assert.equal(failures[0]?.output, "oops\n");
  assert.equal(failures[1]?.exitCode, 127);
  assert.equal(failures[2]?.signal, "SIGKILL");
});

test("startControl wires --on-checkpoint to CHECKPOINT_REQUEST and reports it in query-stats", async () => {
  const out = join(dir, "wired.txt");
  const target = new FakeTarget();
  const control = await startControl(target, {
    role: "compare",
    socket: null,
    onCheckpoint: { command: `echo "$COLO_REASON $COLO_OFFSET" >> "${out}"`, minIntervalMs: 0 },
  });
  try {
    target.emit = control.emit;
    const flow = target.open("tcp 10.0.0.1:1 > 10.0.0.2:2");
    target.miscompare(flow, 10, Buffer.from("xy"), Buffer.from("xz"));
    await control.onCheckpoint?.idle();
    assert.equal(await readFile(out, "utf8"), "payload-differs 11\n");
    const reply = (await control.server.execute("query-stats")) as { return: StatsReply };
    assert.deepEqual(reply.return.control.onCheckpoint, { ok: 1, failed: 0, coalesced: 0, running: false });
  } finally {
    await control.close();
  }
});
