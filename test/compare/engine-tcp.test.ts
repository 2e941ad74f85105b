import assert from "node:assert/strict";
import { test } from "node:test";
import { ipv4PseudoSum, verifyChecksum } from "../../src/packet/checksum.ts";
import { setup, stream, tcp } from "./harness.ts";

const ISN = 1_000_000;

test("identical segments: primary released when the secondary copy arrives, secondary discarded", () => {
  const { engine, sink } = setup();
  const p = tcp("primary", { seq: ISN, payload: "hello world" });
  const s = tcp("secondary", { seq: ISN, payload: "hello world" });
  engine.pushPrimary(p, 0, 0);
  assert.equal(sink.released.length, 0);
  engine.pushSecondary(s, 0, 5);
  assert.deepEqual(sink.released, [p]);
  assert.equal(sink.released[0], p, "the very same buffer is released (zero-copy)");
  assert.deepEqual(sink.discardReasons(), ["matched"]);
  assert.equal(sink.requests.length, 0);
  assert.deepEqual(sink.holds, [{ ms: 5, reason: "matched" }]);
  const st = engine.stats();
  assert.equal(st.matched, 1);
  assert.equal(st.heldPrimary, 0);
  engine.checkInvariant();
});

test("secondary first: primary released immediately on arrival", () => {
  const { engine, sink } = setup();
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "abc" }), 0, 0);
  const p = tcp("primary", { seq: ISN, payload: "abc" });
  engine.pushPrimary(p, 0, 1);
  assert.deepEqual(sink.released, [p]);
  engine.checkInvariant();
});

test("headers that legitimately differ (IP id, TTL, MAC, window, timestamps, checksums) never miscompare", () => {
  const { engine, sink } = setup();
  for (let i = 0; i < 20; i++) {
    const payload = stream(100, i + 1);
    engine.pushPrimary(tcp("primary", { seq: ISN + i * 100, payload }), 0, i);
    engine.pushSecondary(tcp("secondary", { seq: ISN + i * 100, payload, window: 100 + i }), 0, i);
  }
  assert.equal(sink.released.length, 20);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("Ethernet padding is not payload", () => {
  const { engine, sink } = setup();
  engine.pushPrimary(tcp("primary", { seq: ISN, payload: "x", padTo: 60 }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "x", options: [] }), 0, 0);
  assert.equal(sink.released.length, 1);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("different segmentation of the same byte stream matches (primary coarse, secondary fine)", () => {
  const { engine, sink } = setup();
  const data = stream(3000, 7);
  const p = tcp("primary", { seq: ISN, payload: data });
  engine.pushPrimary(p, 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: data.subarray(0, 1000) }), 0, 1);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 1000, payload: data.subarray(1000, 1448) }), 0, 2);
  assert.equal(sink.released.length, 0, "not all bytes compared yet");
  engine.pushSecondary(tcp("secondary", { seq: ISN + 1448, payload: data.subarray(1448) }), 0, 3);
  assert.deepEqual(sink.released, [p]);
  assert.deepEqual(sink.discardReasons(), ["matched", "matched", "matched"]);
  assert.equal(engine.stats().heldSecondary, 0);
  engine.checkInvariant();
});

test("different segmentation (primary fine, secondary coarse), secondary first", () => {
  const { engine, sink } = setup();
  const data = stream(2000, 9);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: data }), 0, 0);
  const ps = [0, 500, 1200].map((o, i, a) =>
    tcp("primary", { seq: ISN + o, payload: data.subarray(o, a[i + 1] ?? 2000) }),
  );
  for (const p of ps) engine.pushPrimary(p, 0, 1);
  assert.deepEqual(sink.released, ps);
  assert.deepEqual(sink.discardReasons(), ["matched"], "secondary dropped once fully consumed");
  engine.checkInvariant();
});

test("payload difference: checkpoint request with stream offset and hexdump; primary held until flush", () => {
  const { engine, sink } = setup();
  const data = stream(300, 3);
  const bad = Buffer.from(data);
  bad[217] = (bad[217] ?? 0) ^ 0x55;
  // SYN-ACK from both sides fixes the stream base at ISN+1.
  engine.pushPrimary(tcp("primary", { seq: ISN, flags: "SA", ack: 5000 }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, flags: "SA", ack: 5000 }), 0, 0);
  assert.equal(sink.released.length, 1);
  const p1 = tcp("primary", { seq: ISN + 1, payload: data.subarray(0, 200) });
  const p2 = tcp("primary", { seq: ISN + 201, payload: data.subarray(200) });
  engine.pushPrimary(p1, 0, 1);
  engine.pushPrimary(p2, 0, 1);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 1, payload: bad }), 0, 2);
  assert.deepEqual(sink.released.slice(1), [p1], "the matching first segment goes out");
  assert.equal(sink.requests.length, 1);
  const r = sink.requests[0]!;
  assert.equal(r.reason, "payload-differs");
  assert.equal(r.streamOffset, 217);
  assert.equal(r.seq, ISN + 1 + 217);
  assert.equal(r.protocol, "tcp");
  assert.equal(r.flow, "tcp 10.0.0.1:80 > 10.0.0.2:40000");
  assert.equal(r.hexOffset, 209);
  assert.equal(r.primaryHex?.split(" ")[8], (data[217] ?? 0).toString(16).padStart(2, "0"));
  assert.equal(r.secondaryHex?.split(" ")[8], (bad[217] ?? 0).toString(16).padStart(2, "0"));
  assert.match(r.message, /stream offset 217/);
  assert.equal(engine.stats().miscompares.tcp["payload-differs"], 1);
  // More traffic on the miscompared connection is held, not compared, and not re-requested.
  engine.pushPrimary(tcp("primary", { seq: ISN + 301, payload: "more" }), 0, 3);
  assert.equal(sink.requests.length, 1);
  engine.checkInvariant();
  engine.checkpointDone(10);
  assert.equal(sink.released.length, 4, "flush released the held primaries in sequence order");
  assert.equal(sink.released[2], p2);
  assert.equal(engine.stats().heldSecondary, 0);
  assert.equal(engine.connections(10)[0]?.state, "open");
  engine.checkInvariant();
});

