/**
 * @module `colo-proxy pcap-inspect`: text and JSON output over the bundled sample capture,
 * usage errors, bad and truncated capture files, a reader that goes away mid-output, and the
 * committed fixture staying identical to what scripts/make-pcap-fixture.ts generates.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { sampleCapture } from "../../scripts/make-pcap-fixture.ts";
import { formatTimestamp, tcpFlagLetters } from "../../src/cli/commands/pcap-inspect.ts";
import { buildIp, buildTcp } from "../../src/packet/build.ts";
import { encodePcap } from "../../src/wire/pcap-writer.ts";

const execp = promisify(execFile);
const bin = new URL("../../bin/colo-proxy.mjs", import.meta.url).pathname;
const sample = new URL("../fixtures/sample.pcapng", import.meta.url).pathname;

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execp(process.execPath, [bin, "pcap-inspect", ...args], {
      maxBuffer: 64 << 20,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe("pcap-inspect", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "colo-inspect-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("the committed sample capture is what the fixture script generates, and small", async () => {
    const committed = await readFile(sample);
    assert.deepEqual(committed, sampleCapture(), "run: node --import tsx scripts/make-pcap-fixture.ts");
    assert.ok(committed.length < 50 * 1024);
  });

  test("prints one line per frame of the sample, then a summary", async () => {
    const r = await cli([sample]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 27);
    assert.equal(lines[26], "26 frames, 1 malformed (pcapng capture)");
    assert.equal(
      lines[3],
      "     4 2025-11-25T00:00:00.000600000Z client tcp 192.168.122.1:40000 > 192.168.122.10:80 [S] seq 1000 ack 0 len 0 # client SYN, mirrored to both VMs",
    );
    assert.match(
      lines[5]!,
      / svm tcp 192\.168\.122\.10:80 > 192\.168\.122\.1:40000 \[SA\] seq 5000 ack 1001 len 0 # SVM/,
    );
    assert.match(lines[8]!, / pvm tcp .* \[PA\] seq 5001 ack 1032 len 43 # PVM$/);
    assert.match(lines[15]!, / udp 192\.168\.122\.1:53000 > 192\.168\.122\.10:53 vlan 100 len 5 /);
    assert.match(lines[18]!, / icmp 192\.168\.122\.1 > 192\.168\.122\.10 echo id 7 len 4$/);
    assert.match(lines[21]!, / icmpv6 fd00::1 > ff02::1:ff00:10 type 135 code 0 len 24$/);
    assert.match(
      lines[23]!,
      / tcp \[fd00::1\]:40001 > \[fd00::10\]:22 vlan 200\.100 \[S\] seq 42 ack 0 len 0 /,
    );
    assert.match(lines[24]!, / udp 192\.168\.122\.1 > 192\.168\.122\.10 frag len 40 /);
    assert.match(lines[25]!, /^ {4}26 \S+ client malformed COLO_ERR_PKT_TRUNCATED \(18 bytes\) # malformed$/);
  });

  test("--json prints one object per frame", async () => {
    const r = await cli(["--json", sample]);
    assert.equal(r.code, 0, r.stderr);
    const objs = r.stdout
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(objs.length, 26);
    assert.deepEqual(objs[5], {
      index: 6,
      time: "2025-11-25T00:00:00.000900000Z",
      timestampNs: "1764028800000900000",
      interface: 2,
      interfaceName: "svm",
      capLen: objs[5]!.capLen,
      origLen: objs[5]!.capLen,
      flow: "tcp 192.168.122.10:80 > 192.168.122.1:40000",
      etherType: 0x0800,
      ipVersion: 4,
      proto: 6,
      src: "192.168.122.10",
      dst: "192.168.122.1",
      srcPort: 80,
      dstPort: 40000,
      tcp: { flags: "SA", seq: 5000, ack: 1001 },
      payloadLen: 0,
      comment: "SVM (seq rewritten)",
    });
    assert.deepEqual(objs[23]!.vlan, [200, 100]);
    assert.equal(objs[24]!.fragment, true);
    assert.equal(objs[25]!.malformed, "COLO_ERR_PKT_TRUNCATED");
  });

  test("reads standard input when FILE is -", async () => {
    const child = spawn(process.execPath, [bin, "pcap-inspect", "-"], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stdin.end(await readFile(sample));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0);
    assert.deepEqual(stdout, (await cli([sample])).stdout);
  });

  test("--relative prints seconds since the first frame", async () => {
    const r = await cli(["--relative", sample]);
    const lines = r.stdout.split("\n");
    assert.match(lines[0]!, /^ {5}1 0\.000000000 client arp /);
    assert.match(lines[1]!, /^ {5}2 0\.000150000 pvm arp /);
  });

  test("--help prints usage and exits 0; bad usage exits 2 with COLO_ERR_USAGE", async () => {
    const h = await cli(["--help"]);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /Usage: colo-proxy pcap-inspect/);
    for (const args of [[], ["a", "b"], ["--bogus", sample]]) {
      const r = await cli(args);
      assert.equal(r.code, 2, `args ${args.join(" ")}`);
      assert.match(r.stderr, /COLO_ERR_USAGE/);
    }
  });

  test("a truncated capture prints the frames before the damage, then fails with its code", async () => {
    const bytes = await readFile(sample);
    const path = join(dir, "cut.pcapng");
    await writeFile(path, bytes.subarray(0, bytes.length - 10));
    const r = await cli([path]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /COLO_ERR_PCAP_TRUNCATED/);
    assert.equal(r.stdout.trimEnd().split("\n").length, 25);
  });

  test("a file that is not a capture fails with COLO_ERR_PCAP_BAD_MAGIC; a missing one is a usage error", async () => {
    const path = join(dir, "text.pcap");
    await writeFile(path, "hello, world\n");
    const r = await cli([path]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /COLO_ERR_PCAP_BAD_MAGIC/);
    const m = await cli([join(dir, "missing.pcap")]);
    assert.equal(m.code, 2);
    assert.match(m.stderr, /cannot read .*missing\.pcap: ENOENT.*\(code COLO_ERR_USAGE\)/);
  });

  test("TCP fragments show no TCP fields; snapped frames say so", async () => {
    const path = join(dir, "frag.pcap");
    const frag = buildIp({
      src: "10.0.0.1",
      dst: "10.0.0.2",
      proto: 6,
      mf: true,
      payload: Buffer.alloc(32, 1),
    });
    const whole = buildTcp({
      src: "10.0.0.1",
      dst: "10.0.0.2",
      sport: 1,
      dport: 2,
      payload: Buffer.alloc(100),
    });
    await writeFile(
      path,
      encodePcap([
        { timestampNs: 0n, frame: frag },
        { timestampNs: 1n, frame: whole.subarray(0, 60), origLen: whole.length },
      ]),
    );
    const lines = (await cli([path])).stdout.split("\n");
    assert.match(lines[0]!, / tcp 10\.0\.0\.1 > 10\.0\.0\.2 frag len 32$/);
    assert.match(lines[1]!, / malformed COLO_ERR_PKT_\w+ \(60 bytes\) \(snapped 60\/154\)$/);
  });

  test("stops quietly when its reader goes away (| head)", async () => {
    const path = join(dir, "big.pcap");
    const f = buildTcp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 1, dport: 2, payload: "x" });
    await writeFile(
      path,
      encodePcap(Array.from({ length: 50_000 }, (_, i) => ({ timestampNs: BigInt(i), frame: f }))),
    );
    const child = spawn(process.execPath, [bin, "pcap-inspect", path], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const firstLine = await new Promise<string>((resolve) => {
      child.stdout.once("data", (d: Buffer) => {
        resolve(d.toString().split("\n")[0]!);
        child.stdout.destroy();
      });
    });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.match(firstLine, /^ {5}1 1970-01-01T00:00:00\.000000000Z tcp 10\.0\.0\.1:1 > 10\.0\.0\.2:2 \[A\]/);
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, /Error/);
  });
});

test("formatTimestamp keeps nanoseconds; tcpFlagLetters lists flags in bit order", () => {
  assert.equal(formatTimestamp(0n), "1970-01-01T00:00:00.000000000Z");
  assert.equal(formatTimestamp(1_764_028_800_123_456_789n), "2025-11-25T00:00:00.123456789Z");
  assert.equal(tcpFlagLetters(0), "-");
  assert.equal(tcpFlagLetters(0x12), "SA");
  assert.equal(tcpFlagLetters(0xff), "FSRPAUEC");
});
