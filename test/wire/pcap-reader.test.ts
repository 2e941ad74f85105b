/**
 * @module The streaming capture reader: chunk boundaries anywhere give the same packets,
 * truncation at every offset gives COLO_ERR_PCAP_TRUNCATED (or a clean shorter file at a
 * record boundary), and arbitrary or mutated bytes give a PcapError, never a crash or a hang.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { PcapError } from "../../src/errors.ts";
import type { CapturePacket } from "../../src/wire/pcap-format.ts";
import { CaptureDecoder, decodeCapture, readCapture, readCaptureStream } from "../../src/wire/pcap-reader.ts";
import { encodePcap } from "../../src/wire/pcap-writer.ts";
import { encodePcapng } from "../../src/wire/pcapng-writer.ts";
import { endOfOpt, epb, frameOf, idb, option, shb, spb } from "./pcap-craft.ts";

const packets = [
  { timestampNs: 1_000_000_001_000n, frame: frameOf(42, 1), comment: "a" },
  { timestampNs: 1_000_000_002_000n, frame: frameOf(0, 2) },
  { timestampNs: 1_000_000_003_000n, frame: frameOf(77, 3), interfaceId: 1, comment: "second side" },
  { timestampNs: 1_000_000_004_000n, frame: frameOf(13, 4) },
];

/** Small files of every flavour, with the offsets where a record ends (clean cut points). */
function samples(): Array<{ name: string; bytes: Buffer }> {
  const ifaces = { interfaces: [{ name: "p" }, { name: "s", resolution: "us" as const }] };
  const crafted = Buffer.concat([
    shb("be", [option("be", 4, Buffer.from("x")), endOfOpt("be")]),
    idb("be", 1, 0, [option("be", 9, Buffer.of(9)), endOfOpt("be")]),
    epb("be", 0, 5n, frameOf(9, 9)),
    spb("be", frameOf(5, 5)),
    shb("le"),
    idb("le"),
    epb("le", 0, 6n, frameOf(11, 11)),
  ]);
  return [
    { name: "pcap µs le", bytes: encodePcap(packets) },
    { name: "pcap ns be", bytes: encodePcap(packets, { resolution: "ns", bigEndian: true }) },
    { name: "pcapng le", bytes: encodePcapng(packets, ifaces) },
    { name: "pcapng be", bytes: encodePcapng(packets, { ...ifaces, bigEndian: true }) },
    { name: "pcapng crafted two sections", bytes: crafted },
  ];
}

const view = (ps: CapturePacket[]) =>
  ps.map(
    (p) => `${p.timestampNs}/${p.interfaceId}/${p.origLen}/${p.frame.toString("hex")}/${p.comment ?? "-"}`,
  );

/** Feeds `chunks` to a fresh decoder and returns the packets (end() included). */
function decodeChunks(chunks: Buffer[]): CapturePacket[] {
  const dec = new CaptureDecoder();
  const out: CapturePacket[] = [];
  for (const c of chunks) {
    dec.push(c);
    for (let p = dec.next(); p !== null; p = dec.next()) out.push(p);
  }
  dec.end();
  return out;
}

