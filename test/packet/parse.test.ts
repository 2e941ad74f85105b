import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { codes } from "../../src/errors.ts";
import * as b from "../../src/packet/build.ts";
import { type FrameMeta, MAX_KEY_UNITS, newFrameMeta, ParseStatus, TcpFlag } from "../../src/packet/meta.ts";
import {
  decodeFlowKey,
  FlowKind,
  flowKeyText,
  formatFlowKey,
  keyFromUnits,
  parseFrame,
  parseStatusCode,
  reverseFlowKey,
  reverseKey,
} from "../../src/packet/parse.ts";
import { anyFrame, tcpFrame } from "./arb.ts";

/** Random-input runs are scaled up 10x in CI (time-boxed locally, like undici's fuzz tests). */
const FUZZ_SCALE = process.env.CI ? 10 : 1;

function parse(frame: Uint8Array, vnetLen = 0): FrameMeta {
  const m = newFrameMeta();
  parseFrame(frame, vnetLen, m);
  return m;
}

test("IPv4 TCP in an 802.1Q tag: every FrameMeta field", () => {
  const f = b.buildTcp({
    src: "10.0.0.1",
    dst: "10.0.0.2",
    sport: 80,
    dport: 5000,
    seq: 0xfffffff0,
    ack: 0x80000001,
    flags: "PA",
    vlan: 10,
    options: [{ kind: "timestamps", tsval: 1, tsecr: 2 }],
    payload: "hello",
    padTo: 80,
  });
  const m = parse(f);
  assert.equal(m.status, ParseStatus.Ok);
  assert.deepEqual(
    { ...m, key: undefined, keyUnits: undefined },
    {
      status: ParseStatus.Ok,
      vnetLen: 0,
      frameLen: 80,
      vlanOuter: 10,
      vlanInner: -1,
      etherType: 0x0800,
      l3Offset: 18,
      ipVersion: 4,
      proto: 6,
      l4Offset: 38,
      ipEnd: 18 + 20 + 32 + 5,
      fragment: false,
      srcPort: 80,
      dstPort: 5000,
      tcpSeq: 0xfffffff0,
      tcpAck: 0x80000001,
      tcpFlags: TcpFlag.PSH | TcpFlag.ACK,
      tcpHeaderLen: 32,
      payloadOffset: 70,
      payloadLen: 5,
      key: undefined,
      keyUnits: undefined,
      keyLen: 10,
      keyString: true,
    },
  );
  assert.equal(Buffer.from(f.subarray(m.payloadOffset, m.payloadOffset + m.payloadLen)).toString(), "hello");
  assert.equal(formatFlowKey(m), "tcp 10.0.0.1:80 > 10.0.0.2:5000 vlan 10");
  assert.equal(formatFlowKey(reverseFlowKey(m)), "tcp 10.0.0.2:5000 > 10.0.0.1:80 vlan 10");
});

test("IPv6 TCP behind QinQ, a vnet header and four extension headers", () => {
  const f = b.buildTcp({
    vnetLen: 12,
    outerVlan: 100,
    vlan: 7,
    src: "2001:db8::1",
    dst: "2001:db8::2",
    sport: 443,
    dport: 40000,
    seq: 5,
    flags: "S",
    extHeaders: [
      { type: "hopByHop" },
      { type: "destOpts", options: Uint8Array.from([1, 4, 0, 0, 0, 0]) },
      { type: "routing", data: new Uint8Array(12) },
      { type: "destOpts" },
    ],
    payload: "x",
  });
  const m = parse(f, 12);
  assert.equal(m.status, ParseStatus.Ok);
  assert.equal(m.vlanOuter, 100);
  assert.equal(m.vlanInner, 7);
  assert.equal(m.l3Offset, 12 + 22);
  assert.equal(m.ipVersion, 6);
  assert.equal(m.proto, 6);
  assert.equal(m.l4Offset, 12 + 22 + 40 + 8 + 8 + 16 + 8);
  assert.equal(m.tcpFlags, TcpFlag.SYN);
  assert.equal(m.payloadLen, 1);
  assert.equal(m.ipEnd, f.length);
  assert.equal(formatFlowKey(m), "tcp [2001:db8::1]:443 > [2001:db8::2]:40000 vlan 100.7");
});

