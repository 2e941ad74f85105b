import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { describe, test } from "node:test";
import v8 from "node:v8";
import vm from "node:vm";
import fc from "fast-check";
import type { FramingError } from "../../src/errors.ts";
import { FrameWriter, markReceived } from "../../src/wire/frame-writer.ts";
import { encodeFrame, FrameDecoder } from "../../src/wire/framing.ts";

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A Writable that records each write() call and can be told to refuse more (return false). */
class RecordingSink extends Writable {
  writes: Buffer[] = [];
  constructor(highWaterMark = 1 << 30) {
    super({ highWaterMark });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.writes.push(chunk);
    cb();
  }
}

function frame(i: number, len = 60): Buffer {
  const b = Buffer.alloc(len, i & 0xff);
  b.writeUInt32BE(i, 0);
  return b;
}

describe("FrameWriter (in memory)", () => {
  test("frames sent in one turn go out in one write, FIFO, with their prefixes", async () => {
    const sink = new RecordingSink();
    const w = new FrameWriter({ vnetHdr: true });
    w.attach(sink);
    const frames = Array.from({ length: 100 }, (_, i) => frame(i, 20 + i));
    for (const [i, f] of frames.entries()) assert.equal(w.send(f, i % 13), true);
    assert.equal(sink.writes.length, 0, "nothing written synchronously");
    await turn();
    assert.equal(sink.writes.length, 1);
    const expected = Buffer.concat(frames.map((f, i) => encodeFrame(f, i % 13, true)));
    assert.ok(sink.writes[0]!.equals(expected));
    assert.equal(w.framesOut, 100);
    assert.equal(w.bytesOut, expected.length);
    assert.equal(w.queuedFrames, 0);
    assert.equal(w.queuedBytes, 0);
  });

  test("queue() leaves the write to the caller's flush(); a later send() or flush() takes queued frames along, FIFO", async () => {
    const sink = new RecordingSink();
    const w = new FrameWriter();
    w.attach(sink);
    await turn();
    const frames = Array.from({ length: 5 }, (_, i) => frame(i, 30 + i));
    for (const f of frames.slice(0, 2)) assert.equal(w.queue(f), true);
    await turn();
    await turn();
    assert.equal(sink.writes.length, 0, "queue() schedules no write");
    assert.equal(w.queuedFrames, 2);
    w.flush();
    assert.equal(sink.writes.length, 1, "flush() writes at once");
    assert.ok(sink.writes[0]!.equals(Buffer.concat(frames.slice(0, 2).map((f) => encodeFrame(f)))));
    w.queue(frames[2]!);
    w.send(frames[3]!);
    w.queue(frames[4]!);
    await turn();
    assert.ok(Buffer.concat(sink.writes).equals(Buffer.concat(frames.map((f) => encodeFrame(f)))));
    assert.equal(w.queuedFrames, 0);
    assert.equal(w.framesOut, 5);
  });

  test("large frames go by reference inside one cork, small ones are copied; bytes identical", async () => {
    const sink = new RecordingSink();
    const w = new FrameWriter({ vnetHdr: true, zeroCopyMin: 1000 });
    w.attach(sink);
    const frames = [frame(0, 60), frame(1, 1500), frame(2, 999), frame(3, 1000), frame(4, 70)];
    for (const [i, f] of frames.entries()) w.send(f, i);
    await turn();
    const expected = Buffer.concat(frames.map((f, i) => encodeFrame(f, i, true)));
    assert.ok(Buffer.concat(sink.writes).equals(expected));
    // The two frames of >= 1000 bytes are handed over as the very same buffers.
    assert.ok(sink.writes.includes(frames[1]!));
    assert.ok(sink.writes.includes(frames[3]!));
    assert.ok(!sink.writes.includes(frames[2]!));
    assert.equal(w.framesOut, 5);
    assert.equal(w.bytesOut, expected.length);
    assert.equal(w.queuedBytes, 0);
  });

  test("without vnet headers V is not written", async () => {
    const sink = new RecordingSink();
    const w = new FrameWriter();
    w.attach(sink);
    w.send(Buffer.from([9, 8, 7]), 2);
    await turn();
    assert.deepEqual([...sink.writes[0]!], [0, 0, 0, 3, 9, 8, 7]);
  });

  test("large backlogs are split into writes of at most maxWriteBytes", async () => {
    const sink = new RecordingSink();
    const w = new FrameWriter({ maxWriteBytes: 1 << 16, maxFrameLength: 2000 });
    for (let i = 0; i < 100; i++) w.send(frame(i, 1500));
    w.attach(sink);
    await turn();
    assert.ok(sink.writes.length > 1);
    for (const b of sink.writes) assert.ok(b.length <= 1 << 16);
    const got: number[] = [];
    const dec = new FrameDecoder();
    for (const b of sink.writes) dec.push(b, (f) => got.push(f.readUInt32BE(0)));
    assert.deepEqual(
      got,
      Array.from({ length: 100 }, (_, i) => i),
    );
  });

  test("frames queued while detached wait for the next sink; congestion above highWaterMark", async () => {
    const changes: boolean[] = [];
    const w = new FrameWriter({ highWaterMark: 1000, onCongestion: (c) => changes.push(c) });
    let accepted = 0;
    for (let i = 0; i < 30; i++) if (w.send(frame(i, 60))) accepted++;
    assert.equal(w.queuedFrames, 30);
    assert.equal(w.congested, true);
    assert.equal(accepted, 15, "send() returns false once 1000 queued bytes are reached");
    const sink = new RecordingSink();
    w.attach(sink);
    await turn();
    assert.equal(w.congested, false);
    assert.deepEqual(changes, [true, false]);
    const got: number[] = [];
    new FrameDecoder().push(Buffer.concat(sink.writes), (f) => got.push(f.readUInt32BE(0)));
    assert.deepEqual(
      got,
      Array.from({ length: 30 }, (_, i) => i),
    );
  });

  test("the hard queue cap drops and reports instead of growing without bound", () => {
    const drops: FramingError[] = [];
    const w = new FrameWriter({ maxQueuedBytes: 640, onDrop: (e) => drops.push(e) });
    for (let i = 0; i < 20; i++) w.send(frame(i, 60));
    assert.equal(w.queuedFrames, 10);
    assert.equal(w.framesDropped, 10);
    assert.equal(drops.length, 10);
    assert.equal(drops[0]!.code, "COLO_ERR_CHARDEV_QUEUE_FULL");
    assert.ok(
      drops.every((e) => e === drops[0]),
      "drops in a row share one error (no stack trace per dropped frame)",
    );
    // Once a frame is queued again, the next run of drops gets an error of its own.
    w.clear();
    assert.equal(w.send(frame(99, 60)), true);
    for (let i = 0; i < 10; i++) w.send(frame(i, 60));
    assert.equal(w.framesDropped, 11);
    assert.notEqual(drops[10], drops[0]);
    assert.equal(drops[10]!.code, "COLO_ERR_CHARDEV_QUEUE_FULL");
  });

  test("queue slots are reused across batches: FIFO through a blocked, compacted backlog; nothing written stays referenced", async () => {
    // Completes each write a turn later, so that a write over its highWaterMark blocks the writer.
    const sink = new (class extends RecordingSink {
      override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
        this.writes.push(chunk);
        setImmediate(cb);
      }
    })(100_000);
    const w = new FrameWriter({ maxFrameLength: 100, maxWriteBytes: 64 * 1000 });
    w.attach(sink);
    let next = 0;
    // Batches of every size up to 40 grow the arrays once, then reuse them.
    for (let size = 1; size <= 40; size++) {
      for (let k = 0; k < size; k++) w.queue(frame(next++, 60));
      assert.equal(w.queuedFrames, size);
      w.flush();
      assert.equal(w.queuedFrames, 0);
      await turn();
    }
    // A backlog of 2900: two writes of 1000 frames, the second over the sink's highWaterMark; the
    // flush then compacts the queue (2000 of 2900 slots written), frames queued meanwhile go
    // behind, and the drain writes the rest.
    for (let k = 0; k < 2900; k++) w.queue(frame(next++, 60));
    w.flush();
    assert.equal(w.queuedFrames, 900);
    for (let k = 0; k < 10; k++) w.queue(frame(next++, 60));
    w.flush();
    assert.equal(w.queuedFrames, 910, "no write while blocked");
    for (let k = 0; k < 20 && w.queuedFrames > 0; k++) await turn();
    assert.equal(w.queuedFrames, 0);
    const got: number[] = [];
    new FrameDecoder().push(Buffer.concat(sink.writes), (f) => got.push(f.readUInt32BE(0)));
    assert.deepEqual(
      got,
      Array.from({ length: next }, (_, i) => i),
    );
    assert.equal(w.framesOut, next);

    // A written frame is not kept alive by its old queue slot.
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as () => void;
    let refs: WeakRef<Buffer>[] = [];
    const written = new RecordingSink();
    const w2 = new FrameWriter();
    w2.attach(written);
    (() => {
      const frames = Array.from({ length: 8 }, (_, i) => frame(i, 2000));
      refs = frames.map((f) => new WeakRef(f));
      for (const f of frames) w2.queue(f);
      w2.flush();
    })();
    written.writes.length = 0; // the sink's own record holds the large frames by reference
    await turn();
    gc();
    assert.equal(
      refs.filter((r) => r.deref() !== undefined).length,
      0,
      "written frames are collectable once the sink has let them go",
    );
  });

  test("copied frames' write buffers are never reused: a buffer the socket still holds keeps its bytes", () => {
    // The sink keeps every chunk without copying (as a socket does until the kernel takes it).
    const sink = new RecordingSink();
    const w = new FrameWriter();
    w.attach(sink);
    const expected: Buffer[] = [];
    for (let batch = 0; batch < 3000; batch++) {
      const frames = Array.from({ length: 1 + (batch % 7) }, (_, k) =>
        frame(batch * 8 + k, 40 + ((batch + k) % 90)),
      );
      for (const f of frames) w.queue(f);
      w.flush();
      expected.push(Buffer.concat(frames.map((f) => encodeFrame(f))));
    }
    assert.equal(sink.writes.length, expected.length);
    for (let i = 0; i < expected.length; i++)
      assert.ok(sink.writes[i]!.equals(expected[i]!), `write ${i} intact`);
    // Together they span several 256 KiB gather slabs, and a large gather gets its own buffer.
    assert.ok(expected.reduce((n, b) => n + b.length, 0) > 2 * 256 * 1024, "several slabs used");
    const big = Array.from({ length: 1000 }, (_, k) => frame(k, 70));
    for (const f of big) w.queue(f);
    w.flush();
    assert.ok(sink.writes.at(-1)!.equals(Buffer.concat(big.map((f) => encodeFrame(f)))), "a 74 kB gather");
  });

  test("send() refuses frames that cannot be encoded", () => {
    const w = new FrameWriter({ vnetHdr: true, maxFrameLength: 100 });
    assert.throws(() => w.send(Buffer.alloc(0)), { code: "COLO_ERR_FRAME_EMPTY" });
    assert.throws(() => w.send(Buffer.alloc(101)), { code: "COLO_ERR_FRAME_TOO_LARGE" });
    assert.throws(() => w.send(Buffer.alloc(10), 11), { code: "COLO_ERR_VNET_HDR_TOO_LARGE" });
    assert.equal(w.queuedFrames, 0);
  });
});

