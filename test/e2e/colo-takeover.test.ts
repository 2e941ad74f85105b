/**
 * @module Primary lost (issue 5, e2e test 4): the real SVM takes over the client's established
 * connection. ColoLab with `secondaryTap`: the client is a bridge whose ports are the PVM's tap
 * and the SVM's own tap, the SVM behind the four redirectors a COLO user configures on the
 * secondary (net_in/net_out for after failover). A long-lived TCP echo stream runs through the
 * compared pair; then the PVM's QEMU is SIGKILLed and the primary daemon closed (the link drops,
 * the secondary fails over by itself), and the same connection keeps echoing every byte, now
 * served by the SVM through the secondary daemon's rewriter. Two pairs, one after the other:
 * the first never checkpoints (the stream's connection keeps the PVM/SVM offsets learnt at its
 * handshake until the takeover), the second takes a real checkpoint first (a fresh SVM on its own
 * tap, same layout), so connections from before and after it are taken over, the primary dying
 * in the middle of an 8 MB echo on one of them.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { StatsSnapshot } from "../../src/control/stats.ts";
import { GUEST } from "../../src/node/guest/qemu.ts";
import type { ClientResult } from "../../src/node/lab/client-script.ts";
import { ColoLab } from "../../src/node/lab/colo-lab.ts";
import { ClientSession, deterministicBody, guestSkipReason, sum, waitFor } from "../support/guests.ts";

const skip = guestSkipReason({ netns: true });
if (skip) console.log(`# colo-takeover: skipped: ${skip}`);

/** Frames a tap's QEMU wrote onto the bridge (the tap's rx) and read from it (its tx). */
async function tapCounters(lab: ColoLab, dev: string): Promise<{ fromGuest: number; toGuest: number }> {
  const { stdout } = await lab.ns.exec("ip", ["-s", "-j", "link", "show", "dev", dev]);
  const [link] = JSON.parse(stdout) as { stats64: { rx: { packets: number }; tx: { packets: number } } }[];
  assert.ok(link, stdout);
  return { fromGuest: link.stats64.rx.packets, toGuest: link.stats64.tx.packets };
}

const ok = (r: ClientResult, bytes: number) =>
  assert.deepEqual(r, { ...r, ok: true, data: `${bytes} bytes` });

/** A lab, one client session, and the checks both scenarios share. */
class Scenario {
  lab!: ColoLab;
  client!: ClientSession;

  async start(checkpoints: boolean): Promise<void> {
    // Generous compare timeout: the SVM (TCG, shared CPU) may lag; a timeout would be a checkpoint.
    this.lab = await ColoLab.start({
      secondaryTap: true,
      checkpoints,
      compareTimeoutMs: 20_000,
      netnsPrefix: "colo-tko",
    });
    this.client = ClientSession.start(this.lab.ns);
  }

  async close(): Promise<void> {
    const lab = this.lab as ColoLab | undefined;
    for (const e of lab?.events ?? []) {
      if (["CHECKPOINT_REQUEST", "FAILOVER", "PEER_LOST"].includes(e.event))
        console.log(`# ${e.daemon} ${e.event} ${JSON.stringify(e.data).slice(0, 300)}`);
    }
    if (lab) {
      console.log(`# secondary dropped ${JSON.stringify(lab.secondary.dropped)}`);
      console.log(
        `# checkpoints ${JSON.stringify(lab.checkpoints.map((c) => c.totalMs))} ${lab.checkpointErrors}`,
      );
    }
    (this.client as ClientSession | undefined)?.close();
    await lab?.close();
  }

  pstats = (): StatsSnapshot => this.lab.primary.compare.stats();
  sstats = (): StatsSnapshot => this.lab.secondary.stats();

  async open(conn: string): Promise<void> {
    const r = await this.client.request({ op: "open-stream", conn, host: GUEST.ip4, port: 7 });
    assert.ok(r.ok, JSON.stringify(r));
  }

  async stream(conn: string, bytes: number, timeoutMs = 60_000): Promise<void> {
    ok(await this.client.request({ op: "stream", conn, bytes, timeoutMs }), bytes);
  }

  /** The rewriter's entry of the echo connection with client port `port`. */
  conn(port: number) {
    const all = this.lab.secondary.rewriter.connections();
    const c = all.find((x) => x.flow === `tcp ${GUEST.ip4}:7 > ${GUEST.peerIp4}:${port}`);
    assert.ok(c, JSON.stringify(all.map((x) => x.flow)));
    return c;
  }

  /** While COLO runs: compared, nothing unexpected, the SVM (current tap) never on the wire. */
  miscompares(): number {
    return sum(Object.fromEntries(Object.entries(this.pstats().miscompares).map(([k, v]) => [k, sum(v)])));
  }

