import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  checksumUpdate16,
  checksumUpdate32,
  fold,
  internetChecksum,
  ipv4PseudoSum,
  ipv6PseudoSum,
  sum16,
  verifyChecksum,
} from "../../src/packet/checksum.ts";

/** Reference RFC 1071 checksum: one word at a time, fold after every add. */
function refChecksum(b: Uint8Array, start: number, end: number): number {
  let s = 0;
  for (let i = start; i < end; i += 2) {
    s += ((b[i] ?? 0) << 8) | (i + 1 < end ? (b[i + 1] ?? 0) : 0);
    s = (s & 0xffff) + (s >>> 16);
  }
  return ~s & 0xffff;
}

test("RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2", () => {
  const b = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
  assert.equal(fold(sum16(b, 0, b.length)), 0xddf2);
  assert.equal(internetChecksum(b, 0, b.length), 0x220d);
});

test("a real IPv4 header checksum (0xb861) verifies and recomputes", () => {
  const h = Buffer.from("450000730000400040110000c0a80001c0a800c7", "hex");
  assert.equal(internetChecksum(h, 0, 20), 0xb861);
  h.writeUInt16BE(0xb861, 10);
  assert.ok(verifyChecksum(h, 0, 20));
  h[8] = 0x3f;
  assert.ok(!verifyChecksum(h, 0, 20));
});

test("odd lengths pad the last byte on the right", () => {
  const b = Uint8Array.from([0x12, 0x34, 0x56]);
  assert.equal(sum16(b, 0, 3), 0x1234 + 0x5600);
});

test("sum16/internetChecksum equal the word-at-a-time reference for any bytes and range", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), (b, x, y) => {
      const s = b.length === 0 ? 0 : x % (b.length + 1);
      const e = s + (b.length - s === 0 ? 0 : y % (b.length - s + 1));
      assert.equal(internetChecksum(b, s, e), refChecksum(b, s, e));
    }),
  );
});

test("sums chain across even split points", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 2, maxLength: 200 }), fc.nat(), (b, x) => {
      const mid = (x % (b.length + 1)) & ~1;
      assert.equal(fold(sum16(b, mid, b.length, sum16(b, 0, mid))), fold(sum16(b, 0, b.length)));
    }),
  );
});

test("fold handles sums beyond 32 bits", () => {
  assert.equal(fold(0x1_0000_0000), 1);
  assert.equal(fold(0xffff * 70000), fold((0xffff * 70000) % 0xffff) || 0xffff);
});

const packetWithChecksum = fc
  .record({
    words: fc.integer({ min: 3, max: 200 }),
    seed: fc.uint8Array({ minLength: 400, maxLength: 400 }),
    ckWord: fc.nat(),
    fieldWord: fc.nat(),
    newValue: fc.nat({ max: 0xffff_ffff }),
    zero: fc.boolean(),
  })
  .map(({ words, seed, ckWord, fieldWord, newValue, zero }) => {
    // Sometimes an almost-zero packet, to reach the 0x0000/0xffff corner cases.
    const b = zero ? new Uint8Array(words * 2) : seed.slice(0, words * 2);
    if (zero) b[(seed[0]! % words) * 2 + 1] = seed[1]! & 1;
    const ck = (ckWord % words) * 2;
    let field = (fieldWord % (words - 2)) * 2;
    if (field <= ck && ck < field + 4) field = (ck + 2) % (words * 2 - 2);
    if (field <= ck && ck < field + 4) field = ck + 2 <= words * 2 - 4 ? ck + 2 : 0;
    b[ck] = 0;
    b[ck + 1] = 0;
    const c = internetChecksum(b, 0, b.length);
    b[ck] = c >> 8;
    b[ck + 1] = c & 0xff;
    return { b, ck, field, newValue };
  })
  .filter(({ ck, field }) => !(field <= ck && ck < field + 4));

