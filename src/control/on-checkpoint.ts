/**
 * @module `--on-checkpoint CMD`: runs CMD through /bin/sh on checkpoint requests, with the
 * request's details in COLO_* environment variables (so a one-line shell script can page
 * someone, save a pcap, or annotate a graph).
 *
 * Rate limit: at most one run at a time, and runs start at least `minIntervalMs` apart.
 * Requests arriving meanwhile are not lost: the latest one runs when allowed, with
 * COLO_COALESCED telling how many earlier ones it stands for. A failing, crashing or hanging
 * hook is logged (code COLO_ERR_CTL_ON_CHECKPOINT) and counted, never fatal to the daemon.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { type Logger, silentLogger } from "../log.ts";
import type { CheckpointRequestData } from "./target.ts";

export interface OnCheckpointOptions {
  command: string;
  minIntervalMs?: number;
  /** Kill the hook (SIGKILL) after this many ms. Default 60 s. */
  timeoutMs?: number;
  /** Daemon role, passed as COLO_ROLE. */
  role?: string;
  logger?: Logger;
  /** Wall clock in ms (injected for tests). */
  now?: () => number;
  /** Extra environment (tests); merged over process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface OnCheckpointStats {
  /** Runs that exited 0. */
  ok: number;
  /** Runs that exited non-zero, died by a signal, timed out or could not start. */
  failed: number;
  /** Requests folded into a later run by the rate limit. */
  coalesced: number;
  running: boolean;
}

/** The COLO_* environment for one checkpoint request. */
export function checkpointEnv(
  d: CheckpointRequestData,
  timeMs: number,
  coalesced: number,
  role?: string,
): Record<string, string> {
  const env: Record<string, string> = {
    COLO_EVENT: "CHECKPOINT_REQUEST",
    COLO_REASON: d.reason,
    COLO_EXPLANATION: d.explanation,
    COLO_EPOCH: String(d.epoch),
    COLO_TIME: new Date(timeMs).toISOString(),
    COLO_TIME_MS: String(timeMs),
    COLO_COALESCED: String(coalesced),
  };
  if (role !== undefined) env.COLO_ROLE = role;
  if (d.flow !== undefined) env.COLO_FLOW = d.flow;
  if (d.protocol !== undefined) env.COLO_PROTOCOL = d.protocol;
  if (d.offset !== undefined) env.COLO_OFFSET = String(d.offset);
  if (d.primary !== undefined) {
    env.COLO_PRIMARY_HEX = d.primary.hex;
    env.COLO_PRIMARY_OFFSET = String(d.primary.offset);
  }
  if (d.secondary !== undefined) {
    env.COLO_SECONDARY_HEX = d.secondary.hex;
    env.COLO_SECONDARY_OFFSET = String(d.secondary.offset);
  }
  return env;
}

const OUTPUT_CAP = 2048;

export class OnCheckpointRunner {
  readonly #opts: Required<Omit<OnCheckpointOptions, "role" | "env">> &
    Pick<OnCheckpointOptions, "role" | "env">;
  readonly #stats: OnCheckpointStats = { ok: 0, failed: 0, coalesced: 0, running: false };
  #child: ChildProcess | null = null;
  #lastStartMs = Number.NEGATIVE_INFINITY;
  #pending: { data: CheckpointRequestData; timeMs: number } | null = null;
  #pendingFolded = 0;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  readonly #idleWaiters: (() => void)[] = [];

  constructor(opts: OnCheckpointOptions) {
    this.#opts = {
      command: opts.command,
      minIntervalMs: opts.minIntervalMs ?? 1000,
      timeoutMs: opts.timeoutMs ?? 60_000,
      logger: opts.logger ?? silentLogger(),
      now: opts.now ?? Date.now,
      role: opts.role,
      env: opts.env,
    };
  }

  get stats(): OnCheckpointStats {
    return { ...this.#stats };
  }

  /** A checkpoint request happened: run now, or queue as the pending (latest) request. */
  request(data: CheckpointRequestData, timeMs: number): void {
    if (this.#closed) return;
    if (this.#pending !== null) {
      this.#stats.coalesced++;
      this.#pendingFolded++;
    }
    this.#pending = { data, timeMs };
    this.#pump();
  }

  /** Resolves when no hook is running and none is pending (tests, shutdown). */
  idle(): Promise<void> {
    if (this.#child === null && this.#pending === null) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Stops: drops the pending request, kills a running hook. */
  close(): void {
    this.#closed = true;
    this.#pending = null;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#child?.kill("SIGKILL");
    this.#settleIdle();
  }

  #settleIdle(): void {
    if (this.#child !== null || this.#pending !== null) return;
    for (const w of this.#idleWaiters.splice(0)) w();
  }

  #pump(): void {
    if (this.#closed || this.#child !== null || this.#pending === null || this.#timer !== null) return;
    const wait = this.#lastStartMs + this.#opts.minIntervalMs - this.#opts.now();
    if (wait > 0) {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        this.#pump();
      }, wait);
      this.#timer.unref();
      return;
    }
    const { data, timeMs } = this.#pending;
    const folded = this.#pendingFolded;
    this.#pending = null;
    this.#pendingFolded = 0;
    this.#run(data, timeMs, folded);
  }

  #run(data: CheckpointRequestData, timeMs: number, folded: number): void {
    const log = this.#opts.logger;
    this.#lastStartMs = this.#opts.now();
    this.#stats.running = true;
    const env = {
      ...process.env,
      ...this.#opts.env,
      ...checkpointEnv(data, timeMs, folded, this.#opts.role),
    };
    const child = spawn("/bin/sh", ["-c", this.#opts.command], { env, stdio: ["ignore", "pipe", "pipe"] });
    this.#child = child;
    let output = "";
    const keep = (d: Buffer): void => {
      if (output.length < OUTPUT_CAP) output += d.toString("utf8").slice(0, OUTPUT_CAP - output.length);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    const killer = setTimeout(() => {
      log.warn(
        { code: "COLO_ERR_CTL_ON_CHECKPOINT", timeoutMs: this.#opts.timeoutMs },
        "on-checkpoint hook timed out; killing it",
      );
      child.kill("SIGKILL");
    }, this.#opts.timeoutMs);
    killer.unref();
    let done = false;
    const finish = (ok: boolean, detail: Record<string, unknown>): void => {
      if (done) return;
      done = true;
      clearTimeout(killer);
      this.#child = null;
      this.#stats.running = false;
      if (ok) {
        this.#stats.ok++;
        log.info(
          { reason: data.reason, flow: data.flow, output: output || undefined },
          "on-checkpoint hook ran",
        );
      } else {
        this.#stats.failed++;
        log.warn(
          { code: "COLO_ERR_CTL_ON_CHECKPOINT", reason: data.reason, ...detail, output: output || undefined },
          "on-checkpoint hook failed",
        );
      }
      this.#pump();
      this.#settleIdle();
    };
    child.once("error", (e) => finish(false, { error: e.message }));
    child.once("close", (code, signal) => finish(code === 0, { exitCode: code, signal }));
  }
}