  async assertReplicating(miscompares0 = 0): Promise<void> {
    const p = this.pstats();
    assert.equal(this.miscompares(), miscompares0, JSON.stringify(p.miscompares));
    assert.ok((p.released.matched ?? 0) >= 10, JSON.stringify(p.released));
    assert.equal(p.released.passthrough ?? 0, 0);
    assert.equal(sum(p.dropped), 0, JSON.stringify(p.dropped));
    assert.equal(sum(p.badInput), 0, JSON.stringify(p.badInput));
    // SVM frames the primary got were twins of PVM frames.
    assert.ok((p.discarded?.matched ?? 0) >= 10, JSON.stringify(p.discarded));

    const s = this.sstats();
    assert.equal(this.lab.secondary.mode, "colo");
    assert.ok((s.endpoints.guest_in?.framesOut ?? 0) > 0, JSON.stringify(s.endpoints));
    // The SVM never wrote to its wire: all its output went to guest_out, net_out is unused.
    assert.equal(s.endpoints.net_out?.framesOut ?? -1, 0);
    assert.equal((await tapCounters(this.lab, "tap-s")).fromGuest, 0);
    assert.equal((await tapCounters(this.lab, this.lab.svmTap as string)).fromGuest, 0);
    assert.ok((await tapCounters(this.lab, "tap-p")).fromGuest > 0);
    // Whatever the bridge flooded to the SVM's tap (before it learnt the guest MAC on tap-p)
    // reached net_in and was dropped there, never injected: the SVM gets client frames once.
    assert.equal(
      this.lab.secondary.dropped["net-frame-while-replicating"] ?? 0,
      s.endpoints.net_in?.framesIn ?? 0,
    );
  }

  /**
   * The primary's host dies while `conn` waits for an echo: first the PVM's QEMU (SIGKILL): the
   * bridge forgets the guest MAC on tap-p, the client's frames flood to the SVM's tap where the
   * still-replicating secondary drops them; then the primary daemon: the link drops and the
   * secondary takes over by itself. The client's retransmission then reaches the SVM via net_in.
   */
  async losePrimary(conn: string, bytes: number): Promise<void> {
    const lab = this.lab;
    const netDrops = () => lab.secondary.dropped["net-frame-while-replicating"] ?? 0;
    const d0 = netDrops();
    await lab.pvm.crash();
    const inflight = this.client.request({ op: "stream", conn, bytes, timeoutMs: 120_000 });
    assert.ok(
      await waitFor(() => netDrops() > d0, 60_000),
      "the client's frames never reached the SVM's tap",
    );
    await lab.primary.close();
    assert.ok(await waitFor(() => lab.secondary.mode === "failover", 30_000), lab.secondary.mode);
    ok(await inflight, bytes);
    assert.equal(lab.secondary.status().mode, "failover");
    assert.ok(lab.events.some((e) => e.daemon === "secondary" && e.event === "FAILOVER"));
  }

  /** After takeover the SVM's traffic flows through net_in/net_out and its own tap. */
  async assertServing(): Promise<void> {
    const s = this.sstats();
    const netDrops = this.lab.secondary.dropped["net-frame-while-replicating"] ?? 0;
    assert.ok((s.endpoints.net_in?.framesIn ?? 0) > netDrops, JSON.stringify(s.endpoints));
    assert.ok((s.endpoints.net_out?.framesOut ?? 0) > 0, JSON.stringify(s.endpoints));
    assert.ok((await tapCounters(this.lab, this.lab.svmTap as string)).fromGuest > 0);
    assert.equal(sum(s.badInput), 0, JSON.stringify(s.badInput));
  }

  /** New connections after takeover, served by the SVM alone. */
  async assertNewConnections(conn: string): Promise<void> {
    await this.open(conn);
    await this.stream(conn, 5000);
    const r = await this.client.request({ op: "http", host: GUEST.ip4, port: 80, path: "/big" });
    assert.ok(
      r.ok && r.status === 200 && r.body === deterministicBody(1600),
      JSON.stringify(r).slice(0, 300),
    );
  }
}

