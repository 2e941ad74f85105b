/**
 * @module Checkpoints with stock QEMU. Debian's QEMU has COLO's incremental memory checkpointing
 * compiled out, so a checkpoint here is a full, non-live migration: pause the PVM, migrate its
 * whole state into a fresh SVM QEMU waiting with `-incoming defer -S`, drop the old SVM, attach
 * the new SVM's filters (they connect to colo-proxy), report the checkpoint as committed, and
 * resume both. Slow (the PVM is paused for the whole copy) but real: afterwards the SVM is an
 * exact copy of the PVM, which is what colo-proxy's "release held packets, drop the secondary's
 * queue" step assumes.
 */
import { EventEmitter } from "node:events";
import { ColoError } from "../errors.ts";
import { QemuVm } from "./guest/qemu.ts";

export interface CheckpointExecutorOptions {
  /** The running PVM (with QMP). Never killed by the executor; always resumed. */
  primary: QemuVm;
  /** The current SVM, if any. The executor owns it from now on and kills it at the next checkpoint. */
  secondary?: QemuVm;
  /** Directory for the new SVMs' QMP/console sockets, logs and migration sockets. */
  runDir: string;
  /**
   * QEMU arguments of a secondary named `name` (machine, memory, kernel, netdev, NIC), identical
   * in device layout to the PVM's, plus its `-qmp`/console in runDir (see machineArgs). The
   * executor appends `-incoming defer -S`.
   */
  secondaryArgs: (name: string) => string[];
  /**
   * Connects the new SVM to colo-proxy (e.g. attachSecondaryFilters). Runs after the old SVM is
   * gone and before either VM resumes, so the proxy never sees two secondaries at once.
   */
  attachSecondary?: (vm: QemuVm) => Promise<void>;
  /**
   * Called once the new SVM holds the PVM's state, before the PVM resumes: the caller releases
   * the primary's held packets and drops the secondary's queue here.
   */
  onCommitted?: (report: CheckpointReport) => void | Promise<void>;
  /** Start the next SVM QEMU right after a checkpoint, so the next one skips QEMU start-up. */
  prespawn?: boolean;
  migrateTimeoutMs?: number;
  /** Start SVM QEMUs under `nice -n` (tests and benchmarks on shared machines). */
  nice?: number;
  /** Start SVM QEMUs inside this network namespace (`ip netns exec`), e.g. to open a tap there. */
  netns?: string;
  /** Clock in milliseconds (injected for tests; performance.now by default). */
  now?: () => number;
}

/** What one checkpoint did and how long each step took (milliseconds). */
export interface CheckpointReport {
  generation: number;
  secondary: string;
  /** From the request to the PVM running again. */
  totalMs: number;
  /** How long the PVM was paused. */
  pausedMs: number;
  phases: { spawnMs: number; migrateMs: number; swapMs: number; commitMs: number; resumeMs: number };
  ramTotalBytes: number;
  ramTransferredBytes: number;
}

interface MigrationInfo {
  status?: string;
  "error-desc"?: string;
  ram?: { total?: number; transferred?: number };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs checkpoints one at a time. Requests that arrive while one runs are coalesced into a single
 * follow-up checkpoint (a checkpoint covers everything before it started). Emits `checkpoint`
 * (CheckpointReport) and `error` is never emitted: failures reject the caller's promise.
 */
export class CheckpointExecutor extends EventEmitter {
  readonly #o: CheckpointExecutorOptions;
  readonly #now: () => number;
  #secondary: QemuVm | undefined;
  #standby: Promise<QemuVm> | undefined;
  #generation = 0;
  #spawned = 0;
  #running: Promise<CheckpointReport> | undefined;
  #queued: Promise<CheckpointReport> | undefined;
  #closed = false;

  constructor(o: CheckpointExecutorOptions) {
    super();
    this.#o = o;
    this.#now = o.now ?? (() => performance.now());
    this.#secondary = o.secondary;
    if (o.prespawn !== false) this.#standby = this.#spawn();
  }

  /** The current SVM (undefined before the first checkpoint if none was given). */
  get secondary(): QemuVm | undefined {
    return this.#secondary;
  }

  get generation(): number {
    return this.#generation;
  }

  /** Requests a checkpoint; resolves when one that started after this call has committed. */
  checkpoint(): Promise<CheckpointReport> {
    if (this.#closed) return Promise.reject(new ColoError("COLO_ERR_CHECKPOINT_FAILED", "executor closed"));
    if (!this.#running) return this.#start();
    this.#queued ??= this.#running
      .catch(() => {})
      .then(() => {
        this.#queued = undefined;
        return this.#start();
      });
    return this.#queued;
  }

  #start(): Promise<CheckpointReport> {
    const p = this.#run().finally(() => {
      if (this.#running === p) this.#running = undefined;
    });
    this.#running = p;
    return p;
  }

