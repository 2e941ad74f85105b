/**
 * @module Writes test/fixtures/sample.pcapng: a small, deterministic capture of what a COLO
 * primary sees (client traffic mirrored to both VMs, PVM and SVM output), built with
 * src/packet/build.ts, for `colo-proxy pcap-inspect test/fixtures/sample.pcapng` and the tests.
 * Re-run after changing it: `node --import tsx scripts/make-pcap-fixture.ts`
 * (test/cli/pcap-inspect.test.ts checks the committed file matches this script's output).
 */
import { writeFileSync } from "node:fs";
import {
  buildArp,
  buildEthernet,
  buildIcmpEcho,
  buildNeighborAdvert,
  buildNeighborSolicit,
  buildTcp,
  buildUdp,
} from "../src/packet/build.ts";
import type { WritablePacket } from "../src/wire/pcap-format.ts";
import { encodePcapng } from "../src/wire/pcapng-writer.ts";

const CLIENT = "192.168.122.1";
const GUEST = "192.168.122.10";
const CLIENT6 = "fd00::1";
const GUEST6 = "fd00::10";
const CMAC = "52:54:00:00:00:01";
const GMAC = "52:54:00:00:00:0a";

/** Interfaces: 0 = client side (mirrored to both VMs), 1 = PVM output, 2 = SVM output. */
const CLIENT_IF = 0;
const PVM = 1;
const SVM = 2;