describe("FrameWriter: received frames written in place", () => {
  /** Decode `stream` as if read from a socket in pieces cut at `cuts`; returns the frames and V. */
  function receive(stream: Buffer, cuts: number[], vnetHdr: boolean): Array<[Buffer, number]> {
    const dec = new FrameDecoder({ vnetHdr });
    const out: Array<[Buffer, number]> = [];
    let at = 0;
    for (const end of [
      ...cuts.filter((c) => c > 0 && c < stream.length).sort((a, b) => a - b),
      stream.length,
    ]) {
      if (end <= at) continue;
      const chunk = Buffer.from(stream.subarray(at, end)); // a read gets fresh memory
      markReceived(chunk);
      dec.push(chunk, (f, v) => out.push([f, v]));
      at = end;
    }
    return out;
  }

  test("a run of large received frames goes out as one view of the received chunk, prefixes included", async () => {
    const frames = Array.from({ length: 20 }, (_, i) => frame(i, 1024 + i * 7));
    const stream = Buffer.concat(frames.map((f) => encodeFrame(f)));
    const chunk = Buffer.from(stream);
    markReceived(chunk);
    const got: Buffer[] = [];
    new FrameDecoder().push(chunk, (f) => got.push(f));
    const sink = new RecordingSink();
    const w = new FrameWriter();
    w.attach(sink);
    for (const f of got) w.send(f);
    await turn();
    assert.equal(sink.writes.length, 1);
    assert.ok(sink.writes[0]!.equals(stream));
    assert.equal(sink.writes[0]!.buffer, chunk.buffer, "no copy: a view of the received memory");
    assert.equal(w.framesOut, 20);
    assert.equal(w.bytesOut, stream.length);
  });

  test("a frame sent with another V than it was received with is not written with the received prefix", async () => {
    const f = frame(1, 1500);
    const chunk = Buffer.from(encodeFrame(f, 10, true));
    markReceived(chunk);
    let got: Buffer | undefined;
    new FrameDecoder({ vnetHdr: true }).push(chunk, (x) => {
      got = x;
    });
    const sink = new RecordingSink();
    const w = new FrameWriter({ vnetHdr: true });
    w.attach(sink);
    w.send(got!, 12);
    await turn();
    assert.ok(Buffer.concat(sink.writes).equals(encodeFrame(f, 12, true)));
  });

  test("property: any mix of received (split anywhere), fresh and re-labelled frames is written byte-exact, FIFO", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.array(fc.record({ len: fc.integer({ min: 1, max: 3000 }), v: fc.integer({ min: 0, max: 12 }) }), {
          minLength: 1,
          maxLength: 40,
        }),
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.array(fc.nat({ max: 3 }), { maxLength: 40 }),
        fc.integer({ min: 0, max: 2000 }),
        fc.boolean(),
        async (vnetHdr, specs, cutSeeds, modes, zeroCopyMin, attachFirst) => {
          const frames = specs.map((s, i) => frame(i, Math.max(4, s.len, s.v)));
          const vs = specs.map((s) => (vnetHdr ? s.v : 0));
          const stream = Buffer.concat(frames.map((f, i) => encodeFrame(f, vs[i], vnetHdr)));
          const received = receive(
            stream,
            cutSeeds.map((c) => c % stream.length),
            vnetHdr,
          );
          assert.equal(received.length, frames.length);
          const sink = new RecordingSink();
          const w = new FrameWriter({ vnetHdr, zeroCopyMin, maxWriteBytes: 8192 });
          // Attached first (frames queued with a socket that takes them) or after (queued detached).
          if (attachFirst) w.attach(sink);
          const expected: Buffer[] = [];
          for (const [i, [f, v]] of received.entries()) {
            // 0/1: the received view as is; 2: a fresh copy; 3: the received view with another V.
            const mode = modes[i] ?? 0;
            const out = mode === 2 ? Buffer.from(f) : f;
            const outV = mode === 3 && vnetHdr ? (v + 1) % (f.length + 1) : v;
            w.send(out, outV);
            expected.push(encodeFrame(out, outV, vnetHdr));
          }
          if (!attachFirst) w.attach(sink);
          await turn();
          assert.ok(Buffer.concat(sink.writes).equals(Buffer.concat(expected)));
          assert.equal(w.bytesOut, Buffer.concat(expected).length);
          assert.equal(w.queuedFrames, 0);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("FrameWriter on a real UNIX socket", () => {
  async function socketPair(t: { after(fn: () => void): void }): Promise<[net.Socket, net.Socket]> {
    const dir = mkdtempSync(path.join(os.tmpdir(), "colo-fw-"));
    const p = path.join(dir, "s.sock");
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(p, r));
    const accepted = new Promise<net.Socket>((r) => server.once("connection", r));
    const client = net.connect(p);
    await new Promise<void>((r, j) => client.once("connect", r).once("error", j));
    const srv = await accepted;
    t.after(() => {
      client.destroy();
      srv.destroy();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    });
    return [client, srv];
  }

  test("a slow reader: congestion on, producer stops, drain, all frames arrive in order", async (t) => {
    const [client, srv] = await socketPair(t);
    srv.pause();
    const changes: boolean[] = [];
    let wake: (() => void) | null = null;
    const w = new FrameWriter({
      onCongestion: (c) => {
        changes.push(c);
        if (!c) wake?.();
      },
    });
    w.attach(client);

    const total = 20_000;
    const size = 1000;
    let sent = 0;
    let stops = 0;
    // Producer that honours backpressure, like the compare engine pausing its inputs.
    const producer = (async () => {
      while (sent < total) {
        if (w.congested) {
          stops++;
          if (stops === 1) srv.resume(); // the reader wakes up only after we were throttled once
          await new Promise<void>((r) => {
            wake = r;
          });
          continue;
        }
        for (let k = 0; k < 50 && sent < total; k++) w.send(frame(sent++, size));
        await turn();
      }
    })();

    const got: number[] = [];
    const dec = new FrameDecoder();
    const done = new Promise<void>((resolve) => {
      srv.on("data", (chunk: Buffer) => {
        dec.push(chunk, (f) => {
          assert.equal(f.length, size);
          got.push(f.readUInt32BE(0));
        });
        if (got.length === total) resolve();
      });
    });
    await producer;
    await done;
    assert.ok(stops >= 1, "the producer was throttled at least once");
    assert.equal(changes[0], true);
    assert.equal(changes.at(-1), false);
    assert.equal(got.length, total);
    for (let i = 0; i < total; i++) if (got[i] !== i) assert.fail(`frame ${i} out of order: ${got[i]}`);
    assert.equal(w.framesOut, total);
  });

  test("detach mid-stream keeps unsent frames for the next socket", async (t) => {
    const [client, srv] = await socketPair(t);
    srv.pause();
    const w = new FrameWriter({ highWaterMark: 1 << 30 });
    w.attach(client);
    // Fill until the socket refuses; then detach with frames still queued.
    let i = 0;
    while (w.queuedFrames === 0 || !w.congested) {
      w.send(frame(i++, 4000));
      if (i % 100 === 0) await turn();
      if (i > 200_000) assert.fail("socket never pushed back");
    }
    w.detach();
    const queued = w.queuedFrames;
    assert.ok(queued > 0);
    assert.equal(w.congested, false);
    const [client2, srv2] = await socketPair(t);
    w.attach(client2);
    const got: number[] = [];
    const dec = new FrameDecoder();
    await new Promise<void>((resolve) => {
      srv2.on("data", (chunk: Buffer) => {
        dec.push(chunk, (f) => got.push(f.readUInt32BE(0)));
        if (got.length === queued) resolve();
      });
    });
    // The second socket gets exactly the tail that was never handed to the first one, in order.
    assert.deepEqual(
      got,
      Array.from({ length: queued }, (_, k) => i - queued + k),
    );
  });
});
