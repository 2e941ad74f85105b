import assert from "node:assert/strict";
import { test } from "node:test";
import { ConnTable } from "../../src/conntrack/table.ts";
import { Conn, tuple } from "./fixtures.ts";

function table(keys: string[], now = 0) {
  const t = new ConnTable<Conn>();
  const conns = keys.map((k) => {
    const c = new Conn(k, t.nextSerial(), tuple, now);
    t.add(c, now);
    return c;
  });
  return { t, conns };
}

test("values() iterates in first-seen order; serials increase", () => {
  const { t, conns } = table(["a", "b", "c"]);
  assert.deepEqual(
    [...t.values()].map((c) => c.key),
    ["a", "b", "c"],
  );
  assert.deepEqual(
    conns.map((c) => c.serial),
    [0, 1, 2],
  );
});

test("eviction: closed before idle, least recently active first; connections holding packets never", () => {
  const { t, conns } = table(["a", "b", "c", "d"]);
  const [a, b, , d] = conns as [Conn, Conn, Conn, Conn];
  t.touch(a, 5); // a is now the most recently active
  b.held = true; // b holds packets
  d.closed = true;
  t.touch(d, 6);
  assert.equal(t.evictOne()?.key, "d", "closed first");
  assert.equal(t.evictOne()?.key, "c", "then least recently active idle");
  assert.equal(t.evictOne()?.key, "a");
  assert.equal(t.evictOne(), undefined, "b holds packets");
  assert.equal(t.size, 1);
  assert.equal(t.get("b"), b);
  assert.equal(t.isListed(b), false, "unlinked lazily when met");
  b.held = false;
  t.touch(b, 7);
  assert.ok(t.isListed(b));
  assert.equal(t.evictOne()?.key, "b");
});

test("touching many times costs nothing but keeps LRU order for eviction", () => {
  const { t, conns } = table(["a", "b", "c"]);
  for (let i = 1; i < 100; i++) t.touch(conns[i % 2]!, i); // a and b active, c untouched
  assert.equal(t.evictOne()?.key, "c");
  assert.equal(t.evictOne()?.key, "a", "a last touched at 98, b at 99");
  assert.equal(t.evictOne()?.key, "b");
});

test("expire: closed and idle timeouts, never a connection holding packets", () => {
  const { t, conns } = table(["a", "b", "c", "d"], 0);
  const [a, b, c, d] = conns as [Conn, Conn, Conn, Conn];
  t.touch(b, 50);
  c.closed = true;
  t.touch(c, 60);
  t.touch(a, 90);
  d.held = true;
  const removed: string[] = [];
  t.expire(100, 45, 30, (x) => removed.push(x.key));
  assert.deepEqual(removed.sort(), ["b", "c"]);
  assert.deepEqual(
    [...t.values()].map((x) => x.key),
    ["a", "d"],
  );
  t.expire(10_000, 1, 1, (x) => removed.push(x.key));
  assert.deepEqual(
    [...t.values()].map((x) => x.key),
    ["d"],
    "d holds packets",
  );
});

test("delete and clear", () => {
  const { t, conns } = table(["a", "b"]);
  t.delete(conns[0]!);
  assert.equal(t.get("a"), undefined);
  assert.equal(t.listed, 1);
  t.clear();
  assert.equal(t.size, 0);
  assert.equal(t.evictOne(), undefined);
});

test("a deleted connection touched afterwards is not relisted (evictOne never returns it)", () => {
  // A checkpoint completed from inside a push can evict the connection that push is working on;
  // the push then records activity on it. Relisted, it was "evicted" again and again forever.
  const { t, conns } = table(["a", "b"]);
  const [a, b] = [conns[0]!, conns[1]!];
  a.closed = true; // on the closed list's way: touch would move it there
  t.delete(a);
  t.touch(a, 5);
  assert.equal(t.isListed(a), false);
  assert.equal(t.listed, 1);
  assert.equal(t.evictOne(), b);
  assert.equal(t.evictOne(), undefined);
  assert.equal(t.size, 0);
});