  /** Kills the standby and current SVMs (not the PVM). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#running?.catch(() => {});
    const standby = await this.#standby?.catch(() => undefined);
    await standby?.kill();
    await this.#secondary?.kill();
  }

  #spawn(): Promise<QemuVm> {
    const name = `svm-${++this.#spawned}`;
    const p = QemuVm.start({
      name,
      runDir: this.#o.runDir,
      args: [...this.#o.secondaryArgs(name), "-incoming", "defer", "-S"],
      nice: this.#o.nice,
      ...(this.#o.netns !== undefined ? { netns: this.#o.netns } : {}),
    });
    p.catch(() => {}); // observed when awaited; never an unhandled rejection
    return p;
  }

  async #run(): Promise<CheckpointReport> {
    const t0 = this.#now();
    const pvm = this.#o.primary.qmp;
    let next = await (this.#standby ?? this.#spawn()).catch(() => undefined);
    this.#standby = undefined;
    if (!next?.running) {
      await next?.kill();
      next = await this.#spawn(); // a dead standby: one more try, errors go to the caller
    }
    const tSpawned = this.#now();
    const generation = this.#generation + 1;
    const uri = `unix:${this.#o.runDir}/migrate-${next.name}.sock`;
    let paused = false;
    let tStopped = tSpawned;
    let tMigrated = tSpawned;
    let ram: MigrationInfo["ram"] = {};
    try {
      await pvm.execute("migrate-set-parameters", {
        "max-bandwidth": 64 * 1024 ** 3,
        "downtime-limit": 60_000,
      });
      // No self-announce (RARP / guest GARP) from the new SVM: its netdev is not the clients'
      // path, and frames only the SVM sends would sit unmatched in the primary's comparison.
      await next.qmp.execute("migrate-set-parameters", { "announce-rounds": 0 });
      await next.qmp.execute("migrate-incoming", { uri });
      // Counted as paused once sent: a `stop` whose reply times out may still run later, and the
      // PVM must not be left stopped by it.
      paused = true;
      await pvm.execute("stop");
      tStopped = this.#now();
      await pvm.execute("migrate", { uri });
      ram = await this.#waitMigrated(next);
      tMigrated = this.#now();
    } catch (e) {
      if (paused) await pvm.execute("cont").catch(() => {});
      await next.kill(500);
      if (this.#o.prespawn !== false && !this.#closed) this.#standby = this.#spawn();
      throw new ColoError("COLO_ERR_CHECKPOINT_FAILED", `checkpoint ${generation}: ${(e as Error).message}`, {
        cause: (e as { details?: unknown }).details,
      });
    }
    try {
      const old = this.#secondary;
      this.#secondary = next;
      this.#generation = generation;
      await old?.kill(1000);
      await this.#o.attachSecondary?.(next);
      const tSwapped = this.#now();
      const report: CheckpointReport = {
        generation,
        secondary: next.name,
        totalMs: 0,
        pausedMs: 0,
        phases: {
          spawnMs: tSpawned - t0,
          migrateMs: tMigrated - tStopped,
          swapMs: tSwapped - tMigrated,
          commitMs: 0,
          resumeMs: 0,
        },
        ramTotalBytes: ram?.total ?? 0,
        ramTransferredBytes: ram?.transferred ?? 0,
      };
      await this.#o.onCommitted?.(report);
      const tCommitted = this.#now();
      await next.qmp.execute("cont");
      await pvm.execute("cont");
      paused = false;
      const tEnd = this.#now();
      report.phases.commitMs = tCommitted - tSwapped;
      report.phases.resumeMs = tEnd - tCommitted;
      report.totalMs = tEnd - t0;
      report.pausedMs = tEnd - tStopped;
      this.emit("checkpoint", report);
      return report;
    } catch (e) {
      throw new ColoError("COLO_ERR_CHECKPOINT_FAILED", `checkpoint ${generation}: ${(e as Error).message}`);
    } finally {
      if (paused) await pvm.execute("cont").catch(() => {}); // never leave the PVM paused
      if (this.#o.prespawn !== false && !this.#closed && !this.#standby) this.#standby = this.#spawn();
    }
  }

  /** Polls both ends until the source reports completion and the destination left `inmigrate`. */
  async #waitMigrated(dest: QemuVm): Promise<MigrationInfo["ram"]> {
    const deadline = Date.now() + (this.#o.migrateTimeoutMs ?? 120_000);
    const pvm = this.#o.primary.qmp;
    let info: MigrationInfo = {};
    for (;;) {
      info = await pvm.execute<MigrationInfo>("query-migrate");
      if (info.status === "completed") break;
      if (info.status === "failed" || info.status === "cancelled") {
        throw new ColoError(
          "COLO_ERR_CHECKPOINT_FAILED",
          `migration ${info.status}: ${info["error-desc"] ?? ""}`,
        );
      }
      if (!dest.running) throw new ColoError("COLO_ERR_QEMU_EXITED", `${dest.name} exited during migration`);
      if (Date.now() > deadline) {
        await pvm.execute("migrate_cancel").catch(() => {});
        throw new ColoError("COLO_ERR_CHECKPOINT_FAILED", "migration timed out");
      }
      await sleep(5);
    }
    for (;;) {
      const st = await dest.qmp.execute<{ status: string }>("query-status");
      if (st.status !== "inmigrate") break;
      if (Date.now() > deadline)
        throw new ColoError("COLO_ERR_CHECKPOINT_FAILED", "destination never left inmigrate");
      await sleep(5);
    }
    return info.ram;
  }
}
