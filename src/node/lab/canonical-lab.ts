/**
 * @module QEMU's canonical COLO-FT network layout (docs/COLO-FT.txt) with real guests, and one
 * half of QEMU's proxy swapped for the real `colo-proxy` CLI process:
 *
 * - `proxy-compare`: colo-compare moves out of the PVM's QEMU into `colo-proxy compare`, fed the
 *   very `-chardev`/`-object colo-compare` lines QEMU had; the SVM keeps QEMU's filter-rewriter.
 * - `proxy-rewrite`: the PVM keeps QEMU's colo-compare; the SVM's filter-rewriter is replaced by
 *   `colo-proxy rewrite`, spliced into the red0/red1 paths (mirror0 → rewrite → red0 → f1 → SVM;
 *   SVM → f2 → red1 → rewrite → compare1).
 *
 * Every socket is a UNIX socket in the run directory where COLO-FT.txt uses TCP ports (9003 =
 * mirror0.sock, 9004 = compare1.sock, 9001 = compare0.sock, 9005 = compare_out.sock). Both guests
 * boot the same image independently (no `-incoming`: Debian's QEMU has COLO migration compiled
 * out, and nothing here needs a checkpoint to be executed).
 *
 *   client netns ── tap-p ── PVM: m0 (mirror0) · redire0 (compare_out) · redire1 (compare0) [· comp0]
 *                            SVM (sink netdev): f1 (red0) · f2 (red1) [· rew0]
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { ControlClient } from "../../control/client.ts";
import type { StatsReply } from "../../control/commands.ts";
import type { EventMessage } from "../../control/protocol.ts";
import { ColoError } from "../../errors.ts";
import { type Accel, machineArgs, nicArgs, QemuVm, sinkNetdev, tapNetdev } from "../guest/qemu.ts";
import { BOOT_TIMEOUT_MS, detectAccel, image, makeRunDir, repoRoot, TEST_NICE, Teardown } from "./guests.ts";
import { type ClientNetns, createClientNetns } from "./netns.ts";

export type CanonicalVariant = "proxy-compare" | "proxy-rewrite";

/** The canonical layout's sockets (COLO-FT.txt's TCP ports in brackets). */
/**
 * COLO-FT.txt's lines plus one tuning a user on a loaded host would add as well: a TCG SVM on
 * 2 shared cores can lag QEMU's default 3 s, and a timeout would be a checkpoint request the
 * deterministic tests must not see.
 */
export const LAB_COMPARE_TIMEOUT_MS = 20_000;

export function canonicalSockets(runDir: string) {
  const s = (n: string) => path.join(runDir, `${n}.sock`);
  return {
    /** [9003] PVM filter-mirror m0's outdev: client frames for the SVM. */
    mirror0: s("mirror0"),
    /** [9004] colo-compare's secondary_in: SVM output (already seq-rewritten). */
    compare1: s("compare1"),
    /** [9001] PVM output, redire1 → colo-compare primary_in. */
    compare0: s("compare0"),
    /** [9005] released frames, colo-compare outdev → redire0 → tap. */
    compareOut: s("compare_out"),
    /** proxy-rewrite only: rewritten client frames, `colo-proxy rewrite` tx_out → SVM f1 (red0). */
    red0: s("red0"),
    /** proxy-rewrite only: SVM output, SVM f2 (red1) → `colo-proxy rewrite` rx_in. */
    red1: s("red1"),
    /** The colo-proxy process's control socket. */
    control: s("colo-proxy-ctl"),
  };
}

/**
 * The primary QEMU's network part, COLO-FT.txt's lines with UNIX paths. With `compareInQemu`
 * false, the compare0-0/compare1/compare_out0 chardevs, iothread and colo-compare object are left
 * out: they go to `colo-proxy compare` unchanged (canonicalCompareLines).
 */
export function canonicalPrimaryNetArgs(runDir: string, tap: string, compareInQemu: boolean): string[] {
  const s = canonicalSockets(runDir);
  const server = (id: string, p: string) => ["-chardev", `socket,id=${id},path=${p},server=on,wait=off`];
  return [
    ...tapNetdev(tap),
    ...nicArgs(),
    ...server("mirror0", s.mirror0),
    ...(compareInQemu ? server("compare1", s.compare1) : []),
    ...server("compare0", s.compare0),
    ...(compareInQemu ? ["-chardev", `socket,id=compare0-0,path=${s.compare0}`] : []),
    ...server("compare_out", s.compareOut),
    ...(compareInQemu ? ["-chardev", `socket,id=compare_out0,path=${s.compareOut}`] : []),
    ...["-object", "filter-mirror,id=m0,netdev=hn0,queue=tx,outdev=mirror0"],
    ...["-object", "filter-redirector,netdev=hn0,id=redire0,queue=rx,indev=compare_out"],
    ...["-object", "filter-redirector,netdev=hn0,id=redire1,queue=rx,outdev=compare0"],
    ...(compareInQemu
      ? [
          ...["-object", "iothread,id=iothread1"],
          ...[
            "-object",
            `colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,outdev=compare_out0,iothread=iothread1,compare_timeout=${LAB_COMPARE_TIMEOUT_MS}`,
          ],
        ]
      : []),
  ];
}

