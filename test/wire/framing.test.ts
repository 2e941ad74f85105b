import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { FramingError } from "../../src/errors.ts";
import {
  DEFAULT_MAX_FRAME_LENGTH,
  encodeFrame,
  FrameDecoder,
  NET_BUFSIZE,
  writeFrameHeader,
} from "../../src/wire/framing.ts";

interface Frame {
  data: Buffer;
  vnetLen: number;
}

/** Deterministic frame contents so a misplaced byte shows up as a mismatch. */
function makeFrame(len: number, seed: number, vnetLen = 0): Frame {
  const data = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) data[i] = (seed * 31 + i * 7) & 0xff;
  return { data, vnetLen };
}

function encodeAll(frames: Frame[], vnet: boolean): Buffer {
  return Buffer.concat(frames.map((f) => encodeFrame(f.data, f.vnetLen, vnet)));
}

function decodeChunks(chunks: Buffer[], vnet: boolean, max?: number): Frame[] {
  const dec = new FrameDecoder({ vnetHdr: vnet, maxFrameLength: max });
  const out: Frame[] = [];
  for (const c of chunks) dec.push(c, (data, vnetLen) => out.push({ data, vnetLen }));
  assert.ok(dec.atBoundary, "decoder should end on a frame boundary");
  return out;
}

function chunked(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

function assertFrames(actual: Frame[], expected: Frame[]): void {
  assert.equal(actual.length, expected.length, "frame count");
  for (let i = 0; i < expected.length; i++) {
    assert.ok(actual[i]!.data.equals(expected[i]!.data), `frame ${i} bytes`);
    assert.equal(actual[i]!.vnetLen, expected[i]!.vnetLen, `frame ${i} vnetLen`);
  }
}

/** Copy so later mutation/reuse of decoder output cannot fake a pass. */
function snapshot(frames: Frame[]): Frame[] {
  return frames.map((f) => ({ data: Buffer.from(f.data), vnetLen: f.vnetLen }));
}

const sample: Frame[] = [
  makeFrame(60, 1),
  makeFrame(1, 2),
  makeFrame(1514, 3),
  makeFrame(64, 4),
  makeFrame(7, 5),
  makeFrame(300, 6),
];
const sampleVnet: Frame[] = [
  makeFrame(70, 1, 10),
  makeFrame(12, 2, 12),
  makeFrame(1526, 3, 12),
  makeFrame(64, 4, 0),
  makeFrame(5, 5, 5),
];

for (const [name, frames, vnet] of [
  ["plain", sample, false],
  ["vnet", sampleVnet, true],
] as const) {
  describe(`FrameDecoder (${name})`, () => {
    const stream = encodeAll(frames, vnet);

    test("decodes the stream in one chunk, as zero-copy views", () => {
      const out: Frame[] = [];
      const dec = new FrameDecoder({ vnetHdr: vnet });
      dec.push(stream, (data, vnetLen) => out.push({ data, vnetLen }));
      assertFrames(out, frames);
      for (const f of out) {
        assert.equal(f.data.buffer, stream.buffer, "frame is a view of the chunk");
        assert.ok(Buffer.isBuffer(f.data), "frame is a Buffer");
        assert.equal(Object.getPrototypeOf(f.data), Buffer.prototype, "a plain Buffer, as subarray() makes");
      }
    });

    test("parses the stream split at every offset", () => {
      for (let split = 0; split <= stream.length; split++) {
        const out = decodeChunks([stream.subarray(0, split), stream.subarray(split)], vnet);
        assertFrames(out, frames);
      }
    });

    test("parses the stream split at every pair of offsets (three chunks)", () => {
      // Every header boundary, sampled through the data: keeps the run short but covers all
      // states of the length/vnet words.
      for (let a = 0; a <= stream.length; a += a < 40 ? 1 : 37) {
        for (let b = a; b <= stream.length; b += b < a + 20 ? 1 : 53) {
          const out = decodeChunks([stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)], vnet);
          assertFrames(out, frames);
        }
      }
    });

    for (const size of [1, 2, 3, 4, 5, 7, 13, 64, 128, 4096]) {
      test(`fixed size chunks of ${size} bytes`, () => {
        assertFrames(decodeChunks(chunked(stream, size), vnet), frames);
      });
    }

    test("a 69,632-byte frame spanning many chunks", () => {
      const big = makeFrame(NET_BUFSIZE, 9, vnet ? 12 : 0);
      const all = [frames[0]!, big, frames[1]!];
      const s = encodeAll(all, vnet);
      for (const size of [1000, 4096, 65536]) {
        const out = decodeChunks(chunked(s, size), vnet);
        assertFrames(out, all);
        assert.equal(out[1]!.data.length, NET_BUFSIZE);
      }
    });

    test("frames spanning chunks get their own buffer and are never overwritten later", () => {
      const dec = new FrameDecoder({ vnetHdr: vnet });
      const out: Frame[] = [];
      const many = Array.from({ length: 200 }, (_, i) => makeFrame(50 + ((i * 37) % 900), i, vnet ? 4 : 0));
      const s = encodeAll(many, vnet);
      const seen = new Set<ArrayBufferLike>();
      for (const c of chunked(s, 333)) {
        // The caller must not reuse chunks, but does not have to keep them either.
        dec.push(Buffer.from(c), (data, vnetLen) => out.push({ data, vnetLen }));
      }
      assertFrames(out, many);
      for (const f of out) {
        if (f.data.byteOffset === 0 && f.data.length === f.data.buffer.byteLength) {
          assert.ok(!seen.has(f.data.buffer), "a spanning frame's buffer is not shared with another frame");
          seen.add(f.data.buffer);
        }
      }
    });
  });
}

