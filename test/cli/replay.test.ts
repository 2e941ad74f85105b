/**
 * @module `colo-proxy replay`: the simulation (replayCaptures) over captures built with the
 * packet builders — identical outputs, payload differences, a missing twin timing out at the
 * right tick, checkpoint duration coalescing requests, passthrough rules, the end-of-capture
 * drain, clock steps backwards, long gaps — and the command's text/JSON output and errors.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { replayCaptures, suggestRule } from "../../src/cli/replay-sim.ts";
import { buildArp, buildIcmpEcho, buildTcp, buildUdp } from "../../src/packet/build.ts";
import { newFrameMeta } from "../../src/packet/meta.ts";
import { parseFrame } from "../../src/packet/parse.ts";
import type { CapturePacket } from "../../src/wire/pcap-format.ts";
import { encodePcap } from "../../src/wire/pcap-writer.ts";
import { encodePcapng } from "../../src/wire/pcapng-writer.ts";

const G = "10.0.0.10";
const C = "10.0.0.1";
const T0 = 1_764_028_800_000_000_000n;
const ms = (n: number) => BigInt(Math.round(n * 1e6));

type Pkt = { timestampNs: bigint; frame: Buffer };
const pkt = (tMs: number, frame: Buffer): Pkt => ({ timestampNs: T0 + ms(tMs), frame });

async function* iter(ps: Pkt[]): AsyncGenerator<CapturePacket> {
  for (const p of ps) yield { ...p, origLen: p.frame.length, interfaceId: 0, linkType: 1 };
}

/** 60 s of a web reply stream and a UDP "clock" service; the SVM differs where `differ` says. */
function scenario(differ: { tcp: (i: number) => boolean; udp: (i: number) => boolean }): {
  p: Pkt[];
  s: Pkt[];
} {
  const p: Pkt[] = [];
  const s: Pkt[] = [];
  for (let i = 0; i < 60; i++) {
    const t = 1000 * (i + 1);
    const tcp = (payload: string) =>
      buildTcp({ src: G, dst: C, sport: 80, dport: 40000, seq: 1000 + i * 20, ack: 5, flags: "PA", payload });
    const pay = `reply ${i}`.padEnd(20);
    p.push(pkt(t, tcp(pay)));
    s.push(pkt(t + 2, tcp(differ.tcp(i) ? pay.toUpperCase() : pay)));
    const udp = (payload: string) => buildUdp({ src: G, dst: C, sport: 53, dport: 5353, payload });
    p.push(pkt(t + 5, udp(`time ${i}`)));
    s.push(pkt(t + 6, udp(differ.udp(i) ? `time ${i + 1}` : `time ${i}`)));
  }
  return { p, s };
}