test("RFC 1624 16-bit incremental update equals full recomputation", () => {
  fc.assert(
    fc.property(packetWithChecksum, ({ b, ck, field, newValue }) => {
      const old = (b[field]! << 8) | b[field + 1]!;
      const nv = newValue & 0xffff;
      const hc = (b[ck]! << 8) | b[ck + 1]!;
      const inc = checksumUpdate16(hc, old, nv);
      b[field] = nv >> 8;
      b[field + 1] = nv & 0xff;
      b[ck] = 0;
      b[ck + 1] = 0;
      // The one documented exception: all covered words zero (never true of IP/TCP/UDP/ICMP).
      fc.pre(b.some((x) => x !== 0));
      assert.equal(inc, internetChecksum(b, 0, b.length));
    }),
    { numRuns: 2000 },
  );
});

test("RFC 1624 32-bit incremental update equals full recomputation", () => {
  fc.assert(
    fc.property(packetWithChecksum, ({ b, ck, field, newValue }) => {
      const old = ((b[field]! << 24) | (b[field + 1]! << 16) | (b[field + 2]! << 8) | b[field + 3]!) >>> 0;
      const hc = (b[ck]! << 8) | b[ck + 1]!;
      const inc = checksumUpdate32(hc, old, newValue);
      b[field] = newValue >>> 24;
      b[field + 1] = (newValue >>> 16) & 0xff;
      b[field + 2] = (newValue >>> 8) & 0xff;
      b[field + 3] = newValue & 0xff;
      b[ck] = 0;
      b[ck + 1] = 0;
      // The one documented exception: all covered words zero (never true of IP/TCP/UDP/ICMP).
      fc.pre(b.some((x) => x !== 0));
      assert.equal(inc, internetChecksum(b, 0, b.length));
    }),
    { numRuns: 2000 },
  );
});

test("RFC 1624 section 4 example: 0xcd7a, 0x5555 -> 0x3285 gives 0x0000", () => {
  // HC = 0xdd2f, m = 0x5555, m' = 0x3285 (the RFC's worked example) -> HC' = 0x0000.
  assert.equal(checksumUpdate16(0xdd2f, 0x5555, 0x3285), 0x0000);
});

test("pseudo-header sums match a hand-built pseudo header", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 0x1ffff }),
      (addrs, proto, len) => {
        const v4 = new Uint8Array(12);
        v4.set(addrs.subarray(0, 8));
        v4[9] = proto;
        v4[10] = (len & 0xffff) >> 8;
        v4[11] = len & 0xff;
        assert.equal(fold(ipv4PseudoSum(addrs, 0, 4, proto, len & 0xffff)), fold(sum16(v4, 0, 12)));
        const v6 = new Uint8Array(40);
        v6.set(addrs, 0);
        v6[32] = len >>> 24;
        v6[33] = (len >>> 16) & 0xff;
        v6[34] = (len >>> 8) & 0xff;
        v6[35] = len & 0xff;
        v6[39] = proto;
        assert.equal(fold(ipv6PseudoSum(addrs, 0, 16, proto, len)), fold(sum16(v6, 0, 40)));
      },
    ),
  );
});

test("RFC 1624 updates at odd offsets (byte-swapped contribution) equal full recomputation", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 24, maxLength: 80 }),
      fc.nat(),
      fc.nat({ max: 0xffff_ffff }),
      fc.boolean(),
      (seed, pos, nv, wide) => {
        const b = seed.slice(0, seed.length & ~1);
        // checksum at 0..1, field at an odd offset >= 3 that fits
        const width = wide ? 4 : 2;
        const maxStart = b.length - width;
        let field = 3 + (pos % Math.max(1, maxStart - 2));
        if (field % 2 === 0) field--;
        fc.pre(field >= 3 && field + width <= b.length);
        b[0] = 0;
        b[1] = 0;
        const hc = internetChecksum(b, 0, b.length);
        let old = 0;
        for (let i = 0; i < width; i++) old = old * 256 + b[field + i]!;
        const v = wide ? nv : nv & 0xffff;
        for (let i = 0; i < width; i++) b[field + i] = Math.floor(v / 256 ** (width - 1 - i)) & 0xff;
        fc.pre(b.some((x) => x !== 0));
        const inc = wide ? checksumUpdate32(hc, old, v, true) : checksumUpdate16(hc, old, v, true);
        assert.equal(inc, internetChecksum(b, 0, b.length));
      },
    ),
    { numRuns: 2000 },
  );
});
