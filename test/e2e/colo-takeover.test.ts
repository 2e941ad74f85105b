/**
 * @module Primary lost (issue 5, e2e test 4): the real SVM takes over the client's established
 * connection. ColoLab with `secondaryTap`: the client is a bridge whose ports are the PVM's tap
 * and the SVM's own tap, the SVM behind the four redirectors a COLO user configures on the
 * secondary (net_in/net_out for after failover). A long-lived TCP echo stream runs through the
 * compared pair; then the PVM's QEMU is SIGKILLed and the primary daemon closed (the link drops,
 * the secondary fails over by itself), and the same connection keeps echoing every byte, now
 * served by the SVM through the secondary daemon's rewriter. No checkpoints in this layout.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { StatsSnapshot } from "../../src/control/stats.ts";
import { GUEST } from "../../src/node/guest/qemu.ts";
import type { ClientResult } from "../../src/node/lab/client-script.ts";
import { ColoLab } from "../../src/node/lab/colo-lab.ts";
import { ClientSession, deterministicBody, guestSkipReason } from "../support/guests.ts";

const skip = guestSkipReason({ netns: true });
if (skip) console.log(`# colo-takeover: skipped: ${skip}`);

const sum = (r: Record<string, number> | undefined) => Object.values(r ?? {}).reduce((a, b) => a + b, 0);

async function waitFor(cond: () => boolean, ms = 30_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/** Frames a tap's QEMU wrote onto the bridge (the tap's rx) and read from it (its tx). */
async function tapCounters(lab: ColoLab, dev: string): Promise<{ fromGuest: number; toGuest: number }> {
  const { stdout } = await lab.ns.exec("ip", ["-s", "-j", "link", "show", "dev", dev]);
  const [link] = JSON.parse(stdout) as { stats64: { rx: { packets: number }; tx: { packets: number } } }[];
  assert.ok(link, stdout);
  return { fromGuest: link.stats64.rx.packets, toGuest: link.stats64.tx.packets };
}

const ok = (r: ClientResult, bytes: number) =>
  assert.deepEqual(r, { ...r, ok: true, data: `${bytes} bytes` });