describe("replayCaptures", () => {
  test("identical outputs: everything matches, no checkpoint", async () => {
    const { p, s } = scenario({ tcp: () => false, udp: () => false });
    const r = await replayCaptures(iter(p), iter(s));
    assert.deepEqual(r.frames, { primary: 120, secondary: 120 });
    assert.equal(r.stats.matched, 120);
    assert.equal(r.requests, 0);
    assert.equal(r.checkpoints, 0);
    assert.equal(r.checkpointsPerMinute, 0);
    assert.equal(r.stats.connectionsCreated, 2);
    assert.deepEqual(r.topFlows, []);
    assert.equal(r.durationMs, 60_006 - 1000);
  });

  test("payload differences: one request each, explained, flows ranked with passthrough rules", async () => {
    const { p, s } = scenario({ tcp: (i) => i % 10 === 5, udp: (i) => i % 4 === 0 });
    const r = await replayCaptures(iter(p), iter(s));
    assert.equal(r.requests, 6 + 15);
    assert.equal(r.byReason["payload-differs"], 21);
    assert.equal(r.checkpoints, 21);
    assert.equal(r.checkpointsPerMinute, (21 * 60_000) / 59_006);
    assert.deepEqual(
      r.topFlows.map((f) => [f.flow, f.requests, f.byReason, f.passthroughRule]),
      [
        ["udp 10.0.0.10:53 > 10.0.0.1:5353", 15, { "payload-differs": 15 }, "udp 10.0.0.10/32:53"],
        ["tcp 10.0.0.10:80 > 10.0.0.1:40000", 6, { "payload-differs": 6 }, "tcp 10.0.0.10/32:80"],
      ],
    );
    // The first request: the UDP datagram of second 1, compared when the SVM's copy arrives (+6 ms).
    const e = r.events[0]!;
    assert.equal(e.timeMs, 6);
    assert.equal(e.reason, "payload-differs");
    assert.equal(e.flow, "udp 10.0.0.10:53 > 10.0.0.1:5353");
    const tcpEvent = r.events.find((x) => x.request.protocol === "tcp")!;
    assert.equal(tcpEvent.timeMs, 5002);
    assert.equal(tcpEvent.request.streamOffset, 100);
    assert.equal(tcpEvent.request.seq, 1100);
    assert.equal(r.requestsAfterEnd, 0);
    assert.deepEqual(r.heldAtEnd, { primary: 0, secondary: 0 });
  });

  test("a primary packet without a twin times out at the first tick after compare_timeout", async () => {
    const lone = buildUdp({ src: G, dst: C, sport: 123, dport: 123, payload: "ntp" });
    const keep = buildIcmpEcho({ src: G, dst: C, id: 1, seq: 1, reply: true });
    // The lone frame at 500 ms; traffic continues so the timeout happens during the captures.
    const p = [pkt(0, keep), pkt(500, lone), pkt(9000, keep)];
    const s = [pkt(1, keep), pkt(9001, keep)];
    const r = await replayCaptures(iter(p), iter(s), {
      config: { compareTimeout: 3000, expiredScanCycle: 1000 },
    });
    assert.equal(r.requests, 1);
    const e = r.events[0]!;
    assert.equal(e.reason, "timeout");
    // Ticks at 1000, 2000, 3000 find it 2500 ms old at most; at 4000 it is 3500 ms old.
    assert.equal(e.timeMs, 4000);
    assert.equal(e.request.side, "primary");
    assert.equal(e.request.ageMs, 3500);
    assert.equal(r.stats.releasedBy.flush, 1);
    assert.equal(r.checkpoints, 1);
  });

  test("packets still waiting at the end are drained and reported apart", async () => {
    const { p, s } = scenario({ tcp: () => false, udp: () => false });
    p.push(pkt(60_500, buildUdp({ src: G, dst: C, sport: 123, dport: 123, payload: "ntp" })));
    const r = await replayCaptures(iter(p), iter(s));
    assert.deepEqual(r.heldAtEnd, { primary: 1, secondary: 0 });
    assert.equal(r.requests, 0);
    assert.equal(r.requestsAfterEnd, 1);
    assert.equal(r.events[0]!.afterEnd, true);
    assert.equal(r.events[0]!.reason, "timeout");
    assert.equal(r.stats.heldPrimary, 0, "the drain flushed it");
  });

  test("a checkpoint that takes time coalesces the triggers raised meanwhile", async () => {
    const { p, s } = scenario({ tcp: () => true, udp: () => true });
    const quick = await replayCaptures(iter(p), iter(s));
    const slow = await replayCaptures(iter(p), iter(s), { checkpointMs: 500 });
    // Instant checkpoints: TCP and UDP each miscompare every second.
    assert.equal(quick.checkpoints, 120);
    // 500 ms checkpoints: the UDP miscompare 4 ms after the TCP one joins the pending request.
    assert.equal(slow.checkpoints, 60);
    assert.equal(slow.stats.checkpointCoalesced, 60);
    // The last one completes after the captures end; it still counts as caused by them.
    assert.equal(slow.stats.checkpoints, 60);
  });

  test("passthrough rules remove a flow from comparison", async () => {
    const { p, s } = scenario({ tcp: (i) => i % 10 === 5, udp: (i) => i % 4 === 0 });
    const r = await replayCaptures(iter(p), iter(s), { passthrough: ["udp 10.0.0.10:53"] });
    assert.equal(r.requests, 6);
    assert.equal(r.stats.releasedBy.passthrough, 60);
    assert.equal(r.stats.discardedBy.passthrough, 60);
    assert.deepEqual(
      r.topFlows.map((f) => f.flow),
      ["tcp 10.0.0.10:80 > 10.0.0.1:40000"],
    );
  });

  test("is deterministic", async () => {
    const { p, s } = scenario({ tcp: (i) => i % 3 === 0, udp: (i) => i % 7 === 0 });
    const a = await replayCaptures(iter(p), iter(s), { checkpointMs: 30 });
    const b = await replayCaptures(iter(p), iter(s), { checkpointMs: 30 });
    assert.deepEqual(a, b);
  });

  test("timestamps going backwards hold the clock; a year-long gap costs no year of ticks", async () => {
    const f = buildIcmpEcho({ src: G, dst: C, id: 2, seq: 1, reply: true });
    const year = 365 * 24 * 3600 * 1000;
    const p = [pkt(1000, f), pkt(900, f), pkt(year, f)];
    const s = [pkt(1000, f), pkt(1001, f), pkt(year + 1, f)];
    const r = await replayCaptures(iter(p), iter(s));
    assert.equal(r.clockBackwards, 1);
    assert.equal(r.stats.matched, 3);
    assert.equal(r.requests, 0);
    // The clock starts at the first frame merged (1000 ms); the one at 900 ms is held at 1000.
    assert.equal(r.durationMs, year + 1 - 1000);
  });

  test("empty captures give an empty report", async () => {
    const r = await replayCaptures(iter([]), iter([]));
    assert.equal(r.firstNs, null);
    assert.equal(r.checkpointsPerMinute, null);
    assert.deepEqual(r.frames, { primary: 0, secondary: 0 });
  });
});

