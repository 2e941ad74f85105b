/**
 * The primary↔secondary pair end to end on loopback, each daemon a real `colo-proxy` process,
 * with scripted "PVM" and "SVM" frame sources standing in for QEMU's filter sockets.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { ControlClient } from "../../src/control/client.ts";
import { buildTcp } from "../../src/packet/build.ts";
import { internetChecksum } from "../../src/packet/checksum.ts";
import { newFrameMeta, ParseStatus } from "../../src/packet/meta.ts";
import { parseFrame } from "../../src/packet/parse.ts";
import { FramedPeer, type Proc, spawnProc, type TestCtx, tempDir, waitUntil } from "../support/qemu.ts";

const bin = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../bin/colo-proxy.mjs");
const CLIENT = { src: "10.0.0.1", sport: 40000, srcMac: "52:54:00:00:00:aa", dstMac: "52:54:00:c0:10:01" };
const GUEST = { src: "10.0.2.15", sport: 80, srcMac: "52:54:00:c0:10:01", dstMac: "52:54:00:00:00:aa" };

/** Client → guest segment. */
const c2g = (seq: number, ack: number, flags: string, payload = "") =>
  buildTcp({ ...CLIENT, dst: GUEST.src, dport: GUEST.sport, seq, ack, flags, payload });
/** Guest → client segment (PVM or SVM; the IP id differs between replicas like in real guests). */
const g2c = (seq: number, ack: number, flags: string, payload = "", ipId = 1) =>
  buildTcp({ ...GUEST, dst: CLIENT.src, dport: CLIENT.sport, seq, ack, flags, payload, id: ipId });

function tcpFields(frame: Buffer) {
  const m = newFrameMeta();
  assert.equal(parseFrame(frame, 0, m), ParseStatus.Ok);
  return {
    seq: m.tcpSeq,
    ack: m.tcpAck,
    flags: m.tcpFlags,
    payload: frame.subarray(m.payloadOffset, m.payloadOffset + m.payloadLen),
  };
}

/** A TCP/IPv4 frame's checksum is valid when the sum over pseudo-header + segment folds to 0. */
function tcpChecksumOk(frame: Buffer): boolean {
  const ihl = (frame[14]! & 0x0f) * 4;
  const total = frame.readUInt16BE(16);
  const seg = frame.subarray(14 + ihl, 14 + total);
  const pseudo = Buffer.alloc(12);
  frame.copy(pseudo, 0, 26, 34);
  pseudo[9] = 6;
  pseudo.writeUInt16BE(seg.length, 10);
  const all = Buffer.concat([pseudo, seg]);
  return internetChecksum(all, 0, all.length) === 0;
}

interface Pair {
  dir: string;
  primary: Proc;
  secondary: Proc;
  /** The test's side of each filter socket. */
  mirror: FramedPeer;
  pvmOut: FramedPeer;
  released: FramedPeer;
  svmIn: FramedPeer;
  svmOut: FramedPeer;
  netIn: FramedPeer;
  netOut: FramedPeer;
  pctl: ControlClient;
  sctl: ControlClient;
  pEvents: { event: string; data: Record<string, unknown> }[];
  sEvents: { event: string; data: Record<string, unknown> }[];
}

