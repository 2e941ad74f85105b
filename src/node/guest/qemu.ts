/**
 * @module QEMU guests for COLO: command lines (the upstream COLO filter layout adapted for an
 * external proxy), a process handle with QMP and a serial console, and guaranteed teardown.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, openSync, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { ColoError } from "../../errors.ts";
import { QmpClient } from "./qmp.ts";

/** Addresses baked into the guest image's defaults and into the test topology. */
export const GUEST = {
  mac: "52:54:00:c0:10:01",
  ip4: "10.0.2.15",
  ip6: "fd00:c010::15",
  /** The client side of the link (tap in the client netns). */
  peerMac: "52:55:0a:00:02:02",
  peerIp4: "10.0.2.2",
  peerIp6: "fd00:c010::2",
} as const;

/** Text /init prints on ttyS0 once the NIC has carrier and every service listens. */
export const READY_MARKER = "COLO-GUEST-READY";

export interface GuestImage {
  kernel: string;
  initrd: string;
}

/** The image scripts/guest/build-image.sh writes under `<repo>/.cache/guest/`. */
export function guestImage(repoRoot: string): GuestImage {
  const dir = process.env.COLO_GUEST_DIR ?? path.join(repoRoot, ".cache", "guest");
  return { kernel: path.join(dir, "vmlinux"), initrd: path.join(dir, "initramfs.cpio.gz") };
}

export type Accel = "kvm" | "tcg";

export interface MachineOptions {
  name: string;
  role: "primary" | "secondary";
  image: GuestImage;
  accel: Accel;
  memMb?: number;
  runDir: string;
}

/** Socket and log paths of one guest inside the run dir. */
export function guestPaths(runDir: string, name: string) {
  return {
    qmp: path.join(runDir, `${name}.qmp`),
    console: path.join(runDir, `${name}.con`),
    consoleLog: path.join(runDir, `${name}.console.log`),
    stderr: path.join(runDir, `${name}.stderr.log`),
  };
}

/**
 * Machine, kernel and console arguments shared by PVM and SVM (they must match exactly for
 * migration). The console is a socket chardev with a logfile, so output is recorded even when
 * nobody is attached and a test can still type commands into the guest's shell.
 */
export function machineArgs(o: MachineOptions): string[] {
  const p = guestPaths(o.runDir, o.name);
  const append = [
    "console=ttyS0 quiet mitigations=off panic=-1 cryptomgr.notests tsc=reliable no_timer_check",
    `rcupdate.rcu_expedited=1 colo.role=${o.role} colo.ip=${GUEST.ip4}/24 colo.ip6=${GUEST.ip6}/64`,
    `colo.peer=${GUEST.peerIp4} colo.peermac=${GUEST.peerMac}`,
  ].join(" ");
  return [
    ...["-name", o.name, "-accel", o.accel, "-cpu", o.accel === "kvm" ? "host" : "max"],
    ...["-m", String(o.memMb ?? 128), "-smp", "1"],
    ...["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"],
    ...["-kernel", o.image.kernel, "-initrd", o.image.initrd, "-append", append],
    ...["-chardev", `socket,id=con0,path=${p.console},server=on,wait=off,logfile=${p.consoleLog}`],
    ...["-serial", "chardev:con0"],
    ...["-qmp", `unix:${p.qmp},server=on,wait=off`],
  ];
}

/** The guest NIC on netdev `hn0`; `romfile=` skips loading iPXE. */
export function nicArgs(): string[] {
  return ["-device", `virtio-net-pci,netdev=hn0,mac=${GUEST.mac},romfile=`];
}

/** A tap netdev (inside the client netns). vnet_hdr=off: the filters must see bare frames. */
export function tapNetdev(ifname: string): string[] {
  return ["-netdev", `tap,id=hn0,ifname=${ifname},script=no,downscript=no,vhost=off,vnet_hdr=off`];
}

/** A silent sink netdev: the SVM's netdev is only an attachment point for its filters. */
export function sinkNetdev(): string[] {
  return ["-netdev", "user,id=hn0,net=10.0.2.0/24,host=10.0.2.2,restrict=on"];
}

/** Socket paths of the COLO filter chardevs, as colo-proxy sees them. */
export function filterSockets(runDir: string) {
  const s = (n: string) => path.join(runDir, `${n}.sock`);
  return {
    /** primary: client→guest frames leaving QEMU (redirect form) or copied (mirror form). */
    pIn: s("p-in"),
    /** primary: frames colo-proxy injects towards the PVM (redirect form only). */
    pInInj: s("p-in-inj"),
    /** primary: PVM output, consumed by QEMU and handed to colo-proxy. */
    pOut: s("p-out"),
    /** primary: released output colo-proxy injects back towards the client. */
    pOutInj: s("p-out-inj"),
    /** secondary: client frames colo-proxy injects into the SVM. */
    sInInj: s("s-in-inj"),
    /** secondary: SVM output, consumed by QEMU and handed to colo-proxy. */
    sOut: s("s-out"),
    /** secondary with its own netdev: frames from the SVM's wire (net_in), used after failover. */
    sNetIn: s("s-net-in"),
    /** secondary with its own netdev: SVM output colo-proxy puts on the wire after failover. */
    sNetOut: s("s-net-out"),
  };
}