test("retransmission of an already compared range is released without comparison", () => {
  const { engine, sink } = setup();
  engine.pushPrimary(tcp("primary", { seq: ISN, payload: "0123456789" }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "0123456789" }), 0, 0);
  const rtx = tcp("primary", { seq: ISN + 2, payload: "23456" });
  engine.pushPrimary(rtx, 0, 1);
  assert.equal(sink.released.at(-1), rtx);
  assert.equal(engine.stats().releasedBy.retransmit, 1);
  // A secondary retransmission is dropped as already compared and never times out.
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "0123456789" }), 0, 1);
  assert.equal(sink.discarded.at(-1)?.reason, "already-compared");
  engine.tick(100_000);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("partially overlapping retransmission compares only the new bytes, aligned by sequence", () => {
  const { engine, sink } = setup();
  engine.pushPrimary(tcp("primary", { seq: ISN, payload: "abcdef" }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "abcdef" }), 0, 0);
  const p = tcp("primary", { seq: ISN + 3, payload: "defGHI" });
  engine.pushPrimary(p, 0, 1);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 6, payload: "GHI" }), 0, 2);
  assert.equal(sink.released.at(-1), p);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("a lone primary pure ACK is released at once when the secondary has acked as far", () => {
  const { engine, sink } = setup();
  engine.pushSecondary(tcp("secondary", { seq: ISN, ack: 7000 }), 0, 0);
  assert.deepEqual(sink.discardReasons(), ["no-payload"], "secondary pure ACK dropped at once");
  const ack = tcp("primary", { seq: ISN, ack: 7000 });
  engine.pushPrimary(ack, 0, 1);
  assert.deepEqual(sink.released, [ack]);
  engine.checkInvariant();
});

test("a primary pure ACK ahead of the secondary's ack waits for the secondary, then goes", () => {
  const { engine, sink } = setup();
  const ack = tcp("primary", { seq: ISN, ack: 7000 });
  engine.pushPrimary(ack, 0, 0);
  assert.equal(sink.released.length, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, ack: 6000 }), 0, 1);
  assert.equal(sink.released.length, 0, "secondary has not acked 7000 yet");
  engine.pushSecondary(tcp("secondary", { seq: ISN, ack: 7000 }), 0, 2);
  assert.deepEqual(sink.released, [ack]);
  assert.equal(engine.stats().releasedBy["no-payload"], 1);
  engine.checkInvariant();
});

test("ack gating: a re-segmented primary whose ack is ahead waits (no checkpoint) until the secondary acks", () => {
  const { engine, sink } = setup();
  const p = tcp("primary", { seq: ISN, payload: "abcd", ack: 9000 });
  engine.pushPrimary(p, 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "abcdefgh", ack: 8000 }), 0, 1);
  assert.equal(sink.released.length, 0, "compared equal but ack 9000 > secondary ack 8000");
  assert.equal(sink.requests.length, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 8, ack: 9000 }), 0, 2);
  assert.deepEqual(sink.released, [p]);
  engine.checkInvariant();
});

test("a faster SVM's retransmission queued before the PVM's copy came is dropped once compared (nothing left to time out)", () => {
  // Seen with real guests: the SVM sent its response and FIN, then (no client ACK yet: the PVM's
  // copy was still to come) retransmitted the response with FIN; the PVM's one segment and its
  // FIN then matched, and the retransmission sat queued until the compare timeout.
  const { engine, sink } = setup();
  const body = "HTTP/1.0 200 OK\r\n\r\nbody";
  const end = ISN + body.length;
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: body, ack: 100 }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: end, flags: "FA", ack: 100 }), 0, 1);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: body, flags: "PFA", ack: 100 }), 0, 2);
  engine.pushSecondary(tcp("secondary", { seq: end + 1, ack: 101 }), 0, 3);
  const data = tcp("primary", { seq: ISN, payload: body, ack: 100 });
  engine.pushPrimary(data, 0, 4);
  const fin = tcp("primary", { seq: end, flags: "FA", ack: 101 });
  engine.pushPrimary(fin, 0, 5);
  assert.deepEqual(sink.released, [data, fin]);
  assert.equal(engine.stats().heldSecondary, 0, "the retransmission is not left queued");
  assert.deepEqual(sink.discardReasons(), ["no-payload", "no-payload", "matched", "already-compared"]);
  engine.tick(60_000);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("strict ack gating: an identical segment (QEMU rule A) whose ack is ahead waits for the secondary's ack", () => {
  const { engine, sink } = setup();
  const p = tcp("primary", { seq: ISN, payload: "abcd", ack: 9000 });
  engine.pushPrimary(p, 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "abcd", ack: 8000 }), 0, 1);
  assert.equal(sink.released.length, 0, "QEMU releases this at once; the client would see ack 9000");
  assert.equal(sink.requests.length, 0);
  assert.equal(engine.stats().discardedBy.matched, 1, "the compared secondary copy is done with");
  engine.pushSecondary(tcp("secondary", { seq: ISN + 4, ack: 9000 }), 0, 2);
  assert.deepEqual(sink.released, [p]);
  assert.equal(engine.stats().releasedBy.matched, 1);
  engine.checkInvariant();
});

