/**
 * @module Rewriter engine behaviour beyond the reference: timestamps, close tracking, expiry,
 * bounded table, failover, reuse, malformed input, stats and the connections() listing.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Rewriter, type RewriterOptions, Verdict } from "../../src/rewrite/engine.ts";
import { type SegSpec, stepFrame } from "./scenarios.ts";
import { arpFrame, checksumsValid, locate, readAck, readSeq } from "./tcp-frames.ts";

/** Drives one connection (client 10.0.0.1:port ↔ guest 10.0.0.2:80) through a Rewriter. */
class Conn {
  now = 1000;
  constructor(
    readonly r: Rewriter,
    readonly port = 40000,
  ) {}
  tx(seg: SegSpec, at?: number): Uint8Array {
    const f = stepFrame({ clientPort: this.port }, { dir: "tx", seg });
    this.r.tx(f, 0, at ?? ++this.now);
    return f;
  }
  rx(seg: SegSpec, at?: number): Uint8Array {
    const f = stepFrame({ clientPort: this.port }, { dir: "rx", seg });
    this.r.rx(f, 0, at ?? ++this.now);
    return f;
  }
  /** Passive open: client ISN 1000, SVM ISN 5000, PVM ISN 3000 (offset 2000). */
  handshake(opts: { ts?: boolean } = {}): void {
    this.tx({ seq: 1000, flags: "S", ts: opts.ts ? [100, 0] : undefined });
    this.rx({ seq: 5000, ack: 1001, flags: "SA", ts: opts.ts ? [70_000, 100] : undefined });
    this.tx({ seq: 1001, ack: 3001, flags: "A", ts: opts.ts ? [101, 40_000] : undefined });
  }
}

function tsOf(f: Uint8Array): [number, number] {
  const { tcp } = locate(f);
  const b = Buffer.from(f);
  const i = b.indexOf(Buffer.from([8, 10]), tcp + 20);
  return [b.readUInt32BE(i + 2), b.readUInt32BE(i + 6)];
}

const rw = (o: RewriterOptions = {}) => new Rewriter(o);

describe("rewrite engine: timestamps option", () => {
  test("off by default: TSval/TSecr are left alone", () => {
    const c = new Conn(rw());
    c.handshake({ ts: true });
    const f = c.rx({ seq: 5001, ack: 1001, flags: "PA", payload: "x", ts: [70_010, 101] });
    assert.deepEqual(tsOf(f), [70_010, 101]);
    assert.equal(readSeq(f), 3001);
  });

  test("on: guest TSval moves into PVM space, client TSecr into SVM space (passive open)", () => {
    const r = rw({ timestamps: true });
    const c = new Conn(r);
    c.handshake({ ts: true }); // SVM TSval 70000 vs PVM TSval 40000 (echoed by the client)
    const g = c.rx({ seq: 5001, ack: 1001, flags: "PA", payload: "x", ts: [70_010, 101] });
    assert.deepEqual(tsOf(g), [40_010, 101]);
    const k = c.tx({ seq: 1001, ack: 3002, flags: "A", ts: [102, 40_010] });
    assert.deepEqual(tsOf(k), [102, 70_010]);
    assert.equal(readAck(k), 5002);
    assert.ok(checksumsValid(g) && checksumsValid(k));
    assert.equal(r.connections()[0]!.tsOffset, 30_000);
    assert.ok(r.stats.timestampsRewritten >= 2);
  });

  test("on: active open learns the TS offset from the guest SYN and the peer's SYN-ACK TSecr", () => {
    const r = rw({ timestamps: true });
    const c = new Conn(r);
    c.rx({ seq: 5000, flags: "S", ts: [9_000, 0] });
    const sa = c.tx({ seq: 1000, ack: 3001, flags: "SA", ts: [555, 4_000] });
    assert.deepEqual(tsOf(sa), [555, 9_000]);
    assert.equal(readAck(sa), 5001);
    const d = c.rx({ seq: 5001, ack: 1001, flags: "PA", payload: "q", ts: [9_005, 555] });
    assert.deepEqual(tsOf(d), [4_005, 555]);
    assert.equal(readSeq(d), 3001);
  });

  test("on: the TS offset wraps modulo 2^32", () => {
    const r = rw({ timestamps: true });
    const c = new Conn(r);
    c.tx({ seq: 1000, flags: "S", ts: [1, 0] });
    c.rx({ seq: 5000, ack: 1001, flags: "SA", ts: [5, 1] });
    c.tx({ seq: 1001, ack: 3001, flags: "A", ts: [2, 0xfffffff0] });
    const g = c.rx({ seq: 5001, ack: 1001, flags: "A", ts: [20, 2] });
    assert.deepEqual(tsOf(g), [(20 - 21 + 0x100000000) >>> 0, 2]);
    assert.ok(checksumsValid(g));
  });
});

