/** @module Tests for what every daemon command shares: the V8 heap tuning (tuneDaemonHeap). */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { DEFAULT_HEAP_GROWTH_PERCENT, tuneDaemonHeap } from "../../src/cli/daemon-command.ts";
import { ConfigError } from "../../src/errors.ts";

const MODULE = fileURLToPath(new URL("../../src/cli/daemon-command.ts", import.meta.url));

/**
 * Runs tuneDaemonHeap in a fresh node with COLO_PROXY_HEAP_GROWTH=`env`, forces two full GCs and
 * returns, for each old-generation limit V8 set, the factor its own heuristic computed and the
 * factor it applied.
 */
function limitFactors(
  env: string | undefined,
  nodeArgs: string[] = [],
): { computed: string; applied: string }[] {
  const script = `
    const { tuneDaemonHeap } = await import(${JSON.stringify(MODULE)});
    tuneDaemonHeap();
    const keep = [];
    for (let i = 0; i < 200000; i++) keep.push({ i });
    globalThis.gc(); globalThis.gc();
    console.log(keep.length);`;
  const r = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      "--expose-gc",
      "--trace-gc-verbose",
      ...nodeArgs,
      "--input-type=module",
      "-e",
      script,
    ],
    {
      encoding: "utf8",
      env: { ...process.env, COLO_PROXY_HEAP_GROWTH: env },
      timeout: 60_000,
    },
  );
  assert.equal(r.status, 0, r.stderr);
  // "[HeapController] factor 1.1 based on mu=0.970, ..." then
  // "[HeapController] Limit: old size: 9460 KB, new limit: 47301 KB (4.0)"
  const out: { computed: string; applied: string }[] = [];
  let computed = "";
  for (const line of r.stdout.split("\n")) {
    const c = /\[HeapController\] factor ([\d.]+) based on/.exec(line);
    if (c) computed = c[1]!;
    const l = /\[HeapController\] Limit: .*\(([\d.]+)\)/.exec(line);
    if (l) out.push({ computed, applied: l[1]! });
  }
  return out;
}

test("tuneDaemonHeap: by default V8 grows the old generation by a factor of 4 after a full GC", () => {
  assert.equal(DEFAULT_HEAP_GROWTH_PERCENT, 300);
  // Started with a factor of 1.5 forced on the command line: the daemon's default replaces it.
  const limits = limitFactors(undefined, ["--heap-growing-percent=50"]);
  assert.ok(limits.length >= 2, "no limit lines in V8's trace");
  assert.ok(
    limits.every((l) => l.applied === "4.0"),
    JSON.stringify(limits),
  );
});

test("tuneDaemonHeap: COLO_PROXY_HEAP_GROWTH sets the factor; 0 leaves V8's own", () => {
  const half = limitFactors("50");
  assert.ok(half.length >= 2);
  assert.ok(
    half.every((l) => l.applied === "1.5"),
    JSON.stringify(half),
  );
  // Not forced: V8 applies what its heuristic computed.
  const own = limitFactors("0");
  assert.ok(own.length >= 2);
  assert.ok(
    own.every((l) => l.applied === l.computed),
    JSON.stringify(own),
  );
});

test("tuneDaemonHeap: a bad COLO_PROXY_HEAP_GROWTH is a configuration error with a stable code", () => {
  for (const bad of ["-1", "1001", "2.5", "lots"]) {
    assert.throws(
      () => tuneDaemonHeap({ COLO_PROXY_HEAP_GROWTH: bad }),
      (e: unknown) =>
        e instanceof ConfigError && e.code === "COLO_ERR_CONFIG_VALUE" && e.message.includes(bad),
    );
  }
  assert.equal(tuneDaemonHeap({ COLO_PROXY_HEAP_GROWTH: "0" }), 0);
  assert.equal(tuneDaemonHeap({ COLO_PROXY_HEAP_GROWTH: " " }), DEFAULT_HEAP_GROWTH_PERCENT);
});
