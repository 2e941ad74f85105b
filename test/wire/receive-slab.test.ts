import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import path from "node:path";
import { describe, type TestContext, test } from "node:test";
import fc from "fast-check";
import { ChardevEndpoint } from "../../src/wire/chardev.ts";
import { MAX_READ_BYTES, ReceiveSlab, SLAB_BYTES } from "../../src/wire/receive-slab.ts";
import { encodeFrame, FramedPeer, sleep, tempDir, waitUntil } from "../support/qemu.ts";

describe("ReceiveSlab", () => {
  test("reads land one after another, are never handed out twice, and a nearly full slab is retired", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: MAX_READ_BYTES }), { minLength: 1, maxLength: 60 }),
        (sizes) => {
          const slab = new ReceiveSlab();
          const views: Array<{ view: Buffer; fill: number }> = [];
          for (let i = 0; i < sizes.length; i++) {
            const region = slab.next();
            assert.ok(region.length >= 1 && region.length <= MAX_READ_BYTES);
            const n = Math.min(sizes[i]!, region.length);
            // The "socket read": fill the region's first n bytes.
            const fill = (i * 31 + 7) & 0xff;
            region.fill(fill, 0, n);
            const view = slab.take(n);
            assert.equal(view.buffer, region.buffer);
            assert.equal(view.byteOffset, region.byteOffset);
            assert.equal(view.length, n);
            views.push({ view, fill });
          }
          // Later reads never wrote over earlier ones.
          for (const { view, fill } of views) assert.ok(view.every((b) => b === fill));
          // Consecutive reads in one slab are contiguous; a new slab starts at its beginning.
          for (let i = 1; i < views.length; i++) {
            const a = views[i - 1]!.view;
            const b = views[i]!.view;
            if (a.buffer === b.buffer) assert.equal(b.byteOffset, a.byteOffset + a.length);
          }
          assert.equal(slab.slabs, new Set(views.map((v) => v.view.buffer)).size);
        },
      ),
    );
  });

  test("a slab is retired once less than 16 KiB is left, and regions never exceed it", () => {
    const slab = new ReceiveSlab();
    let first = slab.next();
    const mem = first.buffer;
    let used = 0;
    while (SLAB_BYTES - used >= 16 * 1024) {
      const region = slab.next();
      assert.equal(region.buffer, mem);
      assert.equal(region.length, Math.min(MAX_READ_BYTES, SLAB_BYTES - used));
      const n = Math.min(region.length, 40_000);
      slab.take(n);
      used += n;
    }
    first = slab.next();
    assert.notEqual(first.buffer, mem);
    assert.equal(slab.slabs, 2);
  });
});

async function pair(t: TestContext, server: boolean) {
  const dir = tempDir(t);
  const sock = path.join(dir, "s.sock");
  const held: Buffer[] = [];
  const ep = new ChardevEndpoint({
    spec: server ? `socket,id=x,path=${sock},server=on,wait=off` : `socket,id=x,path=${sock}`,
    // Kept as delivered (no copy): the views must stay intact while later reads arrive.
    onFrame: (f) => held.push(f),
  });
  t.after(() => ep.close());
  let peer: net.Socket;
  if (server) {
    await ep.start();
    peer = net.connect(sock);
    await once(peer, "connect");
  } else {
    const srv = net.createServer();
    srv.listen(sock);
    await once(srv, "listening");
    t.after(() => new Promise<void>((r) => srv.close(() => r())));
    const accepted = once(srv, "connection");
    await ep.start();
    peer = (await accepted)[0] as net.Socket;
  }
  t.after(() => peer.destroy());
  assert.ok(await waitUntil(() => ep.connected, 10_000), "endpoint connected");
  return { ep, peer, held };
}

for (const server of [true, false]) {
  const role = server ? "server" : "client";
  describe(`ChardevEndpoint slab reads (${role})`, () => {
    test("the endpoint reads into slabs on this Node, and held frames survive megabytes of later reads", async (t) => {
      const { ep, peer, held } = await pair(t, server);
      // The fast path is taken here: if a Node upgrade removed what it needs, this fails in CI
      // rather than the daemons silently falling back to plain 'data' reads.
      assert.equal(ep.readMode, "slab");
      const n = 6000;
      const sizes = Array.from({ length: n }, (_, i) => 60 + ((i * 7919) % 1500));
      const frames = sizes.map((len, i) => {
        const f = Buffer.alloc(len, (i * 13) & 0xff);
        f.writeUInt32BE(i, 0);
        return f;
      });
      // Written in pieces of odd sizes, so frames straddle reads (and slabs).
      const wire = Buffer.concat(frames.map((f) => encodeFrame(f)));
      for (let at = 0; at < wire.length; ) {
        const piece = 1 + ((at * 2654435761) % 9000);
        peer.write(wire.subarray(at, at + piece));
        at += piece;
        if (at % 7 === 0) await sleep(0);
      }
      assert.ok(await waitUntil(() => held.length === n, 20_000), `got ${held.length} of ${n}`);
      assert.ok(wire.length > 4 * SLAB_BYTES, "the stream spans several slabs");
      for (let i = 0; i < n; i++) assert.ok(held[i]!.equals(frames[i]!), `frame ${i} intact`);
      assert.equal(ep.counters.framesIn, n);
    });

    test("pause() stops reading, resume() delivers what waited; a new peer after EOF reads into slabs too", async (t) => {
      const { ep, peer, held } = await pair(t, server);
      ep.pause();
      await sleep(20);
      peer.write(encodeFrame(Buffer.alloc(100, 1)));
      await sleep(100);
      assert.equal(held.length, 0, "nothing delivered while paused");
      ep.resume();
      assert.ok(
        await waitUntil(() => held.length === 1, 10_000),
        "waitUntil(() => held.length === 1, 10_000)",
      );
      assert.ok(held[0]!.equals(Buffer.alloc(100, 1)));
      if (server) {
        const lost = once(ep, "disconnect");
        peer.end();
        await lost;
        const next = await FramedPeer.connect((ep.spec as { path: string }).path, {}, t);
        assert.ok(await waitUntil(() => ep.connected, 10_000), "waitUntil(() => ep.connected, 10_000)");
        assert.equal(ep.readMode, "slab");
        next.send(Buffer.alloc(70, 2));
        assert.ok(
          await waitUntil(() => held.length === 2, 10_000),
          "waitUntil(() => held.length === 2, 10_000)",
        );
        assert.ok(held[1]!.equals(Buffer.alloc(70, 2)));
      }
    });
  });
}
