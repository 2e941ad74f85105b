/**
 * @module The rewrite daemon end to end over real UNIX sockets: frames in → rewritten frames out,
 * checkpoint and failover through the control target, bad input resetting only that peer, and
 * the `colo-proxy rewrite` CLI with its control socket.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { describe, test } from "node:test";
import { ControlClient } from "../../src/control/client.ts";
import { RewriteDaemon } from "../../src/node/rewrite-daemon.ts";
import { parseRewriteObject } from "../../src/node/rewrite-daemon-config.ts";
import {
  referenceScenarios,
  runEngine,
  type Scenario,
  rx as srx,
  stepFrame,
  tx as stx,
} from "../rewrite/scenarios.ts";
import { readAck, readSeq } from "../rewrite/tcp-frames.ts";
import {
  FramedPeer,
  skipWithoutQemu,
  spawnProc,
  startQemu,
  type TestCtx,
  tempDir,
  waitUntil,
} from "../support/qemu.ts";
import { hubNetdevArgs } from "../support/qemu-rewriter.ts";

const ROLES = ["tx_in", "tx_out", "rx_in", "rx_out"] as const;
type Peers = Record<(typeof ROLES)[number], FramedPeer>;

function chardevs(dir: string): string[] {
  return ROLES.map((r) => `socket,id=${r},path=${path.join(dir, `${r}.sock`)},server=on,wait=off`);
}
const OBJECT = "filter-rewriter,id=rew0,tx_in=tx_in,tx_out=tx_out,rx_in=rx_in,rx_out=rx_out";

async function connectAll(t: TestCtx, dir: string, vnetHdr = false, timeoutMs = 5000): Promise<Peers> {
  const p: Partial<Peers> = {};
  for (const r of ROLES)
    p[r] = await FramedPeer.connect(path.join(dir, `${r}.sock`), { vnetHdr, timeoutMs }, t);
  return p as Peers;
}

async function startDaemon(t: TestCtx, object = OBJECT, vnetHdr = false) {
  const dir = tempDir(t, "colo-rwd-");
  const events: { event: string; data: Record<string, unknown> }[] = [];
  const d = new RewriteDaemon({
    chardevs: chardevs(dir),
    object: parseRewriteObject(object),
    onEvent: (event, data) => events.push({ event, data }),
  });
  await d.start();
  t.after(() => d.close());
  const peers = await connectAll(t, dir, vnetHdr);
  assert.ok(
    await waitUntil(() => ROLES.every((r) => d.endpoints[r].connected), 20_000),
    "waitUntil(() => ROLES.every((r) => d.endpoints[r].connected), 20_000)",
  );
  return { d, dir, peers, events };
}

/** Sends each step's frame and waits for the daemon's output; returns outputs as hex. */
async function drive(peers: Peers, s: Scenario, vnetLen = 0, onCheckpoint?: () => void) {
  const out: { dir: "tx" | "rx"; hex: string }[] = [];
  for (const step of s.steps) {
    if ("checkpoint" in step) {
      onCheckpoint?.();
      continue;
    }
    const [i, o] = step.dir === "tx" ? [peers.tx_in, peers.tx_out] : [peers.rx_in, peers.rx_out];
    const want = o.frames.length + 1;
    i.send(stepFrame(s.flow ?? {}, step, vnetLen), vnetLen);
    assert.ok(await o.waitFrames(want, 20_000), "daemon forwarded the frame");
    const f = o.frames[want - 1]!;
    if (vnetLen > 0) assert.equal(f.vnetLen, vnetLen);
    out.push({ dir: step.dir, hex: f.data.toString("hex") });
  }
  return out;
}

const session: Scenario = {
  name: "session",
  steps: [
    stx({ seq: 1000, flags: "S" }),
    srx({ seq: 5000, ack: 1001, flags: "SA" }),
    stx({ seq: 1001, ack: 3001, flags: "A" }),
    stx({ seq: 1001, ack: 3001, flags: "PA", payload: "ping" }),
    srx({ seq: 5001, ack: 1005, flags: "PA", payload: "pong" }),
    { checkpoint: true },
    stx({ seq: 1005, ack: 3005, flags: "A" }),
    srx({ seq: 3005, ack: 1005, flags: "PA", payload: "after" }),
  ],
};