test("strict ack gating: a primary pure ACK ahead waits even while secondary segments are queued", () => {
  const { engine, sink } = setup();
  // The SVM's data (its echo of the client's first bytes) is queued, waiting for the PVM's copy.
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "echo", ack: 6000 }), 0, 0);
  // The PVM acks further client data the SVM has not acknowledged (QEMU releases this one).
  const ack = tcp("primary", { seq: ISN, ack: 7000 });
  engine.pushPrimary(ack, 0, 1);
  assert.equal(sink.released.length, 0);
  const data = tcp("primary", { seq: ISN, payload: "echo", ack: 7000 });
  engine.pushPrimary(data, 0, 2);
  assert.equal(sink.released.length, 0, "compared, but acks 7000 too");
  engine.pushSecondary(tcp("secondary", { seq: ISN + 4, ack: 7000 }), 0, 3);
  assert.deepEqual(sink.released, [ack, data], "both go, in order, once the secondary acked 7000");
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("strict ack gating: a retransmission whose ack is ahead waits too; a lone covered pure ACK does not", () => {
  const { engine, sink } = setup();
  const p = tcp("primary", { seq: ISN, payload: "abcd", ack: 100 });
  engine.pushPrimary(p, 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "abcd", ack: 100 }), 0, 0);
  assert.deepEqual(sink.released, [p]);
  const again = tcp("primary", { seq: ISN, payload: "abcd", ack: 200 });
  engine.pushPrimary(again, 0, 1);
  assert.equal(sink.released.length, 1, "retransmitted bytes, but ack 200 > secondary ack 100");
  engine.pushSecondary(tcp("secondary", { seq: ISN + 4, ack: 200 }), 0, 2);
  assert.deepEqual(sink.released, [p, again]);
  assert.equal(engine.stats().releasedBy.retransmit, 1);
  const lone = tcp("primary", { seq: ISN + 4, ack: 200 });
  engine.pushPrimary(lone, 0, 3);
  assert.equal(sink.released.at(-1), lone, "covered: released with no secondary packet queued");
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("strict ack gating: segments acknowledging nothing (a bare SYN) keep QEMU's release on a queued secondary", () => {
  const { engine, sink } = setup();
  engine.pushSecondary(tcp("secondary", { seq: 5000, payload: "early", ack: 0, flags: "P" }), 0, 0);
  const syn = tcp("primary", { seq: ISN, flags: "S", ack: 0 });
  engine.pushPrimary(syn, 0, 1);
  assert.deepEqual(sink.released, [syn]);
  engine.checkInvariant();
});

/** Handshake on both sides (client-initiated: the guest's SYN-ACK) with window scale shifts. */
function handshake(
  engine: ReturnType<typeof setup>["engine"],
  o: { pShift?: number; sShift?: number; ack?: number } = {},
): void {
  const ack = o.ack ?? 5000;
  const opts = (shift: number | undefined) =>
    shift === undefined ? [] : [{ kind: "wscale" as const, shift }];
  engine.pushPrimary(tcp("primary", { seq: ISN - 1, flags: "SA", ack, options: opts(o.pShift) }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN - 1, flags: "SA", ack, options: opts(o.sShift) }), 0, 0);
}

/** The TCP window field and whether the TCP checksum verifies (IPv4 frames from the harness). */
function windowOf(f: Buffer): { win: number; csumOk: boolean } {
  const ip = 14;
  const tcpOff = ip + (f[ip]! & 0x0f) * 4;
  const tcpLen = f.readUInt16BE(ip + 2) - (tcpOff - ip);
  const pseudo = ipv4PseudoSum(f, ip + 12, ip + 16, 6, tcpLen);
  return {
    win: f.readUInt16BE(tcpOff + 14),
    csumOk: verifyChecksum(f, tcpOff, tcpOff + tcpLen, pseudo),
  };
}

