import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { CompareEngine } from "../../src/compare/engine.ts";
import { buildTcp } from "../../src/packet/build.ts";
import { ipv4PseudoSum, verifyChecksum } from "../../src/packet/checksum.ts";
import { RecordingSink, setup, stream, tcp, udp } from "./harness.ts";

/** Cut [0, len) at the given points (deduplicated, sorted) into [start, end) pieces. */
function pieces(len: number, cuts: number[]): [number, number][] {
  const pts = [...new Set(cuts.map((c) => c % len).filter((c) => c > 0))].sort((a, b) => a - b);
  const out: [number, number][] = [];
  let at = 0;
  for (const p of [...pts, len]) {
    out.push([at, p]);
    at = p;
  }
  return out;
}

/** Merges two sequences keeping each one's order, choosing by the flags. */
function interleave<A, B>(a: A[], b: B[], picks: boolean[]): ({ p: A } | { s: B })[] {
  const out: ({ p: A } | { s: B })[] = [];
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length || j < b.length) {
    const takeA = j >= b.length || (i < a.length && (picks[k++ % Math.max(1, picks.length)] ?? true));
    if (takeA) out.push({ p: a[i++]! });
    else out.push({ s: b[j++]! });
  }
  return out;
}

const streamCase = fc.record({
  len: fc.integer({ min: 1, max: 4000 }),
  seed: fc.integer({ min: 1, max: 1 << 30 }),
  // ISNs anywhere, including right below 2^32 so streams wrap.
  isn: fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0xfffff000, max: 0xffffffff })),
  pCuts: fc.array(fc.integer({ min: 0, max: 4000 }), { maxLength: 12 }),
  sCuts: fc.array(fc.integer({ min: 0, max: 4000 }), { maxLength: 12 }),
  picks: fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }),
  handshake: fc.boolean(),
  retransmit: fc.array(fc.nat(), { maxLength: 3 }),
});

test("property: any segmentation and interleaving of the same stream never miscompares; all released", () => {
  fc.assert(
    fc.property(streamCase, (c) => {
      const { engine, sink } = setup();
      const data = stream(c.len, c.seed);
      const first = (c.isn + 1) >>> 0;
      const seg = (side: "primary" | "secondary", [a, b]: [number, number]) =>
        tcp(side, { seq: (first + a) >>> 0, payload: data.subarray(a, b), ack: 777 });
      const ps = pieces(c.len, c.pCuts).map((r) => seg("primary", r));
      const ss = pieces(c.len, c.sCuts).map((r) => seg("secondary", r));
      // Retransmissions: copies of earlier primary segments pushed again later.
      const pAll = [...ps];
      for (const r of c.retransmit) {
        const idx = r % ps.length;
        pAll.splice(Math.min(pAll.length, idx + 1 + (r % 3)), 0, Buffer.from(ps[idx]!));
      }
      let t = 0;
      if (c.handshake) {
        engine.pushPrimary(tcp("primary", { seq: c.isn, flags: "SA", ack: 777 }), 0, t);
        engine.pushSecondary(tcp("secondary", { seq: c.isn, flags: "SA", ack: 777 }), 0, t);
      }
      for (const step of interleave(pAll, ss, c.picks)) {
        t++;
        if ("p" in step) engine.pushPrimary(step.p, 0, t);
        else engine.pushSecondary(step.s, 0, t);
        engine.checkInvariant();
      }
      assert.equal(sink.requests.length, 0, sink.requests[0]?.message);
      const st = engine.stats();
      assert.equal(st.heldPrimary, 0);
      assert.equal(st.heldSecondary, 0);
      assert.equal(st.released, pAll.length + (c.handshake ? 1 : 0));
      // Original segments leave in stream order.
      const order = sink.released.filter((f) => ps.includes(f));
      assert.deepEqual(order, ps);
      engine.checkInvariant();
    }),
    { numRuns: 150 },
  );
});

