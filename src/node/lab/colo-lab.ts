/**
 * @module A complete COLO pair on one host, used by `colo-proxy demo` and the end-to-end tests:
 * a client netns, the PVM (on the netns's tap, behind QEMU's filters) and the SVM, the real
 * `PrimaryDaemon` and `SecondaryDaemon` joined by their authenticated link on a UNIX socket, and
 * the checkpoint executor wired so that a CHECKPOINT_REQUEST from the primary triggers a real
 * checkpoint (migration into a fresh SVM) and then `checkpointDone()` on the primary, which bumps
 * the link epoch so the secondary resets its rewriter.
 *
 *   client netns ── tap-p ── PVM ── filter-mirror/redirectors ── primary daemon ─┐ link (unix)
 *                                    SVM ── redirectors (s-in-inj, s-out) ── secondary daemon ┘
 *
 * With `secondaryTap` the client is bridge br-c, tap-p and tap-s its ports, and the SVM sits on
 * tap-s behind redirectors to the secondary's net_in/net_out as well (its path after failover).
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { parsePrimaryArgs } from "../../cli/commands/primary.ts";
import { parseSecondaryArgs } from "../../cli/commands/secondary.ts";
import type { ControlEvent } from "../../control/target.ts";
import { type Logger, silentLogger } from "../../log.ts";
import { CheckpointExecutor, type CheckpointReport } from "../checkpoint-executor.ts";
import {
  type Accel,
  attachSecondaryFilters,
  attachSecondaryNetFilters,
  filterSockets,
  type Inbound,
  machineArgs,
  nicArgs,
  type QemuVm,
  sinkNetdev,
  tapNetdev,
} from "../guest/qemu.ts";
import { PrimaryDaemon } from "../primary.ts";
import { SecondaryDaemon } from "../secondary.ts";
import { bootPrimary, bootSecondary, detectAccel, image, makeRunDir, TEST_NICE, Teardown } from "./guests.ts";
import { type ClientNetns, createClientNetns } from "./netns.ts";

export interface ColoLabOptions {
  /** Run directory for sockets, logs and captures (default: a fresh temp dir, removed at close). */
  runDir?: string;
  accel?: Accel;
  /** `nice -n` for the QEMUs (default TEST_NICE). */
  nice?: number;
  /** Primary filter layout: `mirror` (upstream filter-mirror, default) or `redirect`. */
  inbound?: Inbound;
  /** Run real checkpoints on CHECKPOINT_REQUEST (default true). */
  checkpoints?: boolean;
  /** Start both daemons' Prometheus endpoints on 127.0.0.1 (ephemeral ports). */
  metrics?: boolean;
  /** The primary's compare timeout in ms (default 3000, QEMU's). */
  compareTimeoutMs?: number;
  /** Loggers for the daemons (silent by default). */
  primaryLogger?: Logger;
  secondaryLogger?: Logger;
  /** Name prefix of the client netns. */
  netnsPrefix?: string;
  /**
   * Give the SVM a real wire: the client sits on a bridge with the PVM's tap and `tap-s`, the
   * SVM's netdev, behind the secondary's four redirectors (net_in/net_out, see
   * secondaryNetFilterArgs), and the secondary translates TCP timestamps. After failover the SVM
   * serves the client's connections. Checkpoints work: each fresh SVM opens its own tap
   * (`t-svm-N`, a tap has one owner), which joins the bridge once its filters are attached.
   */
  secondaryTap?: boolean;
}

/** An event from either daemon's control layer, with the daemon it came from. */
export interface LabEvent {
  daemon: "primary" | "secondary";
  event: string;
  data: Record<string, unknown>;
}

const MAX_EVENTS = 10_000;

/** The tap a checkpointed SVM opens in the client netns (a tap has one owner: not tap-s). */
const svmTapOf = (svmName: string) => `t-${svmName}`;

export class ColoLab {
  readonly runDir: string;
  readonly ns: ClientNetns;
  readonly pvm: QemuVm;
  readonly primary: PrimaryDaemon;
  readonly secondary: SecondaryDaemon;
  readonly executor: CheckpointExecutor | undefined;
  readonly controlSockets: { primary: string; secondary: string };
  /** Control events of both daemons (bounded: the oldest are dropped beyond 10 000). */
  readonly events: LabEvent[] = [];
  readonly checkpoints: CheckpointReport[] = [];
  readonly checkpointErrors: string[] = [];
  readonly #td: Teardown;
  readonly #svm0: QemuVm;
  #inflight: Promise<unknown> | undefined;
  #afterFailover: Promise<void> | undefined;