describe("rewrite engine: connection lifecycle", () => {
  test("FIN both ways then the last ACK closes; retransmissions are still rewritten until expiry", () => {
    const r = rw({ closedTimeoutMs: 100 });
    const c = new Conn(r);
    c.handshake();
    c.tx({ seq: 1001, ack: 3001, flags: "FA" });
    assert.equal(r.connections()[0]!.phase, "closing");
    c.rx({ seq: 5001, ack: 1002, flags: "FA" });
    const last = c.tx({ seq: 1002, ack: 3002, flags: "A" });
    assert.equal(readAck(last), 5002);
    assert.equal(r.connections()[0]!.phase, "closed");
    assert.equal(r.stats.connectionsClosed, 1);
    // The SVM retransmits its FIN (the last ACK was lost): still translated.
    const again = c.rx({ seq: 5001, ack: 1002, flags: "FA" });
    assert.equal(readSeq(again), 3001);
    assert.equal(r.expire(c.now + 50), 0);
    assert.equal(r.expire(c.now + 100), 1);
    assert.equal(r.size, 0);
    assert.equal(r.stats.connectionsExpired, 0, "a closed entry ending is not an idle expiry");
  });

  test("guest closes first (FIN+ACK from the SVM, in SVM space)", () => {
    const r = rw();
    const c = new Conn(r);
    c.handshake();
    c.rx({ seq: 5001, ack: 1001, flags: "FA" });
    c.tx({ seq: 1001, ack: 3002, flags: "FA" });
    assert.equal(r.connections()[0]!.phase, "closing");
    c.rx({ seq: 5002, ack: 1002, flags: "A" });
    assert.equal(r.connections()[0]!.phase, "closed");
  });

  test("RST in either direction closes the connection", () => {
    for (const dir of ["tx", "rx"] as const) {
      const r = rw();
      const c = new Conn(r);
      c.handshake();
      if (dir === "tx") c.tx({ seq: 1001, flags: "R" });
      else c.rx({ seq: 5001, flags: "R" });
      assert.equal(r.connections()[0]!.phase, "closed", dir);
    }
  });

  test("a retransmitted SYN keeps the entry; a new ISN on the same 4-tuple replaces it", () => {
    const r = rw();
    const c = new Conn(r);
    c.tx({ seq: 1000, flags: "S" });
    c.rx({ seq: 5000, ack: 1001, flags: "SA" });
    c.tx({ seq: 1000, flags: "S" });
    c.tx({ seq: 1001, ack: 3001, flags: "A" });
    assert.equal(r.connections()[0]!.offset, 2000);
    assert.equal(r.stats.connectionsReused, 0);
    c.tx({ seq: 8000, flags: "S" });
    assert.equal(r.stats.connectionsReused, 1);
    assert.equal(r.size, 1);
    assert.equal(r.connections()[0]!.offsetKnown, false);
  });

  test("idle entries expire by phase: handshake sooner than established", () => {
    const r = rw({ handshakeTimeoutMs: 10, idleTimeoutMs: 1000 });
    const a = new Conn(r, 1);
    a.handshake();
    const b = new Conn(r, 2);
    b.tx({ seq: 7, flags: "S" }, a.now);
    assert.equal(r.expire(a.now + 10), 1);
    assert.equal(r.connections()[0]!.phase, "established");
    assert.equal(r.expire(a.now + 1000), 1);
    assert.equal(r.stats.connectionsExpired, 2);
  });

  test("the table is bounded: beyond maxConnections the oldest entry is evicted", () => {
    const r = rw({ maxConnections: 3 });
    for (let p = 1; p <= 10; p++) new Conn(r, p).tx({ seq: p, flags: "S" }, 5000);
    assert.equal(r.size, 3);
    assert.equal(r.stats.connectionsEvicted, 7);
    assert.deepEqual(
      r.connections().map((x) => x.flow),
      [8, 9, 10].map((p) => `tcp 10.0.0.2:80 > 10.0.0.1:${p}`),
    );
    // A SYN flood is bounded and idle entries are reclaimed before evicting.
    const r2 = rw({ maxConnections: 2, handshakeTimeoutMs: 5 });
    new Conn(r2, 1).tx({ seq: 1, flags: "S" }, 0);
    new Conn(r2, 2).tx({ seq: 1, flags: "S" }, 0);
    new Conn(r2, 3).tx({ seq: 1, flags: "S" }, 2000);
    assert.equal(r2.stats.connectionsEvicted, 0);
    assert.equal(r2.stats.connectionsExpired, 2);
  });
});

describe("rewrite engine: checkpoint and failover", () => {
  test("checkpoint zeroes every offset and counts", () => {
    const r = rw();
    const a = new Conn(r, 1);
    a.handshake();
    r.checkpoint(a.now);
    assert.equal(r.stats.checkpoints, 1);
    assert.deepEqual(
      r.connections().map((x) => [x.offset, x.offsetKnown]),
      [[0, true]],
    );
    const f = a.tx({ seq: 1001, ack: 3001, flags: "A" });
    assert.equal(r.tx(f, 0, a.now), Verdict.Pass);
  });

  test("failover: tracked connections keep their offset, new ones are untouched, handshakes finish", () => {
    const r = rw();
    const old = new Conn(r, 1);
    old.handshake();
    const mid = new Conn(r, 2);
    mid.tx({ seq: 1000, flags: "S" });
    mid.rx({ seq: 5000, ack: 1001, flags: "SA" });
    r.failover();
    assert.equal(r.stats.failover, true);
    assert.equal(readSeq(old.rx({ seq: 5001, ack: 1001, flags: "A" })), 3001);
    // The client's handshake ACK arrives after failover: the offset is still learned and applied.
    assert.equal(readAck(mid.tx({ seq: 1001, ack: 3001, flags: "A" })), 5001);
    const fresh = new Conn(r, 3);
    fresh.tx({ seq: 1000, flags: "S" });
    fresh.rx({ seq: 5000, ack: 1001, flags: "SA" });
    assert.equal(readAck(fresh.tx({ seq: 1001, ack: 3001, flags: "A" })), 3001);
    assert.equal(r.size, 2);
  });
});

