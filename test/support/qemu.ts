/**
 * @module Shared QEMU test harness: run qemu-system-x86_64 with no guest (`-M none`) around
 * chardev-based objects (colo-compare, filter-mirror/redirector/rewriter), talk QMP to it, and
 * drive its chardev sockets with length-framed frames (4-byte BE length, optional 4-byte BE
 * vnet-header length, frame).
 *
 * Every socket lives in a fresh mkdtemp directory (UNIX sockets, never fixed TCP ports) so tests
 * run in parallel; every process and socket is registered for cleanup and killed when the test
 * ends (pass the node:test context) or when the test process exits.
 *
 * The frame decoder here is deliberately independent of src/wire so a framing bug in the product
 * cannot hide itself in differential tests.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";

export const QEMU_BIN = "qemu-system-x86_64";

let qemuProbe: string | undefined | null = null;

/**
 * Why QEMU tests cannot run here, or undefined when they can. Checks the binary exists and
 * knows colo-compare. Cached.
 */
export function qemuSkipReason(): string | undefined {
  if (qemuProbe !== null) return qemuProbe;
  const r = spawnSync(QEMU_BIN, ["-object", "help"], { encoding: "utf8", timeout: 10_000 });
  if (r.error !== undefined) {
    qemuProbe = `${QEMU_BIN} not found (${r.error.message}); scripts/setup.sh installs it (apt qemu-system-x86)`;
  } else if (!`${r.stdout}${r.stderr}`.includes("colo-compare")) {
    qemuProbe = `${QEMU_BIN} has no colo-compare object`;
  } else {
    qemuProbe = undefined;
  }
  return qemuProbe;
}

/** Minimal view of node:test's TestContext that the helpers need. */
export interface TestCtx {
  skip(message?: string): void;
  after(fn: () => unknown): void;
}

/** Skips `t` with a printed reason when QEMU is missing; returns true when skipped. */
export function skipWithoutQemu(t: TestCtx): boolean {
  const reason = qemuSkipReason();
  if (reason === undefined) return false;
  process.stderr.write(`# skipping QEMU test: ${reason}\n`);
  t.skip(reason);
  return true;
}

// ---------------------------------------------------------------------------------------------
// cleanup registry

const cleanups = new Set<() => void>();
let exitHookInstalled = false;

function registerCleanup(fn: () => void, t?: TestCtx): () => void {
  const once = () => {
    if (!cleanups.delete(once)) return;
    try {
      fn();
    } catch {
      // best effort: cleanup must never throw into a test
    }
  };
  cleanups.add(once);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const c of [...cleanups]) c();
    });
  }
  t?.after(once);
  return once;
}

/** A fresh temporary directory, removed on cleanup. */
export function tempDir(t?: TestCtx, prefix = "colo-test-"): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  registerCleanup(() => rmSync(dir, { recursive: true, force: true }), t);
  return dir;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

class DeadlineError extends Error {}

/** `p`, or a rejection once `ms` passed without it settling. */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Polls `check` every `stepMs` until it returns true or `timeoutMs` passes; returns the last
 * result. Give the assert.ok around it a message: without one, a failing assert.ok makes Node
 * search the (TypeScript) source for the expression's text with a JavaScript parser, which took
 * 24 s to minutes per failure in these files.
 */
export async function waitUntil(check: () => boolean, timeoutMs: number, stepMs = 5): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    if (check()) return true;
    if (performance.now() >= end) return false;
    await sleep(stepMs);
  }
}

// ---------------------------------------------------------------------------------------------
// child processes

