/**
 * @module A PVM and an SVM (same MAC and IPs) behind the upstream COLO filter layout, with the
 * client's frames mirrored to both by a frame relay standing in for colo-proxy: the SVM gets the
 * client's traffic and answers UDP and ICMP exactly like the PVM, and neither guest emits the
 * usual link chatter (ARP, router solicitation, DAD) that would make their outputs differ.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { filterSockets, GUEST } from "../../src/node/guest/qemu.ts";
import { newFrameMeta, ParseStatus } from "../../src/packet/meta.ts";
import { parseFrame } from "../../src/packet/parse.ts";
import {
  bootPrimary,
  bootSecondary,
  detectAccel,
  guestSkipReason,
  makeRunDir,
  runClient,
  Teardown,
} from "../support/guests.ts";
import { createClientNetns } from "../support/netns.ts";
import type { ClientResult } from "../support/netns-client.ts";
import { FrameRelay } from "../support/relay.ts";

const skip = guestSkipReason({ netns: true });
if (skip) console.log(`# guest-pair: skipped: ${skip}`);

/** A short label for a guest-sent frame: what a comparator would have to deal with. */
function label(frame: Buffer): string {
  const m = newFrameMeta();
  if (parseFrame(frame, 0, m) !== ParseStatus.Ok) return "malformed";
  if (m.etherType === 0x0806) return "arp";
  const fam = m.ipVersion === 6 ? "6" : "4";
  if (m.proto === 6) return `tcp${fam}`;
  if (m.proto === 17)
    return `udp${fam} ${m.srcPort}>${m.dstPort} ${frame.subarray(m.payloadOffset, m.payloadOffset + m.payloadLen)}`;
  if (m.proto === 1 || m.proto === 58) {
    const type = frame[m.l4Offset] ?? -1;
    if (m.proto === 58 && type === 135) {
      const unspecified = frame.subarray(m.l3Offset + 8, m.l3Offset + 24).every((b) => b === 0);
      return unspecified ? "icmp6 ns-dad" : "icmp6 ns";
    }
    const names: Record<number, string> = {
      0: "echo-reply",
      129: "echo-reply",
      133: "rs",
      136: "na",
      143: "mldv2",
    };
    if (type === 143) return `icmp6 mldv2 ${frame.subarray(m.l4Offset).toString("hex")}`;
    return `icmp${fam} ${names[type] ?? `type${type}`}`;
  }
  return `other ${m.etherType.toString(16)}/${m.proto}`;
}

const count = (xs: string[]) => {
  const c: Record<string, number> = {};
  for (const x of xs) c[x] = (c[x] ?? 0) + 1;
  return c;
};

describe("PVM and SVM behind the COLO filters, client frames mirrored", { skip, timeout: 300_000 }, () => {
  const td = new Teardown();
  const relay = new FrameRelay();
  const pvmOut: string[] = [];
  const svmOut: string[] = [];
  let results: ClientResult[] = [];

  before(async () => {
    const runDir = makeRunDir();
    td.add(() => rmSync(runDir, { recursive: true, force: true }));
    const s = filterSockets(runDir);
    td.add(() => relay.close());
    await relay.listen("p-in", s.pIn, ["p-in-inj", "s-in-inj"]);
    await relay.listen("p-in-inj", s.pInInj);
    await relay.listen("p-out", s.pOut, ["p-out-inj"], (f) => pvmOut.push(label(f)));
    await relay.listen("p-out-inj", s.pOutInj);
    await relay.listen("s-in-inj", s.sInInj);
    await relay.listen("s-out", s.sOut, [], (f) => svmOut.push(label(f)));
    const ns = await createClientNetns();
    td.add(() => ns.destroy());
    const accel = await detectAccel();
    const [pvm, svm] = await Promise.allSettled([
      bootPrimary({ runDir, accel, netns: ns }),
      bootSecondary({ runDir, accel }),
    ]);
    for (const r of [pvm, svm]) if (r.status === "fulfilled") td.add(() => r.value.kill());
    for (const r of [pvm, svm]) if (r.status === "rejected") throw r.reason;
    results = await runClient(ns, [
      { op: "udp-echo", host: GUEST.ip4, port: 7, data: "pair udp4" },
      { op: "udp-echo", host: GUEST.ip6, port: 7, data: "pair udp6" },
      { op: "ping", host: GUEST.ip4 },
      { op: "ping", host: GUEST.ip6 },
      { op: "http", host: GUEST.ip4, port: 80, path: "/" },
    ]);
    // The SVM lags the PVM; give it a bounded moment to answer the last frames.
    const end = Date.now() + 10_000;
    while (Date.now() < end && svmOut.filter((l) => l.includes("echo-reply")).length < 2) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 500));
    console.log(`# PVM output: ${JSON.stringify(count(pvmOut))}`);
    console.log(`# SVM output: ${JSON.stringify(count(svmOut))}`);
  });
  after(() => td.run());

  test("the client was served by the PVM", () => {
    for (const r of results) assert.ok(r.ok, JSON.stringify(r));
  });

  test("the SVM received every client frame the PVM received", () => {
    const c = relay.counters();
    assert.ok((c["p-in"]?.rx ?? 0) > 0);
    assert.equal(c["s-in-inj"]?.tx, c["p-in"]?.rx);
  });

  test("the SVM answered UDP echo (IPv4 and IPv6) with the PVM's exact datagrams", () => {
    for (const want of [`udp4 7>`, `udp6 7>`]) {
      const p = pvmOut.filter((l) => l.startsWith(want));
      const s = svmOut.filter((l) => l.startsWith(want));
      assert.equal(p.length, 1, JSON.stringify(pvmOut));
      assert.deepEqual(s, p);
    }
  });

  test("the SVM answered ICMP and ICMPv6 echo like the PVM", () => {
    for (const want of ["icmp4 echo-reply", "icmp6 echo-reply"]) {
      assert.equal(pvmOut.filter((l) => l === want).length, 1);
      assert.equal(svmOut.filter((l) => l === want).length, 1);
    }
  });

  test("no ARP, router solicitation or DAD from either guest", () => {
    for (const out of [pvmOut, svmOut]) {
      for (const bad of ["arp", "icmp6 rs", "icmp6 ns-dad"])
        assert.ok(!out.includes(bad), `${bad} in ${out}`);
    }
  });

  test("apart from TCP (ISNs differ, SVM has no seq rewriter here) both guests sent the same frames", () => {
    const nonTcp = (xs: string[]) => count(xs.filter((l) => !l.startsWith("tcp")));
    assert.deepEqual(nonTcp(svmOut), nonTcp(pvmOut));
  });
});
