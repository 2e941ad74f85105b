/**
 * @module QEMU's side of the scenarios where colo-proxy deliberately differs: pins down what QEMU
 * 7.2 does there (compare.test.ts checks our side; the other scenarios run both live there).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { qemuSkipReason } from "../support/qemu.ts";
import { expected, runScenario } from "./scenario.ts";
import { scenarios } from "./scenarios.ts";
import { qemuTarget } from "./targets.ts";

describe("QEMU colo-compare where colo-proxy differs", { concurrency: 4 }, () => {
  for (const sc of scenarios.filter((s) => s.ours !== undefined)) {
    test(sc.name, async (t) => {
      const skip = qemuSkipReason();
      if (skip !== undefined) return t.skip(skip);
      const got = await runScenario(qemuTarget, sc, t, sc.qemu);
      assert.deepEqual(got, expected(sc.qemu));
    });
  }
});
