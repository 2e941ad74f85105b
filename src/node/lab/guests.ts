/**
 * @module The guest lab shared by `colo-proxy demo` and the end-to-end tests: what is missing to run it, which accelerator really works,
 * run directories, booting a PVM/SVM behind COLO filters, the client netns, and teardown that
 * runs even when a test fails.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import {
  type Accel,
  GUEST,
  type GuestImage,
  guestImage,
  type Inbound,
  machineArgs,
  nicArgs,
  primaryFilterArgs,
  QemuVm,
  secondaryFilterArgs,
  secondaryNetFilterArgs,
  sinkNetdev,
  tapNetdev,
} from "../guest/qemu.ts";
import type { ClientOp, ClientResult } from "./client-script.ts";
import type { ClientNetns } from "./netns.ts";

const run = promisify(execFile);
export const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
export const image: GuestImage = guestImage(repoRoot);
export { GUEST };

/**
 * Lab QEMUs run niced: a TCG guest keeps a core busy while booting, and tests running beside
 * it (the suite runs files in parallel) may be timing-sensitive. Ours only have generous timeouts.
 */
export const TEST_NICE = 10;
const CLIENT_SCRIPT = path.join(repoRoot, "src/node/lab/client-script.ts");

/** Generous: CPU is shared and TCG is slow; nothing here is a timing assertion. */
export const BOOT_TIMEOUT_MS = 90_000;

function has(cmd: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** One missing prerequisite of the lab and how to get it. */
export interface Missing {
  what: string;
  fix: string;
}

/** Everything the lab lacks here (empty when it can run). */
export function labMissing(opts: { netns?: boolean } = {}): Missing[] {
  const out: Missing[] = [];
  if (process.platform !== "linux") return [{ what: "Linux", fix: "run on Linux (QEMU, tap, netns)" }];
  if (!has("qemu-system-x86_64"))
    out.push({
      what: "qemu-system-x86_64",
      fix: "sudo apt-get install qemu-system-x86 (or: sudo npm run setup)",
    });
  if (!existsSync(image.kernel) || !existsSync(image.initrd)) {
    out.push({
      what: `guest image (${image.kernel}, ${image.initrd})`,
      fix: "sudo bash scripts/guest/build-image.sh (or: sudo npm run setup)",
    });
  }
  if (opts.netns) {
    if (process.getuid?.() !== 0)
      out.push({ what: "root", fix: "run as root: network namespace and tap device (sudo npm run demo)" });
    if (!has("ip")) out.push({ what: "ip (iproute2)", fix: "sudo apt-get install iproute2" });
    if (!has("busybox"))
      out.push({ what: "busybox (the client's ping)", fix: "sudo apt-get install busybox-static" });
  }
  return out;
}

/** Why guest tests cannot run here, or undefined when they can. */
export function guestSkipReason(opts: { netns?: boolean } = {}): string | undefined {
  const m = labMissing(opts);
  return m.length === 0 ? undefined : m.map((x) => `${x.what} missing (${x.fix})`).join("; ");
}

let accelCache: Accel | undefined;

/**
 * KVM if /dev/kvm really boots the guest, else TCG. A present /dev/kvm proves nothing (kvm_pvm
 * hosts hang after the firmware), so this boots the image once with KVM and a short timeout. The
 * answer is cached in .cache/guest/accel.json per host boot and image. COLO_GUEST_ACCEL forces it.
 */
export async function detectAccel(): Promise<Accel> {
  const forced = process.env.COLO_GUEST_ACCEL;
  if (forced === "kvm" || forced === "tcg") return forced;
  if (accelCache) return accelCache;
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    accelCache = "tcg";
    return accelCache;
  }
  const cacheFile = path.join(path.dirname(image.kernel), "accel.json");
  const key = `${readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()}:${safeRead(path.join(path.dirname(image.kernel), "inputs.sha256")).trim()}`;
  try {
    const c = JSON.parse(readFileSync(cacheFile, "utf8")) as { key: string; accel: Accel };
    if (c.key === key) {
      accelCache = c.accel;
      return accelCache;
    }
  } catch {}
  const dir = makeRunDir("colo-kvm-probe-");
  let vm: QemuVm | undefined;
  let accel: Accel = "tcg";
  try {
    vm = await QemuVm.start({
      name: "probe",
      runDir: dir,
      nice: TEST_NICE,
      args: [
        ...machineArgs({ name: "probe", role: "primary", image, accel: "kvm", runDir: dir }),
        ...sinkNetdev(),
        ...nicArgs(),
      ],
    });
    await vm.waitReady(15_000);
    accel = "kvm";
  } catch {
    accel = "tcg";
  } finally {
    await vm?.kill(500);
    rmSync(dir, { recursive: true, force: true });
  }
  try {
    writeFileSync(cacheFile, JSON.stringify({ key, accel }));
  } catch {}
  accelCache = accel;
  return accel;
}

function safeRead(p: string): string {
  try {
    return readFileSync(p, "utf8");
  } catch {
    return "";
  }
}

/** A fresh private directory for one test's sockets and logs (short path: sun_path is 108 bytes). */
export function makeRunDir(prefix = "colo-e2e-"): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * Cleanup actions run in reverse order; each one runs even if an earlier one fails. Register
 * every resource right after creating it, and call `run()` from the test's `after`/finally.
 */