/**
 * The lines that leave the primary QEMU for `colo-proxy compare` (docs/deploying.md's "After"):
 * compare1 becomes colo-proxy's server, compare0-0 and compare_out0 dial QEMU's servers.
 */
export function canonicalCompareLines(runDir: string): string[] {
  const s = canonicalSockets(runDir);
  return [
    ...["-chardev", `socket,id=compare1,path=${s.compare1},server=on,wait=off`],
    ...["-chardev", `socket,id=compare0-0,path=${s.compare0},reconnect=1`],
    ...["-chardev", `socket,id=compare_out0,path=${s.compareOut},reconnect=1`],
    ...["-object", "iothread,id=iothread1"],
    ...[
      "-object",
      `colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,outdev=compare_out0,iothread=iothread1,compare_timeout=${LAB_COMPARE_TIMEOUT_MS}`,
    ],
  ];
}

/**
 * The secondary QEMU's network part. With QEMU's rewriter: COLO-FT.txt's red0/red1 dialling the
 * primary's mirror0/compare1, f1, f2, rew0. Without: red0/red1 dial `colo-proxy rewrite`'s tx_out
 * and rx_in instead, and rew0 is gone (it runs between the same two sockets outside QEMU).
 */
export function canonicalSecondaryNetArgs(runDir: string, rewriterInQemu: boolean): string[] {
  const s = canonicalSockets(runDir);
  return [
    ...sinkNetdev(),
    ...nicArgs(),
    ...["-chardev", `socket,id=red0,path=${rewriterInQemu ? s.mirror0 : s.red0},reconnect=1`],
    ...["-chardev", `socket,id=red1,path=${rewriterInQemu ? s.compare1 : s.red1},reconnect=1`],
    ...["-object", "filter-redirector,id=f1,netdev=hn0,queue=tx,indev=red0"],
    ...["-object", "filter-redirector,id=f2,netdev=hn0,queue=rx,outdev=red1"],
    ...(rewriterInQemu ? ["-object", "filter-rewriter,id=rew0,netdev=hn0,queue=all"] : []),
  ];
}

/**
 * `colo-proxy rewrite` in place of rew0: tx_in dials the primary's mirror0 (where red0 used to),
 * tx_out serves red0 (f1's indev), rx_in serves red1 (f2's outdev), rx_out dials the primary's
 * compare1 (where red1 used to).
 */
export function canonicalRewriteLines(runDir: string): string[] {
  const s = canonicalSockets(runDir);
  return [
    ...["--chardev", `socket,id=tx_in,path=${s.mirror0},reconnect=1`],
    ...["--chardev", `socket,id=tx_out,path=${s.red0},server=on,wait=off`],
    ...["--chardev", `socket,id=rx_in,path=${s.red1},server=on,wait=off`],
    ...["--chardev", `socket,id=rx_out,path=${s.compare1},reconnect=1`],
    ...["--object", "filter-rewriter,id=rew0,tx_in=tx_in,tx_out=tx_out,rx_in=rx_in,rx_out=rx_out"],
  ];
}

export interface CanonicalLabOptions {
  variant: CanonicalVariant;
  accel?: Accel;
  /** `nice -n` for the QEMUs (default TEST_NICE). */
  nice?: number;
  /** colo-proxy's --log-level (default info; its stderr goes to colo-proxy.log in the run dir). */
  logLevel?: string;
  netnsPrefix?: string;
}

const MAX_EVENTS = 10_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One `colo-proxy` CLI process (bin/colo-proxy.mjs, as an operator runs it) and its control
 * connection. Its stderr is appended to `logPath`. Killed at the latest by the process exit hook.
 */
class ProxyProcess {
  readonly control: ControlClient;
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;

  private constructor(child: ChildProcess, exited: Promise<void>, control: ControlClient) {
    this.#child = child;
    this.#exited = exited;
    this.control = control;
  }