test("window clamp: a released primary never lets the client send beyond the secondary's window", () => {
  const { engine, sink } = setup();
  handshake(engine, { pShift: 7, sShift: 7 });
  // The SVM advertises 100 << 7 = 12800 bytes past ack 5000; the PVM 400 << 7.
  engine.pushSecondary(tcp("secondary", { seq: ISN, ack: 5000, window: 100 }), 0, 1);
  const p = tcp("primary", { seq: ISN, payload: "data", ack: 5000, window: 400 });
  engine.pushPrimary(p, 0, 2);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "data", ack: 5000, window: 100 }), 0, 3);
  assert.equal(sink.released.at(-1), p, "the same buffer, its window lowered in place");
  assert.deepEqual(windowOf(p), { win: 100, csumOk: true });
  // A pure ACK further on: edge 5000 + 1280 + (50 << 7) must stay within the SVM's 5000 + 12800.
  engine.pushSecondary(tcp("secondary", { seq: ISN + 4, ack: 6280, window: 90 }), 0, 4);
  const a = tcp("primary", { seq: ISN + 4, ack: 6280, window: 300 });
  engine.pushPrimary(a, 0, 5);
  assert.equal(sink.released.at(-1), a);
  assert.deepEqual(windowOf(a), { win: 90, csumOk: true });
  // A window already within the secondary's is left alone (bytes untouched).
  const small = tcp("primary", { seq: ISN + 4, ack: 6280, window: 20 });
  const copy = Buffer.from(small);
  engine.pushPrimary(small, 0, 6);
  assert.deepEqual(small, copy);
  assert.equal(engine.stats().windowClamped, 2);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("window clamp: different window scales on the two sides; a full secondary window clamps to 0", () => {
  const { engine, sink } = setup();
  handshake(engine, { pShift: 2, sShift: 6 });
  engine.pushSecondary(tcp("secondary", { seq: ISN, ack: 5000, window: 10 }), 0, 1); // edge 5640
  const p = tcp("primary", { seq: ISN, ack: 5000, window: 1000 }); // edge 9000
  engine.pushPrimary(p, 0, 2);
  assert.deepEqual(windowOf(p), { win: 160, csumOk: true }, "640 bytes = 160 << 2");
  // The SVM's buffer fills: ack 5640, window 0. The PVM's ack of the same bytes gets window 0.
  engine.pushSecondary(tcp("secondary", { seq: ISN, ack: 5640, window: 0 }), 0, 3);
  const q = tcp("primary", { seq: ISN, ack: 5640, window: 1000 });
  engine.pushPrimary(q, 0, 4);
  assert.deepEqual(windowOf(q), { win: 0, csumOk: true });
  assert.deepEqual(sink.released.slice(1), [p, q], "after the SYN-ACK");
  engine.checkInvariant();
});

test("window clamp: SYN-ACK windows are unscaled; no clamp without both handshakes", () => {
  {
    const { engine, sink } = setup();
    const sa = tcp("primary", {
      seq: ISN - 1,
      flags: "SA",
      ack: 5000,
      window: 65000,
      options: [{ kind: "wscale", shift: 7 }],
    });
    engine.pushPrimary(sa, 0, 0);
    engine.pushSecondary(
      tcp("secondary", {
        seq: ISN - 1,
        flags: "SA",
        ack: 5000,
        window: 64000,
        options: [{ kind: "wscale", shift: 7 }],
      }),
      0,
      0,
    );
    assert.deepEqual(sink.released, [sa]);
    assert.equal(windowOf(sa).win, 65000, "a SYN-ACK is never rewritten");
    // The SVM's SYN-ACK edge is 5000 + 64000 (unscaled): 600 << 7 = 76800 is beyond it.
    const p = tcp("primary", { seq: ISN, ack: 5000, window: 600 });
    engine.pushPrimary(p, 0, 1);
    assert.equal(windowOf(p).win, 500, "64000 >> 7");
  }
  {
    // Picked up mid-stream: window scales unknown, so windows pass unchanged (as QEMU).
    const { engine, sink } = setup();
    engine.pushSecondary(tcp("secondary", { seq: ISN, ack: 5000, window: 1 }), 0, 0);
    const p = tcp("primary", { seq: ISN, ack: 5000, window: 9000 });
    const copy = Buffer.from(p);
    engine.pushPrimary(p, 0, 1);
    assert.deepEqual(sink.released, [copy]);
    assert.equal(engine.stats().windowClamped, 0);
  }
});