describe("rewrite daemon", () => {
  test("frames in → rewritten frames out on both paths, checkpoint through the control target", async (t) => {
    const { d, peers, events } = await startDaemon(t);
    const out = await drive(peers, session, 0, () => d.checkpointDone());
    assert.deepEqual(out, runEngine(session));
    assert.equal(readAck(Buffer.from(out[2]!.hex, "hex")), 5001);
    assert.equal(readSeq(Buffer.from(out[4]!.hex, "hex")), 3001);
    assert.equal(readSeq(Buffer.from(out[6]!.hex, "hex")), 3005, "offset 0 after the checkpoint");
    const st = d.stats();
    assert.equal(st.checkpoints, 1);
    assert.equal(st.endpoints.tx_in!.framesIn, 4);
    assert.equal(st.endpoints.rx_out!.framesOut, 3);
    assert.equal(st.released["rewritten-tx"], 2);
    assert.equal(d.connections()[0]!.flow, "tcp 10.0.0.2:80 > 10.0.0.1:40000");
    assert.ok(events.some((e) => e.event === "CHECKPOINT_DONE"));
    assert.equal(d.status().peers.filter((p) => p.state === "up").length, 4);
  });

  test("vnet_hdr_support=on: the V word is read and re-emitted, the header skipped", async (t) => {
    const { peers } = await startDaemon(t, `${OBJECT},vnet_hdr_support=on`, true);
    const s: Scenario = { ...session, steps: session.steps.slice(0, 5) };
    const out = await drive(peers, s, 12);
    assert.deepEqual(out, runEngine({ ...s, vnetLen: 12 }));
    assert.equal(readAck(Buffer.from(out[2]!.hex, "hex"), 12), 5001);
  });

  test("failover: the tracked connection keeps its offset, a new one passes untouched", async (t) => {
    const { d, peers, events } = await startDaemon(t);
    await drive(peers, { ...session, steps: session.steps.slice(0, 3) });
    d.failover();
    assert.equal(d.status().mode, "failover");
    const fresh: Scenario = {
      name: "fresh",
      flow: { clientPort: 40001 },
      steps: [
        stx({ seq: 7, flags: "S" }),
        srx({ seq: 900, ack: 8, flags: "SA" }),
        stx({ seq: 8, ack: 101, flags: "A" }),
      ],
    };
    const out = await drive(peers, fresh);
    assert.equal(readAck(Buffer.from(out[2]!.hex, "hex")), 101);
    const old = await drive(peers, { name: "old", steps: [srx({ seq: 5001, ack: 1001, flags: "A" })] });
    assert.equal(readSeq(Buffer.from(old[0]!.hex, "hex")), 3001);
    assert.ok(events.some((e) => e.event === "FAILOVER"));
  });

  test("garbage on an input: logged code, that peer reset, the daemon keeps working", async (t) => {
    const { d, dir, peers, events } = await startDaemon(t);
    await drive(peers, { ...session, steps: session.steps.slice(0, 3) });
    // A length word far above the 69632-byte limit: no resync is possible, the peer is reset.
    peers.tx_in.sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4]));
    assert.ok(await waitUntil(() => peers.tx_in.closed, 20_000), "the bad peer was disconnected");
    const bad = events.find((e) => e.event === "BAD_INPUT");
    assert.equal(bad?.data.code, "COLO_ERR_FRAME_TOO_LARGE");
    assert.equal(bad?.data.source, "tx_in");
    assert.equal(d.stats().badInput.COLO_ERR_FRAME_TOO_LARGE, 1);
    // The other path never noticed.
    const r = await drive(peers, {
      name: "rx",
      steps: [srx({ seq: 5001, ack: 1001, flags: "PA", payload: "z" })],
    });
    assert.equal(readSeq(Buffer.from(r[0]!.hex, "hex")), 3001);
    // The reset input accepts a new connection and the connection state survived.
    const again = await FramedPeer.connect(path.join(dir, "tx_in.sock"), {}, t);
    const p2 = { ...peers, tx_in: again };
    const o = await drive(p2, { name: "tx", steps: [stx({ seq: 1001, ack: 3002, flags: "A" })] });
    assert.equal(readAck(Buffer.from(o[0]!.hex, "hex")), 5002);
  });

  test("a malformed frame inside valid framing is forwarded unchanged and counted", async (t) => {
    const { d, peers } = await startDaemon(t);
    const junk = Buffer.alloc(30, 0xab);
    junk.writeUInt16BE(0x0800, 12); // IPv4 EtherType but a truncated header
    peers.tx_in.send(junk);
    assert.ok(await peers.tx_out.waitFrames(1, 20_000), "peers.tx_out.waitFrames(1, 20_000)");
    assert.deepEqual(peers.tx_out.frames[0]!.data, junk);
    assert.equal(
      Object.values(d.stats().badInput).reduce((a, b) => a + b, 0),
      1,
    );
  });

  test("configuration errors name the problem and carry a stable code", () => {
    assert.throws(() => parseRewriteObject("filter-rewriter,id=r,netdev=hn0,queue=all"), {
      code: "COLO_ERR_REWRITE_OBJECT",
      message: /netdev= belongs to QEMU/,
    });
    assert.throws(() => parseRewriteObject("filter-rewriter,id=r,tx_in=a,tx_out=a,rx_in=b,rx_out=c"), {
      code: "COLO_ERR_REWRITE_OBJECT",
    });
    assert.throws(() => parseRewriteObject("filter-mirror,id=r"), { code: "COLO_ERR_REWRITE_OBJECT" });
    assert.throws(() => parseRewriteObject(`${OBJECT},timestamps=maybe`), /timestamps=maybe/);
    const ok = parseRewriteObject(`-object ${OBJECT},vnet_hdr_support=on,timestamps=on,max_connections=10`);
    assert.deepEqual([ok.vnetHdr, ok.timestamps, ok.maxConnections], [true, true, 10]);
    assert.throws(
      () => new RewriteDaemon({ chardevs: [], object: parseRewriteObject(OBJECT) }),
      /no --chardev with id=tx_in/,
    );
  });
});

