/**
 * @module The differential suite: every scenario is played against QEMU 7.2's colo-compare and
 * against `colo-proxy compare` through real sockets. Where we do not deliberately differ, our
 * outdev frames (bytes and order) and notify_dev messages must equal QEMU's; where we do, the
 * test asserts our documented behaviour and names the difference.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { qemuSkipReason } from "../support/qemu.ts";
import { expected, type Outcome, runScenario } from "./scenario.ts";
import { scenarios } from "./scenarios.ts";
import { coloProxyTarget, qemuTarget } from "./targets.ts";

describe("colo-proxy compare vs QEMU colo-compare", { concurrency: 4 }, () => {
  for (const sc of scenarios) {
    const title =
      sc.ours === undefined ? `${sc.name} [same as QEMU]` : `${sc.name} [differs: ${sc.ours.differs}]`;
    test(title, async (t) => {
      const ours = await runScenario(coloProxyTarget, sc, t, sc.ours ?? sc.qemu);
      if (sc.ours !== undefined) {
        assert.deepEqual(ours, expected(sc.ours), "colo-proxy's documented behaviour");
        return;
      }
      // Same as QEMU: compare with what QEMU does right now (and with the recorded expectation,
      // so the suite still checks us where QEMU is not installed).
      assert.deepEqual(ours, expected(sc.qemu), "colo-proxy matches QEMU's recorded behaviour");
      const reason = qemuSkipReason();
      if (reason !== undefined) {
        t.diagnostic(`live QEMU comparison skipped: ${reason}`);
        return;
      }
      const qemu: Outcome = await runScenario(qemuTarget, sc, t, sc.qemu);
      assert.deepEqual(ours, qemu, "byte-identical outdev and the same notifications as live QEMU");
    });
  }
});
