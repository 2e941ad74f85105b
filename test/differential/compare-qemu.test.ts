/**
 * @module Differential scenarios played against real QEMU 7.2 colo-compare: pins down the
 * reference behaviour that `colo-proxy compare` is compared with (test/differential/compare.test.ts).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { qemuSkipReason } from "../support/qemu.ts";
import { expected, runScenario } from "./scenario.ts";
import { scenarios } from "./scenarios.ts";
import { qemuTarget } from "./targets.ts";

describe("QEMU colo-compare reference behaviour", { concurrency: 4 }, () => {
  for (const sc of scenarios) {
    test(sc.name, async (t) => {
      const skip = qemuSkipReason();
      if (skip !== undefined) return t.skip(skip);
      const got = await runScenario(qemuTarget, sc, t);
      assert.deepEqual(got, expected(sc.qemu));
    });
  }
});
