/**
 * @module `colo-proxy primary` in process: its client input (mirror_in) must never wait on an
 * output that the PVM's own QEMU reads (guest_in in the redirect layout), or both stall for good
 * (docs/e2e.md).
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { parsePrimaryArgs } from "../../src/cli/commands/primary.ts";
import { PrimaryDaemon } from "../../src/node/primary.ts";
import { tcp } from "../support/frames.ts";
import { MainLoopPeer } from "../support/main-loop-peer.ts";
import { tempDir, waitUntil } from "../support/qemu.ts";

test("a congested guest_in never pauses mirror_in: both are served by the PVM QEMU's main loop", async (t) => {
  const dir = tempDir(t);
  const f = (n: string) => path.join(dir, n);
  writeFileSync(f("secret"), "primary test secret\n", { mode: 0o600 });
  const parsed = parsePrimaryArgs([
    // No secondary listens: the link stays down (client frames count as secondary-unreachable).
    ...["--addr", `unix:${f("link.sock")}`, "--secret-file", f("secret")],
    ...["--mirror-in", `unix:${f("mirror.sock")}`, "--guest-in", `unix:${f("guest-in.sock")}`],
    ...["--primary-in", `unix:${f("pri.sock")}`, "--outdev", `unix:${f("out.sock")}`],
  ]);
  if ("help" in parsed && parsed.help) throw new Error("unreachable");
  const p = await PrimaryDaemon.start(parsed.config, { controlSocket: null });
  t.after(() => p.close());
  // The redirect layout: the PVM QEMU's redirector hands every client frame to mirror_in (a
  // blocking write) and injects what comes back on guest_in, in the same main loop.
  const frame = tcp({ payload: Buffer.alloc(1400, 0x62) });
  const qemu = await MainLoopPeer.connect(f("mirror.sock"), f("guest-in.sock"), frame.length);
  t.after(() => qemu.close());
  const n = 8000; // ~11 MB: far beyond both sockets' buffers and guest_in's 1 MiB high-water mark
  void qemu.send(frame, n);
  assert.ok(await waitUntil(() => qemu.received === n, 30_000), `${qemu.received}/${n} frames injected`);
  assert.equal(p.mirrorIn.paused, false);
});
