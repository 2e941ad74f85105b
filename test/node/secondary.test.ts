/**
 * @module `colo-proxy secondary` in process: after failover its input from the SVM's netdev
 * (net_in) must never wait on guest_in, which the SVM's own QEMU reads, or both stall for good
 * (docs/e2e.md).
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { parseSecondaryArgs } from "../../src/cli/commands/secondary.ts";
import { SecondaryDaemon } from "../../src/node/secondary.ts";
import { tcp } from "../support/frames.ts";
import { MainLoopPeer } from "../support/main-loop-peer.ts";
import { tempDir, waitUntil } from "../support/qemu.ts";

test("after failover the secondary never pauses net_in for a congested guest_in (both are the SVM QEMU's)", async (t) => {
  const dir = tempDir(t);
  const f = (n: string) => path.join(dir, n);
  writeFileSync(f("secret"), "secondary test secret\n", { mode: 0o600 });
  const parsed = parseSecondaryArgs([
    ...["--addr", `unix:${f("link.sock")}`, "--secret-file", f("secret")],
    ...["--guest-in", `unix:${f("guest-in.sock")}`, "--guest-out", `unix:${f("guest-out.sock")}`],
    ...["--net-in", `unix:${f("net-in.sock")}`, "--net-out", `unix:${f("net-out.sock")}`],
  ]);
  if ("help" in parsed && parsed.help) throw new Error("unreachable");
  const s = await SecondaryDaemon.start(parsed.config, { controlSocket: null });
  t.after(() => s.close());
  s.failover("test");
  // The SVM QEMU's redirector hands its netdev's frames to net_in (a blocking write) and
  // injects what comes back on guest_in, in the same main loop.
  const frame = tcp({ payload: Buffer.alloc(1400, 0x63) });
  const qemu = await MainLoopPeer.connect(f("net-in.sock"), f("guest-in.sock"), frame.length);
  t.after(() => qemu.close());
  const n = 8000;
  void qemu.send(frame, n);
  assert.ok(await waitUntil(() => qemu.received === n, 30_000), `${qemu.received}/${n} frames injected`);
  assert.equal(s.netIn?.paused, false);
});
