/**
 * @module Checkpoint executor: how long one stock-QEMU checkpoint (stop, full migration into a
 * fresh SVM, swap, resume) takes for 128 MB and 256 MB guests, idle and with 64 MB of random data
 * in the guest's tmpfs, and without a pre-spawned standby SVM. Baseline: 128 MB, idle, prespawn.
 * Needs qemu-system-x86_64 and the guest image (scripts/setup.sh); skips with a reason otherwise.
 */
import { rmSync } from "node:fs";
import { CheckpointExecutor, type CheckpointReport } from "../src/node/checkpoint-executor.ts";
import { machineArgs, nicArgs, QemuVm, sinkNetdev } from "../src/node/guest/qemu.ts";
import { BOOT_TIMEOUT_MS, detectAccel, guestSkipReason, image, makeRunDir } from "../test/support/guests.ts";

interface Config {
  label: string;
  memMb: number;
  dirtyMb: number;
  prespawn: boolean;
}

const CONFIGS: Config[] = [
  { label: "128 MB idle", memMb: 128, dirtyMb: 0, prespawn: true },
  { label: "256 MB idle", memMb: 256, dirtyMb: 0, prespawn: true },
  { label: "256 MB +64 MB tmpfs", memMb: 256, dirtyMb: 64, prespawn: true },
  { label: "128 MB idle, no standby", memMb: 128, dirtyMb: 0, prespawn: false },
];
const ROUNDS = Number(process.env.CKPT_ROUNDS ?? 5);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

async function measure(c: Config, accel: "kvm" | "tcg"): Promise<CheckpointReport[]> {
  const runDir = makeRunDir("colo-ckpt-bench-");
  const args = (name: string, role: "primary" | "secondary") => [
    ...machineArgs({ name, role, image, accel, memMb: c.memMb, runDir }),
    ...sinkNetdev(),
    ...nicArgs(),
  ];
  const pvm = await QemuVm.start({ name: "pvm", runDir, args: args("pvm", "primary") });
  let ex: CheckpointExecutor | undefined;
  try {
    await pvm.waitReady(BOOT_TIMEOUT_MS);
    if (c.dirtyMb > 0) {
      const out = await (await pvm.console()).run(
        `head -c $((${c.dirtyMb} * 1048576)) /dev/urandom > /run/fill && ls -la /run/fill`,
        120_000,
      );
      if (!out.includes(String(c.dirtyMb * 1048576)))
        throw new Error(`filling the guest's tmpfs failed: ${out}`);
    }
    ex = new CheckpointExecutor({
      primary: pvm,
      runDir,
      prespawn: c.prespawn,
      secondaryArgs: (name) => args(name, "secondary"),
    });
    const out: CheckpointReport[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      out.push(await ex.checkpoint());
      await new Promise((r) => setTimeout(r, 300)); // let a standby start, as between real checkpoints
    }
    return out;
  } finally {
    await ex?.close();
    await pvm.kill();
    rmSync(runDir, { recursive: true, force: true });
  }
}

export async function run(): Promise<void> {
  const skip = guestSkipReason();
  if (skip) {
    console.log(`skipped: ${skip}`);
    return;
  }
  const accel = await detectAccel();
  console.log(`accel=${accel}, ${ROUNDS} checkpoints per row, medians (ms); ratio = total / baseline total`);
  console.log(
    "| config | total | total min–max | PVM paused | migrate | swap+attach | resume | MB sent | ratio |\n|---|---|---|---|---|---|---|---|---|",
  );
  let base: number | undefined;
  for (const c of CONFIGS) {
    const r = await measure(c, accel);
    const total = median(r.map((x) => x.totalMs));
    base ??= total;
    const f = (n: number) => n.toFixed(0);
    console.log(
      `| ${c.label} | ${f(total)} | ${f(Math.min(...r.map((x) => x.totalMs)))}–${f(Math.max(...r.map((x) => x.totalMs)))} | ${f(median(r.map((x) => x.pausedMs)))} | ${f(median(r.map((x) => x.phases.migrateMs)))} | ` +
        `${f(median(r.map((x) => x.phases.swapMs)))} | ${f(median(r.map((x) => x.phases.resumeMs)))} | ` +
        `${(median(r.map((x) => x.ramTransferredBytes)) / 2 ** 20).toFixed(1)} | ${(total / base).toFixed(2)}× |`,
    );
  }
}