describe("capture reader streaming", () => {
  for (const { name, bytes } of samples()) {
    test(`${name}: split at every offset gives the same packets`, () => {
      const want = view(decodeCapture(bytes).packets);
      assert.ok(want.length >= 3);
      for (let i = 0; i <= bytes.length; i++) {
        assert.deepEqual(
          view(decodeChunks([bytes.subarray(0, i), bytes.subarray(i)])),
          want,
          `split at ${i}`,
        );
      }
    });

    test(`${name}: fixed-size chunks of 1, 2, 3, 4, 5, 7, 13, 64 and 128 bytes`, () => {
      const want = view(decodeCapture(bytes).packets);
      for (const size of [1, 2, 3, 4, 5, 7, 13, 64, 128]) {
        const chunks: Buffer[] = [];
        for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
        assert.deepEqual(view(decodeChunks(chunks)), want, `chunk size ${size}`);
      }
    });

    test(`${name}: truncation at every offset is COLO_ERR_PCAP_TRUNCATED or a clean prefix`, () => {
      const all = view(decodeCapture(bytes).packets);
      let clean = 0;
      for (let i = 0; i < bytes.length; i++) {
        let got: string[] | undefined;
        try {
          got = view(decodeCapture(bytes.subarray(0, i)).packets);
        } catch (e) {
          assert.ok(e instanceof PcapError, `offset ${i}: ${String(e)}`);
          assert.equal(e.code, "COLO_ERR_PCAP_TRUNCATED", `offset ${i}: ${e.message}`);
          continue;
        }
        clean++;
        assert.deepEqual(got, all.slice(0, got.length), `offset ${i}`);
      }
      // Clean cuts exist only after the header and after each record: never mid-record.
      assert.ok(clean >= 1 && clean <= all.length + 4, `clean cuts: ${clean}`);
    });
  }

  test("frames stay valid after later chunks arrive (the decoder never reuses memory)", () => {
    const bytes = encodePcapng(packets, { interfaces: [{}, {}] });
    for (const size of [1, 3, 10]) {
      const dec = new CaptureDecoder();
      const got: CapturePacket[] = [];
      const atYield: string[] = [];
      for (let i = 0; i < bytes.length; i += size) {
        dec.push(Buffer.from(bytes.subarray(i, i + size)));
        for (let p = dec.next(); p !== null; p = dec.next()) {
          got.push(p);
          atYield.push(view([p])[0]!);
        }
      }
      dec.end();
      // Headers spanning chunks go through a scratch buffer and records through copies: none
      // of that may change a frame handed out earlier.
      assert.deepEqual(view(got), atYield, `chunk size ${size}`);
      assert.deepEqual(atYield, view(decodeCapture(bytes).packets));
    }
  });

  test("after an error the decoder keeps throwing the same error", () => {
    const dec = new CaptureDecoder();
    dec.push(Buffer.from("not a capture"));
    let first: unknown;
    assert.throws(
      () => dec.next(),
      (e) => {
        first = e;
        return e instanceof PcapError;
      },
    );
    assert.throws(
      () => dec.next(),
      (e) => e === first,
    );
    assert.throws(
      () => dec.end(),
      (e) => e === first,
    );
  });
});