test("window clamp: a partial checksum (vnet header NEEDS_CSUM) is left for the host to complete", () => {
  const { engine, sink } = setup();
  handshake(engine, { pShift: 0, sShift: 0 });
  engine.pushSecondary(tcp("secondary", { seq: ISN, ack: 5000, window: 1000 }), 0, 1);
  const bare = tcp("primary", { seq: ISN, ack: 5000, window: 3000 });
  const vnet = Buffer.alloc(10);
  vnet[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
  const f = Buffer.concat([vnet, bare]);
  const csum = f.readUInt16BE(10 + 34 + 16);
  engine.pushPrimary(f, 10, 2);
  assert.equal(sink.released.at(-1), f);
  assert.equal(f.readUInt16BE(10 + 34 + 14), 1000);
  assert.equal(f.readUInt16BE(10 + 34 + 16), csum, "checksum field untouched");
  engine.checkInvariant();
});

test("after a checkpoint the secondary counts as having acked what the primary acked; its window is relearnt", () => {
  const { engine, sink } = setup();
  handshake(engine, { pShift: 0, sShift: 0 });
  engine.pushSecondary(tcp("secondary", { seq: ISN, ack: 5000, window: 100 }), 0, 1);
  const held = tcp("primary", { seq: ISN, ack: 8000, window: 5000 });
  engine.pushPrimary(held, 0, 2);
  assert.equal(sink.released.length, 1, "only the SYN-ACK: ack 8000 is ahead of the secondary");
  engine.checkpointDone(3);
  assert.equal(sink.released.at(-1), held, "flushed");
  assert.equal(windowOf(held).win, 5000, "a flushed frame is not clamped");
  // The new SVM is a copy of the PVM: it has the client's bytes up to 8000, and the PVM's window.
  const next = tcp("primary", { seq: ISN, ack: 8000, window: 6000 });
  engine.pushPrimary(next, 0, 4);
  assert.equal(sink.released.at(-1), next, "no secondary packet needed");
  assert.equal(windowOf(next).win, 6000, "no stale secondary window applied");
  engine.pushSecondary(tcp("secondary", { seq: ISN, ack: 8000, window: 3000 }), 0, 5);
  const later = tcp("primary", { seq: ISN, ack: 8000, window: 6000 });
  engine.pushPrimary(later, 0, 6);
  assert.equal(windowOf(later).win, 3000);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("close sequences that differ (FIN then ACK vs FIN+ACK) and a secondary-only RST after close", () => {
  const { engine, sink } = setup();
  const data = "HTTP/1.0 200 OK\r\n\r\nbody";
  const end = ISN + data.length;
  engine.pushPrimary(tcp("primary", { seq: ISN, payload: data, ack: 100 }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: data, ack: 100 }), 0, 1);
  // Primary: FIN (ack 100), later a separate ACK of the client's FIN (ack 101).
  const fin = tcp("primary", { seq: end, flags: "FA", ack: 100 });
  const lastAck = tcp("primary", { seq: end + 1, flags: "A", ack: 101 });
  engine.pushPrimary(fin, 0, 2);
  // Secondary, lagging: one FIN+ACK that already acks the client's FIN, then an RST.
  engine.pushSecondary(tcp("secondary", { seq: end, flags: "FA", ack: 101 }), 0, 3);
  engine.pushPrimary(lastAck, 0, 4);
  engine.pushSecondary(tcp("secondary", { seq: end + 1, flags: "R", ack: 0 }), 0, 5);
  assert.deepEqual(sink.released.slice(1), [fin, lastAck]);
  assert.equal(sink.requests.length, 0);
  assert.equal(engine.connections(5)[0]?.state, "closed");
  engine.tick(60_000);
  assert.equal(sink.requests.length, 0, "nothing left to time out");
  assert.equal(engine.connections(60_000).length, 0, "closed connection expired");
  assert.equal(engine.stats().connectionsExpired, 1);
  engine.checkInvariant();
});

test("FIN position differences alone never miscompare (FIN carried with data vs bare FIN)", () => {
  const { engine, sink } = setup();
  engine.pushPrimary(tcp("primary", { seq: ISN, payload: "bye", flags: "FPA" }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "bye", flags: "PA" }), 0, 1);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 3, flags: "FA" }), 0, 2);
  assert.equal(sink.released.length, 1);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("32-bit sequence wraparound: a stream crossing 2^32 compares and orders correctly", () => {
  const { engine, sink } = setup();
  const start = 0xffffff00;
  const data = stream(1024, 5);
  // Primary segments arrive out of order around the wrap; queue must sort by serial arithmetic.
  const p2 = tcp("primary", { seq: (start + 512) >>> 0, payload: data.subarray(512) });
  const p1 = tcp("primary", { seq: start, payload: data.subarray(0, 512) });
  engine.pushPrimary(p2, 0, 0);
  engine.pushPrimary(p1, 0, 0);
  engine.checkInvariant();
  for (let o = 0; o < 1024; o += 100) {
    engine.pushSecondary(
      tcp("secondary", { seq: (start + o) >>> 0, payload: data.subarray(o, o + 100) }),
      0,
      1,
    );
  }
  assert.deepEqual(sink.released, [p1, p2]);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("a gap between the two streams is a seq-mismatch", () => {
  const { engine, sink } = setup();
  engine.pushPrimary(tcp("primary", { seq: ISN, flags: "SA" }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, flags: "SA" }), 0, 0);
  engine.pushPrimary(tcp("primary", { seq: ISN + 1, payload: "abc" }), 0, 1);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 11, payload: "abc" }), 0, 1);
  assert.equal(sink.requests[0]?.reason, "seq-mismatch");
  assert.equal(sink.requests[0]?.primarySeq, ISN + 1);
  assert.equal(sink.requests[0]?.secondarySeq, ISN + 11);
  engine.checkInvariant();
});

test("picked up mid-stream (no SYN seen): secondary bytes before the primary's first byte are skipped", () => {
  const { engine, sink } = setup();
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "0123456789" }), 0, 0);
  const p = tcp("primary", { seq: ISN + 5, payload: "56789" });
  engine.pushPrimary(p, 0, 1);
  assert.deepEqual(sink.released, [p]);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("a primary SYN waits for the secondary's SYN; SYN-ACKs wait for a covering secondary ack", () => {
  const { engine, sink } = setup();
  const syn = tcp("primary", { seq: ISN, flags: "S", ack: 0 });
  engine.pushPrimary(syn, 0, 0);
  assert.equal(sink.released.length, 0);
  engine.pushSecondary(tcp("secondary", { seq: 777, flags: "S", ack: 0 }), 0, 1);
  assert.deepEqual(sink.released, [syn]);
  engine.checkInvariant();
});

