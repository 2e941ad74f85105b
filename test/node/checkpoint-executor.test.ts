/**
 * @module The checkpoint executor against real guests: after a checkpoint the new SVM holds the
 * PVM's memory (a random token the PVM wrote to its tmpfs just before), it continues the PVM's
 * uptime instead of booting, its filters are connected to the proxy's sockets, concurrent
 * requests coalesce, and a failed migration leaves the PVM running.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { CheckpointExecutor, type CheckpointReport } from "../../src/node/checkpoint-executor.ts";
import {
  attachSecondaryFilters,
  filterSockets,
  machineArgs,
  nicArgs,
  QemuVm,
  READY_MARKER,
  sinkNetdev,
} from "../../src/node/guest/qemu.ts";
import {
  BOOT_TIMEOUT_MS,
  CONSOLE_MS,
  detectAccel,
  guestSkipReason,
  image,
  makeRunDir,
  TEST_NICE,
  Teardown,
} from "../support/guests.ts";
import { FrameRelay } from "../support/relay.ts";

const skip = guestSkipReason();
if (skip) console.log(`# checkpoint-executor: skipped: ${skip}`);

const TOKEN = "head -c 8 /dev/urandom | hexdump -v -e '/1 \"%02x\"' | tee /run/colo/state";
const uptime = async (vm: QemuVm) =>
  Number.parseFloat((await (await vm.console()).run("cut -d' ' -f1 /proc/uptime", CONSOLE_MS)).trim());

describe("checkpoint executor (stock QEMU: stop + full migration)", { skip, timeout: 300_000 }, () => {
  const td = new Teardown();
  const relay = new FrameRelay();
  const committed: { report: CheckpointReport; pvmStatus: string }[] = [];
  let runDir: string;
  let pvm: QemuVm;
  let ex: CheckpointExecutor;
  let accel: "kvm" | "tcg";
  const mem = 128;

  before(async () => {
    runDir = makeRunDir("colo-ckpt-");
    td.add(() => rmSync(runDir, { recursive: true, force: true }));
    const s = filterSockets(runDir);
    td.add(() => relay.close());
    await relay.listen("s-in-inj", s.sInInj);
    await relay.listen("s-out", s.sOut);
    accel = await detectAccel();
    pvm = await QemuVm.start({
      name: "pvm",
      runDir,
      nice: TEST_NICE,
      args: [
        ...machineArgs({ name: "pvm", role: "primary", image, accel, memMb: mem, runDir }),
        ...sinkNetdev(),
        ...nicArgs(),
      ],
    });
    td.add(() => pvm.kill());
    await pvm.waitReady(BOOT_TIMEOUT_MS);
    ex = new CheckpointExecutor({
      primary: pvm,
      runDir,
      nice: TEST_NICE,
      secondaryArgs: (name) => [
        ...machineArgs({ name, role: "secondary", image, accel, memMb: mem, runDir }),
        ...sinkNetdev(),
        ...nicArgs(),
      ],
      attachSecondary: (vm) => attachSecondaryFilters(vm.qmp, runDir),
      onCommitted: async (report) => {
        const st = await pvm.qmp.execute<{ status: string }>("query-status");
        committed.push({ report, pvmStatus: st.status });
      },
    });
    td.add(() => ex.close());
  });
  after(() => td.run());

  test("the new SVM holds what the PVM wrote to its RAM just before the checkpoint", async () => {
    const token = (await (await pvm.console()).run(TOKEN, CONSOLE_MS)).trim();
    assert.match(token, /^[0-9a-f]{16}$/);
    const upBefore = await uptime(pvm);
    const report = await ex.checkpoint();
    console.log(`# checkpoint 1: ${JSON.stringify(report)}`);
    assert.equal(report.generation, 1);
    const svm = ex.secondary;
    assert.ok(svm?.running);
    assert.equal((await (await svm.console()).run("cat /run/colo/state", CONSOLE_MS)).trim(), token);
    // A continuation of the PVM, not a fresh boot: uptime carries on and /init never ran here.
    assert.ok((await uptime(svm)) >= upBefore);
    assert.ok(!svm.consoleLog().includes(READY_MARKER));
    for (const vm of [pvm, svm]) {
      assert.equal((await vm.qmp.execute<{ status: string }>("query-status")).status, "running");
    }
    assert.ok(relay.connected("s-in-inj", "s-out"), "the new SVM's filters connected to the proxy");
    assert.ok(report.ramTotalBytes >= mem * 1024 * 1024 * 0.9, JSON.stringify(report));
  });

  test("onCommitted runs while the PVM is still paused, once per checkpoint", () => {
    assert.equal(committed.length, 1);
    assert.equal(committed[0]?.report.generation, 1);
    assert.notEqual(committed[0]?.pvmStatus, "running");
  });

  test("requests during a checkpoint coalesce into one follow-up; the old SVM is gone", async () => {
    const first = ex.secondary;
    const token = (await (await pvm.console()).run(TOKEN, CONSOLE_MS)).trim();
    const a = ex.checkpoint();
    const b = ex.checkpoint();
    const c = ex.checkpoint();
    assert.equal(b, c);
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.generation, 2);
    assert.equal(rb.generation, 3);
    assert.equal(committed.length, 3);
    assert.equal(first?.running, false);
    const svm = ex.secondary;
    assert.equal((await (await svm!.console()).run("cat /run/colo/state", CONSOLE_MS)).trim(), token);
  });

  test("the secondary's proxy gone mid-checkpoint (attach fails, as after a failover): rejects, the PVM runs", async () => {
    const dir = mkdtempSync(path.join(runDir, "gone-"));
    let commits = 0;
    const gone = new CheckpointExecutor({
      primary: pvm,
      runDir: dir,
      nice: TEST_NICE,
      prespawn: false,
      secondaryArgs: (name) => [
        ...machineArgs({ name, role: "secondary", image, accel, memMb: mem, runDir: dir }),
        ...sinkNetdev(),
        ...nicArgs(),
      ],
      // Nothing listens in `dir`: the new SVM's filters cannot connect.
      attachSecondary: (vm) => attachSecondaryFilters(vm.qmp, dir),
      onCommitted: () => {
        commits++;
      },
    });
    try {
      await assert.rejects(gone.checkpoint(), (e: { code: string; message: string }) => {
        console.log(`# failed as expected: ${e.message}`);
        assert.equal(e.code, "COLO_ERR_CHECKPOINT_FAILED");
        return true;
      });
      assert.equal(commits, 0, "never reported as committed");
      assert.equal((await pvm.qmp.execute<{ status: string }>("query-status")).status, "running");
      assert.equal((await (await pvm.console()).run("echo alive", CONSOLE_MS)).trim(), "alive");
    } finally {
      await gone.close();
    }
  });

  test("a failed migration rejects with COLO_ERR_CHECKPOINT_FAILED and leaves the PVM running", async () => {
    const dir = mkdtempSync(path.join(runDir, "bad-"));
    const bad = new CheckpointExecutor({
      primary: pvm,
      runDir: dir,
      nice: TEST_NICE,
      prespawn: false,
      // Twice the RAM: the destination refuses the PVM's RAM block.
      secondaryArgs: (name) => [
        ...machineArgs({ name, role: "secondary", image, accel, memMb: mem * 2, runDir: dir }),
        ...sinkNetdev(),
        ...nicArgs(),
      ],
    });
    try {
      await assert.rejects(bad.checkpoint(), (e: { code: string; message: string }) => {
        console.log(`# failed as expected: ${e.message}`);
        assert.equal(e.code, "COLO_ERR_CHECKPOINT_FAILED");
        return true;
      });
      assert.equal((await pvm.qmp.execute<{ status: string }>("query-status")).status, "running");
      assert.equal((await (await pvm.console()).run("echo alive", CONSOLE_MS)).trim(), "alive");
    } finally {
      await bad.close();
    }
  });
});