export interface Proc {
  child: ChildProcess;
  /** Everything the process wrote to stdout / stderr so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves with the exit code (or signal name) once the process exited. */
  readonly exited: Promise<number | string>;
  /** Exit code / signal once exited, undefined while running. */
  readonly exitStatus: number | string | undefined;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Spawns a process that is killed when the test (or the test process) ends. */
export function spawnProc(cmd: string, args: string[], t?: TestCtx, env?: NodeJS.ProcessEnv): Proc {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env: env ?? process.env });
  let out = "";
  let err = "";
  let status: number | string | undefined;
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const exited = new Promise<number | string>((resolve) => {
    child.on("exit", (code, signal) => {
      status = code ?? signal ?? -1;
      resolve(status);
    });
    child.on("error", (e) => {
      err += String(e);
      status = -1;
      resolve(-1);
    });
  });
  const kill = registerCleanup(() => {
    if (status === undefined) child.kill("SIGKILL");
  }, t);
  return {
    child,
    get stdout() {
      return out;
    },
    get stderr() {
      return err;
    },
    exited,
    get exitStatus() {
      return status;
    },
    async stop(graceMs = 2000) {
      if (status === undefined) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
      }
      kill();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// QMP

/** A QMP client over a UNIX socket: `execute` sends one command and resolves with its `return`. */
export class Qmp {
  readonly events: Array<{ event: string; data?: unknown; at: number }> = [];
  private buf = "";
  private pending: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  private greeting: Promise<void>;

  private constructor(private readonly sock: net.Socket) {
    let greeted: () => void = () => {};
    this.greeting = new Promise((r) => {
      greeted = r;
    });
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf("\n"); nl >= 0; nl = this.buf.indexOf("\n")) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (line === "") continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ("QMP" in msg) greeted();
        else if ("event" in msg)
          this.events.push({ event: String(msg.event), data: msg.data, at: performance.now() });
        else {
          const p = this.pending.shift();
          if (p === undefined) continue;
          if ("error" in msg) p.reject(new Error(`QMP error: ${JSON.stringify(msg.error)}`));
          else p.resolve(msg.return);
        }
      }
    });
    const fail = () => {
      for (const p of this.pending.splice(0)) p.reject(new Error("QMP connection closed"));
    };
    sock.on("close", fail);
    sock.on("error", fail);
  }

  /** Connects (retrying while the socket is not there yet) and negotiates capabilities. */
  static async connect(sockPath: string, timeoutMs = 30_000): Promise<Qmp> {
    const sock = await connectRetry(sockPath, timeoutMs);
    const qmp = new Qmp(sock);
    try {
      await withDeadline(qmp.greeting, timeoutMs, "QMP greeting");
      await qmp.execute("qmp_capabilities");
    } catch (e) {
      sock.destroy();
      throw e;
    }
    return qmp;
  }

  /**
   * Sends one command; rejects when QEMU does not answer within `timeoutMs` (a hung QEMU must fail
   * the test, never hang the run). A timed-out command closes the connection: later replies could
   * no longer be matched to their commands.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    const reply = new Promise<T>((resolve, reject) => {
      this.pending.push({ resolve: resolve as (v: unknown) => void, reject });
      this.sock.write(
        `${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`,
      );
    });
    return withDeadline(reply, timeoutMs, `QMP ${command}`).catch((e: unknown) => {
      if (e instanceof DeadlineError) this.sock.destroy();
      throw e;
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

async function connectRetry(sockPath: string, timeoutMs: number): Promise<net.Socket> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(sockPath);
        s.once("connect", () => {
          s.removeListener("error", reject);
          resolve(s);
        });
        s.once("error", reject);
      });
    } catch (e) {
      if (performance.now() >= end) throw e;
      await sleep(10);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// QEMU process

export interface QemuOptions {
  /** Chardev ids to create as UNIX-socket servers (`path=<dir>/<id>.sock,server=on,wait=off`). */
  chardevs?: string[];
  /** `-object` values, e.g. `colo-compare,id=c,primary_in=pri,...`. `iothread=` is not added for you. */
  objects?: string[];
  /** Any further raw arguments (e.g. `-netdev ...`). */
  args?: string[];
  /** Directory for the sockets; a fresh temp dir when omitted. */
  dir?: string;
}