test("property: a single flipped payload byte always miscompares, at the right stream offset", () => {
  fc.assert(
    fc.property(
      streamCase,
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      fc.boolean(),
      (c, where, xor, flipPrimary) => {
        const { engine, sink } = setup();
        const data = stream(c.len, c.seed);
        const bad = Buffer.from(data);
        const k = where % c.len;
        bad[k] = (bad[k] ?? 0) ^ xor;
        const first = (c.isn + 1) >>> 0;
        const seg = (side: "primary" | "secondary", bytes: Buffer, [a, b]: [number, number]) =>
          tcp(side, { seq: (first + a) >>> 0, payload: bytes.subarray(a, b), ack: 777 });
        const pRanges = pieces(c.len, c.pCuts);
        const ps = pRanges.map((r) => seg("primary", flipPrimary ? bad : data, r));
        const ss = pieces(c.len, c.sCuts).map((r) => seg("secondary", flipPrimary ? data : bad, r));
        if (c.handshake) {
          engine.pushPrimary(tcp("primary", { seq: c.isn, flags: "SA", ack: 777 }), 0, 0);
          engine.pushSecondary(tcp("secondary", { seq: c.isn, flags: "SA", ack: 777 }), 0, 0);
        }
        let t = 0;
        for (const step of interleave(ps, ss, c.picks)) {
          t++;
          if ("p" in step) engine.pushPrimary(step.p, 0, t);
          else engine.pushSecondary(step.s, 0, t);
        }
        assert.equal(sink.requests.length, 1);
        const r = sink.requests[0]!;
        assert.equal(r.reason, "payload-differs");
        assert.equal(r.streamOffset, k);
        assert.equal(r.seq, (first + k) >>> 0);
        assert.equal(
          r.primaryHex?.split(" ")[r.streamOffset! - r.hexOffset!],
          (flipPrimary ? bad : data)[k]!.toString(16).padStart(2, "0"),
        );
        // Only segments entirely before the flipped byte were released before the flush.
        for (const f of sink.released) {
          const i = ps.indexOf(f);
          if (i >= 0) assert.ok(pRanges[i]![1] <= k, `segment ${pRanges[i]} released, flip at ${k}`);
        }
        engine.checkInvariant();
        engine.checkpointDone(t + 1);
        assert.equal(engine.stats().heldPrimary, 0);
        assert.equal(engine.stats().released, ps.length + (c.handshake ? 1 : 0));
        engine.checkInvariant();
      },
    ),
    { numRuns: 150 },
  );
});

test("property: datagrams, same content on both sides in any interleaving, released FIFO without miscompare", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 64 }), { minLength: 1, maxLength: 20 }),
      fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }),
      (payloads, picks) => {
        const { engine, sink } = setup();
        const ps = payloads.map((p) => udp("primary", { payload: p }));
        const ss = payloads.map((p) => udp("secondary", { payload: p }));
        for (const step of interleave(ps, ss, picks)) {
          if ("p" in step) engine.pushPrimary(step.p, 0, 0);
          else engine.pushSecondary(step.s, 0, 0);
        }
        assert.equal(sink.requests.length, 0);
        // Duplicate payloads are interchangeable, so compare contents, not identities.
        assert.deepEqual(sink.released, ps);
        engine.checkInvariant();
      },
    ),
    { numRuns: 150 },
  );
});