describe("readCapture over files", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "colo-pcap-read-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("streams a file in small chunks and reports the header", async () => {
    const path = join(dir, "a.pcapng");
    const bytes = encodePcapng(packets, { interfaces: [{ name: "p" }, { name: "s" }] });
    await writeFile(path, bytes);
    for (const chunkSize of [1, 3, 17, 65_536]) {
      let format: string | undefined;
      const got: CapturePacket[] = [];
      for await (const p of readCapture(path, { chunkSize, onHeader: (d) => (format = d.format) }))
        got.push(p);
      assert.equal(format, "pcapng");
      assert.deepEqual(view(got), view(decodeCapture(bytes).packets));
    }
  });

  test("a truncated file yields its whole packets, then throws COLO_ERR_PCAP_TRUNCATED", async () => {
    const path = join(dir, "t.pcap");
    const bytes = encodePcap(packets);
    await writeFile(path, bytes.subarray(0, bytes.length - 5));
    const got: CapturePacket[] = [];
    await assert.rejects(
      (async () => {
        for await (const p of readCapture(path, { chunkSize: 16 })) got.push(p);
      })(),
      { code: "COLO_ERR_PCAP_TRUNCATED" },
    );
    assert.equal(got.length, packets.length - 1);
  });

  test("a huge claimed record fails at once instead of buffering the file", async () => {
    const path = join(dir, "h.pcapng");
    const head = encodePcapng([]);
    const bogus = Buffer.alloc(12);
    bogus.writeUInt32LE(6, 0);
    bogus.writeUInt32LE(0xfffffff0, 4);
    // 4 MiB of filler after the bogus header: the error must come on the first chunk.
    await writeFile(path, Buffer.concat([head, bogus, Buffer.alloc(4 << 20)]));
    let reads = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of readCapture(path, { chunkSize: 4096, onHeader: () => reads++ })) reads++;
      })(),
      { code: "COLO_ERR_PCAP_BAD_RECORD" },
    );
    assert.equal(reads, 0);
  });

  test("readCaptureStream reads a capture from a stream in arbitrary chunks", async () => {
    const bytes = encodePcap(packets, { resolution: "ns" });
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 7) chunks.push(bytes.subarray(i, i + 7));
    const got: CapturePacket[] = [];
    for await (const p of readCaptureStream(Readable.from(chunks))) got.push(p);
    assert.deepEqual(view(got), view(decodeCapture(bytes).packets));
    await assert.rejects(
      (async () => {
        for await (const _ of readCaptureStream(Readable.from([bytes.subarray(0, 30)]))) {
        }
      })(),
      { code: "COLO_ERR_PCAP_TRUNCATED" },
    );
  });

  test("the file is closed when the loop stops early or the file is bad", async (t) => {
    if (process.platform !== "linux") return t.skip("counts descriptors in /proc/self/fd (Linux only)");
    const { readdir } = await import("node:fs/promises");
    const fds = async () => (await readdir("/proc/self/fd")).length;
    const path = join(dir, "early.pcap");
    await writeFile(path, encodePcap(packets));
    const bad = join(dir, "bad.pcap");
    await writeFile(bad, Buffer.concat([encodePcap(packets), Buffer.from("garbage after the last record")]));
    const before = await fds();
    for (let i = 0; i < 20; i++) {
      for await (const _ of readCapture(path, { chunkSize: 8 })) break;
      await assert.rejects(async () => {
        for await (const _ of readCapture(bad)) {
        }
      });
    }
    assert.equal(await fds(), before);
  });

  test("a missing file rejects with the fs error (ENOENT)", async () => {
    await assert.rejects(
      (async () => {
        for await (const _ of readCapture(join(dir, "missing.pcap"))) {
        }
      })(),
      { code: "ENOENT" },
    );
  });
});

describe("capture reader against garbage (fast-check)", () => {
  /** Decoding must end in packets or a PcapError; anything else (TypeError, RangeError...) is a bug. */
  function decodeOrPcapError(bytes: Uint8Array, chunk: number): void {
    try {
      const dec = new CaptureDecoder();
      for (let i = 0; i < bytes.length; i += chunk) {
        dec.push(Buffer.from(bytes.subarray(i, i + chunk)));
        for (let p = dec.next(); p !== null; p = dec.next()) {
          assert.ok(p.frame.length <= 262_144);
        }
      }
      dec.end();
    } catch (e) {
      if (!(e instanceof PcapError)) throw e;
    }
  }

  test("arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.integer({ min: 1, max: 64 }), (b, c) =>
        decodeOrPcapError(b, c),
      ),
      { numRuns: 2000 },
    );
  });

  const heads = [
    encodePcap([]),
    encodePcap([], { resolution: "ns", bigEndian: true }),
    encodePcapng([]),
    encodePcapng([], { bigEndian: true }),
  ];
  test("valid headers followed by arbitrary bytes", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...heads),
        fc.uint8Array({ maxLength: 512 }),
        fc.integer({ min: 1, max: 64 }),
        (h, b, c) => decodeOrPcapError(Buffer.concat([h, b]), c),
      ),
      { numRuns: 2000 },
    );
  });

  test("valid files with bytes mutated", () => {
    const files = samples().map((s) => s.bytes);
    fc.assert(
      fc.property(
        fc.constantFrom(...files),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 1, max: 64 }),
        (f, muts, c) => {
          const b = Buffer.from(f);
          for (const [at, v] of muts) b[at % b.length] = v;
          decodeOrPcapError(b, c);
        },
      ),
      { numRuns: 3000 },
    );
  });
});