test("reusing a closed 4-tuple with a new ISN starts a fresh stream", () => {
  const { engine, sink } = setup();
  const run = (isn: number, t: number) => {
    engine.pushPrimary(tcp("primary", { seq: isn, flags: "SA", ack: 1 }), 0, t);
    engine.pushSecondary(tcp("secondary", { seq: isn, flags: "SA", ack: 1 }), 0, t);
    engine.pushPrimary(tcp("primary", { seq: isn + 1, payload: "data", ack: 1 }), 0, t);
    engine.pushSecondary(tcp("secondary", { seq: isn + 1, payload: "data", ack: 1 }), 0, t);
    engine.pushPrimary(tcp("primary", { seq: isn + 5, flags: "R", ack: 0 }), 0, t);
    engine.pushSecondary(tcp("secondary", { seq: isn + 5, flags: "R", ack: 0 }), 0, t);
  };
  run(ISN, 0);
  // New ISN "behind" the old one in sequence space: without a reset its data would look retransmitted.
  run(ISN - 100_000, 10);
  assert.equal(engine.stats().releasedBy.matched, 2);
  assert.equal(engine.stats().releasedBy.retransmit, 0);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("a new connection on a 4-tuple that still holds packets: checkpoint request, nothing released uncompared, fresh stream after the flush", () => {
  const { engine, sink } = setup();
  engine.pushPrimary(tcp("primary", { seq: ISN, flags: "SA", ack: 1 }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, flags: "SA", ack: 1 }), 0, 0);
  engine.pushPrimary(tcp("primary", { seq: ISN + 1, payload: "0123456789", ack: 1 }), 0, 1);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 1, payload: "0123456789", ack: 1 }), 0, 1);
  // The old connection's next segment waits for its twin...
  const old = tcp("primary", { seq: ISN + 11, payload: "old tail", ack: 1 });
  engine.pushPrimary(old, 0, 2);
  assert.equal(sink.released.length, 2);
  // ...when the guest answers a new SYN on the same 4-tuple, with an ISN below the old one: its
  // data falls below the old compared position and used to be released as a retransmission.
  const NEW = ISN - 5000;
  const synAck = tcp("primary", { seq: NEW, flags: "SA", ack: 7 });
  const data = tcp("primary", { seq: NEW + 1, payload: "fresh", ack: 7 });
  engine.pushPrimary(synAck, 0, 3);
  engine.pushPrimary(data, 0, 3);
  assert.equal(sink.released.length, 2, "nothing of either connection goes out uncompared");
  assert.equal(engine.stats().releasedBy.retransmit, 0);
  assert.equal(sink.requests.length, 1);
  const r = sink.requests[0]!;
  assert.equal(r.reason, "connection-reused");
  assert.equal(r.side, "primary");
  assert.equal(r.seq, NEW);
  assert.equal(r.flow, "tcp 10.0.0.1:80 > 10.0.0.2:40000");
  assert.match(
    r.message,
    /new connection \(primary SYN, seq 995000\) while the previous one still holds 1 packet$/,
  );
  assert.equal(engine.stats().connectionsReused, 1);
  assert.equal(engine.stats().checkpointRequests["connection-reused"], 1);
  assert.equal(engine.connections(3)[0]?.state, "reused");
  // The secondary's copies of the new connection queue too (its SYN-ACK carries no payload).
  engine.pushSecondary(tcp("secondary", { seq: NEW, flags: "SA", ack: 7 }), 0, 4);
  const sData = tcp("secondary", { seq: NEW + 1, payload: "fresh", ack: 7 });
  engine.pushSecondary(sData, 0, 4);
  assert.equal(sink.released.length, 2);
  assert.equal(sink.requests.length, 1, "no second request while the first is pending");
  engine.checkInvariant();
  engine.checkpointDone(5);
  assert.deepEqual(
    sink.released.slice(2),
    [old, synAck, data],
    "old connection first, then the new one, in arrival order",
  );
  assert.ok(sink.discarded.some((d) => d.frame === sData && d.reason === "flush"));
  assert.equal(engine.stats().heldPrimary + engine.stats().heldSecondary, 0);
  assert.equal(engine.connections(5)[0]?.state, "open");
  // The new connection is compared from here on, in its own sequence space.
  const next = tcp("primary", { seq: NEW + 6, payload: "next", ack: 7 });
  engine.pushPrimary(next, 0, 6);
  assert.equal(sink.released.length, 5, "held for its twin");
  engine.pushSecondary(tcp("secondary", { seq: NEW + 6, payload: "next", ack: 7 }), 0, 6);
  assert.equal(sink.released.at(-1), next);
  assert.equal(engine.stats().releasedBy.matched, 2);
  engine.pushPrimary(tcp("primary", { seq: NEW + 10, payload: "diff", ack: 7 }), 0, 7);
  engine.pushSecondary(tcp("secondary", { seq: NEW + 10, payload: "DIFF", ack: 7 }), 0, 7);
  assert.equal(sink.requests.at(-1)?.reason, "payload-differs", "and a difference is caught");
  engine.checkInvariant();
});