export type Inbound = "redirect" | "mirror";

function chardev(id: string, sockPath: string, qemuListens: boolean): string[] {
  return ["-chardev", `socket,id=${id},path=${sockPath}${qemuListens ? ",server=on,wait=off" : ""}`];
}

/**
 * The primary's filters. `mirror` is upstream COLO's form (filter-mirror copies client frames
 * for the secondary; the PVM gets them directly). `redirect` sends client frames through
 * colo-proxy too (p-in → proxy → p-in-inj), so the proxy sees and orders both legs.
 * Order matters: tx walks the filter list head→tail, rx tail→head, and an injected frame
 * continues from its redirector, so indev redirectors sit between the outdev ones.
 * By default colo-proxy listens and QEMU connects (QEMU then fails fast without a proxy and no
 * frame can slip past it); `qemuListens` flips that, as in upstream's examples.
 */
export function primaryFilterArgs(runDir: string, inbound: Inbound, qemuListens = false): string[] {
  const s = filterSockets(runDir);
  const q = qemuListens;
  if (inbound === "mirror") {
    return [
      ...chardev("p_in", s.pIn, q),
      ...chardev("p_out_inj", s.pOutInj, q),
      ...chardev("p_out", s.pOut, q),
      ...["-object", "filter-mirror,id=m0,netdev=hn0,queue=tx,outdev=p_in"],
      ...["-object", "filter-redirector,id=redire0,netdev=hn0,queue=rx,indev=p_out_inj"],
      ...["-object", "filter-redirector,id=redire1,netdev=hn0,queue=rx,outdev=p_out"],
    ];
  }
  return [
    ...chardev("p_in", s.pIn, q),
    ...chardev("p_in_inj", s.pInInj, q),
    ...chardev("p_out_inj", s.pOutInj, q),
    ...chardev("p_out", s.pOut, q),
    ...["-object", "filter-redirector,id=f_in,netdev=hn0,queue=tx,outdev=p_in"],
    ...["-object", "filter-redirector,id=f_in_inj,netdev=hn0,queue=tx,indev=p_in_inj"],
    ...["-object", "filter-redirector,id=f_out_inj,netdev=hn0,queue=rx,indev=p_out_inj"],
    ...["-object", "filter-redirector,id=f_out,netdev=hn0,queue=rx,outdev=p_out"],
  ];
}

/** One filter-redirector of a layout: its id, queue and chardev (indev injects, outdev takes). */
interface Redirector {
  id: string;
  queue: "tx" | "rx";
  dev: { indev: string } | { outdev: string };
}

/**
 * The secondary's filter layouts. `sink` (upstream f1/f2; no filter-rewriter: colo-proxy
 * rewrites): the SVM's netdev is only an attachment point. `wire`, when the SVM's netdev is a real
 * wire (the layout `colo-proxy secondary --help` shows): f0 takes every frame arriving from the
 * wire to net_in (colo-proxy drops them while COLO runs, so the SVM never sees a client frame
 * twice, and injects them after failover); f1 injects the mirrored client frames; f3 takes all
 * SVM output to guest_out (nothing reaches the wire directly); f2 puts what colo-proxy sends on
 * net_out onto the wire (after failover). tx walks f0→f1, rx walks f3→f0: injected frames
 * continue past the outdev redirectors. Chardevs are listed in creation order.
 */
function secondaryLayout(
  runDir: string,
  form: "sink" | "wire",
): { chardevs: [string, string][]; filters: Redirector[] } {
  const s = filterSockets(runDir);
  if (form === "sink") {
    return {
      chardevs: [
        ["s_in_inj", s.sInInj],
        ["s_out", s.sOut],
      ],
      filters: [
        { id: "f1", queue: "tx", dev: { indev: "s_in_inj" } },
        { id: "f2", queue: "rx", dev: { outdev: "s_out" } },
      ],
    };
  }
  return {
    chardevs: [
      ["s_net_in", s.sNetIn],
      ["s_in_inj", s.sInInj],
      ["s_net_out", s.sNetOut],
      ["s_out", s.sOut],
    ],
    filters: [
      { id: "f0", queue: "tx", dev: { outdev: "s_net_in" } },
      { id: "f1", queue: "tx", dev: { indev: "s_in_inj" } },
      { id: "f2", queue: "rx", dev: { indev: "s_net_out" } },
      { id: "f3", queue: "rx", dev: { outdev: "s_out" } },
    ],
  };
}