test("deferFree: a deleted connection's row stays out of use until recycle(); at() still answers it", () => {
  const t = new ConnTable<Conn>({ deferFree: true });
  const a = new Conn("a", t.nextSerial(), tuple, 0);
  t.add(a, 0);
  const ix = a.ix;
  const page = t.pages[ix >>> 12]!;
  t.delete(a);
  assert.equal(a.ix, -1);
  assert.equal(t.at(ix), a, "in limbo: code holding the index still finds its (deleted) connection");
  const b = new Conn("b", t.nextSerial(), tuple, 0);
  t.add(b, 0);
  assert.notEqual(b.ix, ix, "not reused before recycle()");
  // Writes through the old index (an outer call finishing its packet) land in the dead row only.
  page[(ix & 4095) * 16] = 12345;
  t.touchIx(ix, 7);
  assert.equal(t.listed, 1, "a dead row is never relisted");
  t.recycle();
  assert.equal(t.at(ix), undefined);
  const c = new Conn("c", t.nextSerial(), tuple, 3);
  t.add(c, 3);
  assert.equal(c.ix, ix, "reused after recycle()");
  assert.equal(c.lastActive, 3, "with the new connection's own row, not the dead one's");
  assert.equal(c.closed, false);
  assert.equal(t.get("c"), c);
});

test("without deferFree a deleted row is reused at once; touchIx keeps the lists like touch", () => {
  const t = new ConnTable<Conn>();
  const a = new Conn("a", t.nextSerial(), tuple, 0);
  t.add(a, 0);
  const ix = a.ix;
  t.delete(a);
  assert.equal(t.at(ix), undefined);
  const b = new Conn("b", t.nextSerial(), tuple, 0);
  t.add(b, 0);
  assert.equal(b.ix, ix);
  b.closed = true;
  t.touchIx(b.ix, 5);
  assert.equal(b.lastActive, 5);
  assert.equal(t.evictOne(), b, "moved to the closed list by touchIx");
});

test("stageRow: a connection constructed on a staged row is added in place; staging again reuses the row", () => {
  const t = new ConnTable<Conn>({ deferFree: true });
  const row = t.stageRow();
  row.arr[row.base + 15] = 99; // a constructor would write the owner's words here
  const again = t.stageRow();
  assert.equal(again.base, row.base, "not added yet: the same row");
  assert.equal(again.arr[again.base + 15], 0, "zeroed again");
  const a = new Conn("a", t.nextSerial(), tuple, 4, again);
  a.rowArr[a.rowBase + 15] = 7;
  assert.equal(a.ix, -1, "not in the table before add");
  // A connection with a private row added meanwhile takes another row and leaves the staging.
  const p = new Conn("p", t.nextSerial(), tuple, 4);
  t.add(p, 4);
  assert.notEqual(t.pages[p.ix >>> 12]!, undefined);
  assert.ok(p.rowArr !== a.rowArr || p.rowBase !== a.rowBase);
  t.add(a, 4);
  assert.equal(a.rowArr, t.pages[a.ix >>> 12], "the staged row is its table row");
  assert.equal(a.rowBase, (a.ix & 4095) * 16);
  assert.equal(a.rowArr[a.rowBase + 15], 7, "its words are kept");
  assert.equal(a.lastActive, 4);
  assert.equal(t.get("a"), a);
  assert.equal(t.at(a.ix), a);
  // The staging was consumed: the next one is a new row, and deleting `a` gives it a private copy.
  const next = t.stageRow();
  assert.ok(next.base !== a.rowBase || next.arr !== a.rowArr);
  t.delete(a);
  assert.equal(a.rowArr.length, 16, "a private copy once deleted");
  assert.equal(a.rowArr[15], 7);
});

test("reserve grows the table now so that that many connections fit without growing later; never shrinks", () => {
  const { t, conns } = table(["a", "b", "c"]);
  assert.equal(t.capacity, 64);
  t.reserve(1000);
  assert.equal(t.capacity, 2048, "two slots per connection, a power of two");
  for (const c of conns) assert.equal(t.get(c.key), c, "every connection still found after the rehash");
  t.delete(conns[1]!);
  assert.equal(t.get("b"), undefined);
  assert.equal(t.get("c"), conns[2], "delete finds slots after a rehash");
  t.reserve(10);
  assert.equal(t.capacity, 2048, "never shrinks");
});