export interface Qemu {
  proc: Proc;
  qmp: Qmp;
  dir: string;
  /** Path of the UNIX socket of chardev `id`. */
  sock(id: string): string;
  /**
   * Waits until QEMU reports the chardevs as connected (its filename loses the `disconnected:`
   * prefix). Use after connecting clients, before sending: frames released to an output with no
   * accepted client are lost.
   */
  waitConnected(ids: string[], timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** The QEMU arguments that run chardev objects with no guest. */
export function qemuArgs(dir: string, opts: QemuOptions): string[] {
  const args = ["-M", "none", "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none"];
  for (const id of opts.chardevs ?? []) {
    args.push("-chardev", `socket,id=${id},path=${path.join(dir, `${id}.sock`)},server=on,wait=off`);
  }
  for (const o of opts.objects ?? []) args.push("-object", o);
  args.push(...(opts.args ?? []));
  args.push("-qmp", `unix:${path.join(dir, "qmp.sock")},server=on,wait=off`);
  return args;
}

/** Each thread of `pid` with its state and kernel wait channel, for a stall report. */
function threadStates(pid: number | undefined): string {
  if (pid === undefined) return "?";
  try {
    return readdirSync(`/proc/${pid}/task`)
      .map((tid) => {
        const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
        const state = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8").split(") ")[1]?.[0] ?? "?";
        const wchan = readFileSync(`/proc/${pid}/task/${tid}/wchan`, "utf8").trim();
        return `${comm}:${state}:${wchan || "-"}`;
      })
      .join(" ");
  } catch {
    return "unreadable";
  }
}

/** QMP startup attempts: a freshly spawned QEMU rarely (about once in several full CI runs, never
 * in 550 back-to-back starts, loaded or not) greets but then does not answer qmp_capabilities;
 * such a process is reported (threads and wait channels) and replaced once. */
const QMP_START_ATTEMPTS = 2;

/** Starts QEMU and waits until QMP answers. Killed when `t` ends. */
export async function startQemu(opts: QemuOptions, t?: TestCtx): Promise<Qemu> {
  const dir = opts.dir ?? tempDir(t, "colo-qemu-");
  let proc: Proc | undefined;
  let qmp: Qmp | undefined;
  for (let attempt = 1; qmp === undefined; attempt++) {
    const p = spawnProc(QEMU_BIN, qemuArgs(dir, opts), t);
    proc = p;
    try {
      qmp = await Promise.race([
        Qmp.connect(path.join(dir, "qmp.sock"), 20_000),
        p.exited.then((s) => {
          throw new Error(`qemu exited (${s}) before QMP was ready: ${p.stderr.trim()}`);
        }),
      ]);
    } catch (e) {
      const stalled = p.exitStatus === undefined;
      const report = stalled ? ` (threads: ${threadStates(p.child.pid)})` : "";
      await p.stop();
      if (!stalled || attempt >= QMP_START_ATTEMPTS) {
        throw new Error(`${(e as Error).message}${report}`);
      }
      console.log(`# qemu QMP stalled at startup, attempt ${attempt}: ${(e as Error).message}${report}`);
    }
  }
  return readyQemu(dir, proc as Proc, qmp, t);
}

function readyQemu(dir: string, proc: Proc, qmp: Qmp, t?: TestCtx): Qemu {
  registerCleanup(() => qmp.close(), t);
  const sock = (id: string) => path.join(dir, `${id}.sock`);
  return {
    proc,
    qmp,
    dir,
    sock,
    async waitConnected(ids, timeoutMs = 20_000) {
      const end = performance.now() + timeoutMs;
      for (;;) {
        const list = await qmp.execute<Array<{ label: string; filename: string }>>("query-chardev");
        const pending = ids.filter((id) => {
          const c = list.find((x) => x.label === id);
          return c === undefined || c.filename.startsWith("disconnected:");
        });
        if (pending.length === 0) return;
        if (performance.now() >= end) throw new Error(`chardevs not connected: ${pending.join(", ")}`);
        await sleep(5);
      }
    },
    async stop() {
      qmp.close();
      await proc.stop();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// framed chardev peers

export interface ReceivedFrame {
  /** Frame bytes (after the length / vnet-length words). */
  data: Buffer;
  /** The vnet-length word, or -1 when the peer does not use vnet headers. */
  vnetLen: number;
  /** performance.now() when the frame was completely received. */
  at: number;
}

/** Encodes one frame for a chardev stream. `vnetLen` undefined means no vnet word. */
export function encodeFrame(frame: Uint8Array, vnetLen?: number): Buffer {
  const hdr = vnetLen === undefined ? 4 : 8;
  const out = Buffer.allocUnsafe(hdr + frame.length);
  out.writeUInt32BE(frame.length, 0);
  if (vnetLen !== undefined) out.writeUInt32BE(vnetLen, 4);
  out.set(frame, hdr);
  return out;
}

/**
 * A client connection to a framed chardev server: sends frames and collects every frame it
 * receives, in order, with timestamps.
 */
export class FramedPeer {
  readonly frames: ReceivedFrame[] = [];
  closed = false;
  private pending: Buffer = Buffer.alloc(0);
  private changed: Array<() => void> = [];

  constructor(
    readonly sock: net.Socket,
    readonly vnetHdr: boolean,
  ) {
    sock.on("data", (d: Buffer) => this.onData(d));
    sock.on("close", () => {
      this.closed = true;
      this.wake();
    });
    sock.on("error", () => {});
  }

  /** Connects to a UNIX socket path (or `host:port`), retrying while it does not exist yet. */
  static async connect(
    address: string,
    opts: { vnetHdr?: boolean; timeoutMs?: number } = {},
    t?: TestCtx,
  ): Promise<FramedPeer> {
    let sock: net.Socket;
    const m = /^(.*):(\d+)$/.exec(address);
    if (m !== null && !address.includes("/")) {
      sock = net.connect(Number(m[2]), m[1]);
      const s = sock;
      await withDeadline(
        new Promise<void>((resolve, reject) => {
          s.once("connect", resolve);
          s.once("error", reject);
        }),
        opts.timeoutMs ?? 5000,
        `connect ${address}`,
      ).catch((e: unknown) => {
        s.destroy();
        throw e;
      });
    } else {
      sock = await connectRetry(address, opts.timeoutMs ?? 5000);
    }
    sock.setNoDelay?.(true);
    const peer = new FramedPeer(sock, opts.vnetHdr ?? false);
    registerCleanup(() => sock.destroy(), t);
    return peer;
  }

  private wake(): void {
    for (const w of this.changed.splice(0)) w();
  }

  private onData(d: Buffer): void {
    this.pending = this.pending.length === 0 ? d : Buffer.concat([this.pending, d]);
    const hdr = this.vnetHdr ? 8 : 4;
    let off = 0;
    while (this.pending.length - off >= hdr) {
      const len = this.pending.readUInt32BE(off);
      if (this.pending.length - off - hdr < len) break;
      const vnet = this.vnetHdr ? this.pending.readUInt32BE(off + 4) : -1;
      const data = Buffer.from(this.pending.subarray(off + hdr, off + hdr + len));
      this.frames.push({ data, vnetLen: vnet, at: performance.now() });
      off += hdr + len;
    }
    if (off > 0) this.pending = this.pending.subarray(off);
    this.wake();
  }

  /** Sends one frame; vnetLen defaults to 0 on vnet streams and is ignored on plain ones. */
  send(frame: Uint8Array, vnetLen = 0): boolean {
    return this.sock.write(encodeFrame(frame, this.vnetHdr ? vnetLen : undefined));
  }

  /** Sends raw bytes (malformed-input tests). */
  sendRaw(bytes: Uint8Array): boolean {
    return this.sock.write(bytes);
  }

  /**
   * Resolves once all written data has been handed to the kernel, the socket closed (a peer that
   * died never drains), or `timeoutMs` passed (a deaf peer never reads).
   */
  flush(timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve) => {
      if (this.sock.writableLength === 0 || this.sock.destroyed) return resolve();
      const done = () => {
        clearTimeout(timer);
        this.sock.off("drain", done);
        this.sock.off("close", done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.sock.once("drain", done);
      this.sock.once("close", done);
    });
  }

  /** Waits until at least `n` frames arrived; returns whether they did within `timeoutMs`. */
  async waitFrames(n: number, timeoutMs: number): Promise<boolean> {
    const end = performance.now() + timeoutMs;
    while (this.frames.length < n && !this.closed) {
      const left = end - performance.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.changed.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.frames.length >= n;
  }

  /**
   * Waits until no frame arrived for `quietMs` (at most `maxMs`). Only for catching *extra*
   * frames after the expected ones arrived (waitFrames): on a loaded machine a short quiet window
   * can pass before anything arrived at all.
   */
  async waitQuiet(quietMs: number, maxMs = 10_000): Promise<void> {
    const end = performance.now() + maxMs;
    let count = -1;
    while (count !== this.frames.length && performance.now() < end) {
      count = this.frames.length;
      await sleep(quietMs);
    }
  }

  close(): void {
    this.sock.destroy();
  }
}