describe("primary lost: the SVM takes over the client's established connection", {
  skip,
  timeout: 300_000,
}, () => {
  const sc = new Scenario();
  let port = 0;
  before(() => sc.start(false));
  after(() => sc.close());

  test("while COLO runs: the stream is compared, the SVM stays off the wire", async () => {
    await sc.open("a");
    for (const n of [1, 1000, 20_000, 4344, 7]) await sc.stream("a", n);
    assert.equal(sum(sc.pstats().checkpointRequests), 0, JSON.stringify(sc.pstats().checkpointRequests));
    assert.equal(sc.pstats().released.flush ?? 0, 0);
    await sc.assertReplicating();
    // The connection's PVM/SVM offsets were learnt at its handshake (two boots: different ISNs).
    const r = await sc.client.request({ op: "stream", conn: "a", bytes: 1, timeoutMs: 60_000 });
    ok(r, 1);
    port = r.ok ? (r.localPort ?? 0) : 0;
    const c = sc.conn(port);
    assert.ok(c.offsetKnown && c.offset !== 0, JSON.stringify(c));
  });

  test("PVM and primary daemon lost: the same connection goes on, served by the SVM", async () => {
    const before = sc.conn(port);
    await sc.losePrimary("a", 3000);
    for (const n of [1, 30_000, 500]) await sc.stream("a", n);
    await sc.assertServing();
    // The connection opened under the PVM keeps its mapping, rewritten both ways since.
    const c = sc.conn(port);
    assert.equal(c.offset, before.offset);
    assert.equal(c.tsOffset, before.tsOffset);
    assert.ok(
      c.rewrittenTx > before.rewrittenTx && c.rewrittenRx > before.rewrittenRx,
      JSON.stringify({ before, c }),
    );
  });

  test("after takeover: new connections are served by the SVM, the old one still works", async () => {
    await sc.assertNewConnections("b");
    await sc.stream("a", 100);
  });
});

describe("primary lost after a checkpoint: connections from before and after it are taken over", {
  skip,
  timeout: 300_000,
}, () => {
  const sc = new Scenario();
  before(() => sc.start(true));
  after(() => sc.close());

  test("a checkpoint replaces the SVM: the fresh one sits on its own tap, in the same layout", async () => {
    await sc.open("a");
    await sc.stream("a", 2000);
    // The guest's nondeterministic endpoint: the outputs differ, the primary asks for a checkpoint.
    const r = await sc.client.request({ op: "http", host: GUEST.ip4, port: 8080, path: "/" });
    assert.ok(r.ok && r.status === 200, JSON.stringify(r));
    assert.ok(
      await waitFor(() => sc.lab.checkpoints.length >= 1 || sc.lab.checkpointErrors.length > 0, 120_000),
      "waitFor(() => sc.lab.checkpoints.length >= 1 || sc.lab.checkpointErrors.length > 0, 120_000)",
    );
    await sc.lab.settled();
    assert.deepEqual(sc.lab.checkpointErrors, []);
    assert.notEqual(sc.lab.svm.name, "svm");
    assert.equal(sc.lab.svmTap, `t-${sc.lab.svm.name}`);
    // The SVM is a copy of the PVM now: the stream goes on compared, a new one opens.
    const n0 = sum(sc.pstats().checkpointRequests);
    const m0 = sc.miscompares();
    await sc.stream("a", 3000);
    await sc.open("c");
    await sc.stream("c", 4000);
    assert.equal(sum(sc.pstats().checkpointRequests), n0);
    await sc.assertReplicating(m0);
  });

  test("PVM and primary daemon lost in the middle of an 8 MB echo: every byte arrives, both streams go on", async () => {
    const lab = sc.lab;
    const bytes = 8 << 20;
    const matched = () => sc.pstats().released.matched ?? 0;
    const m0 = matched();
    let done = false;
    const transfer = sc.client.request({ op: "stream", conn: "c", bytes, timeoutMs: 240_000 });
    void transfer.then(() => {
      done = true;
    });
    // Let it get going through the comparison, then the primary's host dies under it.
    assert.ok(await waitFor(() => matched() > m0 + 200, 120_000), "the transfer never got going");
    await lab.pvm.crash();
    assert.equal(done, false, "the transfer ended before the PVM died: make it bigger");
    await lab.primary.close();
    assert.ok(await waitFor(() => lab.secondary.mode === "failover", 30_000), lab.secondary.mode);
    ok(await transfer, bytes);
    // Part of it was served by the SVM alone, through net_out (the rest was compared and released).
    assert.ok(
      (sc.sstats().endpoints.net_out?.bytesOut ?? 0) > 64 * 1024,
      JSON.stringify(sc.sstats().endpoints),
    );
    assert.ok(lab.events.some((e) => e.daemon === "secondary" && e.event === "FAILOVER"));
    // The idle stream from before the checkpoint goes on too.
    await sc.stream("a", 3000);
    for (const n of [1, 20_000]) {
      await sc.stream("a", n);
      await sc.stream("c", n);
    }
    await sc.assertServing();
    await sc.assertNewConnections("d");
  });
});