test("property: garbage and random operations never throw and never break the accounting", () => {
  const frameArb = fc.oneof(
    fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b)),
    fc
      .record({
        sport: fc.integer({ min: 1, max: 4 }),
        seq: fc.integer({ min: 0, max: 200 }),
        ack: fc.integer({ min: 0, max: 3 }),
        flags: fc.constantFrom("A", "PA", "SA", "S", "FA", "R", "RA"),
        payload: fc.uint8Array({ maxLength: 20 }),
        vlan: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
      })
      .map((o) =>
        buildTcp({
          src: "10.0.0.1",
          dst: "10.0.0.2",
          dport: 9,
          ...o,
        }),
      ),
    fc
      .record({ sport: fc.integer({ min: 1, max: 3 }), payload: fc.uint8Array({ maxLength: 8 }) })
      .map((o) => udp("primary", o)),
  );
  const op = fc.oneof(
    {
      arbitrary: fc.record({ k: fc.constant("p" as const), f: frameArb, v: fc.integer({ min: 0, max: 12 }) }),
      weight: 6,
    },
    {
      arbitrary: fc.record({ k: fc.constant("s" as const), f: frameArb, v: fc.integer({ min: 0, max: 12 }) }),
      weight: 6,
    },
    {
      arbitrary: fc.record({ k: fc.constant("tick" as const), dt: fc.integer({ min: 0, max: 5000 }) }),
      weight: 2,
    },
    { arbitrary: fc.constant({ k: "done" as const }), weight: 1 },
    { arbitrary: fc.constant({ k: "rule" as const }), weight: 1 },
    { arbitrary: fc.constant({ k: "unrule" as const }), weight: 1 },
    { arbitrary: fc.constant({ k: "failover" as const }), weight: 1 },
  );
  fc.assert(
    fc.property(
      fc.array(op, { maxLength: 60 }),
      fc.record({
        maxQueueSize: fc.integer({ min: 1, max: 4 }),
        maxConnections: fc.integer({ min: 1, max: 4 }),
        renotify: fc.boolean(),
      }),
      (ops, cfg) => {
        const { engine } = setup({ ...cfg, idleTimeout: 3000, closedTimeout: 1000 });
        let now = 0;
        for (const o of ops) {
          now += 1;
          switch (o.k) {
            case "p":
            case "s": {
              // vnet prefix: garbage bytes the engine must skip.
              const frame = o.v > 0 ? Buffer.concat([Buffer.alloc(o.v, 0xee), o.f]) : o.f;
              if (o.k === "p") engine.pushPrimary(frame, o.v, now);
              else engine.pushSecondary(frame, o.v, now);
              break;
            }
            case "tick":
              now += o.dt;
              engine.tick(now);
              break;
            case "done":
              engine.checkpointDone(now);
              break;
            case "rule":
              engine.addPassthrough("tcp *:2", now);
              break;
            case "unrule":
              if (engine.listPassthrough().length > 0) engine.removePassthrough("tcp *:2", now);
              break;
            case "failover":
              if (ops.length % 7 === 0) engine.failover(now);
              break;
          }
          engine.checkInvariant();
        }
        engine.checkpointDone(now + 1);
        engine.checkInvariant();
        const st = engine.stats();
        assert.equal(st.heldPrimary + st.heldSecondary, 0, "a flush empties every queue");
      },
    ),
    { numRuns: 300 },
  );
});