test("a reuse checkpoint completed inside its request (re-entrant sink) flushes the new SYN-ACK with the old flow's packets", () => {
  // The request comes only once the new SYN is held, so a checkpoint completed inside it
  // releases the SYN too, behind the old connection's packets, with a table over its limit
  // being trimmed (see also the fast-check regression in engine-batch.test.ts).
  const { engine, sink } = setup({ maxConnections: 2 });
  const checkpointRequest = sink.checkpointRequest.bind(sink);
  sink.checkpointRequest = (r) => {
    checkpointRequest(r);
    engine.checkpointDone(1);
  };
  const a = { dport: 40001 };
  engine.pushPrimary(tcp("primary", { ...a, seq: ISN, flags: "SA", ack: 1 }), 0, 0);
  engine.pushSecondary(tcp("secondary", { ...a, seq: ISN, flags: "SA", ack: 1 }), 0, 0);
  engine.pushPrimary(tcp("primary", { ...a, seq: ISN + 1, payload: "late", ack: 1 }), 0, 0);
  // Other flows fill the table; the third is admitted over the limit (table-full, flushed at once).
  engine.pushPrimary(tcp("primary", { dport: 40002, seq: 5, flags: "SA", ack: 1 }), 0, 0);
  engine.pushPrimary(tcp("primary", { dport: 40003, seq: 5, flags: "SA", ack: 1 }), 0, 0);
  assert.equal(sink.requests.at(-1)?.reason, "table-full");
  // The first flow ends (RST: closed, preferred for eviction) with its RST still held.
  engine.pushPrimary(tcp("primary", { ...a, seq: ISN + 5, flags: "R", ack: 0 }), 0, 1);
  assert.ok(engine.stats().heldPrimary > 0);
  const synAck = tcp("primary", { ...a, seq: ISN + 777_777, flags: "SA", ack: 1 });
  engine.pushPrimary(synAck, 0, 2);
  assert.equal(sink.requests.at(-1)?.reason, "connection-reused");
  engine.checkInvariant();
  const st = engine.stats();
  assert.equal(st.primaryFrames, st.released + st.heldPrimary, "every primary frame released or held");
  assert.ok(sink.released.includes(synAck), "the new SYN-ACK went out with the flush");
  assert.equal(engine.stats().heldPrimary, 0);
});

test("a retransmitted SYN of the same connection, or a new SYN with nothing held, is not a reuse", () => {
  const { engine, sink } = setup();
  engine.pushPrimary(tcp("primary", { seq: ISN, flags: "SA", ack: 1 }), 0, 0);
  engine.pushPrimary(tcp("primary", { seq: ISN, flags: "SA", ack: 1 }), 0, 1);
  engine.pushSecondary(tcp("secondary", { seq: ISN, flags: "SA", ack: 1 }), 0, 1);
  assert.equal(sink.requests.length, 0);
  assert.equal(engine.stats().connectionsReused, 0);
  // Nothing held: a SYN with a new ISN just starts the stream afresh.
  assert.equal(engine.stats().heldPrimary + engine.stats().heldSecondary, 0);
  engine.pushPrimary(tcp("primary", { seq: ISN + 9999, flags: "SA", ack: 1 }), 0, 2);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 9999, flags: "SA", ack: 1 }), 0, 2);
  engine.pushPrimary(tcp("primary", { seq: ISN + 10_000, payload: "x", ack: 1 }), 0, 3);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 10_000, payload: "x", ack: 1 }), 0, 3);
  assert.equal(sink.requests.length, 0);
  assert.equal(engine.stats().connectionsReused, 0);
  assert.equal(engine.stats().releasedBy.matched, 1);
  engine.checkInvariant();
});

test("a gap after comparison started waits for the reordered segment instead of miscomparing", () => {
  const { engine, sink } = setup();
  engine.pushPrimary(tcp("primary", { seq: ISN, payload: "aaaa" }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "aaaa" }), 0, 0);
  // Secondary's next segment arrives before the one it follows.
  engine.pushSecondary(tcp("secondary", { seq: ISN + 8, payload: "cccc" }), 0, 1);
  const p2 = tcp("primary", { seq: ISN + 4, payload: "bbbb" });
  const p3 = tcp("primary", { seq: ISN + 8, payload: "cccc" });
  engine.pushPrimary(p2, 0, 1);
  engine.pushPrimary(p3, 0, 1);
  assert.equal(sink.released.length, 1, "waiting for the secondary's bytes 4..8");
  assert.equal(sink.requests.length, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 4, payload: "bbbb" }), 0, 2);
  assert.deepEqual(sink.released.slice(1), [p2, p3]);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("removing a passthrough rule resumes TCP comparison mid-stream", () => {
  const { engine, sink } = setup();
  engine.pushPrimary(tcp("primary", { seq: ISN, flags: "SA" }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN, flags: "SA" }), 0, 0);
  engine.pushPrimary(tcp("primary", { seq: ISN + 1, payload: "abcd" }), 0, 0);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 1, payload: "abcd" }), 0, 0);
  const { id } = engine.addPassthrough("tcp *:80", 1);
  for (let i = 0; i < 10; i++)
    engine.pushPrimary(tcp("primary", { seq: ISN + 5 + i * 100, payload: stream(100) }), 0, 1);
  // The secondary lags during the passthrough period: it is still 300 bytes behind.
  for (let i = 0; i < 7; i++)
    engine.pushSecondary(tcp("secondary", { seq: ISN + 5 + i * 100, payload: stream(100) }), 0, 1);
  engine.removePassthrough(id, 2);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 705, payload: stream(100) }), 0, 3);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 805, payload: stream(100) }), 0, 3);
  const p = tcp("primary", { seq: ISN + 1005, payload: "next" });
  engine.pushPrimary(p, 0, 4);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 905, payload: stream(100) }), 0, 4);
  engine.pushSecondary(tcp("secondary", { seq: ISN + 1005, payload: "next" }), 0, 5);
  assert.equal(sink.released.at(-1), p);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