test("the key ignores everything but VLANs, family, addresses, protocol and ports", () => {
  const base = { src: "192.168.1.1", dst: "192.168.1.2", sport: 1, dport: 2, vlan: 3 };
  const k1 = parse(b.buildTcp({ ...base, seq: 1, ttl: 5, payload: "a" })).key;
  const k2 = parse(b.buildTcp({ ...base, seq: 99, ack: 4, ttl: 64, flags: "F", vnetLen: 10 }), 10).key;
  assert.equal(k1, k2);
  assert.notEqual(k1, parse(b.buildTcp({ ...base, dport: 3 })).key);
  assert.notEqual(k1, parse(b.buildTcp({ ...base, vlan: 4 })).key);
  assert.notEqual(k1, parse(b.buildTcp({ ...base, vlan: undefined })).key);
  assert.notEqual(k1, parse(b.buildUdp(base)).key);
  assert.notEqual(
    k1,
    parse(b.buildTcp({ ...base, src: "::ffff:192.168.1.1", dst: "::ffff:192.168.1.2" })).key,
  );
});

test("ICMP echo reply's key is the reverse of its request's key (v4 and v6)", () => {
  for (const [c, s] of [
    ["10.0.0.1", "10.0.0.2"],
    ["fd00::1", "fd00::2"],
  ] as const) {
    const req = parse(b.buildIcmpEcho({ src: c, dst: s, id: 77, seq: 1, payload: "ping" }));
    const rep = parse(b.buildIcmpEcho({ src: s, dst: c, id: 77, seq: 1, reply: true, payload: "ping" }));
    assert.equal(req.status, ParseStatus.Ok);
    assert.equal(req.srcPort, 77);
    assert.equal(req.dstPort, 0);
    assert.equal(req.payloadLen, 4);
    assert.equal(rep.key, reverseFlowKey(req));
    assert.notEqual(rep.key, req.key);
    const other = parse(b.buildIcmpEcho({ src: s, dst: c, id: 78, reply: true }));
    assert.notEqual(other.key, rep.key);
    assert.match(formatFlowKey(req), /echo id 77$/);
  }
});

test("non-echo ICMP is keyed by addresses and type/code", () => {
  const m = parse(
    b.buildIcmp({ src: "10.0.0.1", dst: "10.0.0.2", type: 3, code: 3, payload: new Uint8Array(28) }),
  );
  assert.equal(formatFlowKey(m), "icmp 10.0.0.1 > 10.0.0.2 type 3 code 3");
  assert.equal(m.payloadLen, 28);
  const ns = parse(
    b.buildNeighborSolicit({ src: "fe80::1", target: "fe80::2", srcLinkAddr: "52:54:00:00:00:01" }),
  );
  assert.equal(formatFlowKey(ns), "icmpv6 fe80::1 > ff02::1:ff00:2 type 135 code 0");
  const na = parse(
    b.buildNeighborAdvert({ src: "fe80::2", dst: "fe80::1", target: "fe80::2", solicited: true }),
  );
  assert.equal(decodeFlowKey(na.key).icmpType, 136);
});

test("ARP request and reply pair through reverseKey; padding excluded", () => {
  const req = parse(
    b.buildArp({
      op: "request",
      senderMac: "52:54:00:00:00:01",
      senderIp: "10.0.0.1",
      targetIp: "10.0.0.2",
      padTo: 60,
    }),
  );
  const rep = parse(
    b.buildArp({
      op: "reply",
      senderMac: "52:54:00:00:00:02",
      senderIp: "10.0.0.2",
      targetMac: "52:54:00:00:00:01",
      targetIp: "10.0.0.1",
      vlan: 5,
    }),
  );
  assert.equal(req.status, ParseStatus.Ok);
  assert.equal(req.payloadLen, 28);
  assert.equal(req.ipVersion, 0);
  assert.equal(req.proto, -1);
  assert.equal(formatFlowKey(req), "arp 10.0.0.1 > 10.0.0.2");
  assert.equal(formatFlowKey(rep), "arp 10.0.0.2 > 10.0.0.1 vlan 5");
  const unTagged = parse(
    b.buildArp({ op: "reply", senderMac: "52:54:00:00:00:02", senderIp: "10.0.0.2", targetIp: "10.0.0.1" }),
  );
  assert.equal(unTagged.key, reverseFlowKey(req));
});

test("non-IP frames are keyed by VLANs and EtherType", () => {
  const m = parse(b.buildEthernet({ etherType: 0x88cc, payload: "lldp", vlan: 1, outerVlan: 2 }));
  assert.equal(m.status, ParseStatus.Ok);
  assert.equal(formatFlowKey(m), "ether 0x88cc vlan 2.1");
  assert.equal(m.payloadLen, 4);
  assert.equal(m.l4Offset, -1);
  assert.equal(reverseFlowKey(m), m.key);
});