describe("rewrite engine: input handling and observability", () => {
  test("malformed frames pass unchanged and are counted by code", () => {
    const r = rw();
    const good = stepFrame({}, { dir: "tx", seg: { seq: 1, flags: "S" } });
    const cut = good.slice(0, 30); // ends inside the IPv4 header
    const copy = cut.slice();
    assert.equal(r.tx(cut, 0, 1), Verdict.Pass);
    assert.deepEqual(cut, copy);
    assert.equal(r.stats.malformed, 1);
    assert.equal(r.stats.malformedByCode.COLO_ERR_PKT_TRUNCATED, 1);
    assert.equal(r.rx(new Uint8Array(3), 0, 1), Verdict.Pass);
    assert.equal(r.stats.malformed, 2);
  });

  test("non-TCP frames pass unchanged", () => {
    const r = rw();
    const a = arpFrame(1);
    const copy = a.slice();
    assert.equal(r.tx(a, 0, 1), Verdict.Pass);
    assert.equal(r.rx(a, 0, 1), Verdict.Pass);
    assert.deepEqual(a, copy);
    assert.equal(r.stats.nonTcp, 2);
  });

  test("stats and connections() describe what happened", () => {
    const r = rw();
    const c = new Conn(r);
    c.handshake();
    c.rx({ seq: 5001, ack: 1001, flags: "PA", payload: "x" });
    c.tx({ seq: 1001, ack: 3002, flags: "A", sack: [[3001, 3002]] });
    const [info] = r.connections();
    assert.deepEqual(
      { ...info, firstSeen: 0, lastSeen: 0 },
      {
        flow: "tcp 10.0.0.2:80 > 10.0.0.1:40000",
        origin: "passive",
        phase: "established",
        offsetKnown: true,
        offset: 2000,
        tsOffset: 0,
        firstSeen: 0,
        lastSeen: 0,
        packetsTx: 3,
        packetsRx: 2,
        rewrittenTx: 2,
        rewrittenRx: 1,
      },
    );
    assert.equal(r.stats.framesTx, 3);
    assert.equal(r.stats.framesRx, 2);
    assert.equal(r.stats.rewrittenTx, 2);
    assert.equal(r.stats.rewrittenRx, 1);
    assert.equal(r.stats.sackBlocksRewritten, 1);
    assert.equal(r.stats.offsetsLearned, 1);
    assert.equal(r.stats.connectionsOpened, 1);
    assert.equal(r.stats.connections, 1);
  });

  test("active open with a lagging SVM: the peer's SYN-ACK arrives before the SVM's SYN", () => {
    const r = rw();
    const c = new Conn(r);
    const sa = c.tx({ seq: 1000, ack: 3001, flags: "SA" });
    assert.equal(readAck(sa), 3001, "nothing to translate yet");
    c.rx({ seq: 5000, flags: "S" });
    assert.equal(readAck(c.tx({ seq: 1000, ack: 3001, flags: "SA" })), 5001, "retransmitted SYN-ACK");
    assert.equal(readSeq(c.rx({ seq: 5001, ack: 1001, flags: "A" })), 3001);
  });
});

describe("rewrite engine: flow keys", () => {
  // Flow keys are strings of 16-bit units; address/port words in 0xd800–0xdfff form UTF-16
  // surrogate pairs, which a code-point-wise key reversal would corrupt.
  for (const flow of [
    { client: "216.1.220.5", guest: "10.0.0.2", clientPort: 0xd801 },
    { family: 6 as const, client: "2001:db8::d800:dc00", guest: "fd00::dbff:df00", clientPort: 56320 },
  ]) {
    test(`a connection whose key contains surrogate-range words is tracked both ways (${flow.client})`, () => {
      const r = rw();
      const f = (dir: "tx" | "rx", seg: SegSpec) => {
        const b = stepFrame(flow, { dir, seg });
        if (dir === "tx") r.tx(b, 0, 1);
        else r.rx(b, 0, 1);
        return b;
      };
      f("tx", { seq: 1000, flags: "S" });
      f("rx", { seq: 5000, ack: 1001, flags: "SA" });
      assert.equal(readAck(f("tx", { seq: 1001, ack: 3001, flags: "A" })), 5001);
      assert.equal(readSeq(f("rx", { seq: 5001, ack: 1001, flags: "A" })), 3001);
    });
  }
});