function layoutArgs(l: ReturnType<typeof secondaryLayout>, qemuListens: boolean): string[] {
  return [
    ...l.chardevs.flatMap(([id, p]) => chardev(id, p, qemuListens)),
    ...l.filters.flatMap((f) => {
      const [k, v] = Object.entries(f.dev)[0] as [string, string];
      return ["-object", `filter-redirector,id=${f.id},netdev=hn0,queue=${f.queue},${k}=${v}`];
    }),
  ];
}

/**
 * Hot-adds a layout over QMP in the same order as its arguments (filters are appended to the
 * netdev's list), to a running or paused QEMU.
 */
async function attachLayout(qmp: QmpClient, l: ReturnType<typeof secondaryLayout>): Promise<void> {
  for (const [id, p] of l.chardevs) {
    await qmp.execute("chardev-add", {
      id,
      backend: { type: "socket", data: { addr: { type: "unix", data: { path: p } }, server: false } },
    });
  }
  for (const f of l.filters) {
    await qmp.execute("object-add", {
      "qom-type": "filter-redirector",
      id: f.id,
      netdev: "hn0",
      queue: f.queue,
      ...f.dev,
    });
  }
}

/** The secondary's filters on a sink netdev (upstream f1/f2). */
export function secondaryFilterArgs(runDir: string, qemuListens = false): string[] {
  return layoutArgs(secondaryLayout(runDir, "sink"), qemuListens);
}

/** The secondary's filters on a real wire: net_in/net_out as well (see secondaryLayout). */
export function secondaryNetFilterArgs(runDir: string): string[] {
  return layoutArgs(secondaryLayout(runDir, "wire"), false);
}

/**
 * Attaches the secondary's filters to a running (or paused) QEMU over QMP, in the same order as
 * secondaryFilterArgs. Used after a checkpoint: the new SVM connects to colo-proxy only once the
 * old SVM is gone, so the proxy never sees two secondaries at once.
 */
export function attachSecondaryFilters(qmp: QmpClient, runDir: string): Promise<void> {
  return attachLayout(qmp, secondaryLayout(runDir, "sink"));
}

/** The same for secondaryNetFilterArgs' layout (a fresh wired SVM after a checkpoint). */
export function attachSecondaryNetFilters(qmp: QmpClient, runDir: string): Promise<void> {
  return attachLayout(qmp, secondaryLayout(runDir, "wire"));
}

export interface StartOptions {
  name: string;
  runDir: string;
  args: string[];
  /** Run QEMU inside this network namespace (`ip netns exec`), e.g. to open a tap there. */
  netns?: string;
  qemuBinary?: string;
  /** Start QEMU under `nice -n <nice>` (tests: leave CPU to timing-sensitive neighbours). */
  nice?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every QEMU started by this process, killed synchronously if the process exits abruptly. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const c of live) c.kill("SIGKILL");
  });
}

/** One running QEMU: its process, QMP session and console. */
export class QemuVm {
  readonly name: string;
  readonly paths: ReturnType<typeof guestPaths>;
  readonly exited: Promise<number | null>;
  #child: ChildProcess;
  #exitCode: number | null | undefined;
  #qmp: QmpClient | undefined;
  #console: SerialConsole | undefined;

  private constructor(name: string, runDir: string, child: ChildProcess) {
    this.name = name;
    this.paths = guestPaths(runDir, name);
    this.#child = child;
    live.add(child);
    this.exited = new Promise((resolve) => {
      child.once("exit", (code) => {
        live.delete(child);
        this.#exitCode = code;
        resolve(code);
      });
      child.once("error", () => {
        live.delete(child);
        this.#exitCode = -1;
        resolve(-1);
      });
    });
  }

