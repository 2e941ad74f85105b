import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { run } from "../../src/cli/commands/ctl.ts";
import { type Control, startControl } from "../../src/control/index.ts";
import { FakeTarget } from "../control/fake-target.ts";

const execFileP = promisify(execFile);
const bin = new URL("../../bin/colo-proxy.mjs", import.meta.url).pathname;

let dir: string;
let control: Control;
let target: FakeTarget;
let sock: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "colo-ctlcli-"));
  sock = join(dir, "colo-proxy-compare.sock");
  target = new FakeTarget();
  target.nowMs = Date.UTC(2026, 10, 25, 23, 50, 0);
  control = await startControl(target, { role: "compare", socket: sock, now: () => target.nowMs });
  target.emit = control.emit;
  const f = target.open("tcp 10.0.0.1:40000 > 10.0.0.2:80");
  target.open("udp [2001:db8::1]:5353 > [2001:db8::2]:53", "udp");
  target.matched(10, 100, 0.5);
  target.miscompare(f, 0, Buffer.from("abc"), Buffer.from("abd"));
});
after(async () => {
  await control.close();
  await rm(dir, { recursive: true, force: true });
});

/** Runs `ctl` in-process (fast); `ctlBin` below runs the real binary. */
async function ctl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await run(args, {
    out: (x) => {
      stdout += `${x}\n`;
    },
    err: (x) => {
      stderr += `${x}\n`;
    },
    color: false,
  });
  return { code, stdout, stderr };
}

async function ctlBin(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [bin, "ctl", ...args], {
      env: { ...process.env, COLO_PROXY_CONTROL: "", COLO_PROXY_RUNDIR: dir },
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

test("ctl status (the real binary): human table by default (socket found in the run dir), JSON with --json", async () => {
  const h = await ctlBin("status");
  assert.equal(h.code, 0, h.stderr);
  assert.match(h.stdout, /^role +compare$/m);
  assert.match(h.stdout, /^mode +colo$/m);
  assert.match(h.stdout, /^checkpoint epoch +0$/m);
  assert.match(h.stdout, /^secondary_in +up/m);
  const j = await ctlBin("--socket", sock, "--json", "status");
  assert.equal(j.code, 0);
  const s = JSON.parse(j.stdout) as { role: string; checkpointEpoch: number; peers: unknown[] };
  assert.equal(s.role, "compare");
  assert.equal(s.peers.length, 2);
});

test("ctl connections and stats", async () => {
  const c = await ctl("--socket", sock, "connections");
  assert.equal(c.code, 0, c.stderr);
  const lines = c.stdout.trimEnd().split("\n");
  assert.match(lines[0] ?? "", /^FLOW +STATE +PRI-Q +SEC-Q +OLDEST-HELD +COMPARED/);
  assert.match(lines[1] ?? "", /^tcp 10\.0\.0\.1:40000 > 10\.0\.0\.2:80 +miscompared +1 +1 +5 ms +1000/);
  const s = await ctl("--socket", sock, "stats");
  assert.equal(s.code, 0, s.stderr);
  assert.match(s.stdout, /^primary_in +10 +1000 +0 +0$/m);
  assert.match(s.stdout, /^released +10 \(matched 10\)$/m);
  assert.match(s.stdout, /^miscompares +1 \(payload-differs\/tcp 1\)$/m);
  assert.match(s.stdout, /^hold time +p50 /m);
});

test("ctl passthrough add/list/del and set; the daemon validates, errors exit 1 with its code", async () => {
  const add = await ctl("--socket", sock, "passthrough", "add", "tcp", "10.0.0.0/24:3389");
  assert.equal(add.code, 0, add.stderr);
  assert.equal(add.stdout, "rule 1: tcp 10.0.0.0/24:3389\n");
  // The canonical text is the engine's (it does not compress IPv6 zeros); take it from the reply.
  const v6 = (await ctl("--socket", sock, "passthrough", "add", "udp [fd00::/64]:53")).stdout;
  assert.match(v6, /^rule 2: udp \[fd00[0-9:]*\/64\]:53\n$/);
  const v6rule = v6.slice("rule 2: ".length, -1);
  assert.equal(
    (await ctl("--socket", sock, "passthrough", "list")).stdout,
    `ID  RULE\n 1  tcp 10.0.0.0/24:3389\n 2  ${v6rule}\n`,
  );
  assert.equal((await ctl("--socket", sock, "passthrough", "del", "2")).stdout, `removed: ${v6rule}\n`);
  assert.equal((await ctl("--socket", sock, "passthrough", "del", "tcp", "10.0.0.0/24:3389")).code, 0);
  const again = await ctl("--socket", sock, "passthrough", "del", "tcp", "10.0.0.0/24:3389");
  assert.equal(again.code, 1, "daemon error → exit 1");
  assert.match(again.stderr, /no passthrough rule .*\(GenericError, code COLO_ERR_COMPARE_RULE_NOT_FOUND\)/);
  const bad = await ctl("--socket", sock, "passthrough", "add", "tcp", "10.0.0.0/33");
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /code COLO_ERR_COMPARE_RULE\)/);
  assert.equal((await ctl("--socket", sock, "passthrough", "add")).code, 2, "missing rule is a usage error");

  const set = await ctl("--socket", sock, "set", "compare_timeout", "2000");
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /^compare_timeout +2000$/m);
  assert.equal(target.cfg.compareTimeout, 2000);
  const badSet = await ctl("--socket", sock, "set", "compare_timeout", "0");
  assert.equal(badSet.code, 1);
  assert.match(badSet.stderr, /compare_timeout: must be greater than 0 .*COLO_ERR_COMPARE_PARAM/);
  assert.equal((await ctl("--socket", sock, "set", "compare_timeout")).code, 2);
});

