import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import path from "node:path";
import { describe, type TestContext, test } from "node:test";
import fc from "fast-check";
import type { ColoError, FramingError } from "../../src/errors.ts";
import { ChardevEndpoint, type ChardevEndpointOptions } from "../../src/wire/chardev.ts";
import { FrameDecoder, NET_BUFSIZE } from "../../src/wire/framing.ts";
import { encodeFrame as enc, FramedPeer, sleep, tempDir, waitUntil } from "../support/qemu.ts";

interface Got {
  data: Buffer;
  vnetLen: number;
}

const WAIT = 20_000;

function frame(i: number, len = 64): Buffer {
  const b = Buffer.alloc(len, (i * 7) & 0xff);
  b.writeUInt32BE(i, 0);
  return b;
}

function hdr(n: number, v?: number): Buffer {
  const b = Buffer.alloc(v === undefined ? 4 : 8);
  b.writeUInt32BE(n, 0);
  if (v !== undefined) b.writeUInt32BE(v, 4);
  return b;
}

async function endpoint(
  t: TestContext,
  spec: string,
  opts: Partial<ChardevEndpointOptions> = {},
): Promise<{ ep: ChardevEndpoint; got: Got[]; framingErrors: FramingError[]; ioErrors: ColoError[] }> {
  const got: Got[] = [];
  const framingErrors: FramingError[] = [];
  const ioErrors: ColoError[] = [];
  const ep = new ChardevEndpoint({
    spec,
    // Copy: the assertion must see what arrived, not a view someone could change later.
    onFrame: (data, vnetLen) => got.push({ data: Buffer.from(data), vnetLen }),
    ...opts,
  });
  ep.on("framing-error", (e) => framingErrors.push(e));
  ep.on("io-error", (e) => ioErrors.push(e));
  t.after(() => ep.close());
  await ep.start();
  return { ep, got, framingErrors, ioErrors };
}

async function until(what: string, check: () => boolean): Promise<void> {
  assert.ok(await waitUntil(check, WAIT), `timed out waiting for ${what}`);
}