test("IPv4 fragments: every fragment of a datagram shares one key; ports only in the first", () => {
  const base = {
    src: "10.1.1.1",
    dst: "10.1.1.2",
    id: 9,
    sport: 1000,
    dport: 2000,
    payload: new Uint8Array(64),
  };
  const first = parse(b.buildUdp({ ...base, mf: true }));
  const later = parse(b.buildIp({ ...base, proto: 17, fragOffset: 72, payload: new Uint8Array(40) }));
  assert.equal(first.fragment, true);
  assert.equal(first.srcPort, 1000);
  assert.equal(first.l4Offset, 34);
  assert.equal(first.payloadOffset, 34);
  assert.equal(later.fragment, true);
  assert.equal(later.l4Offset, -1);
  assert.equal(later.srcPort, 0);
  assert.equal(later.payloadLen, 40);
  assert.equal(first.key, later.key);
  assert.equal(decodeFlowKey(first.key).kind, FlowKind.Proto4);
  assert.equal(formatFlowKey(first), "udp 10.1.1.1 > 10.1.1.2");
});

test("IPv6 fragments: first and later fragments share one key; later ones stop the walk", () => {
  const base = { src: "fd00::1", dst: "fd00::2", sport: 1, dport: 2 };
  const first = parse(
    b.buildUdp({ ...base, extHeaders: [{ type: "fragment", more: true, id: 1 }], payload: "aaaa" }),
  );
  const later = parse(
    b.buildIp({ ...base, proto: 17, extHeaders: [{ type: "fragment", offset: 16, id: 1 }], payload: "bbbb" }),
  );
  assert.equal(first.status, ParseStatus.Ok);
  assert.equal(first.fragment, true);
  assert.equal(first.srcPort, 1);
  assert.equal(later.fragment, true);
  assert.equal(later.l4Offset, -1);
  assert.equal(later.proto, 17);
  assert.equal(later.payloadLen, 4);
  assert.equal(first.key, later.key);
});

test("unknown IPv4/IPv6 protocols: payload after the IP headers, keyed by protocol", () => {
  const m = parse(b.buildIp({ src: "1.1.1.1", dst: "2.2.2.2", proto: 47, payload: "gre!" }));
  assert.equal(m.l4Offset, 34);
  assert.equal(m.payloadLen, 4);
  assert.equal(formatFlowKey(m), "gre 1.1.1.1 > 2.2.2.2");
  const n = parse(b.buildIp({ src: "::1", dst: "::2", proto: 59, extHeaders: [{ type: "destOpts" }] }));
  assert.equal(n.status, ParseStatus.Ok);
  assert.equal(n.proto, 59);
  assert.equal(n.payloadLen, 0);
});

test("UDP length shorter than the IP payload bounds the payload", () => {
  const f = b.buildUdp({ src: "1.1.1.1", dst: "2.2.2.2", sport: 1, dport: 2, payload: "abcdef" });
  f.writeUInt16BE(8 + 2, 14 + 20 + 4);
  const m = parse(f);
  assert.equal(m.status, ParseStatus.Ok);
  assert.equal(m.payloadLen, 2);
});

/** Each malformation and its status. */
const tcp4 = () => b.buildTcp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 1, dport: 2, payload: "data" });
const tcp6 = (ext: b.Ipv6ExtHeader[] = []) =>
  b.buildTcp({ src: "::1", dst: "::2", sport: 1, dport: 2, payload: "data", extHeaders: ext });
