/**
 * @module Real guests end to end through the REAL colo-proxy daemons (src/node/lab/colo-lab.ts):
 * a PVM and an SVM behind QEMU's filters, `PrimaryDaemon` and `SecondaryDaemon` joined by their
 * link, real checkpoints by the executor. One booted pair serves every check, in order:
 * deterministic traffic (no checkpoints), the nondeterministic endpoint (a checkpoint per
 * request), then the secondary lost in the middle of a 10 MB transfer and of a checkpoint (failover).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ControlClient } from "../../src/control/client.ts";
import type { StatsSnapshot } from "../../src/control/stats.ts";
import { GUEST } from "../../src/node/guest/qemu.ts";
import type { ClientOp, ClientResult } from "../../src/node/lab/client-script.ts";
import { ColoLab } from "../../src/node/lab/colo-lab.ts";
import { ClientSession, deterministicBody, guestSkipReason, sum, waitFor } from "../support/guests.ts";

const skip = guestSkipReason({ netns: true });
if (skip) console.log(`# colo-pair: skipped: ${skip}`);

/** Runs `ops` one after another on a fresh client session; returns the results. */
async function session(lab: ColoLab, ops: ClientOp[]): Promise<ClientResult[]> {
  const s = ClientSession.start(lab.ns);
  try {
    const out: ClientResult[] = [];
    for (const op of ops) out.push(await s.request(op));
    return out;
  } finally {
    s.close();
  }
}

/** The value of `colo_proxy_<name>{...label...}` on a Prometheus text page (NaN if absent). */
function metric(page: string, name: string, label: string): number {
  for (const line of page.split("\n")) {
    if (line.startsWith(`colo_proxy_${name}{`) && line.includes(label)) return Number(line.split(" ").at(-1));
  }
  return Number.NaN;
}