test("suggestRule writes a valid rule for the guest end of each kind of flow", () => {
  const m = newFrameMeta();
  const key = (f: Buffer) => {
    parseFrame(f, 0, m);
    return m.key;
  };
  assert.equal(suggestRule(key(buildTcp({ src: G, dst: C, sport: 80, dport: 1 }))), "tcp 10.0.0.10/32:80");
  assert.equal(
    suggestRule(key(buildUdp({ src: "fd00::10", dst: "fd00::1", sport: 53, dport: 9, vlan: 7 }))),
    "vlan 7 udp [fd00::10/128]:53",
  );
  assert.equal(suggestRule(key(buildIcmpEcho({ src: G, dst: C, id: 1 }))), "icmp 10.0.0.10/32");
  assert.equal(
    suggestRule(key(buildArp({ op: "reply", senderMac: "52:54:00:00:00:0a", senderIp: G, targetIp: C }))),
    "arp 10.0.0.10/32",
  );
  assert.equal(suggestRule("not a key"), undefined);
});

describe("colo-proxy replay command", () => {
  const execp = promisify(execFile);
  const bin = new URL("../../bin/colo-proxy.mjs", import.meta.url).pathname;
  let dir = "";
  let pPath = "";
  let sPath = "";
  const cli = async (args: string[]) => {
    try {
      const { stdout, stderr } = await execp(process.execPath, [bin, "replay", ...args]);
      return { code: 0, stdout, stderr };
    } catch (e) {
      const err = e as { code: number; stdout: string; stderr: string };
      return { code: err.code, stdout: err.stdout, stderr: err.stderr };
    }
  };
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "colo-replay-"));
    const { p, s } = scenario({ tcp: (i) => i % 10 === 5, udp: (i) => i % 4 === 0 });
    pPath = join(dir, "pvm.pcap");
    sPath = join(dir, "svm.pcapng");
    await writeFile(pPath, encodePcap(p, { resolution: "ns" }));
    await writeFile(sPath, encodePcapng(s));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("prints the summary, the requests and the passthrough candidates", async () => {
    const r = await cli([pPath, sPath, "--events", "2"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.match(
      lines[0]!,
      /^replay: .*pvm\.pcap \(120 frames\) vs .*svm\.pcapng \(120 frames\), 59\.006 s of traffic/,
    );
    assert.ok(lines.includes("checkpoint requests: 21 (payload-differs 21); checkpoints: 21"), r.stdout);
    assert.ok(lines.includes("predicted checkpoints per minute: 21.35"), r.stdout);
    assert.ok(
      lines.includes("  +0.006 s payload differs on udp 10.0.0.10:53 > 10.0.0.1:5353 at byte 7 of 14"),
      r.stdout,
    );
    assert.ok(lines.includes("  ... 19 more (--events N, or --json for all)"), r.stdout);
    assert.ok(
      lines.includes(
        '     15  udp 10.0.0.10:53 > 10.0.0.1:5353  (payload-differs 15)  -> --passthrough "udp 10.0.0.10/32:53"',
      ),
      r.stdout,
    );
  });

  test("--json gives one object with every request", async () => {
    const r = await cli([pPath, sPath, "--json", "--passthrough", "udp 10.0.0.10:53"]);
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout) as {
      requests: number;
      events: Array<{ reason: string; flow: string; streamOffset: number; key?: string }>;
      topFlows: Array<{ flow: string; passthroughRule: string }>;
      stats: { releasedBy: { passthrough: number } };
    };
    assert.equal(o.requests, 6);
    assert.equal(o.events.length, 6);
    assert.deepEqual(
      o.events.map((e) => e.streamOffset),
      [100, 300, 500, 700, 900, 1100],
    );
    assert.equal(o.events[0]!.key, undefined);
    assert.equal(o.stats.releasedBy.passthrough, 60);
    assert.equal(o.topFlows[0]!.passthroughRule, "tcp 10.0.0.10/32:80");
  });

  test("usage errors exit 2; a bad capture exits 1 naming the file", async () => {
    for (const args of [
      [pPath],
      [pPath, sPath, "--compare-timeout", "0"],
      [pPath, sPath, "--passthrough", "nope"],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, /COLO_ERR_USAGE/);
    }
    const bad = join(dir, "bad.pcap");
    await writeFile(bad, "not a capture at all");
    const r = await cli([pPath, bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad\.pcap: not a pcap or pcapng file .*COLO_ERR_PCAP_BAD_MAGIC/);
    const h = await cli(["--help"]);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /Usage: colo-proxy replay/);
  });

  test("one pcapng: the pvm and svm interfaces are the two sides (the bundled sample)", async () => {
    const sample = new URL("../fixtures/sample.pcapng", import.meta.url).pathname;
    const r = await cli([sample, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout) as {
      frames: { primary: number; secondary: number };
      requests: number;
      requestsAfterEnd: number;
      events: Array<{ reason: string; flow: string; streamOffset?: number; afterEnd: boolean }>;
    };
    assert.deepEqual(o.frames, { primary: 7, secondary: 6 });
    assert.equal(o.requests, 1);
    assert.deepEqual(
      [o.events[0]!.reason, o.events[0]!.flow, o.events[0]!.streamOffset],
      ["payload-differs", "tcp 192.168.122.10:80 > 192.168.122.1:40000", 48],
    );
    // The PVM's neighbour advertisement has no SVM twin: it times out after the capture ends.
    assert.equal(o.requestsAfterEnd, 1);
    const byIndex = await cli([sample, "--json", "--primary-if", "1", "--secondary-if", "2"]);
    assert.equal(byIndex.stdout, r.stdout);
    const bad = await cli([sample, "--secondary-if", "nope"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /no interface 'nope'; it has 0 \(client\), 1 \(pvm\), 2 \(svm\)/);
  });
});