test("property: independent acks, pure ACKs and close on each side never miscompare; the secondary's final ACK releases all", () => {
  fc.assert(
    fc.property(
      fc.record({
        len: fc.integer({ min: 1, max: 3000 }),
        isn: fc.integer({ min: 0, max: 0xffffffff }),
        pCuts: fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 8 }),
        sCuts: fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 8 }),
        pAcks: fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 12 }),
        sAcks: fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 12 }),
        pPure: fc.array(fc.boolean(), { maxLength: 12 }),
        sPure: fc.array(fc.boolean(), { maxLength: 12 }),
        picks: fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }),
        fin: fc.boolean(),
      }),
      (c) => {
        const { engine, sink } = setup({ compareTimeout: 1_000_000 });
        const data = stream(c.len, 3);
        const first = (c.isn + 1) >>> 0;
        const clientIsn = 0xfffffff0; // client acks wrap too
        // Nondecreasing acks per side, each within the client's stream.
        const acks = (deltas: number[]) => {
          let a = 0;
          return deltas.map((d) => (a += d));
        };
        const build = (
          side: "primary" | "secondary",
          cuts: number[],
          ackDeltas: number[],
          pure: boolean[],
        ) => {
          const as = acks(ackDeltas);
          const out: Buffer[] = [];
          pieces(c.len, cuts).forEach(([a, b], i) => {
            const ack = (clientIsn + (as[Math.min(i, as.length - 1)] ?? 0)) >>> 0;
            if (pure[i]) out.push(tcp(side, { seq: (first + a) >>> 0, ack }));
            out.push(tcp(side, { seq: (first + a) >>> 0, payload: data.subarray(a, b), ack }));
          });
          if (c.fin)
            out.push(
              tcp(side, { seq: (first + c.len) >>> 0, flags: "FA", ack: (clientIsn + as.at(-1)!) >>> 0 }),
            );
          return out;
        };
        const ps = build("primary", c.pCuts, c.pAcks, c.pPure);
        const ss = build("secondary", c.sCuts, c.sAcks, c.sPure);
        engine.pushPrimary(tcp("primary", { seq: c.isn, flags: "SA", ack: clientIsn }), 0, 0);
        engine.pushSecondary(tcp("secondary", { seq: c.isn, flags: "SA", ack: clientIsn }), 0, 0);
        let t = 0;
        for (const step of interleave(ps, ss, c.picks)) {
          t++;
          if ("p" in step) engine.pushPrimary(step.p, 0, t);
          else engine.pushSecondary(step.s, 0, t);
          engine.checkInvariant();
        }
        assert.equal(sink.requests.length, 0, sink.requests[0]?.message);
        // The secondary finally acks everything the primary acked.
        const maxAck = (clientIsn + Math.max(acks(c.pAcks).at(-1)!, acks(c.sAcks).at(-1)!)) >>> 0;
        engine.pushSecondary(
          tcp("secondary", { seq: (first + c.len + (c.fin ? 1 : 0)) >>> 0, ack: maxAck }),
          0,
          t + 1,
        );
        assert.equal(engine.stats().heldPrimary, 0);
        assert.equal(engine.stats().heldSecondary, 0);
        assert.equal(sink.requests.length, 0);
        engine.checkInvariant();
      },
    ),
    { numRuns: 200 },
  );
});