  /** Spawns QEMU and connects its QMP socket. Rejects (with QEMU's stderr) if QEMU dies first. */
  static async start(o: StartOptions): Promise<QemuVm> {
    installExitHook();
    const bin = o.qemuBinary ?? "qemu-system-x86_64";
    const p = guestPaths(o.runDir, o.name);
    const err = openSync(p.stderr, "w");
    const qemu = o.nice === undefined ? [bin, ...o.args] : ["nice", "-n", String(o.nice), bin, ...o.args];
    const [cmd, ...argv] = o.netns ? ["ip", "netns", "exec", o.netns, ...qemu] : qemu;
    const child = spawn(cmd as string, argv, { stdio: ["ignore", err, err] });
    const vm = new QemuVm(o.name, o.runDir, child);
    try {
      vm.#qmp = await QmpClient.connect(p.qmp, 15_000, () => vm.running);
    } catch (e) {
      await vm.kill();
      throw vm.#exitError(`${(e as Error).message}`);
    }
    return vm;
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get running(): boolean {
    return this.#exitCode === undefined;
  }

  get qmp(): QmpClient {
    if (!this.#qmp) throw new ColoError("COLO_ERR_QMP", `${this.name}: no QMP session`);
    return this.#qmp;
  }

  /** QEMU's stderr so far (for error messages). */
  stderr(): string {
    return existsSync(this.paths.stderr) ? readFileSync(this.paths.stderr, "utf8") : "";
  }

  /** Everything the guest printed on its serial console so far. */
  consoleLog(): string {
    return existsSync(this.paths.consoleLog) ? readFileSync(this.paths.consoleLog, "latin1") : "";
  }

  /** Waits until the guest's /init printed the ready marker (only after a real boot). */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.consoleLog().includes(READY_MARKER)) {
      if (!this.running) throw this.#exitError("exited before it was ready");
      if (Date.now() > deadline) {
        throw new ColoError("COLO_ERR_GUEST_TIMEOUT", `${this.name}: not ready after ${timeoutMs} ms`, {
          console: this.consoleLog().slice(-2000),
        });
      }
      await sleep(25);
    }
  }

  /** The guest's serial console shell (one connection, opened on first use). */
  async console(): Promise<SerialConsole> {
    this.#console ??= await SerialConsole.connect(this.paths.console);
    return this.#console;
  }

  /** Graceful `quit`, then SIGKILL if QEMU is still there after `graceMs`. Never throws. */
  async kill(graceMs = 2000): Promise<void> {
    this.#console?.close();
    if (this.running && this.#qmp && !this.#qmp.closed) {
      await this.#qmp.execute("quit", undefined, graceMs).catch(() => {});
    }
    this.#qmp?.close();
    if (this.running) {
      const t = setTimeout(() => this.#child.kill("SIGKILL"), graceMs);
      if (!this.#qmp) this.#child.kill("SIGKILL");
      await this.exited;
      clearTimeout(t);
    }
  }

  /** SIGKILL at once, as when its host dies: no `quit`, nothing flushed. Never throws. */
  async crash(): Promise<void> {
    this.#console?.close();
    this.#qmp?.close();
    if (this.running) {
      this.#child.kill("SIGKILL");
      await this.exited;
    }
  }

  #exitError(what: string): ColoError {
    return new ColoError("COLO_ERR_QEMU_EXITED", `${this.name}: ${what}`, {
      exitCode: this.#exitCode,
      stderr: this.stderr().slice(-2000),
    });
  }
}

/**
 * The busybox shell on a guest's ttyS0. `run` brackets the command with markers the shell has to
 * compute (`$((n))`), so the terminal's echo of the typed line can never be taken for output.
 */
export class SerialConsole {
  #sock: net.Socket;
  #buf = "";
  #seq = 1000;
  #waiters: (() => void)[] = [];
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(sock: net.Socket) {
    this.#sock = sock;
    sock.setEncoding("latin1");
    sock.on("data", (d: string) => {
      this.#buf += d.replace(/\r/g, "");
      if (this.#buf.length > 1 << 20) this.#buf = this.#buf.slice(-(1 << 19)); // bounded
      for (const w of this.#waiters.splice(0)) w();
    });
    sock.on("error", () => {});
  }

  static async connect(sockPath: string, timeoutMs = 5000): Promise<SerialConsole> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const s = await new Promise<net.Socket>((resolve, reject) => {
          const c = net.connect(sockPath);
          c.once("connect", () => resolve(c));
          c.once("error", reject);
        });
        return new SerialConsole(s);
      } catch (e) {
        if (Date.now() > deadline) throw new ColoError("COLO_ERR_GUEST_TIMEOUT", `console ${sockPath}: ${e}`);
        await sleep(20);
      }
    }
  }

  /** Runs a shell command in the guest and returns its output (stdout+stderr). Serialised. */
  run(command: string, timeoutMs = 10_000): Promise<string> {
    const next = this.#queue.then(() => this.#run(command, timeoutMs));
    this.#queue = next.catch(() => {});
    return next;
  }

  async #run(command: string, timeoutMs: number): Promise<string> {
    const n = this.#seq++;
    const begin = `@@B${n}@@\n`;
    const end = `@@E${n}@@`;
    this.#sock.write(`echo @@B$((${n}))@@; ${command} 2>&1; echo @@E$((${n}))@@\n`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const b = this.#buf.indexOf(begin);
      const e = b >= 0 ? this.#buf.indexOf(end, b) : -1;
      if (e >= 0) {
        const out = this.#buf.slice(b + begin.length, e);
        this.#buf = this.#buf.slice(e + end.length);
        return out;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ColoError("COLO_ERR_GUEST_TIMEOUT", `console command timed out: ${command}`, {
          output: this.#buf.slice(-1000),
        });
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.#sock.destroy();
  }
}
