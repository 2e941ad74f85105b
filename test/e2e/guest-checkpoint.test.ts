/**
 * @module Checkpoint in the network path: PVM and SVM behind the COLO filters, client frames
 * mirrored to both (frame relay standing in for colo-proxy), then a checkpoint by the executor.
 * Before it the SVM is an independent boot (its TCP state is its own); after it the new SVM is a
 * copy of the PVM: on a TCP connection opened before the checkpoint it sends the PVM's exact
 * segments (same sequence numbers, no rewriting), and it answers UDP like the PVM.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { CheckpointExecutor, type CheckpointReport } from "../../src/node/checkpoint-executor.ts";
import {
  attachSecondaryFilters,
  filterSockets,
  GUEST,
  machineArgs,
  nicArgs,
  sinkNetdev,
} from "../../src/node/guest/qemu.ts";
import { newFrameMeta, ParseStatus } from "../../src/packet/meta.ts";
import { parseFrame } from "../../src/packet/parse.ts";
import {
  bootPrimary,
  bootSecondary,
  ClientSession,
  CONSOLE_MS,
  detectAccel,
  guestSkipReason,
  image,
  makeRunDir,
  TEST_NICE,
  Teardown,
} from "../support/guests.ts";
import { createClientNetns } from "../support/netns.ts";
import type { ClientResult } from "../support/netns-client.ts";
import { FrameRelay } from "../support/relay.ts";

const skip = guestSkipReason({ netns: true });
if (skip) console.log(`# guest-checkpoint: skipped: ${skip}`);

/** Guest-sent TCP segments with payload and UDP datagrams, as comparable strings. */
function label(frame: Buffer): string | undefined {
  const m = newFrameMeta();
  if (parseFrame(frame, 0, m) !== ParseStatus.Ok) return undefined;
  const payload = frame.subarray(m.payloadOffset, m.payloadOffset + m.payloadLen).toString();
  if (m.proto === 6 && m.payloadLen > 0)
    return `tcp ${m.srcPort}>${m.dstPort} seq=${m.tcpSeq} ack=${m.tcpAck} ${payload}`;
  if (m.proto === 17) return `udp ${m.srcPort}>${m.dstPort} ${payload}`;
  return undefined;
}

describe("a checkpoint with both guests in the network path", { skip, timeout: 300_000 }, () => {
  const td = new Teardown();
  const relay = new FrameRelay();
  const pvmOut: string[] = [];
  const svmOut: string[] = [];
  let report: CheckpointReport;
  let before1: ClientResult;
  let after1: ClientResult;
  let udp: ClientResult;
  let token = "";
  let svmState = "";

  const waitFor = async (cond: () => boolean, ms = 15_000) => {
    const end = Date.now() + ms;
    while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  };

  before(async () => {
    const runDir = makeRunDir();
    td.add(() => rmSync(runDir, { recursive: true, force: true }));
    const s = filterSockets(runDir);
    td.add(() => relay.close());
    const rec = (out: string[]) => (f: Buffer) => {
      const l = label(f);
      if (l) out.push(l);
    };
    await relay.listen("p-in", s.pIn, ["p-in-inj", "s-in-inj"]);
    await relay.listen("p-in-inj", s.pInInj);
    await relay.listen("p-out", s.pOut, ["p-out-inj"], rec(pvmOut));
    await relay.listen("p-out-inj", s.pOutInj);
    await relay.listen("s-in-inj", s.sInInj);
    await relay.listen("s-out", s.sOut, [], rec(svmOut));
    const ns = await createClientNetns();
    td.add(() => ns.destroy());
    const accel = await detectAccel();
    const [p, s0] = await Promise.allSettled([
      bootPrimary({ runDir, accel, netns: ns }),
      bootSecondary({ runDir, accel }),
    ]);
    for (const r of [p, s0]) if (r.status === "fulfilled") td.add(() => r.value.kill());
    if (p.status === "rejected") throw p.reason;
    if (s0.status === "rejected") throw s0.reason;
    const pvm = p.value;
    const ex = new CheckpointExecutor({
      primary: pvm,
      secondary: s0.value,
      runDir,
      nice: TEST_NICE,
      secondaryArgs: (name) => [
        ...machineArgs({ name, role: "secondary", image, accel, runDir }),
        ...sinkNetdev(),
        ...nicArgs(),
      ],
      attachSecondary: (vm) => attachSecondaryFilters(vm.qmp, runDir),
    });
    td.add(() => ex.close());
    const client = ClientSession.start(ns);
    td.add(() => client.close());

    assert.ok((await client.request({ op: "open", conn: "c", host: GUEST.ip4, port: 7 })).ok);
    before1 = await client.request({ op: "echo", conn: "c", data: "before the checkpoint\n" });
    token = (
      await (
        await pvm.console()
      ).run("head -c 8 /dev/urandom | hexdump -v -e '/1 \"%02x\"' | tee /run/colo/state", CONSOLE_MS)
    ).trim();
    report = await ex.checkpoint();
    after1 = await client.request({ op: "echo", conn: "c", data: "after the checkpoint\n" });
    udp = await client.request({
      op: "udp-echo",
      host: GUEST.ip4,
      port: 7,
      data: "udp after the checkpoint",
    });
    await waitFor(
      () =>
        svmOut.some((l) => l.includes("udp after")) &&
        svmOut.some((l) => l.includes("after the checkpoint\n")),
    );
    svmState = (await (await ex.secondary!.console()).run("cat /run/colo/state", CONSOLE_MS)).trim();
    console.log(`# checkpoint: ${JSON.stringify(report)}`);
    console.log(`# PVM output: ${JSON.stringify(pvmOut)}`);
    console.log(`# SVM output: ${JSON.stringify(svmOut)}`);
  });
  after(() => td.run());

  test("the client's TCP connection survives the checkpoint", () => {
    assert.deepEqual(before1, { ok: true, data: "before the checkpoint\n" });
    assert.deepEqual(after1, { ok: true, data: "after the checkpoint\n" });
    assert.equal(report.generation, 1);
  });

  test("before the checkpoint the independently booted SVM did not echo on that connection", () => {
    assert.ok(pvmOut.some((l) => l.endsWith("before the checkpoint\n")));
    assert.ok(!svmOut.some((l) => l.endsWith("before the checkpoint\n")), JSON.stringify(svmOut));
  });

  // Under load either guest may retransmit a segment (TCP) or answer a resent datagram (UDP)
  // more than once; a retransmission repeats the same label, so compare the distinct labels.
  const distinct = (out: string[], part: string) => [...new Set(out.filter((l) => l.includes(part)))];

  test("after it the new SVM sends the PVM's exact TCP segment: same sequence and ack numbers", () => {
    const p = distinct(pvmOut, "after the checkpoint\n");
    assert.equal(p.length, 1, `one segment (maybe retransmitted): ${JSON.stringify(pvmOut)}`);
    assert.deepEqual(distinct(svmOut, "after the checkpoint\n"), p, JSON.stringify(svmOut));
  });

  test("the new SVM answers UDP like the PVM and holds the PVM's RAM state", () => {
    assert.deepEqual(udp, { ok: true, data: "udp after the checkpoint" });
    const p = distinct(pvmOut, "udp after");
    assert.equal(p.length, 1, JSON.stringify(pvmOut));
    assert.deepEqual(distinct(svmOut, "udp after"), p, JSON.stringify(svmOut));
    assert.match(token, /^[0-9a-f]{16}$/);
    assert.equal(svmState, token);
  });
});