function ids(frames: Got[] | { data: Buffer }[]): number[] {
  return frames.map((f) => f.data.readUInt32BE(0));
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

for (const transport of ["unix", "tcp"] as const) {
  describe(`ChardevEndpoint server over ${transport}`, () => {
    const specFor = (t: TestContext, extra = "") =>
      transport === "unix"
        ? `socket,id=srv,path=${path.join(tempDir(t), "srv.sock")},server=on,wait=off${extra}`
        : `socket,id=srv,host=127.0.0.1,port=0,server=on,wait=off${extra}`;

    test("frames flow both ways, in order, with counters", async (t) => {
      const { ep, got } = await endpoint(t, specFor(t));
      const peer = await FramedPeer.connect(ep.address, {}, t);
      await ep.waitConnected(WAIT);
      for (let i = 0; i < 500; i++) peer.send(frame(i, 60 + (i % 200)));
      for (let i = 0; i < 300; i++) ep.send(frame(1000 + i, 1500));
      await until("frames in", () => got.length === 500);
      assert.ok(await peer.waitFrames(300, WAIT), "peer.waitFrames(300, WAIT)");
      assert.deepEqual(ids(got), range(0, 500));
      assert.deepEqual(ids(peer.frames), range(1000, 1300));
      assert.ok(peer.frames.every((f) => f.data.length === 1500 && f.vnetLen === -1));
      const c = ep.counters;
      assert.equal(c.framesIn, 500);
      assert.equal(c.framesOut, 300);
      assert.equal(c.bytesOut, 300 * 1504);
      assert.equal(c.connects, 1);
      assert.deepEqual(c.errors, {});
    });

    test("onChunkEnd follows each read's frames, also when garbage cut the read short", async (t) => {
      // The compare daemon hands the frames of one read to the engine from onChunkEnd: every frame
      // delivered must be followed by an onChunkEnd before the next read's frames, the frames
      // before a framing error included, and a throwing onChunkEnd resets the peer like a
      // throwing onFrame.
      const log: string[] = [];
      let throwAtEnd = false;
      const { ep, got, framingErrors, ioErrors } = await endpoint(t, specFor(t), {
        onChunk: () => log.push("chunk"),
        onFrame: (data, vnetLen) => {
          log.push(`frame ${data.readUInt32BE(0)}`);
          got.push({ data: Buffer.from(data), vnetLen });
        },
        onChunkEnd: () => {
          log.push("end");
          if (throwAtEnd) throw new Error("batch flush failed");
        },
      });
      let peer = await FramedPeer.connect(ep.address, {}, t);
      await ep.waitConnected(WAIT);
      for (let i = 0; i < 50; i++) {
        peer.send(frame(i));
        if (i % 10 === 9) await sleep(1);
      }
      await until("frames in", () => got.length === 50 && log.at(-1) === "end");
      // Every frame sits between a "chunk" and its "end"; no "end" without its "chunk".
      let open = false;
      for (const e of log) {
        if (e === "chunk") {
          assert.ok(!open, "a chunk began before the previous one ended");
          open = true;
        } else if (e === "end") {
          assert.ok(open, "an end without its chunk");
          open = false;
        } else assert.ok(open, `${e} outside a chunk`);
      }
      log.length = 0;
      peer.sendRaw(Buffer.concat([enc(frame(100)), enc(frame(101)), hdr(0), enc(frame(102))]));
      await until("reset", () => peer.closed && framingErrors.length === 1);
      assert.deepEqual(log.slice(-3), ["frame 100", "frame 101", "end"]);
      assert.equal(framingErrors[0]!.code, "COLO_ERR_FRAME_EMPTY");
      throwAtEnd = true;
      peer = await FramedPeer.connect(ep.address, {}, t);
      await until("second peer", () => ep.connected && ep.counters.connects === 2);
      peer.send(frame(200));
      await until("reset after the throw", () => peer.closed && ioErrors.length === 1);
      assert.equal(ioErrors[0]!.code, "COLO_ERR_INTERNAL");
      assert.match(ioErrors[0]!.message, /batch flush failed/);
      assert.deepEqual(ids(got).slice(-3), [100, 101, 200]);
    });

    test("garbage: each bad length resets the peer, is counted, and the next peer works", async (t) => {
      const { ep, got, framingErrors } = await endpoint(t, specFor(t));
      const cases: Array<[Buffer, string]> = [
        [hdr(0), "COLO_ERR_FRAME_EMPTY"],
        [hdr(NET_BUFSIZE + 1), "COLO_ERR_FRAME_TOO_LARGE"],
        [hdr(0xffffffff), "COLO_ERR_FRAME_TOO_LARGE"],
        [Buffer.from("GET / HTTP/1.1\r\n\r\n"), "COLO_ERR_FRAME_TOO_LARGE"],
      ];
      let expected = 0;
      for (const [i, [bad, code]] of cases.entries()) {
        const peer = await FramedPeer.connect(ep.address, {}, t);
        await until("connect", () => ep.connected && ep.counters.connects === i + 1);
        // Valid frames, then garbage in the same write: the valid ones must still arrive.
        peer.sendRaw(Buffer.concat([enc(frame(expected)), enc(frame(expected + 1)), bad, enc(frame(9999))]));
        expected += 2;
        await until("peer reset", () => peer.closed);
        assert.equal(framingErrors.length, i + 1);
        assert.equal(framingErrors[i]!.code, code);
      }
      assert.deepEqual(ids(got), range(0, expected));
      assert.equal(ep.counters.errors.COLO_ERR_FRAME_EMPTY, 1);
      assert.equal(ep.counters.errors.COLO_ERR_FRAME_TOO_LARGE, 3);
      // And afterwards a clean peer is served normally.
      const peer = await FramedPeer.connect(ep.address, {}, t);
      await ep.waitConnected(WAIT);
      peer.send(frame(4242));
      await until("frame after errors", () => got.length === expected + 1);
      ep.send(frame(77));
      assert.ok(await peer.waitFrames(1, WAIT), "peer.waitFrames(1, WAIT)");
      assert.equal(peer.frames[0]!.data.readUInt32BE(0), 77);
    });

    test("oversized length is reported at once, without waiting for its data", async (t) => {
      const { ep, framingErrors } = await endpoint(t, specFor(t));
      const peer = await FramedPeer.connect(ep.address, {}, t);
      peer.sendRaw(hdr(1_000_000)); // only the length word; the data never comes
      await until("error", () => framingErrors.length === 1);
      assert.equal(framingErrors[0]!.code, "COLO_ERR_FRAME_TOO_LARGE");
      assert.deepEqual(framingErrors[0]!.details, {
        length: 1_000_000,
        vnetLen: 0,
        max: NET_BUFSIZE,
        offset: 0,
      });
    });

    test("vnet streams: V travels both ways; V > N resets the peer", async (t) => {
      const { ep, got, framingErrors } = await endpoint(t, specFor(t), { vnetHdr: true });
      const peer = await FramedPeer.connect(ep.address, { vnetHdr: true }, t);
      await ep.waitConnected(WAIT);
      peer.send(frame(1, 100), 12);
      peer.send(frame(2, 100), 0);
      ep.send(frame(3, 80), 10);
      await until("frames", () => got.length === 2);
      assert.deepEqual(
        got.map((g) => g.vnetLen),
        [12, 0],
      );
      assert.ok(await peer.waitFrames(1, WAIT), "peer.waitFrames(1, WAIT)");
      assert.equal(peer.frames[0]!.vnetLen, 10);
      peer.sendRaw(hdr(20, 21));
      await until("vnet error", () => framingErrors.length === 1);
      assert.equal(framingErrors[0]!.code, "COLO_ERR_VNET_HDR_TOO_LARGE");
      await until("peer reset", () => peer.closed);
    });

    test("a 69,632-byte frame each way", async (t) => {
      const { ep, got } = await endpoint(t, specFor(t));
      const peer = await FramedPeer.connect(ep.address, {}, t);
      await ep.waitConnected(WAIT);
      const big = frame(5, NET_BUFSIZE);
      peer.send(big);
      ep.send(big);
      await until("big frame in", () => got.length === 1);
      assert.ok(got[0]!.data.equals(big));
      assert.ok(await peer.waitFrames(1, WAIT), "peer.waitFrames(1, WAIT)");
      assert.ok(peer.frames[0]!.data.equals(big));
    });

    test("peer closes: disconnect event, accept again, queued output goes to the next peer", async (t) => {
      const { ep, got } = await endpoint(t, specFor(t));
      const events: string[] = [];
      ep.on("connect", () => events.push("connect"));
      ep.on("disconnect", (_p, reason) => events.push(`disconnect:${reason}`));
      const p1 = await FramedPeer.connect(ep.address, {}, t);
      await ep.waitConnected(WAIT);
      p1.send(frame(1));
      await until("frame 1", () => got.length === 1);
      p1.close();
      await until("disconnect", () => !ep.connected);
      // Sent while nobody is connected: kept, not lost.
      for (let i = 0; i < 10; i++) ep.send(frame(100 + i));
      assert.equal(ep.queuedFrames, 10);
      const p2 = await FramedPeer.connect(ep.address, {}, t);
      assert.ok(await p2.waitFrames(10, WAIT), "p2.waitFrames(10, WAIT)");
      assert.deepEqual(ids(p2.frames), range(100, 110));
      p2.send(frame(2));
      await until("frame 2", () => got.length === 2);
      assert.deepEqual(events, ["connect", "disconnect:closed", "connect"]);
    });

    test("newPeer=replace (default): the newcomer takes over", async (t) => {
      const { ep, got } = await endpoint(t, specFor(t));
      const p1 = await FramedPeer.connect(ep.address, {}, t);
      await ep.waitConnected(WAIT);
      const p2 = await FramedPeer.connect(ep.address, {}, t);
      await until("p1 dropped", () => p1.closed);
      p2.send(frame(2));
      await until("frame from p2", () => got.length === 1);
      assert.equal(ep.counters.connects, 2);
    });

    test("newPeer=queue (QEMU): the second peer waits for the first to leave", async (t) => {
      const { ep, got } = await endpoint(t, specFor(t), { newPeer: "queue" });
      const p1 = await FramedPeer.connect(ep.address, {}, t);
      await ep.waitConnected(WAIT);
      const p2 = await FramedPeer.connect(ep.address, {}, t);
      p2.send(frame(2)); // buffered by the kernel until p2 is adopted
      p1.send(frame(1));
      await until("frame from p1", () => got.length === 1);
      assert.equal(ids(got)[0], 1);
      assert.equal(ep.counters.connects, 1);
      p1.close();
      await until("frame from p2", () => got.length === 2);
      assert.deepEqual(ids(got), [1, 2]);
      assert.equal(p2.closed, false);
    });

    test("newPeer=reject: the second peer is closed", async (t) => {
      const { ep } = await endpoint(t, specFor(t), { newPeer: "reject" });
      const p1 = await FramedPeer.connect(ep.address, {}, t);
      await ep.waitConnected(WAIT);
      const p2 = await FramedPeer.connect(ep.address, {}, t);
      await until("p2 refused", () => p2.closed);
      assert.equal(p1.closed, false);
      assert.equal(ep.counters.connectFailures, 1);
    });

    test("pause() stops intake, resume() restarts it, nothing is lost", async (t) => {
      const { ep, got } = await endpoint(t, specFor(t));
      const peer = await FramedPeer.connect(ep.address, {}, t);
      await ep.waitConnected(WAIT);
      ep.pause();
      for (let i = 0; i < 100; i++) peer.send(frame(i));
      await peer.flush();
      await sleep(50);
      assert.equal(got.length, 0, "no frames while paused");
      ep.resume();
      await until("frames after resume", () => got.length === 100);
      assert.deepEqual(ids(got), range(0, 100));
    });
  });
}

describe("ChardevEndpoint client", () => {
  /** A plain test server that records connections; frames are decoded independently. */
  async function rawServer(t: TestContext, p: string) {
    const conns: net.Socket[] = [];
    const server = net.createServer((s) => {
      s.on("error", () => {});
      conns.push(s);
    });
    await new Promise<void>((r) => server.listen(p, r));
    t.after(() => {
      for (const c of conns) c.destroy();
      server.close();
    });
    return { server, conns };
  }

  test("connects when the server comes later, reconnects after close and after garbage", async (t) => {
    const dir = tempDir(t);
    const p = path.join(dir, "later.sock");
    const { ep, got, framingErrors } = await endpoint(t, `socket,id=cli,path=${p},reconnect=1`, {
      reconnectInitialMs: 10,
    });
    assert.equal(ep.connected, false);
    await sleep(30); // a few refused attempts first
    const { conns } = await rawServer(t, p);
    await ep.waitConnected(WAIT);
    assert.ok(ep.counters.connectFailures >= 1);
    ep.send(frame(1));
    const received: number[] = [];
    const dec = new FrameDecoder();
    const s1 = conns[0]!;
    s1.on("data", (c: Buffer) => dec.push(c, (f) => received.push(f.readUInt32BE(0))));
    await until("frame at server", () => received.length === 1);
    s1.write(Buffer.concat([hdr(64), frame(10)]));
    await until("frame from server", () => got.length === 1);

    // Server drops the connection: the client reconnects on its own.
    s1.destroy();
    await until("reconnected", () => conns.length === 2 && ep.connected);
    conns[1]!.write(Buffer.concat([hdr(64), frame(11), hdr(0)]));
    await until("garbage reset", () => framingErrors.length === 1);
    assert.equal(framingErrors[0]!.code, "COLO_ERR_FRAME_EMPTY");
    await until("reconnected after garbage", () => conns.length === 3 && ep.connected);
    conns[2]!.write(Buffer.concat([hdr(64), frame(12)]));
    await until("frames", () => got.length === 3);
    assert.deepEqual(ids(got), [10, 11, 12]);
    assert.equal(ep.counters.connects, 3);
  });

  test("TCP client to a loopback server, with frames queued before connecting", async (t) => {
    const server = net.createServer();
    const conn = once(server, "connection") as Promise<[net.Socket]>;
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    t.after(() => server.close());
    const port = (server.address() as net.AddressInfo).port;
    const got: Got[] = [];
    const ep = new ChardevEndpoint({
      spec: `socket,id=c,host=127.0.0.1,port=${port}`,
      onFrame: (data, vnetLen) => got.push({ data: Buffer.from(data), vnetLen }),
    });
    t.after(() => ep.close());
    for (let i = 0; i < 5; i++) ep.send(frame(i));
    await ep.start();
    const [s] = await conn;
    t.after(() => s.destroy());
    const received: number[] = [];
    const dec = new FrameDecoder();
    s.on("data", (c: Buffer) => dec.push(c, (f) => received.push(f.readUInt32BE(0))));
    await until("queued frames", () => received.length === 5);
    assert.deepEqual(received, range(0, 5));
  });

  test("close() stops reconnecting and flushes", async (t) => {
    const p = path.join(tempDir(t), "c.sock");
    const { conns } = await rawServer(t, p);
    const ep = new ChardevEndpoint({ spec: `socket,id=c,path=${p},reconnect=1`, onFrame: () => {} });
    await ep.start();
    await ep.waitConnected(WAIT);
    const received: number[] = [];
    const dec = new FrameDecoder();
    conns[0]!.on("data", (c: Buffer) => dec.push(c, (f) => received.push(f.readUInt32BE(0))));
    ep.send(frame(1));
    assert.equal(await ep.close(), 0);
    await until("flushed frame", () => received.length === 1);
    await sleep(50);
    assert.equal(conns.length, 1, "no reconnect after close");
  });
});

describe("ChardevEndpoint server wait=on", () => {
  test("start() resolves only once the first peer connected", async (t) => {
    const p = path.join(tempDir(t), "w.sock");
    const ep = new ChardevEndpoint({ spec: `socket,id=w,path=${p},server=on`, onFrame: () => {} });
    t.after(() => ep.close());
    let started = false;
    const s = ep.start().then(() => {
      started = true;
    });
    await once(ep, "listening");
    await sleep(20);
    assert.equal(started, false);
    await FramedPeer.connect(p, {}, t);
    await s;
    assert.equal(ep.connected, true);
  });

  test("listen failure rejects with COLO_ERR_CHARDEV_IO", async (t) => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    t.after(() => blocker.close());
    const port = (blocker.address() as net.AddressInfo).port;
    const ep = new ChardevEndpoint({
      spec: `socket,id=busy,host=127.0.0.1,port=${port},server=on,wait=off`,
      onFrame: () => {},
    });
    await assert.rejects(ep.start(), { code: "COLO_ERR_CHARDEV_IO" });
  });
});

