/**
 * `colo-proxy demo` where it cannot run: it names what is missing and how to get it, and exits
 * non-zero without starting anything. (The demo itself is exercised by test/e2e/colo-pair.test.ts
 * through the same ColoLab.)
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { test } from "node:test";

const bin = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../bin/colo-proxy.mjs");

test("demo without the guest image says what is missing and how to get it, exits 1", () => {
  const r = spawnSync(process.execPath, [bin, "demo", "--duration", "1"], {
    encoding: "utf8",
    env: { ...process.env, COLO_GUEST_DIR: "/nonexistent/colo-guest" },
    timeout: 60_000,
  });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /missing/);
  assert.match(r.stderr, /guest image \(\/nonexistent\/colo-guest\/vmlinux/);
  assert.match(r.stderr, /build-image\.sh/);
  assert.equal(r.stdout, "");
});

test("demo rejects a bad --nondeterminism with a usage error", () => {
  const r = spawnSync(process.execPath, [bin, "demo", "--nondeterminism", "2"], {
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--nondeterminism must be a number in \[0, 1\]/);
});

test("demo --help describes the options", () => {
  const r = spawnSync(process.execPath, [bin, "demo", "--help"], { encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 0);
  for (const o of ["--duration", "--nondeterminism", "--keep"]) assert.ok(r.stdout.includes(o), o);
});
