/**
 * @module Differential-test targets: QEMU's colo-compare (a no-guest qemu-system-x86_64 per
 * scenario, ~30 ms to start) and `colo-proxy compare`, both given the same chardev/object text.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseCompareArgs } from "../../src/cli/commands/compare.ts";
import { CompareDaemon } from "../../src/node/compare-daemon.ts";
import { resolveCompareConfig } from "../../src/node/config.ts";
import { spawnProc, startQemu, type TestCtx, tempDir, waitUntil } from "../support/qemu.ts";
import type { RunningTarget, Target } from "./scenario.ts";

export const qemuTarget: Target = {
  name: "qemu",
  async start({ chardevs, objects }, t: TestCtx): Promise<RunningTarget> {
    const q = await startQemu({ chardevs, objects }, t);
    return {
      sock: (id) => q.sock(id),
      waitConnected: (ids) => q.waitConnected(ids),
      alive: () => q.proc.exitStatus === undefined,
      stop: () => q.stop(),
    };
  },
};

function chardevArgs(dir: string, chardevs: string[]): string[] {
  return chardevs.flatMap((id) => [
    "--chardev",
    `socket,id=${id},path=${path.join(dir, `${id}.sock`)},server=on,wait=off`,
  ]);
}

/** `colo-proxy compare` in this process (fast), configured through the CLI argument parser. */
export const coloProxyTarget: Target = {
  name: "colo-proxy",
  async start({ chardevs, objects }, t: TestCtx): Promise<RunningTarget> {
    const dir = tempDir(t, "colo-cmp-");
    const args = [
      ...chardevs.flatMap((c) => chardevArgs(dir, [c])),
      ...objects.flatMap((o) => ["-object", o]),
    ];
    const config = resolveCompareConfig(parseCompareArgs(args).raw);
    const d = await CompareDaemon.start(config, { controlSocket: null });
    let stopped = false;
    t.after(() => d.close());
    const eps = { pri: d.primary, sec: d.secondary, out: d.outdev, nfy: d.notify } as const;
    return {
      sock: (id) => path.join(dir, `${id}.sock`),
      async waitConnected(ids) {
        const ok = await waitUntil(
          () => ids.every((id) => eps[id as keyof typeof eps]?.connected === true),
          20_000,
        );
        if (!ok) throw new Error(`colo-proxy compare: chardevs not connected: ${ids.join(", ")}`);
      },
      alive: () => !stopped,
      async stop() {
        stopped = true;
        await d.close();
      },
    };
  },
};

const BIN = fileURLToPath(new URL("../../bin/colo-proxy.mjs", import.meta.url));

/** The real `colo-proxy compare` process (slower to start; for crash/survival scenarios). */
export const coloProxyCliTarget: Target = {
  name: "colo-proxy (process)",
  async start({ chardevs, objects }, t: TestCtx): Promise<RunningTarget> {
    const dir = tempDir(t, "colo-cli-");
    const args = [BIN, "compare", ...chardevArgs(dir, chardevs), ...objects.flatMap((o) => ["-object", o])];
    const proc = spawnProc(process.execPath, [...args, "--control", "none", "--log-level", "error"], t);
    return {
      sock: (id) => path.join(dir, `${id}.sock`),
      // Output waits in colo-proxy for a peer, so there is nothing to wait for beyond the sockets
      // existing (FramedPeer.connect retries until they do).
      async waitConnected() {},
      alive: () => proc.exitStatus === undefined,
      async stop() {
        await proc.stop();
      },
    };
  },
};