const malformed: Array<[string, () => Uint8Array, ParseStatus, number?]> = [
  ["empty frame", () => new Uint8Array(0), ParseStatus.Truncated],
  ["13-byte frame", () => tcp4().subarray(0, 13), ParseStatus.Truncated],
  ["vnet header longer than the frame", () => tcp4(), ParseStatus.Truncated, 100],
  ["negative vnet length", () => tcp4(), ParseStatus.BadHeader, -1],
  ["fractional vnet length", () => tcp4(), ParseStatus.BadHeader, 1.5],
  [
    "VLAN tag cut",
    () => b.buildTcp({ src: "1.1.1.1", dst: "1.1.1.2", sport: 1, dport: 2, vlan: 1 }).subarray(0, 16),
    ParseStatus.Truncated,
  ],
  ["IPv4 header cut", () => tcp4().subarray(0, 30), ParseStatus.Truncated],
  [
    "IPv4 version 6 under EtherType 0x0800",
    () => {
      const f = tcp4();
      f[14] = 0x65;
      return f;
    },
    ParseStatus.BadHeader,
  ],
  [
    "IHL 4",
    () => {
      const f = tcp4();
      f[14] = 0x44;
      return f;
    },
    ParseStatus.BadHeader,
  ],
  [
    "IHL 15 beyond the frame",
    () => {
      const f = tcp4();
      f[14] = 0x4f;
      return f;
    },
    ParseStatus.Truncated,
  ],
  [
    "total length beyond the frame",
    () => {
      const f = tcp4();
      f.writeUInt16BE(f.length, 16);
      return f;
    },
    ParseStatus.BadLength,
  ],
  [
    "total length below IHL",
    () => {
      const f = tcp4();
      f.writeUInt16BE(19, 16);
      return f;
    },
    ParseStatus.BadLength,
  ],
  [
    "TCP data offset 4",
    () => {
      const f = tcp4();
      f[14 + 20 + 12] = 0x40;
      return f;
    },
    ParseStatus.BadHeader,
  ],
  [
    "TCP data offset beyond the datagram",
    () => {
      const f = tcp4();
      f[14 + 20 + 12] = 0xf0;
      return f;
    },
    ParseStatus.Truncated,
  ],
  [
    "TCP header cut by the IP total length",
    () => {
      const f = tcp4();
      f.writeUInt16BE(20 + 10, 16);
      return f;
    },
    ParseStatus.Truncated,
  ],
  [
    "UDP length 7",
    () => {
      const f = b.buildUdp({ src: "1.1.1.1", dst: "2.2.2.2", sport: 1, dport: 2 });
      f.writeUInt16BE(7, 14 + 20 + 4);
      return f;
    },
    ParseStatus.BadLength,
  ],
  [
    "UDP length beyond the datagram",
    () => {
      const f = b.buildUdp({ src: "1.1.1.1", dst: "2.2.2.2", sport: 1, dport: 2, padTo: 100 });
      f.writeUInt16BE(20, 14 + 20 + 4);
      return f;
    },
    ParseStatus.BadLength,
  ],
  [
    "ICMP header cut",
    () => b.buildIp({ src: "1.1.1.1", dst: "2.2.2.2", proto: 1, payload: "abc" }),
    ParseStatus.Truncated,
  ],
  ["IPv6 header cut", () => tcp6().subarray(0, 14 + 39), ParseStatus.Truncated],
  [
    "IPv6 version 4 under 0x86dd",
    () => {
      const f = tcp6();
      f[14] = 0x40;
      return f;
    },
    ParseStatus.BadHeader,
  ],
  [
    "IPv6 payload length beyond the frame",
    () => {
      const f = tcp6();
      f.writeUInt16BE(f.readUInt16BE(18) + 1, 18);
      return f;
    },
    ParseStatus.BadLength,
  ],
  ["hop-by-hop not first", () => tcp6([{ type: "destOpts" }, { type: "hopByHop" }]), ParseStatus.ExtChain],
  ["two routing headers", () => tcp6([{ type: "routing" }, { type: "routing" }]), ParseStatus.ExtChain],
  ["two fragment headers", () => tcp6([{ type: "fragment" }, { type: "fragment" }]), ParseStatus.ExtChain],
  [
    "three destination options",
    () => tcp6([{ type: "destOpts" }, { type: "destOpts" }, { type: "destOpts" }]),
    ParseStatus.ExtChain,
  ],
  [
    "extension header length past the datagram",
    () => {
      const f = tcp6([{ type: "destOpts" }]);
      f[14 + 40 + 1] = 200;
      return f;
    },
    ParseStatus.ExtChain,
  ],
  [
    "extension header cut by the payload length",
    () => {
      const f = tcp6([{ type: "hopByHop" }]);
      f.writeUInt16BE(4, 18);
      return f;
    },
    ParseStatus.ExtChain,
  ],
  [
    "destination options pointing at itself past the limit",
    () => {
      // A chain of 0x3c headers each naming 0x3c: stops at the second-duplicate rule.
      const f = tcp6([{ type: "destOpts" }, { type: "destOpts" }]);
      f[14 + 40 + 8] = 60;
      return f;
    },
    ParseStatus.ExtChain,
  ],
  [
    "ARP body cut",
    () =>
      b
        .buildArp({ op: 1, senderMac: "02:00:00:00:00:01", senderIp: "1.1.1.1", targetIp: "1.1.1.2" })
        .subarray(0, 40),
    ParseStatus.Truncated,
  ],
];