describe("FrameDecoder errors", () => {
  const hdr = (n: number, v?: number): Buffer => {
    const b = Buffer.alloc(v === undefined ? 4 : 8);
    writeFrameHeader(b, 0, n, v ?? 0, v !== undefined);
    return b;
  };

  function expectError(
    chunks: Buffer[],
    vnet: boolean,
    code: string,
    expectedFrames: Frame[],
    max?: number,
  ): FramingError {
    const dec = new FrameDecoder({ vnetHdr: vnet, maxFrameLength: max });
    const out: Frame[] = [];
    let err: unknown;
    for (const c of chunks) {
      try {
        dec.push(c, (data, vnetLen) => out.push({ data, vnetLen }));
      } catch (e) {
        err = e;
        break;
      }
    }
    assert.ok(err instanceof FramingError, `expected FramingError, got ${String(err)}`);
    assert.equal(err.code, code);
    assertFrames(out, expectedFrames);
    // Defined state after the error: stopped, rethrows, consumes nothing until reset().
    assert.equal(dec.error, err);
    assert.throws(
      () => dec.push(encodeFrame(Buffer.from([1]), 0, vnet), () => assert.fail("no frames after error")),
      (e) => e === err,
    );
    dec.reset();
    assert.equal(dec.error, null);
    const after: Buffer[] = [];
    dec.push(encodeFrame(Buffer.from([1, 2, 3]), 0, vnet), (f) => after.push(Buffer.from(f)));
    assert.deepEqual(after, [Buffer.from([1, 2, 3])]);
    return err;
  }

  test("zero length is COLO_ERR_FRAME_EMPTY, reported without waiting for more bytes", () => {
    expectError([hdr(0)], false, "COLO_ERR_FRAME_EMPTY", []);
    expectError([hdr(0, 0)], true, "COLO_ERR_FRAME_EMPTY", []);
  });

  test("oversized length is COLO_ERR_FRAME_TOO_LARGE as soon as the length word is read", () => {
    const e = expectError([hdr(NET_BUFSIZE + 1)], false, "COLO_ERR_FRAME_TOO_LARGE", []);
    assert.deepEqual(e.details, { length: NET_BUFSIZE + 1, vnetLen: 0, max: NET_BUFSIZE, offset: 0 });
    // In vnet mode the error comes before the V word.
    expectError([hdr(0xffffffff).subarray(0, 4)], true, "COLO_ERR_FRAME_TOO_LARGE", []);
    // Length word split byte by byte: the error fires on its last byte.
    const split = [...hdr(70000)].map((b) => Buffer.from([b]));
    expectError(split, false, "COLO_ERR_FRAME_TOO_LARGE", []);
  });

  test("N = 69632 is accepted; the limit is configurable", () => {
    const f = makeFrame(NET_BUFSIZE, 3);
    assertFrames(decodeChunks([encodeFrame(f.data)], false), [f]);
    expectError([encodeFrame(makeFrame(101, 1).data)], false, "COLO_ERR_FRAME_TOO_LARGE", [], 100);
    const ok = makeFrame(100, 1);
    assertFrames(decodeChunks([encodeFrame(ok.data)], false, 100), [ok]);
    assert.equal(new FrameDecoder().maxFrameLength, DEFAULT_MAX_FRAME_LENGTH);
    assert.throws(() => new FrameDecoder({ maxFrameLength: 0 }), RangeError);
    assert.throws(() => new FrameDecoder({ maxFrameLength: 2 ** 32 }), RangeError);
  });

  test("V > N is COLO_ERR_VNET_HDR_TOO_LARGE; V = N is a valid frame", () => {
    const e = expectError([hdr(10, 11)], true, "COLO_ERR_VNET_HDR_TOO_LARGE", []);
    assert.equal(e.details?.vnetLen, 11);
    assert.equal(e.details?.length, 10);
    const f = makeFrame(12, 1, 12);
    assertFrames(decodeChunks([encodeAll([f], true)], true), [f]);
  });

  test("an error in the middle of a chunk still delivers the frames before it", () => {
    for (const [vnet, bad, code] of [
      [false, hdr(0), "COLO_ERR_FRAME_EMPTY"],
      [false, hdr(NET_BUFSIZE + 1), "COLO_ERR_FRAME_TOO_LARGE"],
      [true, hdr(0, 0), "COLO_ERR_FRAME_EMPTY"],
      [true, hdr(100, 101), "COLO_ERR_VNET_HDR_TOO_LARGE"],
    ] as const) {
      const frames = vnet ? sampleVnet : sample;
      const good = encodeAll(frames, vnet);
      const tail = encodeAll([makeFrame(10, 1)], vnet);
      const stream = Buffer.concat([good, bad, tail]);
      const e = expectError([stream], vnet, code, frames);
      assert.equal(e.details?.offset, good.length, "error offset points at the bad frame's prefix");
      // Same stream, cut into small chunks: same frames, same error, same offset.
      const e2 = expectError(chunked(stream, 7), vnet, code, frames);
      assert.equal(e2.details?.offset, good.length);
    }
  });

  test("a throwing handler stops the decoder instead of resuming mid-stream", () => {
    const dec = new FrameDecoder();
    const boom = new Error("boom");
    assert.throws(
      () =>
        dec.push(encodeAll(sample, false), () => {
          throw boom;
        }),
      (e) => e === boom,
    );
    assert.ok(dec.error instanceof FramingError);
    assert.throws(() => dec.push(Buffer.from([0]), () => {}), FramingError);
  });
});