  static async start(args: string[], controlPath: string, logPath: string): Promise<ProxyProcess> {
    rmSync(controlPath, { force: true });
    const log = openSync(logPath, "a");
    const child = spawn(process.execPath, [path.join(repoRoot, "bin/colo-proxy.mjs"), ...args], {
      cwd: repoRoot,
      stdio: ["ignore", log, log],
    });
    closeSync(log);
    liveProxies.add(child);
    const exited = new Promise<void>((r) =>
      child.once("exit", () => {
        liveProxies.delete(child);
        r();
      }),
    );
    const tail = () => (existsSync(logPath) ? readFileSync(logPath, "utf8").slice(-3000) : "");
    try {
      const deadline = Date.now() + 60_000;
      while (!existsSync(controlPath)) {
        if (child.exitCode !== null || Date.now() > deadline)
          throw new ColoError("COLO_ERR_CONFIG", `colo-proxy ${args[0]} did not start`, { log: tail() });
        await sleep(50);
      }
      return new ProxyProcess(child, exited, await ControlClient.connect({ path: controlPath }));
    } catch (e) {
      child.kill("SIGKILL");
      await exited;
      throw e;
    }
  }

  /** SIGTERM (SIGKILL after 5 s), or SIGKILL at once with `hard`. Never throws. */
  async stop(hard = false): Promise<void> {
    this.control.close();
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.kill(hard ? "SIGKILL" : "SIGTERM");
    const t = setTimeout(() => this.#child.kill("SIGKILL"), 5000);
    await this.#exited;
    clearTimeout(t);
  }
}

const liveProxies = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of liveProxies) c.kill("SIGKILL");
});

/** Waits until colo-proxy reports every one of its chardevs connected. */
async function proxyLinksUp(control: ControlClient, deadline: number, log: () => string): Promise<void> {
  for (;;) {
    const st = await control.execute<StatsReply>("query-stats");
    const links = Object.entries(st.links);
    if (links.length > 0 && links.every(([, up]) => up)) return;
    if (Date.now() > deadline)
      throw new ColoError("COLO_ERR_GUEST_TIMEOUT", "colo-proxy's peers did not all connect", {
        links: st.links,
        log: log(),
      });
    await sleep(100);
  }
}

/** Waits until QEMU's socket chardev `id` has its peer (QOM property `connected`). */
async function waitConnected(vm: QemuVm, id: string, deadline: number): Promise<void> {
  for (;;) {
    const up = await vm.qmp.execute<boolean>("qom-get", { path: `/chardevs/${id}`, property: "connected" });
    if (up) return;
    if (Date.now() > deadline)
      throw new ColoError("COLO_ERR_GUEST_TIMEOUT", `${vm.name}: chardev ${id} did not connect`);
    await sleep(100);
  }
}

export class CanonicalLab {
  readonly variant: CanonicalVariant;
  readonly runDir: string;
  readonly ns: ClientNetns;
  readonly pvm: QemuVm;
  readonly svm: QemuVm;
  /** Control events of the colo-proxy process (bounded; kept across restarts). */
  readonly events: EventMessage[] = [];
  /** The colo-proxy command line (after `colo-proxy`). */
  readonly proxyArgs: string[];
  #proxy: ProxyProcess;
  readonly #td: Teardown;

  private constructor(p: {
    variant: CanonicalVariant;
    runDir: string;
    ns: ClientNetns;
    pvm: QemuVm;
    svm: QemuVm;
    proxy: ProxyProcess;
    proxyArgs: string[];
    td: Teardown;
  }) {
    this.variant = p.variant;
    this.runDir = p.runDir;
    this.ns = p.ns;
    this.pvm = p.pvm;
    this.svm = p.svm;
    this.#proxy = p.proxy;
    this.proxyArgs = p.proxyArgs;
    this.#td = p.td;
    this.#record();
  }

  /** The running colo-proxy's control connection. */
  get control(): ControlClient {
    return this.#proxy.control;
  }

