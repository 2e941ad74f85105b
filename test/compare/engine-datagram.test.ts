import assert from "node:assert/strict";
import { test } from "node:test";
import {
  buildArp,
  buildEthernet,
  buildIcmpEcho,
  buildIcmpv6,
  buildIp,
  buildTcp,
  buildUdp,
} from "../../src/packet/build.ts";
import { setup, udp } from "./harness.ts";

test("UDP: datagrams matched FIFO, released in arrival order", () => {
  const { engine, sink } = setup();
  const p1 = udp("primary", { payload: "one" });
  const p2 = udp("primary", { payload: "two" });
  engine.pushPrimary(p1, 0, 0);
  engine.pushPrimary(p2, 0, 0);
  engine.pushSecondary(udp("secondary", { payload: "one" }), 0, 1);
  assert.deepEqual(sink.released, [p1], "oldest first (QEMU takes the newest: we differ)");
  engine.pushSecondary(udp("secondary", { payload: "two" }), 0, 2);
  assert.deepEqual(sink.released, [p1, p2]);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("UDP: the oldest equal secondary is taken even if it is not at the head", () => {
  const { engine, sink } = setup();
  engine.pushSecondary(udp("secondary", { payload: "b" }), 0, 0);
  engine.pushSecondary(udp("secondary", { payload: "a" }), 0, 0);
  // The primary "a" has a twin in the queue, so it matches; "b" then matches too.
  engine.pushPrimary(udp("primary", { payload: "a" }), 0, 1);
  engine.pushPrimary(udp("primary", { payload: "b" }), 0, 1);
  assert.equal(sink.released.length, 2);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("UDP payload difference: offset within the UDP header+payload, hexdump of both sides", () => {
  const { engine, sink } = setup();
  const p = udp("primary", { payload: "abcdefghij" });
  const s = udp("secondary", { payload: "abcdeXghij", checksum: 0x1234 });
  engine.pushPrimary(p, 0, 0);
  engine.pushSecondary(s, 0, 0);
  const r = sink.requests[0]!;
  assert.equal(r.reason, "payload-differs");
  // Compared region starts at the UDP header (offset 34); the checksum at region offset 6 differs first.
  assert.equal(r.offset, p[34 + 6] !== s[34 + 6] ? 6 : 7);
  assert.equal(r.hexOffset, 0);
  assert.equal(r.primaryHex, [...p.subarray(34)].map((b) => b.toString(16).padStart(2, "0")).join(" "));
  assert.equal(r.secondaryHex?.split(" ")[8 + 5], "58", "the 'X' is in the dump");
  assert.equal(r.primaryLength, 18);
  assert.equal(r.protocol, "udp");
  assert.equal(engine.stats().miscompares.udp["payload-differs"], 1);
  engine.checkInvariant();
});

test("UDP size difference is size-differs; Ethernet padding does not count", () => {
  const { engine, sink } = setup();
  engine.pushPrimary(udp("primary", { payload: "abc", padTo: 60 }), 0, 0);
  engine.pushSecondary(udp("secondary", { payload: "abc" }), 0, 0);
  assert.equal(sink.released.length, 1, "padding ignored");
  engine.pushPrimary(udp("primary", { payload: "abcd" }), 0, 1);
  engine.pushSecondary(udp("secondary", { payload: "abcde" }), 0, 1);
  assert.equal(sink.requests[0]?.reason, "size-differs");
  assert.equal(sink.requests[0]?.primaryLength, 12);
  assert.equal(sink.requests[0]?.secondaryLength, 13);
  engine.checkInvariant();
});

test("UDP checksum/IP header differences do not matter; a UDP checksum difference alone does", () => {
  const { engine, sink } = setup();
  engine.pushPrimary(udp("primary", { payload: "x", ttl: 1, tos: 4 }), 0, 0);
  engine.pushSecondary(udp("secondary", { payload: "x", ttl: 200 }), 0, 0);
  assert.equal(sink.released.length, 1);
  engine.pushPrimary(udp("primary", { payload: "y", checksum: 0 }), 0, 1);
  engine.pushSecondary(udp("secondary", { payload: "y" }), 0, 1);
  assert.equal(sink.requests[0]?.reason, "payload-differs", "the UDP header is compared, like QEMU");
  engine.checkInvariant();
});

test("ICMP echo flows are keyed by identifier; ICMPv6 and IPv6 extension headers are compared", () => {
  const { engine, sink } = setup();
  const e1 = buildIcmpEcho({ src: "10.0.0.1", dst: "10.0.0.2", id: 1, seq: 1, payload: "ping", reply: true });
  const e2 = buildIcmpEcho({ src: "10.0.0.1", dst: "10.0.0.2", id: 2, seq: 1, payload: "ping", reply: true });
  engine.pushPrimary(e1, 0, 0);
  engine.pushPrimary(e2, 0, 0);
  engine.pushSecondary(
    buildIcmpEcho({ src: "10.0.0.1", dst: "10.0.0.2", id: 2, seq: 1, payload: "ping", reply: true, ttl: 9 }),
    0,
    1,
  );
  assert.deepEqual(sink.released, [e2], "id 2 matched independently of id 1");
  assert.equal(engine.connections(1).length, 2);
  assert.match(engine.connections(1)[1]!.flow, /^icmp 10\.0\.0\.1 > 10\.0\.0\.2 id 2$/);
  const v6 = (ttl: number) =>
    buildIcmpv6({
      src: "fd00::1",
      dst: "fd00::2",
      type: 129,
      body: Buffer.from([0, 7, 0, 1, 1, 2, 3]),
      ttl,
      extHeaders: [{ type: "destOpts" }],
    });
  const p6 = v6(64);
  engine.pushPrimary(p6, 0, 2);
  engine.pushSecondary(v6(3), 0, 2);
  assert.equal(sink.released.at(-1), p6);
  assert.equal(sink.requests.length, 0);
  engine.checkInvariant();
});

test("IPv6 TCP, VLAN and QinQ tagged traffic is compared (not passed through)", () => {
  const { engine, sink } = setup();
  const mk = (payload: string, id: number, seq = 5) =>
    buildTcp({
      src: "fd00::1",
      dst: "fd00::2",
      sport: 80,
      dport: 999,
      seq,
      payload,
      vlan: 10,
      outerVlan: 20,
      ttl: id,
    });
  engine.pushPrimary(mk("same", 1), 0, 0);
  engine.pushSecondary(mk("same", 2), 0, 0);
  assert.equal(sink.released.length, 1);
  assert.equal(engine.stats().releasedBy.matched, 1);
  assert.equal(engine.connections(0)[0]?.flow, "vlan 20.10 tcp [fd00::1]:80 > [fd00::2]:999");
  const changed = mk("diff", 1, 9);
  changed[changed.length - 1] = 0x41;
  engine.pushPrimary(changed, 0, 1);
  engine.pushSecondary(mk("diff", 2, 9), 0, 1);
  assert.equal(sink.requests[0]?.streamOffset, 7, "offset from the first data byte seen (no SYN)");
  assert.equal(sink.requests[0]?.reason, "payload-differs");
  engine.checkInvariant();
});

test("ARP and other L2 frames are compared", () => {
  const { engine, sink } = setup();
  const arp = (ip: string) =>
    buildArp({ op: "reply", senderMac: "52:54:00:c0:10:01", senderIp: "10.0.0.1", targetIp: ip });
  const p = arp("10.0.0.2");
  engine.pushPrimary(p, 0, 0);
  engine.pushSecondary(arp("10.0.0.2"), 0, 0);
  assert.deepEqual(sink.released, [p]);
  const lldp = (b: number) => buildEthernet({ etherType: 0x88cc, payload: Buffer.from([1, 2, b]) });
  engine.pushPrimary(lldp(3), 0, 1);
  engine.pushSecondary(lldp(4), 0, 1);
  assert.equal(sink.requests[0]?.reason, "payload-differs");
  assert.equal(sink.requests[0]?.offset, 2);
  assert.equal(sink.requests[0]?.protocol, "l2");
  engine.checkInvariant();
});

test("other IP protocols: whole L3 payload compared, IP header ignored", () => {
  const { engine, sink } = setup();
  const gre = (ttl: number, b = 0) =>
    buildIp({
      src: "10.0.0.1",
      dst: "10.0.0.2",
      proto: 47,
      payload: Buffer.from([0, 0, 8, b]),
      ttl,
      id: ttl,
    });
  engine.pushPrimary(gre(1), 0, 0);
  engine.pushSecondary(gre(2), 0, 0);
  assert.equal(sink.released.length, 1);
  engine.pushPrimary(gre(1, 1), 0, 0);
  engine.pushSecondary(gre(2, 2), 0, 0);
  assert.equal(sink.requests[0]?.reason, "payload-differs");
  assert.equal(sink.requests[0]?.offset, 3);
  engine.checkInvariant();
});

test("IPv4 fragments are compared as datagrams of their own flow", () => {
  const { engine, sink } = setup();
  const frag = (id: number) =>
    buildUdp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 1, dport: 2, payload: "fragmented", mf: true, id });
  engine.pushPrimary(frag(1), 0, 0);
  engine.pushSecondary(frag(2), 0, 0);
  assert.equal(sink.released.length, 1);
  assert.equal(engine.connections(0)[0]?.protocol, "ip");
  engine.checkInvariant();
});

test("compatPassthrough restores QEMU's pass-through of IPv6, ARP and VLAN frames", () => {
  const { engine, sink } = setup({ compatPassthrough: true });
  const frames = [
    buildUdp({ src: "fd00::1", dst: "fd00::2", sport: 1, dport: 2, payload: "v6" }),
    buildArp({ op: "request", senderMac: "52:54:00:00:00:01", senderIp: "10.0.0.1", targetIp: "10.0.0.2" }),
    buildUdp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 1, dport: 2, payload: "tagged", vlan: 5 }),
  ];
  for (const f of frames) engine.pushPrimary(f, 0, 0);
  assert.deepEqual(sink.released, frames);
  engine.pushSecondary(frames[0]!, 0, 0);
  assert.deepEqual(sink.discardReasons(), ["compat"]);
  assert.equal(engine.stats().releasedBy.compat, 3);
  // Plain IPv4 is still compared.
  engine.pushPrimary(udp("primary", { payload: "v4" }), 0, 0);
  assert.equal(sink.released.length, 3);
  engine.checkInvariant();
});