describe("encodeFrame", () => {
  test("writes N (and V in vnet mode) big-endian before the bytes", () => {
    assert.deepEqual([...encodeFrame(Buffer.from([0xaa, 0xbb]))], [0, 0, 0, 2, 0xaa, 0xbb]);
    assert.deepEqual([...encodeFrame(Buffer.from([1, 2, 3]), 2, true)], [0, 0, 0, 3, 0, 0, 0, 2, 1, 2, 3]);
    const big = encodeFrame(Buffer.alloc(0x010203));
    assert.deepEqual([...big.subarray(0, 4)], [0, 0x01, 0x02, 0x03]);
  });

  test("refuses frames QEMU could not take", () => {
    assert.throws(() => encodeFrame(Buffer.alloc(0)), { code: "COLO_ERR_FRAME_EMPTY" });
    assert.throws(() => encodeFrame(Buffer.alloc(NET_BUFSIZE + 1)), { code: "COLO_ERR_FRAME_TOO_LARGE" });
    assert.throws(() => encodeFrame(Buffer.alloc(4), 5, true), { code: "COLO_ERR_VNET_HDR_TOO_LARGE" });
  });
});

describe("FrameDecoder properties", () => {
  const frameArb = (vnet: boolean) =>
    fc.uint8Array({ minLength: 1, maxLength: 2000 }).chain((data) =>
      fc.record({
        data: fc.constant(Buffer.from(data)),
        vnetLen: vnet ? fc.nat(data.length) : fc.constant(0),
      }),
    );

  for (const vnet of [false, true]) {
    test(`random frames + random chunking == the same frames (vnet ${vnet})`, () => {
      fc.assert(
        fc.property(
          fc.array(frameArb(vnet), { maxLength: 30 }),
          fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 50 }),
          (frames, cuts) => {
            const stream = encodeAll(frames, vnet);
            const chunks: Buffer[] = [];
            let at = 0;
            for (let i = 0; at < stream.length; i++) {
              const n = cuts[i % cuts.length]!;
              chunks.push(stream.subarray(at, at + n));
              at += n;
            }
            const out = snapshot(decodeChunks(chunks, vnet));
            assertFrames(out, frames);
          },
        ),
        { numRuns: 300 },
      );
    });
  }

  test("random garbage throws only FramingError and never allocates more than the maximum", (t) => {
    const max = 3000;
    let largest = 0;
    const real = Buffer.allocUnsafe;
    t.mock.method(Buffer, "allocUnsafe", (n: number) => {
      largest = Math.max(largest, n);
      return real(n);
    });
    fc.assert(
      fc.property(
        fc.boolean(),
        // Raw noise mixed with plausible length words, so partial frames do get buffered.
        fc.array(
          fc.oneof(
            fc.uint8Array({ minLength: 0, maxLength: 600 }),
            fc.integer({ min: 0, max: max + 5 }).map((n) => Uint8Array.of(0, 0, n >> 8, n & 0xff)),
          ),
          { maxLength: 40 },
        ),
        (vnet, chunks) => {
          const dec = new FrameDecoder({ vnetHdr: vnet, maxFrameLength: max });
          let delivered = 0;
          for (const c of chunks) {
            try {
              dec.push(Buffer.from(c), (f, v) => {
                assert.ok(f.length >= 1 && f.length <= max);
                assert.ok(v <= f.length);
                delivered += f.length;
              });
            } catch (e) {
              assert.ok(e instanceof FramingError, `unexpected ${String(e)}`);
              assert.ok(dec.error === e);
              return;
            }
            assert.ok(dec.bufferedBytes <= max);
          }
          assert.ok(delivered <= chunks.reduce((s, c) => s + c.length, 0));
        },
      ),
      { numRuns: 500 },
    );
    assert.ok(largest <= max, `largest allocation ${largest} > ${max}`);
    assert.ok(largest > 600, "the run did buffer frames spanning chunks");
  });
});