  #record(): void {
    this.control.onEvent((e) => {
      if (this.events.length >= MAX_EVENTS) this.events.shift();
      this.events.push(e);
    });
  }

  /**
   * Kills colo-proxy (SIGKILL: a crash) and starts it again with the same command line; resolves
   * once its own chardevs are all connected again. QEMU's side is left as it is.
   */
  async restartProxy(): Promise<void> {
    await this.#proxy.stop(true);
    const s = canonicalSockets(this.runDir);
    this.#proxy = await ProxyProcess.start(this.proxyArgs, s.control, this.#logPath);
    this.#record();
    await proxyLinksUp(this.control, Date.now() + 30_000, () => this.proxyLog());
  }

  /**
   * QEMU 7.2's filter-redirector stops reading its indev for good once that peer has gone
   * (fixed upstream only in 2026), so after `colo-proxy compare` restarts the PVM's redire0 is
   * deaf to released frames. Deleting and re-adding it over QMP revives it; it must sit before
   * redire1 again (rx walks the filter list tail→head, and injected frames continue from there).
   */
  async readdRedire0(): Promise<void> {
    await this.pvm.qmp.execute("object-del", { id: "redire0" });
    await this.pvm.qmp.execute("object-add", {
      "qom-type": "filter-redirector",
      id: "redire0",
      netdev: "hn0",
      queue: "rx",
      indev: "compare_out",
      position: "id=redire1",
      insert: "before",
    });
    await waitConnected(this.pvm, "compare_out", Date.now() + 30_000);
  }

  get #logPath(): string {
    return path.join(this.runDir, "colo-proxy.log");
  }

  static start(o: CanonicalLabOptions): Promise<CanonicalLab> {
    return Teardown.guard((td) => CanonicalLab.#start(o, td));
  }

  static async #start(o: CanonicalLabOptions, td: Teardown): Promise<CanonicalLab> {
    const runDir = makeRunDir("colo-canon-");
    td.add(() => rmSync(runDir, { recursive: true, force: true }));
    const accel = o.accel ?? (await detectAccel());
    const nice = o.nice ?? TEST_NICE;
    const s = canonicalSockets(runDir);
    const proxyCompare = o.variant === "proxy-compare";

    // colo-proxy first: its client chardevs keep dialling until QEMU's servers are up, and its
    // servers are listening by the time the SVM's red0/red1 dial them.
    const proxyArgs = [
      proxyCompare ? "compare" : "rewrite",
      ...(proxyCompare ? canonicalCompareLines(runDir) : canonicalRewriteLines(runDir)),
      ...["--control", s.control, "--log-level", o.logLevel ?? "info"],
    ];
    const logPath = path.join(runDir, "colo-proxy.log");
    const proxyLog = () => (existsSync(logPath) ? readFileSync(logPath, "utf8").slice(-3000) : "");
    const proxy = await ProxyProcess.start(proxyArgs, s.control, logPath);
    td.add(() => proxy.stop());

    const ns = await createClientNetns(o.netnsPrefix ?? "colo-canon");
    td.add(() => ns.destroy());
    const boot = async (name: "pvm" | "svm"): Promise<QemuVm> => {
      const role = name === "pvm" ? "primary" : "secondary";
      const vm = await QemuVm.start({
        name,
        runDir,
        nice,
        ...(name === "pvm" ? { netns: ns.name } : {}),
        args: [
          ...machineArgs({ name, role, image, accel, runDir }),
          ...(name === "pvm"
            ? canonicalPrimaryNetArgs(runDir, ns.tap, !proxyCompare)
            : canonicalSecondaryNetArgs(runDir, proxyCompare)),
        ],
      });
      td.add(() => vm.kill());
      await vm.waitReady(BOOT_TIMEOUT_MS);
      return vm;
    };
    // The SVM's red0 dials the PVM's mirror0 (proxy-compare) with reconnect=1, so both boot at once.
    const [pvmR, svmR] = await Promise.allSettled([boot("pvm"), boot("svm")]);
    if (pvmR.status === "rejected") throw pvmR.reason;
    if (svmR.status === "rejected") throw svmR.reason;

    // Ready when colo-proxy sees every peer (QEMU's client chardevs redial once a second)...
    const linkDeadline = Date.now() + 30_000;
    await proxyLinksUp(proxy.control, linkDeadline, proxyLog);
    // ...and when QEMU's own client chardevs that colo-proxy cannot see are connected too: the
    // SVM's red0/red1 dial the PVM's mirror0/compare1 (proxy-compare), the PVM's colo-compare
    // dials its own compare0/compare_out (proxy-rewrite).
    const qemuClients: [QemuVm, string][] = proxyCompare
      ? [
          [svmR.value, "red0"],
          [svmR.value, "red1"],
        ]
      : [
          [pvmR.value, "compare0-0"],
          [pvmR.value, "compare_out0"],
        ];
    for (const [vm, id] of qemuClients) {
      await waitConnected(vm, id, linkDeadline);
    }
    const lab = new CanonicalLab({
      variant: o.variant,
      runDir,
      ns,
      pvm: pvmR.value,
      svm: svmR.value,
      proxy,
      proxyArgs,
      td,
    });
    // Teardown stops whichever colo-proxy runs by then (restartProxy replaces it).
    td.add(() => lab.#proxy.stop());
    return lab;
  }

  /** colo-proxy's log so far (JSON lines). */
  proxyLog(): string {
    const p = path.join(this.runDir, "colo-proxy.log");
    return existsSync(p) ? readFileSync(p, "utf8") : "";
  }

  stats(): Promise<StatsReply> {
    return this.control.execute<StatsReply>("query-stats");
  }

  /** Stops colo-proxy and both QEMUs, deletes the netns and run dir; never throws. */
  async close(): Promise<void> {
    await this.#td.run();
  }
}