async function ctl(sock: string): Promise<ControlClient> {
  let last: unknown;
  for (let i = 0; i < 200; i++) {
    try {
      return await ControlClient.connect({ path: sock }, { timeoutMs: 2000 });
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw last;
}

async function startPair(t: TestCtx, opts: { secondarySecret?: string } = {}): Promise<Pair> {
  const dir = tempDir(t, "colo-pair-");
  const s = (n: string) => path.join(dir, n);
  writeFileSync(s("secret"), "pair test secret\n");
  writeFileSync(s("secret2"), `${opts.secondarySecret ?? "pair test secret"}\n`);
  const link = `unix:${s("link.sock")}`;
  const secondary = spawnProc(
    process.execPath,
    [
      bin,
      "secondary",
      "--addr",
      link,
      "--secret-file",
      s("secret2"),
      "--guest-in",
      `unix:${s("s-in.sock")}`,
      "--guest-out",
      `unix:${s("s-out.sock")}`,
      "--net-in",
      `unix:${s("s-net-in.sock")}`,
      "--net-out",
      `unix:${s("s-net-out.sock")}`,
      "--control",
      s("s-ctl.sock"),
      "--heartbeat-interval",
      "50",
      "--heartbeat-timeout",
      "5000",
      "--log-level",
      "warn",
    ],
    t,
  );
  const primary = spawnProc(
    process.execPath,
    [
      bin,
      "primary",
      "--addr",
      link,
      "--secret-file",
      s("secret"),
      "--mirror-in",
      `unix:${s("p-mirror.sock")}`,
      "--primary-in",
      `unix:${s("p-out.sock")}`,
      "--outdev",
      `unix:${s("p-inj.sock")}`,
      "--control",
      s("p-ctl.sock"),
      "--compare-timeout",
      "60000",
      "--expired-scan-cycle",
      "100",
      "--heartbeat-interval",
      "50",
      "--heartbeat-timeout",
      "5000",
      "--log-level",
      "warn",
    ],
    t,
  );
  const peer = (n: string) => FramedPeer.connect(s(n), { timeoutMs: 120_000 }, t);
  const [mirror, pvmOut, released, svmIn, svmOut, netIn, netOut] = await Promise.all([
    peer("p-mirror.sock"),
    peer("p-out.sock"),
    peer("p-inj.sock"),
    peer("s-in.sock"),
    peer("s-out.sock"),
    peer("s-net-in.sock"),
    peer("s-net-out.sock"),
  ]);
  const [pctl, sctl] = await Promise.all([ctl(s("p-ctl.sock")), ctl(s("s-ctl.sock"))]);
  const pEvents: Pair["pEvents"] = [];
  const sEvents: Pair["sEvents"] = [];
  pctl.onEvent((e) => pEvents.push(e as Pair["pEvents"][number]));
  sctl.onEvent((e) => sEvents.push(e as Pair["sEvents"][number]));
  t.after?.(() => {
    pctl.close();
    sctl.close();
  });
  return {
    dir,
    primary,
    secondary,
    mirror,
    pvmOut,
    released,
    svmIn,
    svmOut,
    netIn,
    netOut,
    pctl,
    sctl,
    pEvents,
    sEvents,
  };
}

async function linkUp(p: Pair): Promise<boolean> {
  const end = Date.now() + 60_000;
  while (Date.now() < end) {
    const st = await p.pctl.execute<{ peers: { name: string; state: string }[] }>("query-status");
    if (st.peers.some((x) => x.name === "secondary" && x.state === "up")) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

const PVM_ISN = 5000;
const SVM_ISN = 900_000;
const CLIENT_ISN = 1000;

/** Handshake + one request/response through both sides; returns the next sequence numbers. */
async function handshakeAndExchange(p: Pair) {
  // Client SYN reaches the secondary unchanged.
  p.mirror.send(c2g(CLIENT_ISN, 0, "S"));
  assert.ok(await p.svmIn.waitFrames(1, 20_000), "SYN injected into the SVM");
  assert.ok(p.svmIn.frames[0]!.data.equals(c2g(CLIENT_ISN, 0, "S")));
  // Both guests answer with their own ISNs; only the PVM's SYN-ACK reaches the client.
  p.svmOut.send(g2c(SVM_ISN, CLIENT_ISN + 1, "SA", "", 0));
  await new Promise((r) => setTimeout(r, 50));
  p.pvmOut.send(g2c(PVM_ISN, CLIENT_ISN + 1, "SA", "", 0));
  assert.ok(await p.released.waitFrames(1, 20_000), "PVM SYN-ACK released");
  assert.equal(tcpFields(p.released.frames[0]!.data).seq, PVM_ISN);
  // The client's ACK of the PVM's ISN reaches the SVM acking the SVM's ISN.
  p.mirror.send(c2g(CLIENT_ISN + 1, PVM_ISN + 1, "A"));
  p.mirror.send(c2g(CLIENT_ISN + 1, PVM_ISN + 1, "PA", "GET / HTTP/1.0\r\n\r\n"));
  assert.ok(await p.svmIn.waitFrames(3, 20_000), "p.svmIn.waitFrames(3, 20_000)");
  for (const f of p.svmIn.frames.slice(1, 3)) {
    assert.equal(tcpFields(f.data).ack, SVM_ISN + 1, "ack rewritten into the SVM's sequence space");
    assert.ok(tcpChecksumOk(f.data), "rewritten checksum valid");
  }
  // Both guests respond with the same bytes in their own sequence spaces (and IP ids).
  const body = "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello";
  const reqEnd = CLIENT_ISN + 1 + 18;
  p.svmOut.send(g2c(SVM_ISN + 1, reqEnd, "PA", body, 777));
  p.pvmOut.send(g2c(PVM_ISN + 1, reqEnd, "PA", body, 42));
  assert.ok(await p.released.waitFrames(2, 20_000), "matching response released");
  const rel = p.released.frames[1]!.data;
  assert.ok(rel.equals(g2c(PVM_ISN + 1, reqEnd, "PA", body, 42)), "the client gets the PVM's bytes");
  return { pvmSeq: PVM_ISN + 1 + body.length, svmSeq: SVM_ISN + 1 + body.length, reqEnd };
}

describe("primary and secondary daemons over their link", { timeout: 280_000 }, () => {
  test("handshake and data through both; a difference asks for a checkpoint; checkpoint-done releases; losing the secondary fails over with nothing lost", async (t) => {
    const p = await startPair(t);
    assert.ok(await linkUp(p), "link up");
    const { pvmSeq, svmSeq, reqEnd } = await handshakeAndExchange(p);
    let stats = await p.pctl.execute<{ checkpointRequests: Record<string, number> }>("query-stats");
    // The engine pre-fills every reason with 0 (so metrics series exist from the start).
    assert.equal(
      Object.values(stats.checkpointRequests).reduce((a, b) => a + b, 0),
      0,
      "no checkpoint for identical output",
    );

    // A payload difference: held, explained on the control socket.
    p.svmOut.send(g2c(svmSeq, reqEnd, "PA", "random-B", 778));
    p.pvmOut.send(g2c(pvmSeq, reqEnd, "PA", "random-A", 43));
    assert.ok(
      await waitUntil(() => p.pEvents.some((e) => e.event === "CHECKPOINT_REQUEST"), 20_000),
      "CHECKPOINT_REQUEST event",
    );
    const req = p.pEvents.find((e) => e.event === "CHECKPOINT_REQUEST")!.data;
    assert.equal(req.reason, "payload-differs");
    assert.match(String(req.flow), /10\.0\.2\.15:80/);
    assert.equal(p.released.frames.length, 2, "the differing primary frame is held");

    const done = await p.pctl.execute<{ epoch: number; released: number }>("checkpoint-done");
    assert.equal(done.released, 1);
    assert.ok(await p.released.waitFrames(3, 20_000), "p.released.waitFrames(3, 20_000)");
    assert.equal(tcpFields(p.released.frames[2]!.data).payload.toString(), "random-A");
    // The secondary hears of the checkpoint and resets its offsets (the SVM is now a PVM copy).
    assert.ok(
      await waitUntil(() => p.sEvents.some((e) => e.event === "CHECKPOINT_DONE"), 20_000),
      "secondary told",
    );
    const sconns = await p.sctl.execute<{ offset: number }[]>("query-connections");
    assert.ok(
      sconns.every((c) => c.offset === 0),
      "rewriter offsets reset",
    );

    // A primary frame held when the secondary dies is released by the failover, not lost.
    p.pvmOut.send(g2c(pvmSeq + 8, reqEnd, "PA", "held-then-failover", 44));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(p.released.frames.length, 3, "held while waiting for the SVM");
    await p.secondary.stop(0);
    assert.ok(
      await waitUntil(() => p.pEvents.some((e) => e.event === "FAILOVER"), 20_000),
      "primary fails over",
    );
    assert.ok(await p.released.waitFrames(4, 20_000), "held frame released on failover");
    assert.equal(tcpFields(p.released.frames[3]!.data).payload.toString(), "held-then-failover");
    // From now on primary output passes straight through.
    p.pvmOut.send(g2c(pvmSeq + 26, reqEnd, "PA", "after", 45));
    assert.ok(await p.released.waitFrames(5, 20_000), "p.released.waitFrames(5, 20_000)");
    stats = await p.pctl.execute("query-stats");
    const st = await p.pctl.execute<{ mode: string }>("query-status");
    assert.equal(st.mode, "failover");
  });

  test("losing the primary: the secondary takes over and the client's connection keeps its sequence numbers", async (t) => {
    const p = await startPair(t);
    assert.ok(await linkUp(p), "link up");
    const { pvmSeq, svmSeq, reqEnd } = await handshakeAndExchange(p);
    await p.primary.stop(0);
    assert.ok(
      await waitUntil(() => p.sEvents.some((e) => e.event === "FAILOVER"), 20_000),
      "secondary fails over",
    );
    // The client keeps talking in the PVM's sequence space, now through the SVM's own netdev.
    p.netIn.send(c2g(reqEnd, pvmSeq, "PA", "more"));
    const before = p.svmIn.frames.length;
    assert.ok(await p.svmIn.waitFrames(before + 1, 20_000), "client frame injected after failover");
    const inj = tcpFields(p.svmIn.frames[before]!.data);
    assert.equal(inj.ack, svmSeq, "ack mapped into the SVM's space");
    // The SVM answers in its own space; the client sees the PVM's numbers.
    p.svmOut.send(g2c(svmSeq, reqEnd + 4, "PA", "reply", 900));
    assert.ok(await p.netOut.waitFrames(1, 20_000), "SVM output goes to the wire");
    const out = p.netOut.frames[0]!.data;
    assert.equal(tcpFields(out).seq, pvmSeq, "seq mapped back into the PVM's space");
    assert.ok(tcpChecksumOk(out));
  });

  test("the link refuses a secondary with the wrong secret", async (t) => {
    const p = await startPair(t, { secondarySecret: "a different secret" });
    // Poll (bounded) until the refused handshake was counted; a loaded machine can take seconds.
    let badInput: Record<string, number> = {};
    const end = Date.now() + 30_000;
    while ((badInput.COLO_ERR_LINK_AUTH ?? 0) < 1 && Date.now() < end) {
      badInput = (await p.pctl.execute<{ badInput: Record<string, number> }>("query-stats")).badInput;
      if ((badInput.COLO_ERR_LINK_AUTH ?? 0) < 1) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok((badInput.COLO_ERR_LINK_AUTH ?? 0) >= 1, JSON.stringify(badInput));
    const st = await p.pctl.execute<{ peers: { name: string; state: string }[] }>("query-status");
    assert.equal(st.peers.find((x) => x.name === "secondary")?.state, "down");
    // Client frames are not leaked to an unauthenticated peer.
    p.mirror.send(c2g(CLIENT_ISN, 0, "S"));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(p.svmIn.frames.length, 0);
  });
});