  private constructor(p: {
    runDir: string;
    ns: ClientNetns;
    pvm: QemuVm;
    svm: QemuVm;
    primary: PrimaryDaemon;
    secondary: SecondaryDaemon;
    executor: CheckpointExecutor | undefined;
    controlSockets: { primary: string; secondary: string };
    td: Teardown;
  }) {
    this.runDir = p.runDir;
    this.ns = p.ns;
    this.pvm = p.pvm;
    this.#svm0 = p.svm;
    this.primary = p.primary;
    this.secondary = p.secondary;
    this.executor = p.executor;
    this.controlSockets = p.controlSockets;
    this.#td = p.td;
  }

  /** The current SVM (a new QEMU after every checkpoint). */
  get svm(): QemuVm {
    return this.executor?.secondary ?? this.#svm0;
  }

  /** With `secondaryTap`: the current SVM's tap in the client netns (`tap-s`, then `t-svm-N`). */
  get svmTap(): string | undefined {
    if (this.ns.secondaryTap === undefined) return undefined;
    const svm = this.svm;
    return svm === this.#svm0 ? this.ns.secondaryTap : svmTapOf(svm.name);
  }

  /** Metrics endpoints (`http://127.0.0.1:PORT/metrics`), when started with `metrics`. */
  metricsUrls(): { primary?: string; secondary?: string } {
    const url = (m: { host: string; port: number } | null | undefined) =>
      m ? `http://${m.host}:${m.port}/metrics` : undefined;
    const p = url(this.primary.compare.control?.metrics);
    const s = url(this.secondary.control?.metrics);
    return { ...(p ? { primary: p } : {}), ...(s ? { secondary: s } : {}) };
  }

