/**
 * @module pcapng: hand-built files in both byte orders (timestamp resolutions, Simple and
 * obsolete Packet Blocks, unknown blocks, several sections), malformed blocks, and the writer
 * (interfaces, per-packet comments) round-tripping through the reader.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PcapError } from "../../src/errors.ts";
import { decodeCapture } from "../../src/wire/pcap-reader.ts";
import { memorySink } from "../../src/wire/pcap-sink.ts";
import { encodePcapng, PcapngWriter } from "../../src/wire/pcapng-writer.ts";
import {
  Bytes,
  block,
  type Endian,
  endOfOpt,
  epb,
  frameOf,
  idb,
  option,
  pb,
  shb,
  spb,
} from "./pcap-craft.ts";

function rejectsWith(fn: () => unknown, code: string, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PcapError, `expected PcapError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (message) assert.match(e.message, message);
    return true;
  });
}

const text = (s: string) => Buffer.from(s, "utf8");
const tsresol = (e: Endian, v: number) => option(e, 9, Buffer.of(v));

describe("pcapng reader", () => {
  for (const e of ["le", "be"] as Endian[]) {
    test(`reads a ${e} section: default µs resolution, EPB with comments, SPB, obsolete PB`, () => {
      const f = [frameOf(60, 1), frameOf(61, 2), frameOf(62, 3), frameOf(63, 4)];
      const bytes = Buffer.concat([
        shb(e, [option(e, 4, text("crafted")), endOfOpt(e)]),
        idb(e, 1, 0, [option(e, 2, text("eth0")), endOfOpt(e)]),
        epb(e, 0, 1_700_000_000_123_456n, f[0]!),
        epb(e, 0, 1_700_000_000_123_457n, f[1]!, [
          option(e, 1, text("from primary")),
          option(e, 1, text("second line")),
          endOfOpt(e),
        ]),
        spb(e, f[2]!),
        pb(e, 0, 1_700_000_001_000_000n, f[3]!),
      ]);
      const cap = decodeCapture(bytes);
      assert.equal(cap.format, "pcapng");
      assert.equal(cap.interfaces[0]!.name, "eth0");
      assert.deepEqual(
        cap.packets.map((p) => [p.timestampNs, p.frame.toString("hex"), p.origLen, p.interfaceId, p.comment]),
        [
          [1_700_000_000_123_456_000n, f[0]!.toString("hex"), 60, 0, undefined],
          [1_700_000_000_123_457_000n, f[1]!.toString("hex"), 61, 0, "from primary\nsecond line"],
          // Simple Packet Blocks have no timestamp: they inherit the previous one.
          [1_700_000_000_123_457_000n, f[2]!.toString("hex"), 62, 0, undefined],
          [1_700_000_001_000_000_000n, f[3]!.toString("hex"), 63, 0, undefined],
        ],
      );
    });
  }

  test("applies if_tsresol (decimal and binary) and if_tsoffset per interface", () => {
    const e: Endian = "le";
    const bytes = Buffer.concat([
      shb(e),
      idb(e, 1, 0, [tsresol(e, 9), endOfOpt(e)]), // ns
      idb(e, 1, 0, [tsresol(e, 3), endOfOpt(e)]), // ms
      idb(e, 1, 0, [tsresol(e, 0x80 | 20), endOfOpt(e)]), // 2^-20 s
      idb(e, 1, 0, [tsresol(e, 12), option(e, 14, new Bytes(e).i64(-10n).bytes()), endOfOpt(e)]), // ps, -10 s
      epb(e, 0, 1_700_000_000_123_456_789n, frameOf(20, 1)),
      epb(e, 1, 1_700_000_000_123n, frameOf(20, 2)),
      epb(e, 2, (5n << 20n) + (1n << 19n), frameOf(20, 3)), // 5.5 s
      epb(e, 3, 20_000_000_000_123_456n, frameOf(20, 4)), // 20000.000000123456 s - 10 s
    ]);
    const cap = decodeCapture(bytes);
    assert.deepEqual(
      cap.packets.map((p) => [p.interfaceId, p.timestampNs]),
      [
        [0, 1_700_000_000_123_456_789n],
        [1, 1_700_000_000_123_000_000n],
        [2, 5_500_000_000n],
        [3, 19_990_000_000_123n],
      ],
    );
  });

  test("skips unknown, name-resolution and statistics blocks", () => {
    const e: Endian = "be";
    const bytes = Buffer.concat([
      shb(e),
      block(e, 0x00000004, Buffer.alloc(8)), // NRB
      idb(e),
      block(e, 0x00000005, Buffer.alloc(20)), // ISB
      block(e, 0x00000bad, text("custom block, odd length")),
      epb(e, 0, 7n, frameOf(30, 1)),
      block(e, 0x0000000a, Buffer.alloc(16)), // DSB
    ]);
    const cap = decodeCapture(bytes);
    assert.equal(cap.packets.length, 1);
    assert.equal(cap.packets[0]!.timestampNs, 7000n);
  });

  test("reads several sections, each in its own byte order, numbering interfaces across them", () => {
    const bytes = Buffer.concat([
      shb("le"),
      idb("le", 1, 0, [option("le", 2, text("a")), endOfOpt("le")]),
      epb("le", 0, 1n, frameOf(10, 1)),
      shb("be"),
      idb("be", 1, 0, [option("be", 2, text("b")), endOfOpt("be")]),
      idb("be", 1, 0, [option("be", 2, text("c")), tsresol("be", 9), endOfOpt("be")]),
      epb("be", 1, 2n, frameOf(10, 2)),
      epb("be", 0, 3n, frameOf(10, 3)),
      shb("le"),
      idb("le"),
      epb("le", 0, 4n, frameOf(10, 4)),
    ]);
    const cap = decodeCapture(bytes);
    assert.deepEqual(
      cap.interfaces.map((i) => i.name),
      ["a", "b", "c", undefined],
    );
    assert.deepEqual(
      cap.packets.map((p) => [p.interfaceId, p.timestampNs, p.frame[0]]),
      [
        [0, 1000n, frameOf(10, 1)[0]],
        [2, 2n, frameOf(10, 2)[0]],
        [1, 3000n, frameOf(10, 3)[0]],
        [3, 4000n, frameOf(10, 4)[0]],
      ],
    );
  });

  test("a packet on a non-Ethernet interface is COLO_ERR_PCAP_LINKTYPE; an unused one is fine", () => {
    const e: Endian = "le";
    const head = Buffer.concat([shb(e), idb(e, 1), idb(e, 113)]);
    assert.equal(decodeCapture(Buffer.concat([head, epb(e, 0, 1n, frameOf(10, 1))])).packets.length, 1);
    rejectsWith(
      () => decodeCapture(Buffer.concat([head, epb(e, 1, 1n, frameOf(10, 1))])),
      "COLO_ERR_PCAP_LINKTYPE",
      /link type 113/,
    );
  });

  test("SPB captured length is limited by the snap length and the block", () => {
    const e: Endian = "le";
    const cap = decodeCapture(Buffer.concat([shb(e), idb(e, 1, 16), spb(e, frameOf(20, 1), 1500)]));
    assert.equal(cap.packets[0]!.frame.length, 16);
    assert.equal(cap.packets[0]!.origLen, 1500);
    const cap2 = decodeCapture(Buffer.concat([shb(e), idb(e, 1, 0), spb(e, frameOf(21, 1), 1500)]));
    // The block holds 24 bytes (21 padded): all of them are taken, as the format says.
    assert.equal(cap2.packets[0]!.frame.length, 24);
  });

  test("malformed blocks are COLO_ERR_PCAP_BAD_RECORD with the block's offset", () => {
    const e: Endian = "le";
    const head = Buffer.concat([shb(e), idb(e)]);
    const at = head.length;
    const good = epb(e, 0, 1n, frameOf(10, 1));
    const cases: Array<[string, Buffer, RegExp]> = [
      ["undeclared interface", epb(e, 5, 1n, frameOf(10, 1)), /undeclared interface 5/],
      [
        "trailer mismatch",
        (() => {
          const b = Buffer.from(good);
          b.writeUInt32LE(999, b.length - 4);
          return b;
        })(),
        /trailing length/,
      ],
      [
        "length not a multiple of 4",
        (() => {
          const b = Buffer.from(good);
          b.writeUInt32LE(b.length - 2, 4);
          return b;
        })(),
        /impossible block length/,
      ],
      ["length below 12", new Bytes(e).u32(6).u32(8).u32(8).bytes(), /impossible block length 8/],
      ["huge length", new Bytes(e).u32(6).u32(0x7ffffff0).u32(0).bytes(), /impossible block length/],
      [
        "captured length beyond the block",
        (() => {
          const b = Buffer.from(good);
          b.writeUInt32LE(100, 20);
          return b;
        })(),
        /captured length 100/,
      ],
      [
        "option overrun",
        epb(e, 0, 1n, frameOf(8, 1), [new Bytes(e).u16(1).u16(200).u32(0).bytes()]),
        /option 1 overruns/,
      ],
      ["short IDB", block(e, 1, Buffer.alloc(4)), /too short/],
      ["short EPB", block(e, 6, Buffer.alloc(8)), /too short/],
      ["bad tsresol", idb(e, 1, 0, [option(e, 9, Buffer.of(6, 6))]), /if_tsresol/],
      ["SHB without BOM", block(e, 0x0a0d0d0a, Buffer.alloc(16)), /byte-order/],
    ];
    for (const [name, blk, re] of cases) {
      assert.throws(
        () => decodeCapture(Buffer.concat([head, blk])),
        (err: unknown) => {
          assert.ok(err instanceof PcapError, name);
          assert.equal(err.code, "COLO_ERR_PCAP_BAD_RECORD", name);
          assert.match(err.message, re, name);
          assert.equal(err.details?.offset, at, name);
          return true;
        },
      );
    }
  });

  test("a file whose first block is not a section header is COLO_ERR_PCAP_BAD_MAGIC", () => {
    // Starts with the SHB type but has no byte-order magic.
    rejectsWith(() => decodeCapture(block("le", 0x0a0d0d0a, Buffer.alloc(16))), "COLO_ERR_PCAP_BAD_MAGIC");
  });

  test("refuses pcapng major versions other than 1", () => {
    rejectsWith(() => decodeCapture(shb("le", [], 2)), "COLO_ERR_PCAP_VERSION");
  });
});

describe("pcapng writer", () => {
  const packets = [
    { timestampNs: 1_700_000_000_123_456_789n, frame: frameOf(60, 1), comment: "primary" },
    {
      timestampNs: 1_700_000_000_123_456_790n,
      frame: frameOf(61, 2),
      interfaceId: 1,
      comment: "secondary ✓",
    },
    { timestampNs: 1_700_000_000_200_000_000n, frame: frameOf(1514, 3), origLen: 4000 },
    { timestampNs: 0n, frame: frameOf(0, 4), interfaceId: 2, comment: "" },
  ];
  const interfaces = [
    { name: "primary", description: "PVM output" },
    { name: "secondary" },
    { resolution: "us" as const },
  ];

  for (const bigEndian of [false, true]) {
    test(`round-trips interfaces, comments and timestamps (${bigEndian ? "big" : "little"}-endian)`, () => {
      const bytes = encodePcapng(packets, { interfaces, bigEndian, comment: "section" });
      assert.equal(bytes.length % 4, 0);
      const cap = decodeCapture(bytes);
      assert.equal(cap.format, "pcapng");
      assert.deepEqual(
        cap.interfaces.map((i) => [i.name, i.description, i.linkType]),
        [
          ["primary", "PVM output", 1],
          ["secondary", undefined, 1],
          [undefined, undefined, 1],
        ],
      );
      assert.deepEqual(
        cap.packets.map((p) => [p.timestampNs, p.frame.toString("hex"), p.origLen, p.interfaceId, p.comment]),
        packets.map((p) => [
          p.timestampNs,
          p.frame.toString("hex"),
          p.origLen ?? p.frame.length,
          p.interfaceId ?? 0,
          p.comment,
        ]),
      );
    });
  }

  test("microsecond interfaces truncate to the microsecond", () => {
    const cap = decodeCapture(
      encodePcapng([{ timestampNs: 1_234_567_891n, frame: frameOf(4, 1) }], {
        interfaces: [{ resolution: "us" }],
      }),
    );
    assert.equal(cap.packets[0]!.timestampNs, 1_234_567_000n);
  });

  test("the streaming writer matches encodePcapng", async () => {
    const sink = memorySink();
    const w = new PcapngWriter(sink, { interfaces });
    const many = Array.from({ length: 500 }, (_, i) => ({
      timestampNs: BigInt(i),
      frame: frameOf(i * 3, i),
      interfaceId: i % 3,
      comment: i % 5 === 0 ? `packet ${i}` : undefined,
    }));
    many.push({ timestampNs: 1n, frame: frameOf(150_000, 1), interfaceId: 0, comment: "big" });
    for (const p of many) await w.write(p);
    await w.close();
    assert.deepEqual(sink.bytes(), encodePcapng(many, { interfaces }));
  });

  test("refuses what pcapng cannot hold with COLO_ERR_PCAP_UNWRITABLE", async () => {
    const bad = [
      { timestampNs: 0n, frame: frameOf(1, 1), interfaceId: 3 },
      { timestampNs: -1n, frame: frameOf(1, 1) },
      { timestampNs: 1n << 64n, frame: frameOf(1, 1) },
      { timestampNs: 0n, frame: frameOf(1, 1), comment: "x".repeat(70_000) },
      { timestampNs: 0n, frame: Buffer.alloc(300_000) },
    ];
    for (const p of bad) {
      assert.throws(() => encodePcapng([p], { interfaces }), { code: "COLO_ERR_PCAP_UNWRITABLE" });
      const w = new PcapngWriter(memorySink(), { interfaces });
      await assert.rejects(w.write(p), { code: "COLO_ERR_PCAP_UNWRITABLE" });
    }
  });
});