for (const [name, make, status, vnet] of malformed) {
  test(`malformed: ${name} -> ${parseStatusCode(status)}`, () => {
    const m = newFrameMeta();
    m.key = "stale";
    assert.equal(parseFrame(make(), vnet ?? 0, m), status);
    assert.equal(m.status, status);
    assert.equal(m.key, "");
  });
}

test("parseStatusCode maps every status to a stable COLO_ERR_PKT_ code", () => {
  assert.equal(parseStatusCode(ParseStatus.Ok), undefined);
  const seen = new Set<string>();
  for (const s of [
    ParseStatus.Truncated,
    ParseStatus.BadLength,
    ParseStatus.BadHeader,
    ParseStatus.ExtChain,
  ]) {
    const c = parseStatusCode(s);
    assert.ok(c !== undefined && c in codes && c.startsWith("COLO_ERR_PKT_"));
    seen.add(c);
  }
  assert.equal(seen.size, 4);
});

/** Every offset a consumer may trust stays inside the frame when status is Ok. */
function assertConsistent(m: FrameMeta, len: number): void {
  if (m.status !== ParseStatus.Ok) {
    assert.equal(m.key, "");
    return;
  }
  assert.ok(m.key.length >= 4);
  assert.ok(m.l3Offset <= len);
  assert.ok(m.ipEnd <= len && m.ipEnd >= m.l3Offset);
  assert.ok(m.payloadOffset >= m.l3Offset && m.payloadLen >= 0);
  assert.ok(m.payloadOffset + m.payloadLen <= m.ipEnd);
  if (m.l4Offset >= 0) assert.ok(m.l4Offset <= m.payloadOffset);
  if (m.proto === 6 && !m.fragment) assert.equal(m.payloadOffset, m.l4Offset + m.tcpHeaderLen);
  decodeFlowKey(m.key);
  assert.equal(reverseKey(reverseKey(m.key)), m.key);
}

test("random bytes never throw and give a consistent result", () => {
  const m = newFrameMeta();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.constantFrom(0, 0, 10, 12), (bytes, vnet) => {
      parseFrame(bytes, vnet, m);
      assertConsistent(m, bytes.length);
    }),
    { numRuns: 3000 * FUZZ_SCALE },
  );
});

test("random bytes behind plausible headers never throw", () => {
  const m = newFrameMeta();
  const heads = [
    tcp4().subarray(0, 14),
    tcp6().subarray(0, 14),
    tcp4().subarray(0, 34),
    tcp6().subarray(0, 54),
  ];
  fc.assert(
    fc.property(fc.nat(heads.length - 1), fc.uint8Array({ maxLength: 120 }), (h, tail) => {
      const f = Buffer.concat([heads[h]!, tail]);
      parseFrame(f, 0, m);
      assertConsistent(m, f.length);
    }),
    { numRuns: 3000 * FUZZ_SCALE },
  );
});

test("every truncation of a valid frame (all protocols) parses consistently or reports a status", () => {
  const m = newFrameMeta();
  fc.assert(
    fc.property(anyFrame, ({ frame, vnetLen }) => {
      parseFrame(frame, vnetLen, m);
      assert.equal(m.status, ParseStatus.Ok);
      const full = { ...m };
      for (let n = 0; n < frame.length; n++) {
        const st = parseFrame(frame.subarray(0, n), vnetLen, m);
        assertConsistent(m, n);
        // Cutting into the IP datagram or any header always fails; cutting only padding
        // (or non-IP payload) keeps the same meaning.
        if (n < full.ipEnd && full.ipVersion !== 0) assert.notEqual(st, ParseStatus.Ok);
        if (st === ParseStatus.Ok && full.ipVersion !== 0) {
          assert.equal(m.key, full.key);
          assert.equal(m.payloadLen, full.payloadLen);
        }
      }
    }),
    { numRuns: 300 },
  );
});

