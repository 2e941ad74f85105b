/**
 * @module Floods against the real processes (as CI runs them): `colo-proxy compare` gets garbage
 * and valid frames on every socket, the secondary's link port gets garbage. Every flood is bounded
 * in connections, bytes and time. The process must stay up, answer its control socket, count the
 * bad input by code, keep comparing afterwards, and its RSS must stay under a bound far below what
 * it was offered (the brief: bad input never crashes the proxy; memory bounded under floods).
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ControlClient } from "../../src/control/client.ts";
import { udp } from "../support/frames.ts";
import {
  encodeFrame,
  FramedPeer,
  type Proc,
  spawnProc,
  type TestCtx,
  tempDir,
  waitUntil,
} from "../support/qemu.ts";

const BIN = fileURLToPath(new URL("../../bin/colo-proxy.mjs", import.meta.url));
const MiB = 1024 * 1024;
/**
 * RSS growth allowed over a flood. outdev's queue is capped at 64 MiB (FrameWriter's default; a
 * stalled outdev no longer pauses primary_in, see compare-daemon.ts), plus room for socket read
 * buffers the GC has not collected yet; the valid-frame flood alone offers over 5x this.
 */
const RSS_GROWTH_BOUND = 192 * MiB;

function rssOf(p: Proc): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.child.pid}/status`, "utf8"));
  assert.ok(m, "VmRSS readable");
  return Number(m[1]) * 1024;
}

/** Connects to a freshly started process's control socket (it may take a while to start). */
async function control(sock: string, p: Proc, t: TestCtx): Promise<ControlClient> {
  const end = Date.now() + 120_000;
  for (;;) {
    if (p.exitStatus !== undefined) throw new Error(`process exited (${p.exitStatus}): ${p.stderr}`);
    try {
      const c = await ControlClient.connect({ path: sock }, { timeoutMs: 20_000 });
      t.after(() => c.close());
      await c.execute("qmp_capabilities").catch(() => undefined);
      return c;
    } catch (e) {
      if (Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** One raw connection: writes `bytes`, resolves once the server closed it (or after 20 s: false). */
function garbageConnection(sockPath: string, bytes: Uint8Array): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(sockPath);
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 20_000);
    s.on("error", () => {});
    s.on("data", () => {});
    s.on("connect", () => s.write(bytes));
    s.on("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Writes `frame` repeatedly (same buffer, no copies kept here) until `maxBytes` or `ms` passed. */
async function pump(peer: FramedPeer, frame: Uint8Array, maxBytes: number, ms: number): Promise<number> {
  const wire = encodeFrame(frame);
  const end = Date.now() + ms;
  let sent = 0;
  while (sent < maxBytes && Date.now() < end && !peer.closed) {
    sent += wire.length;
    if (!peer.sock.write(wire)) {
      // Backpressure from the process: wait (bounded) for it to read again.
      await Promise.race([
        new Promise((r) => peer.sock.once("drain", r)),
        new Promise((r) => setTimeout(r, Math.max(0, end - Date.now()))),
      ]);
    }
  }
  return sent;
}

const be32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const HTTP = Buffer.from("GET / HTTP/1.1\r\nHost: colo\r\n\r\n");

describe("floods", { concurrency: 1, timeout: 280_000 }, () => {
  test("colo-proxy compare (process): garbage and valid frames on every socket", async (t) => {
    const dir = tempDir(t, "colo-flood-");
    const sock = (id: string) => path.join(dir, `${id}.sock`);
    const ids = ["pri", "sec", "out", "nfy"];
    const proc = spawnProc(
      process.execPath,
      [
        BIN,
        "compare",
        ...ids.flatMap((id) => ["--chardev", `socket,id=${id},path=${sock(id)},server=on,wait=off`]),
        "--object",
        "colo-compare,id=c,primary_in=pri,secondary_in=sec,outdev=out,notify_dev=nfy",
        "--control",
        sock("ctl"),
        "--log-level",
        "fatal",
      ],
      t,
    );
    const ctl = await control(sock("ctl"), proc, t);
    const rss0 = rssOf(proc);

    // 1. Garbage, one connection at a time so each is read before the next replaces it: per
    // input, 40 connections with an HTTP request (a huge length word) and 40 with a zero length.
    const K = 40;
    for (const id of ["pri", "sec"]) {
      for (let i = 0; i < K; i++) {
        assert.ok(
          await garbageConnection(sock(id), Buffer.concat([HTTP, Buffer.alloc(64 * 1024, 0x41)])),
          "garbageConnection(sock(id), Buffer.concat([HTTP, Buffer.alloc(64 * 1024, 0x41)]))",
        );
        assert.ok(
          await garbageConnection(sock(id), Buffer.concat([be32(0), Buffer.alloc(1024, 0x42)])),
          "garbageConnection(sock(id), Buffer.concat([be32(0), Buffer.alloc(1024, 0x42)]))",
        );
      }
    }
    // The control socket: an endless line (no newline) and non-JSON lines must not hurt either.
    const junkCtl = net.connect(sock("ctl"));
    junkCtl.on("error", () => {});
    junkCtl.on("data", () => {});
    for (let i = 0; i < 64 && !junkCtl.destroyed; i++) junkCtl.write(Buffer.alloc(64 * 1024, 0x7b));
    junkCtl.destroy();
    let stats = await ctl.execute<{ badInput: Record<string, number> }>("query-stats");
    assert.equal(stats.badInput.COLO_ERR_FRAME_TOO_LARGE, 2 * K, JSON.stringify(stats.badInput));
    assert.equal(stats.badInput.COLO_ERR_FRAME_EMPTY, 2 * K, JSON.stringify(stats.badInput));

    // 2. Valid frames: identical ~60 KiB datagrams on both inputs while outdev's reader is
    // stalled. Up to 512 MiB per input within 8 s: without a bound all of it would pile up in the
    // process. They match and are released; outdev's capped queue takes 64 MiB and counts the rest
    // as dropped (outdev-queue-full) rather than pausing primary_in, which would deadlock a QEMU
    // whose main loop both writes primary_in and reads outdev.
    const pri = await FramedPeer.connect(sock("pri"), {}, t);
    const sec = await FramedPeer.connect(sock("sec"), {}, t);
    const out = await FramedPeer.connect(sock("out"), {}, t);
    const nfy = await FramedPeer.connect(sock("nfy"), {}, t);
    out.sock.pause();
    const big = udp({ payload: Buffer.alloc(60 * 1024, 0x5a) });
    const [sentP, sentS] = await Promise.all([
      pump(pri, big, 512 * MiB, 8000),
      pump(sec, big, 512 * MiB, 8000),
    ]);
    const rssFlood = rssOf(proc);
    t.diagnostic(
      `written ${((sentP + sentS) / MiB).toFixed(0)} MiB; RSS ${(rss0 / MiB).toFixed(0)} -> ${(rssFlood / MiB).toFixed(0)} MiB`,
    );
    assert.ok(
      rssFlood - rss0 < RSS_GROWTH_BOUND,
      `RSS grew ${((rssFlood - rss0) / MiB).toFixed(1)} MiB while offered ${((sentP + sentS) / MiB).toFixed(0)} MiB`,
    );
    if (Math.min(sentP, sentS) > 128 * MiB) {
      const st = await ctl.execute<{ dropped: Record<string, number> }>("query-stats");
      assert.ok((st.dropped["outdev-queue-full"] ?? 0) > 0, JSON.stringify(st.dropped));
    }
    // Garbage on outdev and notify_dev while the inputs are congested.
    nfy.send(Buffer.from("NOT_A_COLO_MESSAGE"));
    nfy.send(Buffer.from("COLO_USERSPACE_PROXY_INIT"));
    // (DO_CHECKPOINT requests for the congested queue may come first.)
    assert.ok(
      await waitUntil(
        () => nfy.frames.some((f) => f.data.toString() === "COLO_COMPARE_GET_XEN_INIT"),
        30_000,
      ),
      "notify_dev still answered",
    );
    out.sock.write(HTTP);

    // 3. Still alive, still answering, still comparing: release outdev and see matched frames.
    assert.equal(proc.exitStatus, undefined, proc.stderr);
    stats = await ctl.execute<{ badInput: Record<string, number> }>("query-stats");
    assert.ok((stats.badInput.COLO_ERR_NOTIFY_UNKNOWN ?? 0) >= 1, JSON.stringify(stats.badInput));
    out.sock.resume();
    assert.ok(await out.waitFrames(1, 60_000), "matched frames released once outdev reads again");
    assert.ok(out.frames[0]!.data.equals(big));
    assert.equal(proc.exitStatus, undefined, proc.stderr);
    proc.child.kill("SIGTERM");
    assert.equal(await proc.exited, 0, proc.stderr);
  });

  test("colo-proxy secondary (process): garbage on the link port", async (t) => {
    const dir = tempDir(t, "colo-flood-link-");
    const s = (n: string) => path.join(dir, n);
    writeFileSync(s("secret"), "flood test secret\n");
    const proc = spawnProc(
      process.execPath,
      [
        BIN,
        "secondary",
        "--addr",
        `unix:${s("link.sock")}`,
        "--secret-file",
        s("secret"),
        "--guest-in",
        `unix:${s("s-in.sock")}`,
        "--guest-out",
        `unix:${s("s-out.sock")}`,
        "--control",
        s("ctl.sock"),
        "--log-level",
        "fatal",
      ],
      t,
    );
    const ctl = await control(s("ctl.sock"), proc, t);
    assert.ok(await waitUntil(() => existsSync(s("link.sock")), 60_000), "link socket exists");
    const rss0 = rssOf(proc);
    // 60 connections, each a 1 MiB stream of garbage; 20 of them open at the same time.
    const junk = Buffer.concat([HTTP, Buffer.alloc(MiB - HTTP.length, 0xff)]);
    const end = Date.now() + 90_000;
    let done = 0;
    for (let round = 0; round < 3 && Date.now() < end; round++) {
      const closed = await Promise.all(
        Array.from({ length: 20 }, () => garbageConnection(s("link.sock"), junk)),
      );
      assert.ok(closed.every(Boolean), "every garbage connection was dropped by the secondary");
      done += closed.length;
    }
    assert.equal(done, 60);
    const stats = await ctl.execute<{ badInput: Record<string, number> }>("query-stats");
    const linkBad = Object.entries(stats.badInput)
      .filter(([code]) => code.startsWith("COLO_ERR_LINK_"))
      .reduce((n, [, v]) => n + v, 0);
    assert.ok(linkBad >= done, `link bad input counted by code: ${JSON.stringify(stats.badInput)}`);
    const rss1 = rssOf(proc);
    t.diagnostic(
      `link: ${done} MiB of garbage; RSS ${(rss0 / MiB).toFixed(0)} -> ${(rss1 / MiB).toFixed(0)} MiB`,
    );
    assert.ok(rss1 - rss0 < RSS_GROWTH_BOUND, "RSS bounded");
    assert.equal(proc.exitStatus, undefined, proc.stderr);
    const st = await ctl.execute<{ peers: { name: string; state: string }[] }>("query-status");
    assert.ok(Array.isArray(st.peers));
    proc.child.kill("SIGTERM");
    assert.equal(await proc.exited, 0, proc.stderr);
  });
});
