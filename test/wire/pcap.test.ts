/**
 * @module Classic pcap: reading every magic and byte order, writing, round trips, and clear
 * PcapErrors for bad headers and records.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { PcapError } from "../../src/errors.ts";
import { decodeCapture, readCapture } from "../../src/wire/pcap-reader.ts";
import { memorySink } from "../../src/wire/pcap-sink.ts";
import { encodePcap, PcapWriter } from "../../src/wire/pcap-writer.ts";
import { type Endian, frameOf, pcapHeader, pcapRecord } from "./pcap-craft.ts";

function rejectsWith(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PcapError, `expected PcapError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

describe("classic pcap reader", () => {
  for (const endian of ["le", "be"] as Endian[]) {
    for (const nanos of [false, true]) {
      test(`reads a hand-built ${endian} ${nanos ? "ns" : "µs"} file`, () => {
        const f1 = frameOf(60, 1);
        const f2 = frameOf(1514, 2);
        const bytes = Buffer.concat([
          pcapHeader(endian, nanos),
          pcapRecord(endian, 1_700_000_000, nanos ? 123_456_789 : 123_456, f1),
          pcapRecord(endian, 1_700_000_001, nanos ? 999_999_999 : 999_999, f2, 9000),
        ]);
        const cap = decodeCapture(bytes);
        assert.equal(cap.format, "pcap");
        assert.equal(cap.nanosecond, nanos);
        assert.equal(cap.interfaces.length, 1);
        assert.equal(cap.interfaces[0]!.snapLen, 65535);
        assert.equal(cap.packets.length, 2);
        const [p1, p2] = cap.packets;
        assert.equal(p1!.timestampNs, nanos ? 1_700_000_000_123_456_789n : 1_700_000_000_123_456_000n);
        assert.equal(p2!.timestampNs, nanos ? 1_700_000_001_999_999_999n : 1_700_000_001_999_999_000n);
        assert.deepEqual(p1!.frame, f1);
        assert.deepEqual(p2!.frame, f2);
        assert.equal(p1!.origLen, 60);
        assert.equal(p2!.origLen, 9000);
        assert.equal(p1!.interfaceId, 0);
        assert.equal(p1!.linkType, 1);
      });
    }
  }

  test("a header-only file has no packets", () => {
    assert.equal(decodeCapture(pcapHeader("le", false)).packets.length, 0);
  });

  test("zero-length records are packets with empty frames", () => {
    const cap = decodeCapture(
      Buffer.concat([pcapHeader("le", false), pcapRecord("le", 1, 2, Buffer.alloc(0), 0)]),
    );
    assert.equal(cap.packets.length, 1);
    assert.equal(cap.packets[0]!.frame.length, 0);
  });

  test("refuses other link types with COLO_ERR_PCAP_LINKTYPE", () => {
    for (const lt of [0, 101, 113, 276]) {
      rejectsWith(() => decodeCapture(pcapHeader("le", false, lt)), "COLO_ERR_PCAP_LINKTYPE");
      rejectsWith(() => decodeCapture(pcapHeader("be", true, lt)), "COLO_ERR_PCAP_LINKTYPE");
    }
  });

  test("ignores the FCS bits above the link type", () => {
    const cap = decodeCapture(pcapHeader("le", false, 0x1000_0001));
    assert.equal(cap.interfaces[0]!.linkType, 1);
  });

  test("refuses unknown versions with COLO_ERR_PCAP_VERSION", () => {
    rejectsWith(() => decodeCapture(pcapHeader("le", false, 1, 1)), "COLO_ERR_PCAP_VERSION");
  });

  test("refuses files that are not captures with COLO_ERR_PCAP_BAD_MAGIC", () => {
    rejectsWith(() => decodeCapture(Buffer.from("GET / HTTP/1.1\r\n\r\n")), "COLO_ERR_PCAP_BAD_MAGIC");
    rejectsWith(
      () => decodeCapture(Buffer.from([0xa1, 0xb2, 0xc3, 0xd5, 0, 0, 0, 0])),
      "COLO_ERR_PCAP_BAD_MAGIC",
    );
    // Kuznetzov's modified pcap is not supported.
    rejectsWith(() => decodeCapture(Buffer.from([0x34, 0xcd, 0xb2, 0xa1])), "COLO_ERR_PCAP_BAD_MAGIC");
    // A wrong first byte is refused before the rest has arrived.
    rejectsWith(() => decodeCapture(Buffer.from([0x00])), "COLO_ERR_PCAP_BAD_MAGIC");
  });

  test("an empty file is COLO_ERR_PCAP_TRUNCATED", () => {
    assert.throws(
      () => decodeCapture(Buffer.alloc(0)),
      (e: PcapError) => e.code === "COLO_ERR_PCAP_TRUNCATED" && /empty/.test(e.message),
    );
  });

  test("refuses oversized records before buffering them", () => {
    const bytes = Buffer.concat([
      pcapHeader("le", false),
      Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]),
    ]);
    assert.throws(
      () => decodeCapture(bytes),
      (e: PcapError) =>
        e.code === "COLO_ERR_PCAP_BAD_RECORD" && e.details?.offset === 24 && /offset 24/.test(e.message),
    );
  });

  test("refuses sub-second fields out of range", () => {
    rejectsWith(
      () =>
        decodeCapture(
          Buffer.concat([pcapHeader("le", false), pcapRecord("le", 1, 1_000_000, frameOf(1, 1))]),
        ),
      "COLO_ERR_PCAP_BAD_RECORD",
    );
    // 999,999,999 is fine for nanoseconds but not for microseconds.
    rejectsWith(
      () =>
        decodeCapture(
          Buffer.concat([pcapHeader("be", false), pcapRecord("be", 1, 999_999_999, frameOf(1, 1))]),
        ),
      "COLO_ERR_PCAP_BAD_RECORD",
    );
    assert.equal(
      decodeCapture(Buffer.concat([pcapHeader("be", true), pcapRecord("be", 1, 999_999_999, frameOf(1, 1))]))
        .packets.length,
      1,
    );
  });
});

describe("classic pcap writer", () => {
  const packets = [
    { timestampNs: 0n, frame: frameOf(14, 0) },
    { timestampNs: 1_700_000_000_000_000_001n, frame: frameOf(60, 1), origLen: 100 },
    { timestampNs: 1_700_000_000_999_999_999n, frame: frameOf(1514, 2) },
    { timestampNs: 4_294_967_295_999_999_999n, frame: frameOf(0, 3) },
  ];

  test("writes the documented header bytes", () => {
    const le = encodePcap([], {});
    assert.equal(le.length, 24);
    assert.equal(le.subarray(0, 8).toString("hex"), "d4c3b2a102000400");
    assert.equal(le.readUInt32LE(16), 262144);
    assert.equal(le.readUInt32LE(20), 1);
    assert.equal(
      encodePcap([], { resolution: "ns", bigEndian: true }).subarray(0, 4).toString("hex"),
      "a1b23c4d",
    );
    assert.equal(encodePcap([], { resolution: "ns" }).subarray(0, 4).toString("hex"), "4d3cb2a1");
    assert.equal(encodePcap([], { bigEndian: true }).subarray(0, 4).toString("hex"), "a1b2c3d4");
  });

  for (const resolution of ["us", "ns"] as const) {
    for (const bigEndian of [false, true]) {
      test(`round-trips ${resolution} ${bigEndian ? "big" : "little"}-endian`, () => {
        const cap = decodeCapture(encodePcap(packets, { resolution, bigEndian }));
        assert.equal(cap.nanosecond, resolution === "ns");
        assert.equal(cap.packets.length, packets.length);
        cap.packets.forEach((p, i) => {
          const want = packets[i]!;
          const ts = resolution === "ns" ? want.timestampNs : (want.timestampNs / 1000n) * 1000n;
          assert.equal(p.timestampNs, ts);
          assert.deepEqual(p.frame, want.frame);
          assert.equal(p.origLen, want.origLen ?? want.frame.length);
        });
      });
    }
  }

  test("the streaming writer produces the same bytes as encodePcap", async () => {
    const sink = memorySink();
    const w = new PcapWriter(sink, { resolution: "ns" });
    // Enough packets to flush the batch buffer several times, plus one bigger than the batch.
    const many = Array.from({ length: 300 }, (_, i) => ({
      timestampNs: BigInt(i) * 1000n,
      frame: frameOf(i * 7, i),
    }));
    many.push({ timestampNs: 5n, frame: frameOf(200_000, 9) });
    for (const p of many) await w.write(p);
    await w.close();
    assert.deepEqual(sink.bytes(), encodePcap(many, { resolution: "ns" }));
  });

  test("refuses packets the format cannot hold with COLO_ERR_PCAP_UNWRITABLE", async () => {
    assert.throws(() => encodePcap([{ timestampNs: -1n, frame: frameOf(1, 1) }]), {
      code: "COLO_ERR_PCAP_UNWRITABLE",
    });
    assert.throws(() => encodePcap([{ timestampNs: 4_294_967_296_000_000_000n, frame: frameOf(1, 1) }]), {
      code: "COLO_ERR_PCAP_UNWRITABLE",
    });
    const w = new PcapWriter(memorySink());
    await assert.rejects(w.write({ timestampNs: 0n, frame: Buffer.alloc(262_145) }), {
      code: "COLO_ERR_PCAP_UNWRITABLE",
    });
    await w.close();
    await assert.rejects(w.write({ timestampNs: 0n, frame: frameOf(1, 1) }), {
      code: "COLO_ERR_PCAP_UNWRITABLE",
    });
  });

  test("writes a file that readCapture streams back", async () => {
    const dir = await mkdtemp(join(tmpdir(), "colo-pcap-"));
    try {
      const path = join(dir, "out.pcap");
      const w = await PcapWriter.create(path, { resolution: "ns", bigEndian: true });
      for (const p of packets) await w.write(p);
      await w.close();
      assert.deepEqual(await readFile(path), encodePcap(packets, { resolution: "ns", bigEndian: true }));
      const got = [];
      for await (const p of readCapture(path, { chunkSize: 5 })) got.push(p);
      assert.deepEqual(
        got.map((p) => [p.timestampNs, p.frame.toString("hex")]),
        packets.map((p) => [p.timestampNs, p.frame.toString("hex")]),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