test("malformed primary released unchanged and counted; malformed secondary discarded and counted", () => {
  const { engine, sink } = setup();
  const good = udp("primary", { payload: "ok" });
  const truncated = good.subarray(0, 20);
  const badLen = Buffer.from(good);
  badLen.writeUInt16BE(1000, 14 + 2); // IPv4 total length beyond the frame
  engine.pushPrimary(truncated, 0, 0);
  engine.pushPrimary(badLen, 0, 0);
  assert.deepEqual(sink.released, [truncated, badLen]);
  engine.pushSecondary(truncated, 0, 0);
  assert.deepEqual(sink.discardReasons(), ["malformed"]);
  const st = engine.stats();
  assert.equal(st.badInput.primary.COLO_ERR_PKT_TRUNCATED, 1);
  assert.equal(st.badInput.primary.COLO_ERR_PKT_BAD_LENGTH, 1);
  assert.equal(st.badInput.secondary.COLO_ERR_PKT_TRUNCATED, 1);
  assert.equal(st.releasedBy.malformed, 2);
  // An empty frame (only a vnet header) has nothing to release: dropped by explicit, counted policy.
  engine.pushPrimary(Buffer.alloc(10), 10, 0);
  assert.equal(engine.stats().primaryDropped, 1);
  assert.equal(engine.stats().badInput.primary.COLO_ERR_FRAME_EMPTY, 1);
  engine.checkInvariant();
});

test("vnet header length is honoured and passed back with the released frame", () => {
  const released: number[] = [];
  const { engine } = setup();
  const e2 = new (engine.constructor as typeof import("../../src/compare/engine.ts").CompareEngine)(
    {},
    {
      release: (_f, v) => released.push(v),
      discard: () => {},
      checkpointRequest: () => {},
      backpressure: () => {},
    },
  );
  e2.pushPrimary(udp("primary", { payload: "v", vnetLen: 12 }), 12, 0);
  e2.pushSecondary(udp("secondary", { payload: "v", vnetLen: 10 }), 10, 0);
  assert.deepEqual(released, [12]);
  e2.checkInvariant();
});