// The engine keeps sequence numbers as int32 internally (unboxed in V8); everything it reports
// must still be the uint32 on the wire, across the 2^31 sign boundary and the 2^32 wrap.
for (const isn of [0x7fffff00, 0xffffff00]) {
  test(`sequence numbers from ${isn.toString(16)}: compare across the boundary and report uint32`, () => {
    const { engine, sink } = setup();
    const data = stream(600, 9);
    const bad = Buffer.from(data);
    bad[400] = (bad[400] ?? 0) ^ 0x11;
    const at = (o: number) => (isn + o) >>> 0;
    engine.pushPrimary(tcp("primary", { seq: isn, flags: "SA", ack: 0xfffffff0 }), 0, 0);
    engine.pushSecondary(tcp("secondary", { seq: isn, flags: "SA", ack: 0xfffffff0 }), 0, 0);
    // Out of order around the boundary (isn + 1 + 255 is the first byte at or past it).
    const p2 = tcp("primary", { seq: at(1 + 300), payload: data.subarray(300), ack: 0xfffffff0 });
    const p1 = tcp("primary", { seq: at(1), payload: data.subarray(0, 300), ack: 0xfffffff0 });
    engine.pushPrimary(p2, 0, 1);
    engine.pushPrimary(p1, 0, 1);
    engine.checkInvariant();
    engine.pushSecondary(
      tcp("secondary", { seq: at(1), payload: bad.subarray(0, 350), ack: 0xfffffff0 }),
      0,
      2,
    );
    assert.deepEqual(sink.released.slice(1), [p1], "the first segment matches and goes out");
    assert.equal(sink.requests.length, 0);
    engine.pushSecondary(
      tcp("secondary", { seq: at(351), payload: bad.subarray(350), ack: 0xfffffff0 }),
      0,
      3,
    );
    assert.equal(sink.requests.length, 1);
    const r = sink.requests[0]!;
    assert.equal(r.reason, "payload-differs");
    assert.equal(r.seq, at(1 + 400), "uint32 sequence number of the first differing byte");
    assert.equal(r.streamOffset, 400);
    assert.match(r.message, new RegExp(`stream offset 400 \\(seq ${at(401)}\\)`));
    engine.checkInvariant();
  });

  test(`sequence numbers from ${isn.toString(16)}: a seq-mismatch reports both streams as uint32`, () => {
    const { engine, sink } = setup();
    engine.pushPrimary(tcp("primary", { seq: isn, flags: "SA" }), 0, 0);
    engine.pushSecondary(tcp("secondary", { seq: isn, flags: "SA" }), 0, 0);
    engine.pushPrimary(tcp("primary", { seq: (isn + 1) >>> 0, payload: "abc" }), 0, 1);
    engine.pushSecondary(tcp("secondary", { seq: (isn + 0x300) >>> 0, payload: "abc" }), 0, 1);
    const r = sink.requests[0]!;
    assert.equal(r.reason, "seq-mismatch");
    assert.equal(r.seq, (isn + 1) >>> 0);
    assert.equal(r.primarySeq, (isn + 1) >>> 0);
    assert.equal(r.secondarySeq, (isn + 0x300) >>> 0);
    assert.equal(r.streamOffset, 0);
    assert.match(r.message, new RegExp(`at seq ${(isn + 1) >>> 0}, secondary at seq ${(isn + 0x300) >>> 0}`));
    engine.checkInvariant();
  });
}

test("window clamp with acks at the 2^32 wrap: the secondary's right edge wraps too", () => {
  const { engine, sink } = setup();
  handshake(engine, { pShift: 7, sShift: 7, ack: 0xffffff00 });
  // SVM: 100 << 7 past ack 0xffffff00, i.e. right edge 0x31c0 after the wrap.
  engine.pushSecondary(tcp("secondary", { seq: ISN, ack: 0xffffff00, window: 100 }), 0, 1);
  const p = tcp("primary", { seq: ISN, payload: "data", ack: 0xffffff00, window: 400 });
  engine.pushPrimary(p, 0, 2);
  engine.pushSecondary(tcp("secondary", { seq: ISN, payload: "data", ack: 0xffffff00, window: 100 }), 0, 3);
  assert.equal(sink.released.at(-1), p);
  assert.deepEqual(windowOf(p), { win: 100, csumOk: true });
  // Acked 0x200 further (across 2^32): room left is 12800 - 512, i.e. 96 << 7.
  engine.pushSecondary(tcp("secondary", { seq: ISN + 4, ack: 0x100, window: 96 }), 0, 4);
  const a = tcp("primary", { seq: ISN + 4, ack: 0x100, window: 300 });
  engine.pushPrimary(a, 0, 5);
  assert.equal(sink.released.at(-1), a);
  assert.deepEqual(windowOf(a), { win: 96, csumOk: true });
  engine.checkInvariant();
});