  /** Resolves once no checkpoint is running (or after `timeoutMs`). */
  async settled(timeoutMs = 120_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.#inflight !== undefined && Date.now() < end) {
      await Promise.race([this.#inflight.catch(() => {}), new Promise((r) => setTimeout(r, 200))]);
    }
  }

  static start(o: ColoLabOptions = {}): Promise<ColoLab> {
    return Teardown.guard((td) => ColoLab.#start(o, td));
  }

  static async #start(o: ColoLabOptions, td: Teardown): Promise<ColoLab> {
    let runDir = o.runDir;
    if (runDir === undefined) {
      const dir = makeRunDir("colo-lab-");
      runDir = dir;
      td.add(async () => (await import("node:fs")).rmSync(dir, { recursive: true, force: true }));
    }
    const accel = o.accel ?? (await detectAccel());
    const nice = o.nice ?? TEST_NICE;
    const inbound = o.inbound ?? "mirror";
    const s = filterSockets(runDir);
    const f = (n: string) => path.join(runDir, n);
    const unix = (p: string) => `unix:${p}`;
    writeFileSync(f("link.secret"), "colo-lab shared secret\n", { mode: 0o600 });
    const link = ["--addr", unix(f("link.sock")), "--secret-file", f("link.secret")];
    const controlSockets = { primary: f("primary.ctl"), secondary: f("secondary.ctl") };
    const metrics = o.metrics ? ["--metrics", "127.0.0.1:0"] : [];
    const wired = o.secondaryTap === true;

    // Daemons first: they listen, QEMU connects (and fails fast if nobody listens).
    const sp = parseSecondaryArgs([
      ...link,
      ...["--guest-in", unix(s.sInInj), "--guest-out", unix(s.sOut)],
      // Timestamps: after takeover the client applies PAWS to the SVM's TSvals.
      ...(wired ? ["--net-in", unix(s.sNetIn), "--net-out", unix(s.sNetOut), "--timestamps"] : []),
      ...metrics,
    ]);
    const pp = parsePrimaryArgs([
      ...link,
      ...["--mirror-in", unix(s.pIn), "--primary-in", unix(s.pOut), "--outdev", unix(s.pOutInj)],
      ...(inbound === "redirect" ? ["--guest-in", unix(s.pInInj)] : []),
      ...["--compare-timeout", String(o.compareTimeoutMs ?? 3000)],
      ...metrics,
    ]);
    if (sp.help || pp.help) throw new Error("unreachable: no --help given");
    const secondary = await SecondaryDaemon.start(sp.config, {
      logger: o.secondaryLogger ?? silentLogger(),
      controlSocket: controlSockets.secondary,
      controlExtra: { metrics: sp.control.metrics },
    });
    td.add(() => secondary.close());
    const primary = await PrimaryDaemon.start(pp.config, {
      logger: o.primaryLogger ?? silentLogger(),
      controlSocket: controlSockets.primary,
      controlExtra: { metrics: pp.control.metrics },
    });
    td.add(() => primary.close());

    const ns = await createClientNetns(o.netnsPrefix ?? "colo-lab", { secondaryTap: wired });
    td.add(() => ns.destroy());
    const [pvmR, svmR] = await Promise.allSettled([
      bootPrimary({ runDir, accel, nice, netns: ns, inbound }),
      bootSecondary({ runDir, accel, nice, ...(wired ? { netns: ns } : {}) }),
    ]);
    for (const r of [pvmR, svmR]) if (r.status === "fulfilled") td.add(() => r.value.kill());
    if (pvmR.status === "rejected") throw pvmR.reason;
    if (svmR.status === "rejected") throw svmR.reason;
    const pvm = pvmR.value;
    const svm = svmR.value;

    let executor: CheckpointExecutor | undefined;
    if (o.checkpoints !== false) {
      const ex = new CheckpointExecutor({
        primary: pvm,
        secondary: svm,
        runDir,
        nice,
        secondaryArgs: (name) => [
          ...machineArgs({ name, role: "secondary", image, accel, runDir }),
          ...(wired ? tapNetdev(svmTapOf(name)) : sinkNetdev()),
          ...nicArgs(),
        ],
        ...(wired ? { netns: ns.name } : {}),
        // The new SVM's filters connect anew to the secondary's guest_in/guest_out (and net_in/
        // net_out); a wired SVM's tap joins the bridge only then (it is paused until committed).
        attachSecondary: async (vm) => {
          if (!wired) return attachSecondaryFilters(vm.qmp, runDir);
          await attachSecondaryNetFilters(vm.qmp, runDir);
          const tap = svmTapOf(vm.name);
          await ns.exec("sysctl", ["-qw", `net.ipv6.conf.${tap}.disable_ipv6=1`]);
          await ns.exec("ip", ["link", "set", tap, "master", ns.clientIf, "up"]);
        },
        // The SVM now holds the PVM's state: release what the primary held, bump the epoch.
        onCommitted: () => {
          primary.compare.checkpointDone();
        },
      });
      executor = ex;
      td.add(() => ex.close());
    }
    const lab = new ColoLab({
      runDir,
      ns,
      pvm,
      svm,
      primary,
      secondary,
      executor,
      controlSockets,
      td,
    });
    const record = (daemon: LabEvent["daemon"]) => (e: ControlEvent) => {
      if (lab.events.length >= MAX_EVENTS) lab.events.shift();
      lab.events.push({ daemon, event: e.event, data: e.data as Record<string, unknown> });
      if (daemon === "primary" && e.event === "CHECKPOINT_REQUEST") lab.#checkpointRequested();
      if (daemon === "primary" && e.event === "FAILOVER") lab.#failedOver();
    };
    const unsubP = primary.compare.control?.server.subscribe(record("primary"));
    const unsubS = secondary.control?.server.subscribe(record("secondary"));
    td.add(() => {
      unsubP?.();
      unsubS?.();
    });
    return lab;
  }

  /**
   * One checkpoint at a time; requests while one runs are covered by it (the PVM is paused
   * from its start, so everything held then is flushed by its checkpointDone).
   */
  #checkpointRequested(): void {
    const ex = this.executor;
    if (ex === undefined || this.#inflight !== undefined) return;
    if (this.primary.compare.mode === "failover") return;
    const p = ex
      .checkpoint()
      .then((r) => {
        this.checkpoints.push(r);
      })
      .catch((e: Error) => {
        this.checkpointErrors.push(e.message);
      })
      .finally(() => {
        this.#inflight = undefined;
      });
    this.#inflight = p;
  }

  /** True while a checkpoint runs (the PVM may be paused). */
  get checkpointRunning(): boolean {
    return this.#inflight !== undefined;
  }

  /**
   * The primary failed over: a checkpoint still running finishes or fails on its own (the
   * executor resumes the PVM either way), and no new one starts; once it is over, make sure the
   * PVM runs — it now serves the clients alone. Recorded in checkpointErrors if that fails.
   */
  #failedOver(): void {
    const p = (async () => {
      await this.settled();
      const st = await this.pvm.qmp.execute<{ status: string }>("query-status");
      if (st.status !== "running") {
        this.checkpointErrors.push(`PVM ${st.status} after failover: resumed`);
        await this.pvm.qmp.execute("cont");
      }
    })().catch((e: Error) => {
      this.checkpointErrors.push(`after failover: ${e.message}`);
    });
    this.#afterFailover = p;
  }

  /** Resolves once the post-failover check (see #failedOver) is done; at once without failover. */
  async failoverSettled(): Promise<void> {
    await this.#afterFailover;
  }

  /** Kills everything this lab started (QEMUs, daemons, the netns); never throws. */
  async close(): Promise<void> {
    await this.settled(30_000);
    await this.#afterFailover;
    await this.#td.run();
  }
}
