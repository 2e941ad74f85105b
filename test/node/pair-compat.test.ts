/**
 * The pair daemons in QEMU's canonical COLO-FT topology: each side talks to the other side's
 * QEMU filter sockets instead of to a colo-proxy peer. The test plays those QEMU sockets.
 */
import assert from "node:assert/strict";
import net from "node:net";
import path from "node:path";
import { describe, test } from "node:test";
import { ControlClient } from "../../src/control/client.ts";
import { buildTcp } from "../../src/packet/build.ts";
import { newFrameMeta } from "../../src/packet/meta.ts";
import { parseFrame } from "../../src/packet/parse.ts";
import { encodeFrame, FramedPeer, spawnProc, type TestCtx, tempDir, waitUntil } from "../support/qemu.ts";

const bin = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../bin/colo-proxy.mjs");
const c2g = (seq: number, ack: number, flags: string, payload = "") =>
  buildTcp({ src: "10.0.0.1", dst: "10.0.2.15", sport: 40000, dport: 80, seq, ack, flags, payload });
const g2c = (seq: number, ack: number, flags: string, payload = "", id = 1) =>
  buildTcp({ src: "10.0.2.15", dst: "10.0.0.1", sport: 80, dport: 40000, seq, ack, flags, payload, id });

async function ctl(sock: string): Promise<ControlClient> {
  for (let i = 0; ; i++) {
    try {
      return await ControlClient.connect({ path: sock }, { timeoutMs: 2000 });
    } catch (e) {
      if (i > 200) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** A framed chardev *server* like QEMU's `server=on` sockets; collects frames of its one client. */
async function framedServer(t: TestCtx, sockPath: string) {
  const got: Buffer[] = [];
  let client: net.Socket | undefined;
  let pending = Buffer.alloc(0);
  const srv = net.createServer((s) => {
    client = s;
    s.on("data", (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
        const n = pending.readUInt32BE(0);
        got.push(Buffer.from(pending.subarray(4, 4 + n)));
        pending = pending.subarray(4 + n);
      }
    });
    s.on("error", () => {});
  });
  await new Promise<void>((r) => srv.listen(sockPath, () => r()));
  t.after?.(() => {
    client?.destroy();
    srv.close();
  });
  return {
    got,
    connected: () => client !== undefined && !client.destroyed,
    send: (f: Buffer) => client!.write(encodeFrame(f)),
    kill: () => {
      client?.destroy();
      srv.close();
    },
  };
}

describe("pair daemons in QEMU's canonical topology", { timeout: 60_000 }, () => {
  test("primary with a QEMU secondary: client frames go to red0's socket, red1's frames are compared", async (t) => {
    const dir = tempDir(t, "colo-compat-p-");
    const s = (n: string) => path.join(dir, n);
    spawnProc(
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
        "--log-level",
        "warn",
      ],
      t,
    );
    const peer = (n: string) => FramedPeer.connect(s(n), { timeoutMs: 15_000 }, t);
    // What the PVM's QEMU and the QEMU secondary's redirectors (red0 reads, red1 writes) connect.
    const [mirror, pri, out, red0, red1] = await Promise.all([
      peer("mirror.sock"),
      peer("pri.sock"),
      peer("out.sock"),
      peer("sec-out.sock"),
      peer("sec-in.sock"),
    ]);
    const c = await ctl(s("ctl.sock"));
    t.after?.(() => c.close());
    const events: string[] = [];
    c.onEvent((e) => events.push(e.event));
    const syn = c2g(1000, 0, "S");
    mirror.send(syn);
    assert.ok(await red0.waitFrames(1, 20_000), "client frame forwarded to the QEMU secondary");
    assert.ok(red0.frames[0]!.data.equals(syn));
    // Already rewritten by QEMU's filter-rewriter on the secondary: same seq space as the PVM.
    red1.send(g2c(5001, 1001, "PA", "same bytes", 9));
    pri.send(g2c(5001, 1001, "PA", "same bytes", 3));
    assert.ok(await out.waitFrames(1, 20_000), "match released");
    assert.ok(out.frames[0]!.data.equals(g2c(5001, 1001, "PA", "same bytes", 3)));
    red1.send(g2c(5011, 1001, "PA", "other", 10));
    pri.send(g2c(5011, 1001, "PA", "diffs", 4));
    assert.ok(
      await waitUntil(() => events.includes("CHECKPOINT_REQUEST"), 20_000),
      "difference → checkpoint request",
    );
    const st = await c.execute<{ role: string; peers: { name: string; state: string }[] }>("query-status");
    assert.equal(st.role, "primary");
    assert.equal(st.peers.find((p) => p.name === "secondary_out")?.state, "up");
  });

  test("secondary with a QEMU primary: frames from mirror0 are rewritten into the SVM, SVM output goes to compare1", async (t) => {
    const dir = tempDir(t, "colo-compat-s-");
    const s = (n: string) => path.join(dir, n);
    // The QEMU primary's server sockets (mirror0 :9003 and compare1 :9004 in COLO-FT.txt).
    const mirror0 = await framedServer(t, s("mirror0.sock"));
    const compare1 = await framedServer(t, s("compare1.sock"));
    spawnProc(
      process.execPath,
      [
        bin,
        "secondary",
        "--primary-mirror",
        `connect:unix:${s("mirror0.sock")}`,
        "--primary-compare",
        `connect:unix:${s("compare1.sock")}`,
        "--guest-in",
        `unix:${s("gin.sock")}`,
        "--guest-out",
        `unix:${s("gout.sock")}`,
        "--control",
        s("ctl.sock"),
        "--log-level",
        "warn",
      ],
      t,
    );
    const [gin, gout] = await Promise.all([
      FramedPeer.connect(s("gin.sock"), { timeoutMs: 15_000 }, t),
      FramedPeer.connect(s("gout.sock"), { timeoutMs: 15_000 }, t),
    ]);
    assert.ok(
      await waitUntil(() => mirror0.connected() && compare1.connected(), 10_000),
      "dialled the QEMU primary",
    );
    mirror0.send(c2g(1000, 0, "S"));
    assert.ok(await gin.waitFrames(1, 20_000), "gin.waitFrames(1, 20_000)");
    gout.send(g2c(700_000, 1001, "SA", "", 0)); // SVM ISN
    assert.ok(await waitUntil(() => compare1.got.length === 1, 20_000), "SVM SYN-ACK to colo-compare");
    mirror0.send(c2g(1001, 5001, "A")); // client acks the PVM's ISN 5000
    assert.ok(await gin.waitFrames(2, 20_000), "gin.waitFrames(2, 20_000)");
    const m = newFrameMeta();
    parseFrame(gin.frames[1]!.data, 0, m);
    assert.equal(m.tcpAck, 700_001, "ack rewritten into the SVM's space");
    gout.send(g2c(700_001, 1001, "PA", "resp", 5));
    assert.ok(
      await waitUntil(() => compare1.got.length === 2, 20_000),
      "waitUntil(() => compare1.got.length === 2, 20_000)",
    );
    parseFrame(compare1.got[1]!, 0, m);
    assert.equal(m.tcpSeq, 5001, "SVM output in the PVM's sequence space for colo-compare");
    // Without a link, the operator (or QEMU's COLO frame via a hook) reports checkpoints.
    const c = await ctl(s("ctl.sock"));
    t.after?.(() => c.close());
    await c.execute("checkpoint-done");
    gout.send(g2c(700_005, 1001, "PA", "x", 6));
    assert.ok(
      await waitUntil(() => compare1.got.length === 3, 20_000),
      "waitUntil(() => compare1.got.length === 3, 20_000)",
    );
    parseFrame(compare1.got[2]!, 0, m);
    assert.equal(m.tcpSeq, 700_005, "after a checkpoint the offset is 0 (the SVM is a PVM copy)");
  });
});
