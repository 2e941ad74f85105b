import assert from "node:assert/strict";
import { test } from "node:test";
import type { FlowTuple } from "../../src/conntrack/flow.ts";
import { ConnTable, TrackedConn } from "../../src/conntrack/table.ts";

const tuple: FlowTuple = {
  vlanOuter: -1,
  vlanInner: -1,
  etherType: 0x800,
  family: 4,
  proto: 17,
  src: new Uint8Array(4),
  dst: new Uint8Array(4),
  srcPort: 1,
  dstPort: 2,
  fragment: false,
};

function table(keys: string[], now = 0) {
  const t = new ConnTable<TrackedConn>();
  const conns = keys.map((k) => {
    const c = new TrackedConn(k, t.nextSerial(), tuple, now);
    t.add(c);
    t.idle(c, now);
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

test("eviction: closed before idle, least recently active first; busy connections never", () => {
  const { t, conns } = table(["a", "b", "c", "d"]);
  const [a, b, c, d] = conns as [TrackedConn, TrackedConn, TrackedConn, TrackedConn];
  t.idle(a, 5); // a is now most recent
  t.busy(b); // b holds packets
  d.closed = true;
  t.idle(d, 6);
  assert.equal(t.evictable, 3);
  assert.equal(t.evictOne()?.key, "d", "closed first");
  assert.equal(t.evictOne()?.key, "c", "then least recently active idle");
  assert.equal(t.evictOne()?.key, "a");
  assert.equal(t.evictOne(), undefined, "b is busy");
  assert.equal(t.size, 1);
  assert.ok(t.isBusy(b));
  assert.equal(t.get("b"), b);
  void c;
});

test("expire: closed and idle timeouts, stops at the first survivor", () => {
  const { t, conns } = table(["a", "b", "c"], 0);
  const [a, b, c] = conns as [TrackedConn, TrackedConn, TrackedConn];
  t.idle(b, 50);
  c.closed = true;
  t.idle(c, 60);
  t.idle(a, 90);
  const removed: string[] = [];
  t.expire(100, 45, 30, (x) => removed.push(x.key));
  assert.deepEqual(removed, ["c", "b"]);
  assert.deepEqual(
    [...t.values()].map((x) => x.key),
    ["a"],
  );
  t.busy(a);
  t.expire(10_000, 1, 1, (x) => removed.push(x.key));
  assert.equal(t.size, 1, "busy connections never expire");
});

test("delete and clear", () => {
  const { t, conns } = table(["a", "b"]);
  t.delete(conns[0]!);
  assert.equal(t.get("a"), undefined);
  assert.equal(t.evictable, 1);
  t.clear();
  assert.equal(t.size, 0);
  assert.equal(t.evictOne(), undefined);
});
