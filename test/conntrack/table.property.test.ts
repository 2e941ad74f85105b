import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  ConnTable,
  hashKeyUnits,
  type KeyHash,
  MAX_TABLE_KEY_UNITS,
  ROW_WORDS,
} from "../../src/conntrack/table.ts";
import * as b from "../../src/packet/build.ts";
import { newFrameMeta, ParseStatus } from "../../src/packet/meta.ts";
import { parseFrame } from "../../src/packet/parse.ts";
import { anyFrame } from "../packet/arb.ts";
import { Conn, tuple } from "./fixtures.ts";

const HASHES: [string, KeyHash][] = [
  ["default", hashKeyUnits],
  ["constant (every key collides)", () => 0],
  ["first unit & 3", (u, len) => (len > 0 ? u[0]! & 3 : 7)],
  ["length only", (_u, len) => len * 0x10001],
];

/** Keys over a tiny alphabet (equal keys, shared prefixes, surrogate halves) of 0..22 units. */
const key = fc
  .array(fc.constantFrom(0, 1, 65, 0xd800, 0xffff), { minLength: 0, maxLength: 22 })
  .map((u) => String.fromCharCode(...u));

type Op =
  | { op: "add"; key: string; keyed: boolean; staged: boolean }
  | { op: "get"; key: string }
  | { op: "delete"; key: string }
  | { op: "evict" }
  | { op: "hold"; key: string }
  | { op: "clear" };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .tuple(key, fc.boolean(), fc.boolean())
      .map(([k, keyed, staged]) => ({ op: "add" as const, key: k, keyed, staged })),
  },
  { weight: 3, arbitrary: key.map((k) => ({ op: "get" as const, key: k })) },
  { weight: 3, arbitrary: key.map((k) => ({ op: "delete" as const, key: k })) },
  { weight: 1, arbitrary: key.map((k) => ({ op: "hold" as const, key: k })) },
  { weight: 1, arbitrary: fc.constant({ op: "evict" as const }) },
  { weight: 1, arbitrary: fc.constant({ op: "clear" as const }) },
);

function units(k: string): Uint16Array {
  const u = new Uint16Array(MAX_TABLE_KEY_UNITS + 3).fill(0xabcd); // junk after the key
  for (let i = 0; i < k.length; i++) u[i] = k.charCodeAt(i);
  return u;
}

function checkAgainst(t: ConnTable<Conn>, model: Map<string, Conn>): void {
  assert.equal(t.size, model.size);
  assert.ok(2 * t.size <= t.capacity, "load at most 1/2");
  assert.deepEqual(
    [...t.values()].map((c) => c.key),
    [...model.keys()],
    "first-seen order",
  );
  const rows = new Set<number>();
  for (const [k, c] of model) {
    assert.equal(t.get(k), c);
    assert.equal(t.find(units(k), k.length), c);
    assert.ok(!rows.has(c.ix), "each connection its own row");
    rows.add(c.ix);
    assert.equal(t.at(c.ix), c);
    assert.equal(c.rowArr[c.rowBase + OWNER_WORD], c.serial + 1, "the owner's row word survives moves");
  }
}

/** A row word the tests write as the owner would (the table must carry it along). */
const OWNER_WORD = ROW_WORDS - 1;

for (const [name, hash] of HASHES) {
  test(`random add/get/delete/evict/clear sequences agree with a Map (hash: ${name})`, () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
        const t = new ConnTable<Conn>({ initialCapacity: 8, hash });
        const model = new Map<string, Conn>();
        let now = 0;
        for (const o of ops) {
          now++;
          switch (o.op) {
            case "add": {
              // Staged: constructed on the table row it will have (no private row).
              const c = new Conn(o.key, t.nextSerial(), tuple, now, o.staged ? t.stageRow() : null);
              c.rowArr[c.rowBase + OWNER_WORD] = c.serial + 1; // before add: carried into the table
              if (o.keyed) {
                // The engine's way: the frame's units (junk after the key) and their hash.
                const u = units(o.key);
                t.addKeyed(c, now, u, o.key.length, t.hashOf(u, o.key.length));
              } else t.add(c, now);
              model.delete(o.key); // replacing moves the key to the end, like Map delete + set
              model.set(o.key, c);
              break;
            }
            case "get": {
              assert.equal(t.get(o.key), model.get(o.key));
              const u = units(o.key);
              assert.equal(t.find(u, o.key.length), model.get(o.key));
              assert.equal(
                t.hashOf(u, o.key.length),
                hash(u, o.key.length) | 0,
                "hashOf: the table's hash, int32",
              );
              assert.equal(t.findHashed(u, o.key.length, t.hashOf(u, o.key.length)), model.get(o.key));
              break;
            }
            case "delete": {
              const c = model.get(o.key);
              if (c !== undefined) {
                t.delete(c);
                model.delete(o.key);
                assert.equal(c.ix, -1);
                assert.equal(
                  c.rowArr[c.rowBase + OWNER_WORD],
                  c.serial + 1,
                  "a deleted connection keeps its row",
                );
                t.delete(c); // a second delete is a no-op
              }
              break;
            }
            case "hold": {
              const c = model.get(o.key);
              if (c !== undefined) c.held = !c.held;
              if (c !== undefined && !c.held) t.touch(c, now);
              break;
            }
            case "evict": {
              const c = t.evictOne();
              if (c === undefined) {
                assert.ok([...model.values()].every((x) => x.held) || model.size === 0);
              } else {
                assert.equal(model.get(c.key), c, "evicted a connection of the table");
                assert.equal(c.held, false, "never one holding packets");
                model.delete(c.key);
              }
              break;
            }
            case "clear":
              t.clear();
              model.clear();
              assert.equal(t.capacity, 8, "back to the initial capacity");
              break;
          }
          checkAgainst(t, model);
        }
      }),
      { numRuns: 300 },
    );
  });
}

