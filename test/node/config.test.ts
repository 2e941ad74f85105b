/**
 * @module Tests of `colo-proxy compare` configuration: QEMU option strings, friendly addresses,
 * the JSON file, and the stable error codes of bad configuration.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { ConfigError } from "../../src/errors.ts";
import {
  emptyRawOptions,
  loadConfigFile,
  mergeConfigFile,
  parseAddress,
  parseChardev,
  resolveCompareConfig,
} from "../../src/node/config.ts";
import { parseQemuOpts } from "../../src/node/config-qemu.ts";
import { tempDir } from "../support/qemu.ts";

const QEMU_LINE = [
  "socket,id=compare0-0,host=127.0.0.1,port=9001,server=on,wait=off",
  "socket,id=compare1,host=0.0.0.0,port=9004,server,wait",
  "socket,id=compare_out0,host=127.0.0.1,port=9005",
];
const OBJ =
  "colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,outdev=compare_out0,iothread=iothread1";

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    return e.code;
  }
  assert.fail("no error thrown");
}

test("QEMU option strings: ,, escapes a comma, bare flags, nowait", () => {
  const q = parseQemuOpts("socket,id=a,path=/tmp/x,,y,server,nowait", "--chardev");
  assert.equal(q.type, "socket");
  assert.equal(q.opts.get("path"), "/tmp/x,y");
  assert.equal(q.opts.get("server"), "on");
  assert.equal(q.opts.get("wait"), "off");
  assert.equal(
    code(() => parseQemuOpts("id=a", "--chardev")),
    "COLO_ERR_CONFIG_SYNTAX",
  );
  assert.equal(
    code(() => parseQemuOpts("socket,id=a,id=b", "--chardev")),
    "COLO_ERR_CONFIG_SYNTAX",
  );
  assert.equal(
    code(() => parseQemuOpts("socket,id=a,", "--chardev")),
    "COLO_ERR_CONFIG_SYNTAX",
  );
});

test("the canonical COLO-FT.txt compare lines resolve unchanged (iothread accepted and ignored)", () => {
  const raw = emptyRawOptions();
  raw.chardevs.push(...QEMU_LINE);
  raw.objects.push("iothread,id=iothread1", OBJ);
  const c = resolveCompareConfig(raw);
  assert.equal(c.id, "comp0");
  assert.deepEqual(
    [c.primaryIn.port, c.primaryIn.server, c.secondaryIn!.host, c.secondaryIn!.server, c.outdev.server],
    [9001, true, "0.0.0.0", true, false],
  );
  assert.equal(c.notifyDev, undefined);
  assert.deepEqual(
    [c.compareTimeout, c.expiredScanCycle, c.maxQueueSize, c.vnetHdr],
    [3000, 1000, 1024, false],
  );
  assert.deepEqual([c.maxConnections, c.idleTimeout, c.closedTimeout], [65536, 120_000, 10_000]);
});

test("colo-proxy's table extensions: max_connections, idle_timeout, closed_timeout (object, flags' raw keys, file)", () => {
  const raw = emptyRawOptions();
  raw.chardevs.push("socket,id=p,port=1,server", "socket,id=s,port=2,server", "socket,id=o,port=3,server");
  raw.objects.push(
    "colo-compare,id=c,primary_in=p,secondary_in=s,outdev=o,max_connections=500000,idle_timeout=60000",
  );
  const c = resolveCompareConfig(raw);
  assert.deepEqual([c.maxConnections, c.idleTimeout, c.closedTimeout], [500_000, 60_000, 10_000]);
  raw.closed_timeout = 250; // a friendly flag or the file
  raw.max_connections = 100;
  const d = resolveCompareConfig(raw);
  assert.deepEqual([d.maxConnections, d.idleTimeout, d.closedTimeout], [100, 60_000, 250], "flags win");
});

test("colo-compare properties are parsed with QEMU's rules", () => {
  const raw = emptyRawOptions();
  raw.chardevs.push("socket,id=p,path=/tmp/p.sock,server=on", "socket,id=s,path=/tmp/s.sock,server=on");
  raw.chardevs.push("socket,id=o,path=/tmp/o.sock,server=on", "socket,id=n,path=/tmp/n.sock,server=on");
  raw.objects.push(
    "colo-compare,id=c,primary_in=p,secondary_in=s,outdev=o,notify_dev=n,compare_timeout=50,expired_scan_cycle=10,max_queue_size=7,vnet_hdr_support=on",
  );
  const c = resolveCompareConfig(raw);
  assert.equal(c.notifyDev?.path, "/tmp/n.sock");
  assert.deepEqual([c.compareTimeout, c.expiredScanCycle, c.maxQueueSize, c.vnetHdr], [50, 10, 7, true]);
});

test("bad configuration gets stable codes", () => {
  const withObj = (
    obj: string,
    chardevs = ["socket,id=p,port=1,server", "socket,id=s,port=2,server", "socket,id=o,port=3,server"],
  ) => {
    const raw = emptyRawOptions();
    raw.chardevs.push(...chardevs);
    raw.objects.push(obj);
    return () => resolveCompareConfig(raw);
  };
  const base = "colo-compare,id=c,primary_in=p,secondary_in=s,outdev=o";
  assert.equal(code(withObj(`${base},compare_timeout=0`)), "COLO_ERR_CONFIG_VALUE");
  assert.equal(code(withObj(`${base},max_queue_size=-1`)), "COLO_ERR_CONFIG_VALUE");
  assert.equal(code(withObj(`${base},max_connections=0`)), "COLO_ERR_CONFIG_VALUE");
  assert.equal(code(withObj(`${base},idle_timeout=soon`)), "COLO_ERR_CONFIG_VALUE");
  assert.equal(code(withObj(`${base},closed_timeout=4294967296`)), "COLO_ERR_CONFIG_VALUE");
  assert.equal(code(withObj(`${base},vnet_hdr_support=maybe`)), "COLO_ERR_CONFIG_VALUE");
  assert.equal(code(withObj(`${base},bogus=1`)), "COLO_ERR_CONFIG_UNSUPPORTED");
  assert.equal(code(withObj("colo-compare,id=c,primary_in=p,secondary_in=s")), "COLO_ERR_CONFIG_MISSING");
  assert.equal(
    code(withObj("colo-compare,id=c,primary_in=p,secondary_in=x,outdev=o")),
    "COLO_ERR_CONFIG_REF",
  );
  assert.equal(
    code(withObj("colo-compare,id=c,primary_in=p,secondary_in=p,outdev=o")),
    "COLO_ERR_CONFIG_VALUE",
  );
  assert.equal(code(withObj("filter-mirror,id=m,netdev=n,outdev=o")), "COLO_ERR_CONFIG_UNSUPPORTED");
  // chardev strings are parsed by src/wire/chardev-spec.ts (one code for all its problems)
  for (const bad of [
    "file,id=f,path=/tmp/x",
    "socket,id=f,port=70000,server=on",
    "socket,id=f,host=h",
    "socket,id=f,port=1,tls-creds=x",
  ]) {
    assert.equal(
      code(() => parseChardev(bad)),
      "COLO_ERR_CHARDEV_SPEC",
      bad,
    );
  }
  assert.equal(
    code(withObj(base, ["socket,id=p,port=1,server", "socket,id=p,port=2,server"])),
    "COLO_ERR_CONFIG_VALUE",
  );
  assert.equal(
    code(() => parseAddress("outdev", "nonsense")),
    "COLO_ERR_CONFIG_VALUE",
  );
});

test("friendly addresses: HOST:PORT, unix:PATH, connect: prefix", () => {
  const a = parseAddress("x", "127.0.0.1:9001");
  assert.deepEqual([a.transport, a.host, a.port, a.server, a.wait], ["tcp", "127.0.0.1", 9001, true, false]);
  assert.equal(parseAddress("x", "[::1]:7").host, "::1");
  assert.equal(parseAddress("x", "unix:/run/a.sock").path, "/run/a.sock");
  assert.equal(parseAddress("x", "connect:10.0.0.1:9005").server, false);
});

test("JSON config file: same meaning, command line wins, schema errors have a code and a path", (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, "c.json");
  writeFileSync(
    file,
    JSON.stringify({
      primary_in: "127.0.0.1:9001",
      secondary_in: { host: "127.0.0.1", port: 9004 },
      outdev: { path: "/tmp/out.sock", server: false },
      compare_timeout: 500,
      max_connections: 200000,
      closed_timeout: 5000,
    }),
  );
  const raw = emptyRawOptions();
  raw.compare_timeout = 42;
  raw.closed_timeout = 7;
  mergeConfigFile(raw, loadConfigFile(file));
  const c = resolveCompareConfig(raw);
  assert.deepEqual(
    [c.primaryIn.port, c.secondaryIn!.port, c.outdev.path, c.outdev.server, c.compareTimeout],
    [9001, 9004, "/tmp/out.sock", false, 42],
  );
  assert.deepEqual([c.maxConnections, c.closedTimeout], [200_000, 7]);

  writeFileSync(file, JSON.stringify({ primary_in: "a:1", compare_timeout: "soon" }));
  assert.equal(
    code(() => loadConfigFile(file)),
    "COLO_ERR_CONFIG_VALUE",
  );
  writeFileSync(file, "{ not json");
  assert.equal(
    code(() => loadConfigFile(file)),
    "COLO_ERR_CONFIG_FILE",
  );
  assert.equal(
    code(() => loadConfigFile(path.join(dir, "missing.json"))),
    "COLO_ERR_CONFIG_FILE",
  );
  writeFileSync(file, JSON.stringify({ primary_in: "a:1", typo_key: 1 }));
  assert.equal(
    code(() => loadConfigFile(file)),
    "COLO_ERR_CONFIG_VALUE",
  );
});
