import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { extractFlow, flowFromKey, formatFlow, isArpIpv4, protocolName } from "../../src/conntrack/flow.ts";
import {
  buildArp,
  buildEthernet,
  buildIcmpEcho,
  buildIcmpv6,
  buildIp,
  buildTcp,
  buildUdp,
} from "../../src/packet/build.ts";
import { type FrameMeta, newFrameMeta, ParseStatus } from "../../src/packet/meta.ts";
import { parseFrame } from "../../src/packet/parse.ts";
import { mutatedFrame } from "../packet/arb.ts";

function describe(frame: Buffer): [string, string] {
  const m = newFrameMeta();
  assert.equal(parseFrame(frame, 0, m), 0);
  return [formatFlow(extractFlow(m, frame)), protocolName(m)];
}

test("human-readable flows for every kind of traffic", () => {
  const cases: [Buffer, string, string][] = [
    [
      buildTcp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 80, dport: 5555 }),
      "tcp 10.0.0.1:80 > 10.0.0.2:5555",
      "tcp",
    ],
    [
      buildUdp({ src: "fd00::1", dst: "fd00::2", sport: 53, dport: 4000, vlan: 10, outerVlan: 20 }),
      "vlan 20.10 udp [fd00::1]:53 > [fd00::2]:4000",
      "udp",
    ],
    [
      buildUdp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 1, dport: 2, vlan: 7 }),
      "vlan 7 udp 10.0.0.1:1 > 10.0.0.2:2",
      "udp",
    ],
    [
      buildIcmpEcho({ src: "10.0.0.1", dst: "10.0.0.2", id: 7, reply: true }),
      "icmp 10.0.0.1 > 10.0.0.2 id 7",
      "icmp",
    ],
    [
      buildIcmpv6({ src: "fd00::1", dst: "ff02::1", type: 134, body: Buffer.alloc(12) }),
      "icmpv6 fd00::1 > ff02::1",
      "icmpv6",
    ],
    [buildIp({ src: "10.0.0.1", dst: "10.0.0.2", proto: 47 }), "gre 10.0.0.1 > 10.0.0.2", "ip"],
    [buildIp({ src: "10.0.0.1", dst: "10.0.0.2", proto: 200 }), "proto 200 10.0.0.1 > 10.0.0.2", "ip"],
    [
      buildUdp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 1, dport: 2, mf: true }),
      "udp 10.0.0.1 > 10.0.0.2 fragment",
      "ip",
    ],
    [
      buildArp({ op: "reply", senderMac: "52:54:00:00:00:01", senderIp: "10.0.0.1", targetIp: "10.0.0.2" }),
      "arp 10.0.0.1 > 10.0.0.2",
      "arp",
    ],
    [buildEthernet({ etherType: 0x88cc, payload: "x" }), "ethertype 0x88cc", "l2"],
  ];
  for (const [frame, text, proto] of cases) assert.deepEqual(describe(frame), [text, proto], text);
});

test("a flow tuple owns its addresses: it shares no memory with the frame (no receive slab kept alive)", () => {
  const frames = [
    buildTcp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 80, dport: 5555 }),
    buildUdp({ src: "fd00::1", dst: "fd00::2", sport: 53, dport: 4000 }),
    buildArp({ op: "request", senderMac: "52:54:00:00:00:01", senderIp: "10.0.0.1", targetIp: "10.0.0.2" }),
  ];
  for (const f of frames) {
    // The frame as the daemon sees it: a view into a larger receive buffer.
    const slab = Buffer.alloc(4096);
    f.copy(slab, 100);
    const frame = slab.subarray(100, 100 + f.length);
    const m = newFrameMeta();
    assert.equal(parseFrame(frame, 0, m), 0);
    const t = extractFlow(m, frame);
    const text = formatFlow(t);
    assert.ok(t.src.length > 0 && t.dst.length > 0, text);
    assert.notEqual(t.src.buffer, slab.buffer, `${text}: src is a view of the receive buffer`);
    assert.notEqual(t.dst.buffer, slab.buffer, `${text}: dst is a view of the receive buffer`);
    slab.fill(0xee);
    assert.equal(formatFlow(t), text, "the tuple does not change when the buffer is reused");
  }
});

/** The tuple a connection rebuilds later (flowFromKey) for the frame that opened it. */
function rebuilt(m: FrameMeta, frame: Uint8Array) {
  return flowFromKey(
    m.key,
    m.etherType,
    m.ipVersion,
    m.proto,
    m.fragment,
    m.srcPort,
    m.dstPort,
    isArpIpv4(m, frame),
  );
}

test("flowFromKey rebuilds extractFlow's tuple from the key and the parse's scalars (any frame, mutated)", () => {
  fc.assert(
    fc.property(mutatedFrame, ({ frame, vnetLen }) => {
      const m = newFrameMeta();
      if (parseFrame(frame, vnetLen, m) !== ParseStatus.Ok) return;
      assert.deepEqual(rebuilt(m, frame), extractFlow(m, frame));
    }),
    { numRuns: 3000 },
  );
});

test("flowFromKey: fragments, 802.3 frames and ARP of other address sizes", () => {
  const frames = [
    buildTcp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 80, dport: 5555, mf: true }),
    buildTcp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 80, dport: 5555, fragOffset: 64 }),
    buildEthernet({ etherType: 0x05dc, payload: new Uint8Array(40) }),
  ];
  const arp = buildArp({
    op: "request",
    senderMac: "52:54:00:00:00:01",
    senderIp: "10.0.0.1",
    targetIp: "10.0.0.2",
  });
  const odd = Buffer.alloc(arp.length + 8);
  arp.copy(odd);
  odd[14 + 4] = 10; // hardware address length 10 instead of 6: still 0x0800/plen 4, not Ethernet
  frames.push(odd);
  for (const f of frames) {
    const m = newFrameMeta();
    assert.equal(parseFrame(f, 0, m), ParseStatus.Ok);
    assert.deepEqual(rebuilt(m, f), extractFlow(m, f), formatFlow(extractFlow(m, f)));
  }
});
