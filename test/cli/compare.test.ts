/**
 * @module `colo-proxy compare` command line: --help, configuration errors (exit 2 with a stable
 * code), argument forms (QEMU single-dash lines, friendly flags, --config JSON).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { parseCompareArgs } from "../../src/cli/commands/compare.ts";
import { ConfigError } from "../../src/errors.ts";
import { resolveCompareConfig } from "../../src/node/config.ts";
import { tempDir } from "../support/qemu.ts";

const run = promisify(execFile);
const bin = new URL("../../bin/colo-proxy.mjs", import.meta.url).pathname;

test("colo-proxy compare --help documents QEMU syntax, friendly flags, config file and control", async () => {
  const { stdout } = await run(process.execPath, [bin, "compare", "--help"]);
  for (const s of [
    "-object colo-compare",
    "compare_timeout",
    "expired_scan_cycle",
    "max_queue_size",
    "max_connections",
    "idle_timeout",
    "closed_timeout",
    "--max-connections",
    "vnet_hdr_support",
    "notify_dev",
    "iothread",
    "--primary-in",
    "--config FILE",
    "--control PATH",
    "checkpoint-done",
  ]) {
    assert.ok(stdout.includes(s), `--help mentions ${s}`);
  }
  const top = await run(process.execPath, [bin, "--help"]);
  assert.match(top.stdout, /compare/);
});

test("bad configuration exits 2 and names a stable code", async () => {
  // Spawning is slow: two cases through the process, the rest through the same parser in process.
  const cases: Array<[string[], RegExp]> = [
    [["-object", "colo-compare,id=c,primary_in=p"], /COLO_ERR_CONFIG_MISSING/],
    [["--bogus"], /COLO_ERR_USAGE/],
  ];
  const inProcess: Array<[string[], string]> = [
    [["--chardev", "socket,id=p,port=notaport,server=on"], "COLO_ERR_CHARDEV_SPEC"],
    [["--config", "/nonexistent/colo.json"], "COLO_ERR_CONFIG_FILE"],
    [
      ["--primary-in", "1.2.3.4:1", "--secondary-in", "1.2.3.4:1", "--outdev", "1.2.3.4:3"],
      "COLO_ERR_CONFIG_VALUE",
    ],
    [["--max-queue-size", "lots"], "COLO_ERR_CONFIG_VALUE"],
    [["--max-connections", "0"], "COLO_ERR_CONFIG_VALUE"],
    [["--idle-timeout", "-5"], "COLO_ERR_CONFIG_VALUE"],
    [["--log-level", "chatty"], "COLO_ERR_CONFIG_VALUE"],
  ];
  for (const [args, code] of inProcess) {
    assert.throws(
      () => resolveCompareConfig(parseCompareArgs(args).raw),
      (e: unknown) => e instanceof ConfigError && e.code === code,
      args.join(" "),
    );
  }
  for (const [args, re] of cases) {
    await assert.rejects(
      run(process.execPath, [bin, "compare", ...args]),
      (e: { code: number; stderr: string }) => {
        assert.equal(e.code, 2, `exit code for ${args.join(" ")}`);
        assert.match(e.stderr, re);
        return true;
      },
    );
  }
});

test("QEMU single-dash lines, friendly flags and a JSON file mean the same thing", (t) => {
  const qemu = resolveCompareConfig(
    parseCompareArgs([
      "-chardev",
      "socket,id=pri,host=127.0.0.1,port=9001,server=on,wait=off",
      "-chardev",
      "socket,id=sec,host=127.0.0.1,port=9004,server=on,wait=off",
      "-chardev",
      "socket,id=out,host=127.0.0.1,port=9005",
      "-object",
      "iothread,id=iot",
      "-object",
      "colo-compare,id=primary_in,primary_in=pri,secondary_in=sec,outdev=out,compare_timeout=500,iothread=iot,max_connections=300000,idle_timeout=30000",
    ]).raw,
  );
  const friendly = resolveCompareConfig(
    parseCompareArgs([
      "--primary-in",
      "127.0.0.1:9001",
      "--secondary-in=127.0.0.1:9004",
      "--outdev",
      "connect:127.0.0.1:9005",
      "--compare-timeout",
      "500",
      "--max-connections",
      "300000",
      "--idle-timeout=30000",
    ]).raw,
  );
  const file = path.join(tempDir(t), "compare.json");
  writeFileSync(
    file,
    JSON.stringify({
      primary_in: { host: "127.0.0.1", port: 9001 },
      secondary_in: "127.0.0.1:9004",
      outdev: { host: "127.0.0.1", port: 9005, server: false },
      compare_timeout: 500,
      max_connections: 300000,
      idle_timeout: 30000,
    }),
  );
  const json = resolveCompareConfig(parseCompareArgs(["--config", file]).raw);
  const shape = (c: typeof qemu) =>
    [c.primaryIn, c.secondaryIn!, c.outdev]
      .map((e) => [e.transport, e.host, e.port, e.server])
      .concat([[c.compareTimeout, c.maxConnections, c.idleTimeout, c.closedTimeout]]);
  assert.deepEqual(shape(friendly), shape(qemu));
  assert.deepEqual(shape(json), shape(qemu));
  assert.throws(() => parseCompareArgs(["--compare-timeout", "0"]), ConfigError);
});
