/**
 * @module Differential-test targets: QEMU's colo-compare (a no-guest qemu-system-x86_64 per
 * scenario, ~30 ms to start) and `colo-proxy compare`, both given the same chardev/object text.
 */
import { startQemu, type TestCtx } from "../support/qemu.ts";
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