describe("primary lost: the SVM takes over the client's established connection", {
  skip,
  timeout: 300_000,
}, () => {
  let lab: ColoLab;
  let client: ClientSession;
  const pstats = (): StatsSnapshot => lab.primary.compare.stats();
  const sstats = (): StatsSnapshot => lab.secondary.stats();
  const stream = (bytes: number, conn = "a", timeoutMs = 60_000) =>
    client.request({ op: "stream", conn, bytes, timeoutMs });

  before(async () => {
    // Generous compare timeout: the SVM (TCG, shared CPU) may lag; a timeout would be a checkpoint.
    lab = await ColoLab.start({ secondaryTap: true, compareTimeoutMs: 20_000, netnsPrefix: "colo-tko" });
    client = ClientSession.start(lab.ns);
  });
  after(async () => {
    for (const e of lab?.events ?? []) {
      if (["CHECKPOINT_REQUEST", "FAILOVER", "PEER_LOST"].includes(e.event))
        console.log(`# ${e.daemon} ${e.event} ${JSON.stringify(e.data).slice(0, 400)}`);
    }
    if (lab) console.log(`# secondary dropped ${JSON.stringify(lab.secondary.dropped)}`);
    client?.close();
    await lab?.close();
  });

  test("while COLO runs: the stream is compared, the SVM stays off the wire", async () => {
    const opened = await client.request({ op: "open-stream", conn: "a", host: GUEST.ip4, port: 7 });
    assert.ok(opened.ok, JSON.stringify(opened));
    for (const n of [1, 1000, 20_000, 4344, 7]) ok(await stream(n), n);

    const p = pstats();
    assert.equal(sum(p.checkpointRequests), 0, JSON.stringify(p.checkpointRequests));
    assert.equal(sum(Object.fromEntries(Object.entries(p.miscompares).map(([k, v]) => [k, sum(v)]))), 0);
    assert.ok((p.released.matched ?? 0) >= 10, JSON.stringify(p.released));
    assert.equal(p.released.flush ?? 0, 0);
    assert.equal(p.released.passthrough ?? 0, 0);
    assert.equal(sum(p.dropped), 0, JSON.stringify(p.dropped));
    assert.equal(sum(p.badInput), 0, JSON.stringify(p.badInput));
    // Every SVM frame the primary got was a twin of a PVM frame (nothing unexpected or stale).
    assert.ok((p.discarded?.matched ?? 0) >= 10, JSON.stringify(p.discarded));

    const s = sstats();
    assert.equal(lab.secondary.mode, "colo");
    assert.ok((s.endpoints.guest_in?.framesOut ?? 0) > 0, JSON.stringify(s.endpoints));
    // The SVM never wrote to its wire: its output all went to guest_out, net_out is unused.
    assert.equal(s.endpoints.net_out?.framesOut ?? -1, 0);
    assert.equal((await tapCounters(lab, "tap-s")).fromGuest, 0);
    assert.ok((await tapCounters(lab, "tap-p")).fromGuest > 0);
    // Anything the bridge flooded to tap-s (before it learnt the guest MAC on tap-p) reached
    // net_in and was dropped there, never injected: the SVM gets client frames once, mirrored.
    assert.equal(
      lab.secondary.dropped["net-frame-while-replicating"] ?? 0,
      s.endpoints.net_in?.framesIn ?? 0,
    );
    // The stream's connection is tracked with the SVM/PVM offsets learnt from the handshake.
    const conns = lab.secondary.rewriter.connections().filter((c) => c.flow.includes(`${GUEST.ip4}:7 `));
    assert.equal(conns.length, 1, JSON.stringify(conns));
    assert.ok(conns[0]?.offsetKnown, JSON.stringify(conns));
  });

  test("PVM and primary daemon lost: the same connection goes on, served by the SVM", async () => {
    const [conn0] = lab.secondary.rewriter.connections().filter((c) => c.flow.includes(`${GUEST.ip4}:7 `));
    assert.ok(conn0);
    const netDrops = () => lab.secondary.dropped["net-frame-while-replicating"] ?? 0;
    const d0 = netDrops();

    // The PVM's host dies: first its QEMU. The bridge forgets the guest MAC on tap-p, so the
    // client's next chunk floods to tap-s, where the secondary (still replicating) drops it.
    await lab.pvm.crash();
    const inflight = stream(3000, "a", 120_000);
    assert.ok(await waitFor(() => netDrops() > d0, 60_000), "the client's frames never reached tap-s");
    // Then the primary daemon: the link drops and the secondary takes over on its own.
    await lab.primary.close();
    assert.ok(await waitFor(() => lab.secondary.mode === "failover", 30_000), lab.secondary.mode);
    // The client's retransmission now reaches the SVM through net_in, the echo comes back via net_out.
    ok(await inflight, 3000);

    for (const n of [1, 30_000, 500]) ok(await stream(n), n);

    const s = sstats();
    assert.equal(lab.secondary.status().mode, "failover");
    assert.ok(lab.events.some((e) => e.daemon === "secondary" && e.event === "FAILOVER"));
    assert.ok((s.endpoints.net_in?.framesIn ?? 0) > netDrops(), JSON.stringify(s.endpoints));
    assert.ok((s.endpoints.net_out?.framesOut ?? 0) > 0, JSON.stringify(s.endpoints));
    assert.ok((await tapCounters(lab, "tap-s")).fromGuest > 0);
    // The connection opened under the PVM keeps its mapping and is still being rewritten both ways.
    const [conn] = lab.secondary.rewriter.connections().filter((c) => c.flow === conn0.flow);
    assert.ok(conn, JSON.stringify(lab.secondary.rewriter.connections()));
    assert.equal(conn.offset, conn0.offset);
    assert.equal(conn.tsOffset, conn0.tsOffset);
    if (conn.offset !== 0) {
      assert.ok(conn.rewrittenTx > conn0.rewrittenTx, JSON.stringify({ conn0, conn }));
      assert.ok(conn.rewrittenRx > conn0.rewrittenRx, JSON.stringify({ conn0, conn }));
    }
    assert.equal(sum(s.badInput), 0, JSON.stringify(s.badInput));
  });

  test("after takeover: new connections are served by the SVM", async () => {
    const opened = await client.request({ op: "open-stream", conn: "b", host: GUEST.ip4, port: 7 });
    assert.ok(opened.ok, JSON.stringify(opened));
    ok(await stream(5000, "b"), 5000);
    const r = await client.request({ op: "http", host: GUEST.ip4, port: 80, path: "/big" });
    assert.ok(
      r.ok && r.status === 200 && r.body === deterministicBody(1600),
      JSON.stringify(r).slice(0, 300),
    );
    // And the first stream is still alive.
    ok(await stream(100), 100);
  });
});