describe("two real guests through the colo-proxy pair", { skip, timeout: 300_000 }, () => {
  let lab: ColoLab;
  const stats = (): StatsSnapshot => lab.primary.compare.stats();

  before(async () => {
    // Generous compare timeout: the SVM (TCG, shared CPU) may lag; a timeout would be a checkpoint.
    lab = await ColoLab.start({ metrics: true, compareTimeoutMs: 20_000, netnsPrefix: "colo-e2e" });
  });
  after(async () => {
    for (const e of lab?.events ?? []) {
      if (e.event === "CHECKPOINT_REQUEST" || e.event === "FAILOVER" || e.event === "PEER_LOST")
        console.log(`# ${e.daemon} ${e.event} ${JSON.stringify(e.data).slice(0, 600)}`);
    }
    console.log(
      `# checkpoints ${JSON.stringify(lab?.checkpoints.map((c) => c.totalMs))} errors ${JSON.stringify(lab?.checkpointErrors)}`,
    );
    await lab?.close();
  });

  test("deterministic traffic, concurrently over IPv4 and IPv6: all correct, no checkpoint", async () => {
    const http: ClientOp[] = [];
    for (let i = 0; i < 50; i++) {
      const host = i % 2 === 0 ? GUEST.ip4 : GUEST.ip6;
      http.push({ op: "http", host, port: 80, path: i % 10 === 9 ? "/big" : "/" });
    }
    const misc: ClientOp[] = [];
    for (const host of [GUEST.ip4, GUEST.ip6]) {
      misc.push({ op: "udp-echo", host, port: 7, data: `udp via ${host}` });
      misc.push({ op: "ping", host });
      misc.push({ op: "tcp-echo", host, port: 7, data: `tcp via ${host}\n` });
    }
    const [h1, h2, m] = await Promise.all([
      session(lab, http.slice(0, 25)),
      session(lab, http.slice(25)),
      session(lab, misc),
    ]);
    const small = deterministicBody(8);
    const big = deterministicBody(1600);
    const httpResults = [...h1, ...h2];
    httpResults.forEach((r, i) => {
      const op = http[i] as Extract<ClientOp, { op: "http" }>;
      assert.ok(r.ok, `${JSON.stringify(op)}: ${JSON.stringify(r)}`);
      assert.equal(r.status, 200);
      assert.equal(r.body, op.path === "/big" ? big : small, JSON.stringify(op));
    });
    m.forEach((r, i) => {
      const op = misc[i] as ClientOp;
      assert.ok(r.ok, `${JSON.stringify(op)}: ${JSON.stringify(r)}`);
      if ("data" in op) assert.equal(r.data, op.data);
    });

    const st = stats();
    assert.equal(sum(st.checkpointRequests), 0, JSON.stringify(st.checkpointRequests));
    assert.equal(lab.events.filter((e) => e.event === "CHECKPOINT_REQUEST").length, 0);
    assert.equal(lab.checkpoints.length, 0);
    // Every payload frame was compared with the SVM's twin (5 × 65 KB alone is > 200 frames).
    const matched = st.released.matched ?? 0;
    assert.ok(matched > 200, JSON.stringify(st.released));
    assert.equal(st.released.flush ?? 0, 0);
    assert.equal(st.released.passthrough ?? 0, 0);
    // The SVM's copies really went through the secondary's rewriter and came back over the link.
    assert.ok((st.discarded?.matched ?? 0) > 200, JSON.stringify(st.discarded));
    assert.ok(lab.secondary.stats().connections.opened >= 50);

    // query-stats over the control socket and /metrics say the same (nothing moves now).
    const ctl = await ControlClient.connect({ path: lab.controlSockets.primary }, { timeoutMs: 5000 });
    try {
      const q = await ctl.execute<StatsSnapshot>("query-stats");
      const page = await (await fetch(lab.metricsUrls().primary as string)).text();
      assert.equal(q.released.matched, metric(page, "released_frames_total", `cause="matched"`));
      assert.ok((q.released.matched ?? 0) >= matched);
      assert.equal(sum(q.checkpointRequests), 0);
    } finally {
      ctl.close();
    }
  });

  let bulkRequests = -1;
  let bulkEvents = "";
  test("1 MB TCP echoes, over IPv4 and IPv6 at once: every byte comes back", async () => {
    const n0 = sum(stats().checkpointRequests);
    const e0 = lab.events.length;
    // Two at once: the case that used to stall the SVM almost every time (docs/e2e.md).
    const r = await Promise.all([
      session(lab, [{ op: "bulk", host: GUEST.ip4, port: 7, bytes: 1 << 20 }]),
      session(lab, [{ op: "bulk", host: GUEST.ip6, port: 7, bytes: 1 << 20 }]),
    ]);
    assert.deepEqual(r.flat(), [
      { ok: true, data: `${1 << 20} bytes` },
      { ok: true, data: `${1 << 20} bytes` },
    ]);
    // Until the comparison holds nothing (closing segments included), or a request shows up; a
    // frame held for good would time out (20 s) into one well within this bound.
    const held = () => stats().queues.primary + stats().queues.secondary;
    await waitFor(() => held() === 0 || sum(stats().checkpointRequests) > n0, 40_000);
    await lab.settled();
    bulkRequests = sum(stats().checkpointRequests) - n0;
    bulkEvents = JSON.stringify(lab.events.slice(e0).filter((e) => e.event === "CHECKPOINT_REQUEST"));
    assert.equal(held(), 0, JSON.stringify(lab.primary.compare.connections()));
  });

  // Strict ack gating and the window clamp keep the SVM's stream whole (docs/e2e.md): a checkpoint
  // here would mean the SVM lost client bytes the client will never resend.
  test("… without any checkpoint request", () => {
    assert.equal(bulkRequests, 0, bulkEvents);
  });

  test("nondeterministic endpoint: exactly one checkpoint request per request naming its connection, the client gets the PVM's bytes", async () => {
    const before = sum(stats().checkpointRequests);
    const ops: ClientOp[] = [];
    for (let i = 0; i < 4; i++)
      ops.push({ op: "http", host: i % 2 ? GUEST.ip6 : GUEST.ip4, port: 8080, path: "/" });
    const results = await session(lab, ops);
    await lab.settled();
    const requests = lab.events.filter((e) => e.daemon === "primary" && e.event === "CHECKPOINT_REQUEST");
    for (const r of results) {
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(r.status, 200);
      assert.match(r.body ?? "", /^[0-9a-f]{32}\n$/);
      const mine = requests.filter((e) => String(e.data.flow).endsWith(`:${r.localPort}`));
      // Exactly one request per nondeterministic response; `repeat: true` events would only be
      // reminders of that same request while its checkpoint is pending (checkpointRetry).
      assert.equal(
        mine.filter((e) => e.data.repeat === false).length,
        1,
        `checkpoint requests for port ${r.localPort}: ${JSON.stringify(requests.map((e) => [e.data.flow, e.data.repeat]))}`,
      );
      const ev = mine[0]?.data as { reason: string; primary?: { hex: string }; secondary?: { hex: string } };
      assert.equal(ev.reason, "payload-differs");
      // The request's primary window is a slice of what the client received; the SVM's is not.
      const pw = Buffer.from(ev.primary?.hex ?? "", "hex").toString("latin1");
      const sw = Buffer.from(ev.secondary?.hex ?? "", "hex").toString("latin1");
      assert.ok(
        pw.length >= 8 && (r.body ?? "").includes(pw.replace(/^[\s\S]*\r\n\r\n/, "")),
        `${pw} vs ${r.body}`,
      );
      assert.ok(
        !(r.body ?? "").includes(sw.replace(/^[\s\S]*\r\n\r\n/, "").slice(0, 16)),
        `${sw} vs ${r.body}`,
      );
    }
    assert.ok(sum(stats().checkpointRequests) - before >= 4);
    assert.ok(lab.checkpoints.length >= 1, JSON.stringify(lab.checkpointErrors));
    assert.deepEqual(lab.checkpointErrors, []);

    // After the checkpoints the SVM is a copy of the PVM: deterministic requests match again.
    const n0 = sum(stats().checkpointRequests);
    const m0 = stats().released.matched ?? 0;
    const again = await session(lab, [
      { op: "http", host: GUEST.ip4, port: 80, path: "/" },
      { op: "http", host: GUEST.ip6, port: 80, path: "/big" },
      { op: "tcp-echo", host: GUEST.ip4, port: 7, data: "after the checkpoints\n" },
    ]);
    assert.deepEqual(
      again.map((r) => r.ok && (r.body ?? r.data)),
      [deterministicBody(8), deterministicBody(1600), "after the checkpoints\n"],
    );
    assert.equal(sum(stats().checkpointRequests), n0);
    assert.ok((stats().released.matched ?? 0) > m0);
  });

  test("secondary lost during a 10 MB transfer, in the middle of a checkpoint: the primary fails over, the PVM runs on, the bytes arrive intact", async () => {
    const bytes = 10 << 20;
    const s = ClientSession.start(lab.ns);
    const other = ClientSession.start(lab.ns);
    const server = lab.primary.compare.control?.server;
    assert.ok(server !== undefined);
    let killed: Promise<unknown> | undefined;
    let pvmStatusAtKill = "";
    // Lose the whole secondary side while the PVM is stopped for a checkpoint (or, if that is
    // never seen, right after the request): the failover then races the executor's migration,
    // swap and resume.
    const kill = async () => {
      const end = Date.now() + 10_000;
      while (Date.now() < end) {
        pvmStatusAtKill = (await lab.pvm.qmp.execute<{ status: string }>("query-status")).status;
        if (pvmStatusAtKill !== "running") break;
        await new Promise((r) => setTimeout(r, 5));
      }
      await Promise.all([lab.secondary.close(), lab.svm.kill(0)]);
    };
    const unsubscribe = server.subscribe((e) => {
      if (e.event === "CHECKPOINT_REQUEST" && killed === undefined) killed = kill();
    });
    try {
      const m0 = stats().released.matched ?? 0;
      const transfer = s.request({ op: "bulk", host: GUEST.ip4, port: 7, bytes, timeoutMs: 240_000 });
      // Let the transfer get going through the comparison, then force a checkpoint: the
      // nondeterministic endpoint miscompares.
      assert.ok(
        await waitFor(() => (stats().released.matched ?? 0) > m0 + 200, 60_000),
        "waitFor(() => (stats().released.matched ?? 0) > m0 + 200, 60_000)",
      );
      const nondet = other.request({ op: "http", host: GUEST.ip4, port: 8080, path: "/" });
      assert.ok(await waitFor(() => killed !== undefined, 60_000), "no checkpoint request");
      await killed;
      console.log(
        `# secondary killed with the PVM ${pvmStatusAtKill}, checkpoint running: ${lab.checkpointRunning}`,
      );
      const r = await transfer;
      assert.deepEqual(r, { ok: true, data: `${bytes} bytes` });
      assert.ok((await nondet).ok);
      assert.equal(lab.primary.compare.mode, "failover");
      assert.ok(
        (stats().released.failover ?? 0) + (stats().released.passthrough ?? 0) > 0,
        JSON.stringify(stats().released),
      );
      // Whatever the checkpoint was doing, the PVM runs and no input of the primary stays paused.
      await lab.settled();
      await lab.failoverSettled();
      assert.equal((await lab.pvm.qmp.execute<{ status: string }>("query-status")).status, "running");
      assert.equal(lab.primary.compare.primary.paused, false, "primary_in paused");
      assert.equal(lab.primary.mirrorIn.paused, false, "mirror_in paused");
      assert.equal(lab.primary.compare.engine.isPaused("primary"), false);
      // And new connections still work, served by the PVM alone.
      const later = await s.request({ op: "http", host: GUEST.ip6, port: 80, path: "/" });
      assert.ok(later.ok && later.body === deterministicBody(8), JSON.stringify(later));
    } finally {
      unsubscribe();
      s.close();
      other.close();
    }
  });
});