test("ctl exit codes: usage 2, unreachable 3", async () => {
  assert.equal((await ctl()).code, 2);
  assert.equal((await ctl("frobnicate")).code, 2);
  assert.equal((await ctl("status", "extra")).code, 2);
  const help = await ctl("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /passthrough add RULE/);
  const gone = await ctlBin("--socket", join(dir, "nope.sock"), "status");
  assert.equal(gone.code, 3);
  assert.match(gone.stderr, /cannot connect to .*nope\.sock: ENOENT \(code COLO_ERR_CTL_CONNECT\)/);
});

test("ctl watch prints a checkpoint request with its explanation and a marked hexdump", async () => {
  let stdout = "";
  let stderr = "";
  const child = run(["--socket", sock, "watch", "--count", "2"], {
    out: (x) => {
      stdout += `${x}\n`;
    },
    err: (x) => {
      stderr += `${x}\n`;
    },
    color: false,
  });
  // The watcher announces itself on stderr once subscribed; wait (bounded) for that.
  const end = Date.now() + 30_000;
  while (!stderr.includes("watching events") && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  const flow = target.flows[0];
  assert.ok(flow);
  target.miscompare(
    flow,
    4096,
    Buffer.from("GET /index.html HTTP/1.1\r\n"),
    Buffer.from("GET /index.htm! HTTP/1.1\r\n"),
  );
  target.checkpointDone();
  const r = { code: await child, stdout, stderr };
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split("\n");
  assert.match(
    lines[0] ?? "",
    /CHECKPOINT_REQUEST payload-differs tcp 10\.0\.0\.1:40000 > 10\.0\.0\.2:80 @ 4110 \(epoch 0\)$/,
  );
  assert.match(lines[1] ?? "", /payload differs at stream offset 4110/);
  assert.match(
    r.stdout,
    /P 00004096 {2}47 45 54 20 2f 69 6e 64 65 78 2e 68 74 6d 6c 20 {2}\|GET \/index\.html \|/,
  );
  assert.match(r.stdout, /S 00004096 {2}47 45 54 20 2f 69 6e 64 65 78 2e 68 74 6d 21 20/);
  assert.match(r.stdout, /^ +\^\^$/m);
  assert.match(r.stdout, /CHECKPOINT_DONE epoch 1: released 2, dropped 2/);
});
