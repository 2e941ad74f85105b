/**
 * @module The bad-input scenarios against the real `colo-proxy compare` process: it must survive
 * every one of them (QEMU aborts or goes deaf) and keep comparing after the peer reconnects.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { expected, runScenario } from "./scenario.ts";
import { scenarios } from "./scenarios.ts";
import { coloProxyCliTarget } from "./targets.ts";

describe("colo-proxy compare process survives bad input", { concurrency: 4 }, () => {
  for (const sc of scenarios.filter((s) => s.name.startsWith("malformed:") && s.ours !== undefined)) {
    test(sc.name, async (t) => {
      const got = await runScenario(coloProxyCliTarget, sc, t, sc.ours!);
      assert.deepEqual(got, expected(sc.ours!));
    });
  }
});