test("IPv6 loopback server and client (host=::1)", async (t) => {
  const probe = net.createServer();
  const ok = await new Promise<boolean>((resolve) => {
    probe.once("error", () => resolve(false));
    probe.listen(0, "::1", () => resolve(true));
  });
  probe.close();
  if (!ok) {
    t.skip("no IPv6 loopback (::1) on this host");
    return;
  }
  const { ep: srv, got } = await endpoint(t, "socket,id=s6,host=::1,port=0,server=on,wait=off");
  assert.match(srv.address, /^\[::1\]:\d+$/);
  const { ep: cli } = await endpoint(t, `socket,id=c6,host=::1,port=${srv.port},ipv6=on,reconnect=1`);
  await cli.waitConnected(WAIT);
  cli.send(frame(6));
  await until("frame over IPv6", () => got.length === 1);
  assert.equal(ids(got)[0], 6);
  assert.match(srv.peer, /^\[::1\]:\d+$/);
});

describe("ChardevEndpoint fuzz (real UNIX socket)", () => {
  /** Reference model of one stream: the frames before the first bad length, and its code. */
  function model(bytes: Buffer, max: number): { frames: Buffer[]; code: string | null } {
    const frames: Buffer[] = [];
    let off = 0;
    while (bytes.length - off >= 4) {
      const n = bytes.readUInt32BE(off);
      if (n === 0) return { frames, code: "COLO_ERR_FRAME_EMPTY" };
      if (n > max) return { frames, code: "COLO_ERR_FRAME_TOO_LARGE" };
      if (bytes.length - off - 4 < n) break;
      frames.push(bytes.subarray(off + 4, off + 4 + n));
      off += 4 + n;
    }
    return { frames, code: null };
  }

  test("random streams: same frames and error as the model, and the endpoint keeps serving", async (t) => {
    const max = 300;
    const p = path.join(tempDir(t), "fuzz.sock");
    const { ep, got, framingErrors } = await endpoint(t, `socket,id=fz,path=${p},server=on,wait=off`, {
      maxFrameLength: max,
    });
    // Valid frames and raw noise, concatenated: noise usually breaks the stream, sometimes not.
    const piece = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: max }).map((d) => enc(d)),
      fc.uint8Array({ minLength: 1, maxLength: 40 }).map((d) => Buffer.from(d)),
      fc.integer({ min: 0, max: max + 3 }).map((n) => hdr(n)),
    );
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { maxLength: 12 }), async (pieces) => {
        runs++;
        const bytes = Buffer.concat(pieces);
        const want = model(bytes, max);
        got.length = 0;
        const errorsBefore = framingErrors.length;
        const bytesBefore = ep.counters.bytesIn;
        const peer = await FramedPeer.connect(p, {}, t);
        await until("connected", () => ep.connected && !peer.closed);
        peer.sendRaw(bytes);
        if (want.code !== null) {
          await until("reset", () => peer.closed && framingErrors.length === errorsBefore + 1);
          assert.equal(framingErrors.at(-1)!.code, want.code);
        } else {
          await until("all bytes read", () => ep.counters.bytesIn === bytesBefore + bytes.length);
          assert.equal(framingErrors.length, errorsBefore);
          peer.close();
          await until("peer gone", () => !ep.connected);
        }
        assert.equal(got.length, want.frames.length);
        for (const [i, f] of want.frames.entries()) assert.ok(got[i]!.data.equals(f), `frame ${i}`);
      }),
      { numRuns: 40 },
    );
    assert.equal(runs, 40);
    // Still healthy afterwards.
    const peer = await FramedPeer.connect(p, {}, t);
    await ep.waitConnected(WAIT);
    got.length = 0;
    peer.send(frame(1, 100));
    await until("clean frame", () => got.length === 1);
  });
});
