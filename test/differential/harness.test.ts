/**
 * @module Tests of the shared QEMU harness itself (test/support/qemu.ts): QEMU starts with no
 * guest, QMP answers, framed chardev peers exchange frames, and a miscompare is observable on
 * notify_dev.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { tcp, udp } from "../support/frames.ts";
import { encodeFrame, FramedPeer, skipWithoutQemu, startQemu } from "../support/qemu.ts";

const IDS = ["pri", "sec", "out", "nfy"];
const COMPARE =
  "colo-compare,id=c,primary_in=pri,secondary_in=sec,outdev=out,notify_dev=nfy,iothread=iot,compare_timeout=100,expired_scan_cycle=20";

test("encodeFrame writes the BE length, the optional vnet word, then the frame", () => {
  assert.deepEqual([...encodeFrame(Uint8Array.of(9, 8, 7))], [0, 0, 0, 3, 9, 8, 7]);
  assert.deepEqual([...encodeFrame(Uint8Array.of(9), 12)], [0, 0, 0, 1, 0, 0, 0, 12, 9]);
});

test("QEMU colo-compare runs with no guest: identical frames are released, a miscompare notifies", async (t) => {
  if (skipWithoutQemu(t)) return;
  const q = await startQemu({ chardevs: IDS, objects: ["iothread,id=iot", COMPARE] }, t);
  const size = await q.qmp.execute<number>("qom-get", { path: "/objects/c", property: "max_queue_size" });
  assert.equal(size, 1024);
  const [pri, sec, out, nfy] = await Promise.all(IDS.map((id) => FramedPeer.connect(q.sock(id), {}, t)));
  await q.waitConnected(IDS);
  const f = udp({ payload: "hello" });
  pri!.send(f);
  sec!.send(f);
  assert.ok(await out!.waitFrames(1, 20_000), "matched UDP frame released");
  assert.deepEqual(out!.frames[0]!.data, f);
  pri!.send(tcp({ payload: "abc" }));
  sec!.send(tcp({ payload: "abd" }));
  assert.ok(await nfy!.waitFrames(1, 20_000), "DO_CHECKPOINT on miscompare");
  assert.equal(nfy!.frames[0]!.data.toString(), "DO_CHECKPOINT");
  assert.equal(out!.frames.length, 1, "the mismatching primary is held");
  await q.stop();
  assert.notEqual(q.proc.exitStatus, undefined);
});