test("property: no released segment acks beyond the secondary's ack or lets the client send beyond its window", () => {
  const seqLe = (a: number, b: number) => ((a - b) | 0) <= 0;
  fc.assert(
    fc.property(
      fc.record({
        len: fc.integer({ min: 1, max: 3000 }),
        isn: fc.integer({ min: 0, max: 0xffffffff }),
        clientIsn: fc.integer({ min: 0, max: 0xffffffff }),
        pShift: fc.integer({ min: 0, max: 14 }),
        sShift: fc.integer({ min: 0, max: 14 }),
        pCuts: fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 8 }),
        sCuts: fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 8 }),
        pSegs: fc.array(
          fc.record({ dAck: fc.integer({ min: 0, max: 3000 }), win: fc.nat(0xffff), pure: fc.boolean() }),
          {
            minLength: 1,
            maxLength: 12,
          },
        ),
        sSegs: fc.array(
          fc.record({ dAck: fc.integer({ min: 0, max: 3000 }), win: fc.nat(0xffff), pure: fc.boolean() }),
          {
            minLength: 1,
            maxLength: 12,
          },
        ),
        picks: fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }),
      }),
      (c) => {
        // What the client may rely on, from the secondary frames pushed so far (the test's model).
        let sAck = c.clientIsn;
        let sRight = (c.clientIsn + 65535) >>> 0;
        const violations: string[] = [];
        const copies = new Map<Buffer, Buffer>();
        let releasedCount = 0;
        const sink = new RecordingSink();
        const release = sink.release.bind(sink);
        sink.release = (f, v) => {
          releasedCount++;
          const tcpOff = 14 + 20;
          const flags = f[tcpOff + 13]!;
          const ack = f.readUInt32BE(tcpOff + 8);
          const win = f.readUInt16BE(tcpOff + 14);
          if (!seqLe(ack, sAck)) violations.push(`released ack ${ack} > secondary ack ${sAck}`);
          if (!(flags & 0x02) && !seqLe((ack + win * 2 ** c.pShift) >>> 0, sRight))
            violations.push(`ack ${ack} + ${win} << ${c.pShift} beyond secondary edge ${sRight}`);
          const orig = copies.get(f);
          if (orig !== undefined) {
            if (win > orig.readUInt16BE(tcpOff + 14)) violations.push("window raised");
            const a = Buffer.from(f);
            const b = Buffer.from(orig);
            a.fill(0, tcpOff + 14, tcpOff + 18);
            b.fill(0, tcpOff + 14, tcpOff + 18);
            if (!a.equals(b)) violations.push("bytes other than window/checksum changed");
            const tcpLen = f.length - tcpOff;
            if (!verifyChecksum(f, tcpOff, f.length, ipv4PseudoSum(f, 26, 30, 6, tcpLen)))
              violations.push("bad TCP checksum");
          }
          release(f, v);
        };
        const engine = new CompareEngine({ compareTimeout: 1_000_000 }, sink);
        const data = stream(c.len, 5);
        const first = (c.isn + 1) >>> 0;
        const build = (
          side: "primary" | "secondary",
          cuts: number[],
          segs: { dAck: number; win: number; pure: boolean }[],
        ) => {
          let a = 0;
          const out: Buffer[] = [];
          pieces(c.len, cuts).forEach(([lo, hi], i) => {
            const s = segs[Math.min(i, segs.length - 1)]!;
            a += s.dAck;
            const ack = (c.clientIsn + a) >>> 0;
            const o = { seq: (first + lo) >>> 0, ack, window: s.win };
            if (s.pure) out.push(tcp(side, o));
            out.push(tcp(side, { ...o, payload: data.subarray(lo, hi) }));
          });
          return { frames: out, last: a };
        };
        const ps = build("primary", c.pCuts, c.pSegs);
        const ss = build("secondary", c.sCuts, c.sSegs);
        for (const f of ps.frames) copies.set(f, Buffer.from(f));
        const sa = (side: "primary" | "secondary", shift: number) =>
          tcp(side, {
            seq: c.isn,
            flags: "SA",
            ack: c.clientIsn,
            window: 65535,
            options: [{ kind: "wscale", shift }],
          });
        engine.pushPrimary(sa("primary", c.pShift), 0, 0);
        engine.pushSecondary(sa("secondary", c.sShift), 0, 0);
        const pushS = (f: Buffer, t: number) => {
          const ack = f.readUInt32BE(34 + 8);
          if (seqLe(sAck, ack)) sAck = ack;
          sRight = (ack + f.readUInt16BE(34 + 14) * 2 ** c.sShift) >>> 0;
          engine.pushSecondary(f, 0, t);
        };
        let t = 0;
        for (const step of interleave(ps.frames, ss.frames, c.picks)) {
          t++;
          if ("p" in step) engine.pushPrimary(step.p, 0, t);
          else pushS(step.s, t);
        }
        // The secondary catches up: acks all the primary acked, with a window as large as any.
        const last = (c.clientIsn + Math.max(ps.last, ss.last)) >>> 0;
        pushS(tcp("secondary", { seq: (first + c.len) >>> 0, ack: last, window: 0xffff }), t + 1);
        assert.deepEqual(violations, []);
        assert.equal(sink.requests.length, 0, sink.requests[0]?.message);
        assert.equal(releasedCount, ps.frames.length + 1, "everything released once the secondary caught up");
        engine.checkInvariant();
      },
    ),
    { numRuns: 300 },
  );
});