export function sampleCapture(): Buffer {
  const pkts: WritablePacket[] = [];
  let t = 1_764_028_800_000_000_000n; // 2025-11-25T00:00:00Z
  const add = (frame: Buffer, interfaceId: number, comment?: string, dtUs = 150) => {
    t += BigInt(dtUs) * 1000n;
    pkts.push({ timestampNs: t, frame, interfaceId, comment });
  };
  const c2g = { src: CLIENT, dst: GUEST, srcMac: CMAC, dstMac: GMAC, sport: 40000, dport: 80 };
  const g2c = { src: GUEST, dst: CLIENT, srcMac: GMAC, dstMac: CMAC, sport: 80, dport: 40000 };
  const ts = (tsval: number, tsecr: number) => ({ kind: "timestamps" as const, tsval, tsecr });

  add(buildArp({ op: "request", senderMac: CMAC, senderIp: CLIENT, targetIp: GUEST, padTo: 60 }), CLIENT_IF);
  for (const side of [PVM, SVM]) {
    add(
      buildArp({
        op: "reply",
        senderMac: GMAC,
        senderIp: GUEST,
        targetMac: CMAC,
        targetIp: CLIENT,
        padTo: 60,
      }),
      side,
      side === PVM ? "PVM" : "SVM",
    );
  }
  // A TCP connection. The SVM picked another ISN, but the secondary's rewriter has mapped its
  // sequence numbers onto the PVM's before its output reaches the primary, as captured here.
  add(
    buildTcp({
      ...c2g,
      seq: 1000,
      flags: "S",
      options: [
        { kind: "mss", value: 1460 },
        { kind: "sackPermitted" },
        ts(1, 0),
        { kind: "nop" },
        { kind: "wscale", shift: 7 },
      ],
    }),
    CLIENT_IF,
    "client SYN, mirrored to both VMs",
  );
  add(
    buildTcp({
      ...g2c,
      seq: 5000,
      ack: 1001,
      flags: "SA",
      options: [{ kind: "mss", value: 1460 }, ts(9, 1)],
    }),
    PVM,
    "PVM",
  );
  add(
    buildTcp({
      ...g2c,
      seq: 5000,
      ack: 1001,
      flags: "SA",
      options: [{ kind: "mss", value: 1460 }, ts(9, 1)],
    }),
    SVM,
    "SVM (seq rewritten)",
  );
  add(
    buildTcp({
      ...c2g,
      seq: 1001,
      ack: 5001,
      flags: "A",
      options: [{ kind: "nop" }, { kind: "nop" }, ts(2, 9)],
    }),
    CLIENT_IF,
  );
  const req = "GET / HTTP/1.1\r\nHost: guest\r\n\r\n";
  add(buildTcp({ ...c2g, seq: 1001, ack: 5001, flags: "PA", payload: req }), CLIENT_IF, "HTTP request");
  const body = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
  add(buildTcp({ ...g2c, seq: 5001, ack: 1001 + req.length, flags: "PA", payload: body }), PVM, "PVM");
  add(
    buildTcp({ ...g2c, seq: 5001, ack: 1001 + req.length, flags: "PA", payload: body }),
    SVM,
    "SVM: same payload",
  );
  add(
    buildTcp({
      ...c2g,
      seq: 1001 + req.length,
      ack: 5001 + body.length,
      flags: "A",
      options: [{ kind: "nop" }, { kind: "nop" }, { kind: "sack", blocks: [[6000, 6100]] }],
    }),
    CLIENT_IF,
    "ACK with a SACK block",
  );
  // A miscompare: the VMs answer a second request differently.
  add(
    buildTcp({ ...c2g, seq: 1001 + req.length, ack: 5001 + body.length, flags: "PA", payload: req }),
    CLIENT_IF,
  );
  add(
    buildTcp({ ...g2c, seq: 5001 + body.length, ack: 1001 + 2 * req.length, flags: "PA", payload: "time=1" }),
    PVM,
    "PVM",
  );
  add(
    buildTcp({ ...g2c, seq: 5001 + body.length, ack: 1001 + 2 * req.length, flags: "PA", payload: "time=2" }),
    SVM,
    "SVM: payload differs -> checkpoint",
  );
  add(buildTcp({ ...c2g, seq: 1001 + 2 * req.length, ack: 5007 + body.length, flags: "FA" }), CLIENT_IF);
  // UDP (DNS-like) and ICMP over IPv4, on VLAN 100.
  const v = { vlan: 100, srcMac: CMAC, dstMac: GMAC };
  add(
    buildUdp({ ...v, src: CLIENT, dst: GUEST, sport: 53000, dport: 53, payload: "query" }),
    CLIENT_IF,
    "VLAN 100",
  );
  for (const side of [PVM, SVM]) {
    add(buildUdp({ ...v, src: GUEST, dst: CLIENT, sport: 53, dport: 53000, payload: "answer" }), side);
  }
  add(buildIcmpEcho({ src: CLIENT, dst: GUEST, id: 7, seq: 1, payload: "ping" }), CLIENT_IF);
  for (const side of [PVM, SVM])
    add(buildIcmpEcho({ src: GUEST, dst: CLIENT, id: 7, seq: 1, reply: true, payload: "ping" }), side);
  // IPv6: neighbour discovery and a TCP SYN through a hop-by-hop header, in QinQ 200.100.
  add(buildNeighborSolicit({ src: CLIENT6, target: GUEST6, srcLinkAddr: CMAC }), CLIENT_IF);
  add(
    buildNeighborAdvert({ src: GUEST6, dst: CLIENT6, target: GUEST6, solicited: true, targetLinkAddr: GMAC }),
    PVM,
  );
  add(
    buildTcp({
      src: CLIENT6,
      dst: GUEST6,
      sport: 40001,
      dport: 22,
      seq: 42,
      flags: "S",
      vlan: 100,
      outerVlan: 200,
      extHeaders: [{ type: "hopByHop" }],
    }),
    CLIENT_IF,
    "IPv6 in QinQ",
  );
  // IPv4 fragments of one UDP datagram, and a frame too short for its IPv4 header.
  add(
    buildUdp({
      src: CLIENT,
      dst: GUEST,
      sport: 5000,
      dport: 6000,
      id: 99,
      mf: true,
      payload: "x".repeat(32),
    }),
    CLIENT_IF,
    "first fragment",
  );
  add(
    buildEthernet({ etherType: 0x0800, payload: Buffer.from("4500003c", "hex"), srcMac: CMAC }),
    CLIENT_IF,
    "malformed",
  );
  return encodePcapng(pkts, {
    interfaces: [
      { name: "client", description: "client traffic, mirrored to both VMs" },
      { name: "pvm", description: "primary VM output" },
      { name: "svm", description: "secondary VM output" },
    ],
    comment: "colo-proxy sample capture (scripts/make-pcap-fixture.ts)",
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const out = new URL("../test/fixtures/sample.pcapng", import.meta.url);
  writeFileSync(out, sampleCapture());
  console.log(`wrote ${out.pathname}`);
}