export class Teardown {
  #fns: (() => unknown)[] = [];
  add(fn: () => unknown): void {
    this.#fns.push(fn);
  }
  async run(): Promise<void> {
    for (const fn of this.#fns.splice(0).reverse()) {
      try {
        await fn();
      } catch {}
    }
  }

  /** Runs `build` with a fresh Teardown; if it throws, everything it had started is undone. */
  static async guard<T>(build: (td: Teardown) => Promise<T>): Promise<T> {
    const td = new Teardown();
    try {
      return await build(td);
    } catch (e) {
      await td.run();
      throw e;
    }
  }
}

export interface BootOptions {
  runDir: string;
  accel: Accel;
  memMb?: number;
  /** `nice -n` for QEMU (default TEST_NICE). */
  nice?: number;
}

/** Boots the PVM on the client netns's tap, behind the primary's filters; waits for ready. */
export async function bootPrimary(
  o: BootOptions & { netns: ClientNetns; inbound?: Inbound; filters?: boolean },
): Promise<QemuVm> {
  const name = "pvm";
  const vm = await QemuVm.start({
    name,
    runDir: o.runDir,
    netns: o.netns.name,
    nice: o.nice ?? TEST_NICE,
    args: [
      ...machineArgs({ name, role: "primary", image, accel: o.accel, runDir: o.runDir, memMb: o.memMb }),
      ...tapNetdev(o.netns.tap),
      ...nicArgs(),
      ...(o.filters === false ? [] : primaryFilterArgs(o.runDir, o.inbound ?? "redirect")),
    ],
  });
  await readyOrKill(vm);
  return vm;
}

/**
 * Boots an SVM behind the secondary's filters; waits for ready. Its netdev is a silent sink, or
 * with `netns` (created with `secondaryTap`) that netns's `tap-s` behind the four-redirector
 * layout of secondaryNetFilterArgs (net_in/net_out for after failover).
 */
export async function bootSecondary(
  o: BootOptions & { filters?: boolean; name?: string; netns?: ClientNetns },
): Promise<QemuVm> {
  const name = o.name ?? "svm";
  const stap = o.netns?.secondaryTap;
  if (o.netns !== undefined && stap === undefined)
    throw new Error("bootSecondary: netns has no secondary tap");
  const filters = stap !== undefined ? secondaryNetFilterArgs(o.runDir) : secondaryFilterArgs(o.runDir);
  const vm = await QemuVm.start({
    name,
    runDir: o.runDir,
    ...(o.netns ? { netns: o.netns.name } : {}),
    nice: o.nice ?? TEST_NICE,
    args: [
      ...machineArgs({ name, role: "secondary", image, accel: o.accel, runDir: o.runDir, memMb: o.memMb }),
      ...(stap !== undefined ? tapNetdev(stap) : sinkNetdev()),
      ...nicArgs(),
      ...(o.filters === false ? [] : filters),
    ],
  });
  await readyOrKill(vm);
  return vm;
}

async function readyOrKill(vm: QemuVm): Promise<void> {
  try {
    await vm.waitReady(BOOT_TIMEOUT_MS);
  } catch (e) {
    await vm.kill(500);
    throw e;
  }
}

/** Runs client operations from inside the netns (one process for all of them). */
export async function runClient(ns: ClientNetns, ops: ClientOp[]): Promise<ClientResult[]> {
  const script = CLIENT_SCRIPT;
  const { stdout } = await run(
    "ip",
    ["netns", "exec", ns.name, process.execPath, "--import", "tsx", script, JSON.stringify(ops)],
    { cwd: repoRoot, timeout: 120_000, maxBuffer: 16 << 20 },
  );
  return JSON.parse(stdout) as ClientResult[];
}

/**
 * A long-lived client process in the netns: requests run one at a time, and TCP connections
 * opened with `open` stay up between requests (e.g. across a checkpoint).
 */
export class ClientSession {
  #child: ChildProcess;
  #buf = "";
  #waiters: ((r: ClientResult) => void)[] = [];

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (d: string) => {
      this.#buf += d;
      for (let nl = this.#buf.indexOf("\n"); nl >= 0; nl = this.#buf.indexOf("\n")) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        this.#waiters.shift()?.(JSON.parse(line) as ClientResult);
      }
    });
    child.on("exit", () => {
      for (const w of this.#waiters.splice(0)) w({ ok: false, error: "client session exited" });
    });
  }

  static start(ns: ClientNetns): ClientSession {
    const script = CLIENT_SCRIPT;
    const child = spawn(
      "ip",
      ["netns", "exec", ns.name, process.execPath, "--import", "tsx", script, "--session"],
      {
        cwd: repoRoot,
        stdio: ["pipe", "pipe", "inherit"],
      },
    );
    return new ClientSession(child);
  }

  request(op: ClientOp): Promise<ClientResult> {
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#child.stdin?.write(`${JSON.stringify(op)}\n`);
    });
  }

  close(): void {
    this.#child.stdin?.end();
    setTimeout(() => this.#child.kill("SIGKILL"), 2000).unref();
  }
}

/** The body of the guest's deterministic HTTP responder (/ → 8 lines, /big → 1600 lines). */
export function deterministicBody(lines: number): string {
  let s = "";
  for (let i = 1; i <= lines; i++) s += `line ${String(i).padStart(5, "0")} colo-proxy deterministic body\n`;
  return s;
}
