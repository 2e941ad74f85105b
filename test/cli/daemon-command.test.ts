/**
 * @module Tests for what every daemon command shares: the V8 heap tuning (tuneDaemonHeap) and the
 * inlining budget (tuneDaemonJit).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  DEFAULT_HEAP_GROWTH_PERCENT,
  DEFAULT_INLINE_BUDGET,
  tuneDaemonHeap,
  tuneDaemonJit,
} from "../../src/cli/daemon-command.ts";
import { ConfigError } from "../../src/errors.ts";

const MODULE = fileURLToPath(new URL("../../src/cli/daemon-command.ts", import.meta.url));

/**
 * Runs `node --import tsx <nodeArgs> --input-type=module -e <script>` with `env` added and returns
 * its stdout. V8 prints its traces through C stdio, which drops what a full non-blocking pipe
 * refuses (a loaded machine's parent reads late), so stdout goes to a file.
 */
function nodeTrace(nodeArgs: string[], script: string, env: NodeJS.ProcessEnv): string {
  const dir = mkdtempSync(join(tmpdir(), "colo-trace-"));
  const file = join(dir, "stdout.txt");
  const fd = openSync(file, "w");
  try {
    const r = spawnSync(
      process.execPath,
      ["--import", "tsx", ...nodeArgs, "--input-type=module", "-e", script],
      { encoding: "utf8", env: { ...process.env, ...env }, stdio: ["ignore", fd, "pipe"], timeout: 60_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(file, "utf8");
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

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
  const stdout = nodeTrace(["--expose-gc", "--trace-gc-verbose", ...nodeArgs], script, {
    COLO_PROXY_HEAP_GROWTH: env,
  });
  // "[HeapController] factor 1.1 based on mu=0.970, ..." then
  // "[HeapController] Limit: old size: 9460 KB, new limit: 47301 KB (4.0)"
  const out: { computed: string; applied: string }[] = [];
  let computed = "";
  for (const line of stdout.split("\n")) {
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

/**
 * Runs tuneDaemonJit in a fresh node with COLO_PROXY_INLINE_BUDGET=`env`, optimizes a function
 * that calls twelve 201-byte functions (synchronously, through V8's natives syntax, so that the
 * machine's load cannot change when or whether it happens) and returns how many of them TurboFan
 * inlined into it (--trace-turbo-inlining). V8's own budget (920 bytes) stops after a few.
 */
function inlinedCallees(env: string | undefined): number {
  const body = [
    ...Array.from(
      { length: 12 },
      (_, i) => `function f${i}(a){let s=a;${"s=(s*31+7)^(s>>>3);".repeat(12)}return s|0;}`,
    ),
    `function top(a){return ${Array.from({ length: 12 }, (_, i) => `f${i}(a+${i})`).join("+")};}`,
    "for (let i = 0; i < 200; i++) top(i);",
    "%PrepareFunctionForOptimization(top); top(1); top(2);",
    "%OptimizeFunctionOnNextCall(top); return top(3);",
  ].join("\n");
  const script = `
    const { tuneDaemonJit } = await import(${JSON.stringify(MODULE)});
    tuneDaemonJit();
    console.log(new Function(${JSON.stringify(body)})());`;
  return nodeTrace(["--allow-natives-syntax", "--trace-turbo-inlining"], script, {
    COLO_PROXY_INLINE_BUDGET: env,
  })
    .split("\n")
    .filter((l) => /^Inlining .*SharedFunctionInfo f\d+>\} into .*SharedFunctionInfo top>/.test(l)).length;
}

test("tuneDaemonJit: by default TurboFan inlines a deep call chain V8's own budget cuts short", () => {
  assert.equal(DEFAULT_INLINE_BUDGET, 3000);
  assert.equal(inlinedCallees(undefined), 12, "all twelve callees inlined with the daemon's budget");
  const own = inlinedCallees("0");
  assert.ok(own > 0 && own < 12, `V8's own budget inlines some, not all (${own})`);
});

test("tuneDaemonJit: a bad COLO_PROXY_INLINE_BUDGET is a configuration error with a stable code", () => {
  for (const bad of ["-1", "100001", "2.5", "lots"]) {
    assert.throws(
      () => tuneDaemonJit({ COLO_PROXY_INLINE_BUDGET: bad }),
      (e: unknown) =>
        e instanceof ConfigError && e.code === "COLO_ERR_CONFIG_VALUE" && e.message.includes(bad),
    );
  }
  assert.equal(tuneDaemonJit({ COLO_PROXY_INLINE_BUDGET: "0" }), 0);
  assert.equal(tuneDaemonJit({ COLO_PROXY_INLINE_BUDGET: " " }), DEFAULT_INLINE_BUDGET);
});