test("parsed TCP fields equal what was built", () => {
  const m = newFrameMeta();
  fc.assert(
    fc.property(tcpFrame, ({ frame, vnetLen, desc }) => {
      assert.equal(parseFrame(frame, vnetLen, m), ParseStatus.Ok);
      const frag = (desc.extHeaders ?? []).some((h) => h.type === "fragment");
      assert.equal(m.fragment, frag);
      assert.equal(m.srcPort, desc.sport);
      if (frag) {
        // A (first) fragment's payload is everything after the IP headers, TCP header included.
        assert.equal(m.payloadOffset, m.l4Offset);
        assert.equal(m.tcpHeaderLen, 0);
        return;
      }
      assert.equal(m.dstPort, desc.dport);
      assert.equal(m.tcpSeq, desc.seq);
      assert.equal(m.tcpAck, desc.ack);
      assert.equal(m.tcpFlags, desc.flags);
      assert.equal(m.vlanInner, desc.outerVlan !== undefined ? desc.vlan : -1);
      assert.equal(m.vlanOuter, desc.outerVlan ?? desc.vlan ?? -1);
      assert.deepEqual(
        frame.subarray(m.payloadOffset, m.payloadOffset + m.payloadLen),
        Buffer.from(desc.payload),
      );
      const k = decodeFlowKey(m.key);
      assert.equal(k.srcPort, desc.sport);
      assert.equal(k.kind, desc.src.includes(":") ? FlowKind.Ports6 : FlowKind.Ports4);
    }),
    { numRuns: 500 },
  );
});

test("a reply's key is the reverse of the request's key for every TCP/UDP flow", () => {
  fc.assert(
    fc.property(tcpFrame, ({ desc }) => {
      const fwd = b.buildTcp({ ...desc, extHeaders: [] });
      const rev = b.buildTcp({
        ...desc,
        extHeaders: [],
        src: desc.dst,
        dst: desc.src,
        sport: desc.dport,
        dport: desc.sport,
      });
      const vn = desc.vnetLen ?? 0;
      assert.equal(parse(rev, vn).key, reverseFlowKey(parse(fwd, vn)));
    }),
  );
});

test("keys with surrogate-range address words reverse and decode by code unit", () => {
  const f = b.buildTcp({ src: "d800:dc00::1", dst: "dbff:dfff::2", sport: 0xd800, dport: 0xdc00 });
  const m = parse(f);
  const r = reverseFlowKey(m);
  assert.equal(r.length, m.key.length);
  assert.equal(reverseKey(r), m.key);
  assert.equal(formatFlowKey(r), "tcp [dbff:dfff::2]:56320 > [d800:dc00::1]:55296");
});

test("802.3 length-field frames (LLC) share one key whatever their length", () => {
  const a = parse(b.buildEthernet({ etherType: 38, payload: new Uint8Array(38) }));
  const c = parse(b.buildEthernet({ etherType: 46, payload: new Uint8Array(46) }));
  assert.equal(a.status, ParseStatus.Ok);
  assert.equal(a.etherType, 38);
  assert.equal(a.key, c.key);
  assert.equal(formatFlowKey(a), "ether 802.3");
  assert.equal(decodeFlowKey(a.key).etherType, 0);
});

test("keyFromUnits makes the string of every length of units, 0 to MAX_KEY_UNITS", () => {
  const u = new Uint16Array(MAX_KEY_UNITS);
  for (let len = 0; len <= MAX_KEY_UNITS; len++) {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: len, maxLength: len }),
        (units) => {
          u.fill(0x4141);
          u.set(units);
          const s = keyFromUnits(u, len);
          assert.equal(s.length, len);
          for (let i = 0; i < len; i++) assert.equal(s.charCodeAt(i), units[i]);
        },
      ),
      { numRuns: 20 * FUZZ_SCALE },
    );
  }
});

test("keyUnits hold the key's code units; keyString false fills the same units and no string", () => {
  const withString = newFrameMeta();
  const unitsOnly = newFrameMeta();
  unitsOnly.keyString = false;
  fc.assert(
    fc.property(anyFrame, ({ frame, vnetLen }) => {
      parseFrame(frame, vnetLen, withString);
      parseFrame(frame, vnetLen, unitsOnly);
      assert.equal(withString.status, ParseStatus.Ok);
      assert.equal(unitsOnly.status, ParseStatus.Ok);
      assert.equal(withString.keyLen, withString.key.length);
      for (let i = 0; i < withString.keyLen; i++) {
        assert.equal(withString.keyUnits[i], withString.key.charCodeAt(i));
      }
      assert.equal(unitsOnly.key, "");
      assert.equal(unitsOnly.keyLen, withString.keyLen);
      assert.equal(flowKeyText(unitsOnly), withString.key);
    }),
    { numRuns: 500 * FUZZ_SCALE },
  );
  parseFrame(new Uint8Array(5), 0, unitsOnly);
  assert.equal(unitsOnly.keyLen, 0, "a failed parse leaves no key");
});