for (const [name, hash] of HASHES) {
  test(`warm changes nothing; findIx finds each stored key's row, whose connection is at() (hash: ${name})`, () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(key, { maxLength: 60 }),
        fc.array(key, { maxLength: 40 }),
        (stored, probes) => {
          const t = new ConnTable<Conn>({ initialCapacity: 8, hash });
          const model = new Map<string, Conn>();
          for (const k of stored) {
            const c = new Conn(k, t.nextSerial(), tuple, 0);
            t.add(c, 0);
            model.set(k, c);
          }
          const keys = [...probes, ...stored];
          const hashes = new Int32Array(keys.length);
          const lens = new Uint8Array(keys.length);
          keys.forEach((k, i) => {
            hashes[i] = t.hashOf(units(k), k.length);
            lens[i] = k.length;
          });
          const before = t.pages.map((p) => p.slice());
          t.warm(hashes, lens, keys.length);
          assert.deepEqual(t.pages, before, "warm writes no row");
          keys.forEach((k, i) => {
            const c = model.get(k);
            const ix = t.findIx(units(k), k.length, hashes[i]!);
            if (c === undefined) assert.equal(ix, -1, `${JSON.stringify(k)} is not stored`);
            else {
              assert.equal(ix, c.ix, "the connection's row index");
              assert.equal(t.at(ix), c);
              assert.equal(c.rowArr, t.pages[ix >>> 12], "its row is in the table's page");
            }
            assert.equal(t.findHashed(units(k), k.length, hashes[i]!), c);
          });
        },
      ),
      { numRuns: 200 },
    );
  });
}

test("grows past many collisions and deletes back to empty (constant hash, 300 keys)", () => {
  const t = new ConnTable<Conn>({ initialCapacity: 8, hash: () => 5 });
  const conns: Conn[] = [];
  for (let i = 0; i < 300; i++) {
    const c = new Conn(`k${i}`, t.nextSerial(), tuple, 0);
    t.add(c, 0);
    conns.push(c);
  }
  assert.equal(t.capacity, 1024);
  for (let i = 0; i < 300; i += 2) t.delete(conns[i]!);
  for (let i = 0; i < 300; i++) assert.equal(t.get(`k${i}`), i % 2 === 0 ? undefined : conns[i]);
  for (let i = 1; i < 300; i += 2) t.delete(conns[i]!);
  assert.equal(t.size, 0);
  assert.deepEqual([...t.values()], []);
  assert.equal(t.get("k1"), undefined);
});

test("a key longer than a slot holds is refused with RangeError", () => {
  const t = new ConnTable<Conn>();
  const long = "x".repeat(MAX_TABLE_KEY_UNITS + 1);
  assert.throws(() => t.add(new Conn(long, 0, tuple, 0), 0), RangeError);
  assert.equal(t.size, 0);
  assert.equal(t.get("x".repeat(MAX_TABLE_KEY_UNITS)), undefined);
});

test("a connection added under a parsed frame's key string is found by the frame's key units", () => {
  const withString = newFrameMeta();
  const unitsOnly = newFrameMeta();
  unitsOnly.keyString = false;
  fc.assert(
    fc.property(fc.array(anyFrame, { minLength: 1, maxLength: 20 }), (frames) => {
      const t = new ConnTable<Conn>({ initialCapacity: 8 });
      const byKey = new Map<string, Conn>();
      for (const { frame, vnetLen } of frames) {
        parseFrame(frame, vnetLen, withString);
        assert.equal(withString.status, ParseStatus.Ok);
        if (!byKey.has(withString.key)) {
          const c = new Conn(withString.key, t.nextSerial(), tuple, 0);
          t.add(c, 0);
          byKey.set(withString.key, c);
        }
      }
      for (const { frame, vnetLen } of frames) {
        parseFrame(frame, vnetLen, unitsOnly);
        parseFrame(frame, vnetLen, withString);
        assert.equal(t.find(unitsOnly.keyUnits, unitsOnly.keyLen), byKey.get(withString.key));
      }
    }),
    { numRuns: 200 },
  );
});

test("frames differing only in a VLAN id, a port or an address byte find different connections", () => {
  const m = newFrameMeta();
  m.keyString = false;
  const t = new ConnTable<Conn>();
  const variants = [
    b.buildTcp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 80, dport: 5000 }),
    b.buildTcp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 80, dport: 5001 }),
    b.buildTcp({ src: "10.0.0.1", dst: "10.0.0.3", sport: 80, dport: 5000 }),
    b.buildTcp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 80, dport: 5000, vlan: 7 }),
    b.buildUdp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 80, dport: 5000 }),
    b.buildTcp({ src: "fd00::1", dst: "fd00::2", sport: 80, dport: 5000 }),
  ];
  const conns = variants.map((f, i) => {
    const k = newFrameMeta();
    parseFrame(f, 0, k);
    const c = new Conn(k.key, i, tuple, 0);
    t.add(c, 0);
    return c;
  });
  assert.equal(t.size, variants.length);
  variants.forEach((f, i) => {
    parseFrame(f, 0, m);
    assert.equal(t.find(m.keyUnits, m.keyLen), conns[i]);
  });
});