describe("colo-proxy rewrite (CLI)", () => {
  test("runs as a process: rewrites, answers the control socket, logs bad input, exits on SIGTERM", async (t) => {
    const dir = tempDir(t, "colo-rwc-");
    const ctl = path.join(dir, "ctl.sock");
    const bin = new URL("../../bin/colo-proxy.mjs", import.meta.url).pathname;
    const args = [bin, "rewrite", ...chardevs(dir).flatMap((c) => ["--chardev", c]), "--object", OBJECT];
    const proc = spawnProc(process.execPath, [...args, "--control", ctl], t);
    // Starting a process (tsx compiling the CLI) can take tens of seconds on a loaded CI machine;
    // a process that died instead fails at once with its stderr.
    const peers = await Promise.race([
      connectAll(t, dir, false, 120_000),
      proc.exited.then((s) => {
        throw new Error(`colo-proxy rewrite exited (${s}) before listening: ${proc.stderr}`);
      }),
    ]);
    const client = await ControlClient.connect({ path: ctl });
    t.after(() => client.close());
    const out = await drive(peers, session, 0, () => {});
    assert.equal(readAck(Buffer.from(out[2]!.hex, "hex")), 5001);
    await client.execute("checkpoint-done");
    const after = await drive(peers, { name: "a", steps: [srx({ seq: 3010, ack: 1005, flags: "A" })] });
    assert.equal(readSeq(Buffer.from(after[0]!.hex, "hex")), 3010);
    const conns = await client.execute<{ flow: string; offset: number }[]>("query-connections");
    assert.deepEqual(
      conns.map((c) => [c.flow, c.offset]),
      [["tcp 10.0.0.2:80 > 10.0.0.1:40000", 0]],
    );
    peers.rx_in.sendRaw(Buffer.from([0, 0, 0, 0, 0]));
    assert.ok(await waitUntil(() => proc.stderr.includes("COLO_ERR_FRAME_EMPTY"), 30_000), proc.stderr);
    const stats = await client.execute<{ badInput: Record<string, number> }>("query-stats");
    assert.equal(stats.badInput.COLO_ERR_FRAME_EMPTY, 1);
    proc.child.kill("SIGTERM");
    assert.equal(await proc.exited, 0);
  });
});

describe("colo-proxy rewrite between QEMU's filter-redirectors", () => {
  test("drop-in for filter-rewriter: QEMU redirectors → daemon → QEMU, output equals the engine's (itself byte-identical to QEMU's rewriter)", async (t) => {
    if (skipWithoutQemu(t)) return;
    const dir = tempDir(t, "colo-rwq-");
    // Filter order matters: tx walks creation order, rx the reverse; injected frames continue
    // from the injecting redirector. The daemon takes the rewriter's place in the chain.
    const q = await startQemu(
      {
        dir,
        chardevs: ["rin_tx", "rin_rx", "rout_tx", "rout_rx", "q_tx_in", "q_tx_out", "q_rx_in", "q_rx_out"],
        args: hubNetdevArgs(dir),
        objects: [
          "filter-redirector,id=f1,netdev=n0,queue=tx,indev=rin_tx",
          "filter-redirector,id=f2,netdev=n0,queue=rx,outdev=rout_rx",
          "filter-redirector,id=f3,netdev=n0,queue=tx,outdev=q_tx_in",
          "filter-redirector,id=f4,netdev=n0,queue=rx,indev=q_rx_out",
          "filter-redirector,id=f5,netdev=n0,queue=tx,indev=q_tx_out",
          "filter-redirector,id=f6,netdev=n0,queue=rx,outdev=q_rx_in",
          "filter-redirector,id=f7,netdev=n0,queue=tx,outdev=rout_tx",
          "filter-redirector,id=f8,netdev=n0,queue=rx,indev=rin_rx",
        ],
      },
      t,
    );
    const d = new RewriteDaemon({
      chardevs: ROLES.map((r) => `socket,id=${r},path=${q.sock(`q_${r}`)},reconnect=1`),
      object: parseRewriteObject(OBJECT),
    });
    await d.start();
    t.after(() => d.close());
    const peer = (id: string) => FramedPeer.connect(q.sock(id), {}, t);
    const peers: Peers = {
      tx_out: await peer("rout_tx"),
      rx_out: await peer("rout_rx"),
      tx_in: await peer("rin_tx"),
      rx_in: await peer("rin_rx"),
    };
    await q.waitConnected([
      "rin_tx",
      "rin_rx",
      "rout_tx",
      "rout_rx",
      "q_tx_in",
      "q_tx_out",
      "q_rx_in",
      "q_rx_out",
    ]);
    const s = referenceScenarios.find((x) => x.name === "data both ways")!;
    const out = await drive(peers, s);
    assert.deepEqual(out, runEngine(s));
    assert.equal(readAck(Buffer.from(out[2]!.hex, "hex")), 5001);
    await q.stop();
  });
});
