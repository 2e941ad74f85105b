/**
 * @module Differential scenario format and runner. A scenario is plain data — frames to write on
 * primary_in / secondary_in / notify_dev, pauses, reconnects — plus the outcome QEMU 7.2 produces
 * and, where colo-proxy deliberately differs, our outcome and the name of the difference. The
 * runner plays one scenario through real sockets against a target (QEMU's colo-compare or
 * `colo-proxy compare`, both configured with the same `-chardev`/`-object` strings) and collects
 * what comes out of outdev (frames, in order) and notify_dev (messages) once traffic is quiet.
 */
import { performance } from "node:perf_hooks";
import { FramedPeer, sleep, type TestCtx, waitUntil } from "../support/qemu.ts";

export type Input = "primary" | "secondary" | "notify";

export type Step =
  /** A framed frame on an input (vnet: the vnet-length word, when vnet_hdr_support=on). */
  | { on: Input; frame: Uint8Array; vnet?: number }
  /** A framed ASCII notify_dev message (Xen). */
  | { on: "notify"; message: string }
  /** Raw bytes, no framing (malformed input). */
  | { on: Input; raw: Uint8Array }
  /** Wait this long (timeouts). */
  | { sleep: number }
  /** Wait until outdev saw `n` frames in total (bounded by 3 s), then continue. */
  | { outCount: number }
  /** Wait until notify_dev saw at least `n` messages (bounded by 3 s). */
  | { notifyCount: number }
  /** Close that input's connection and connect again. */
  | { reconnect: Input };

export interface CompareConfig {
  compare_timeout?: number;
  expired_scan_cycle?: number;
  max_queue_size?: number;
  vnet_hdr_support?: boolean;
  /** Create notify_dev (default true: it is the only way to observe QEMU's miscompares). */
  notify?: boolean;
}

/** What a target did, normalised for comparison. */
export interface Outcome {
  /** outdev frames in order (hex, so assertion diffs are readable). */
  out: string[];
  /** Distinct notify_dev messages, in order of first appearance (counts depend on timing). */
  notify: string[];
  /** Whether the target process survived. */
  alive: boolean;
}

export interface Scenario {
  name: string;
  config?: CompareConfig;
  steps: Step[];
  /** What QEMU 7.2 does (asserted against real QEMU). */
  qemu: Expect;
  /** Present where colo-proxy deliberately differs: our outcome and which documented difference. */
  ours?: Expect & { differs: string };
  /** Quiet time after the expected output, before collecting (default 120 ms). */
  settleMs?: number;
}

export interface Expect {
  out: Uint8Array[];
  notify?: string[];
  alive?: boolean;
}

export const hex = (b: Uint8Array): string =>
  Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

export function expected(e: Expect): Outcome {
  return { out: e.out.map(hex), notify: e.notify ?? [], alive: e.alive ?? true };
}

/** A running compare (QEMU or ours) with UNIX-socket chardev servers. */
export interface RunningTarget {
  sock(id: "pri" | "sec" | "out" | "nfy"): string;
  /** Resolves once the target has accepted the given chardev clients (QEMU loses output otherwise). */
  waitConnected(ids: string[]): Promise<void>;
  alive(): boolean;
  stop(): Promise<void>;
}

export interface Target {
  name: string;
  start(args: { chardevs: string[]; objects: string[] }, t: TestCtx): Promise<RunningTarget>;
}

/** The `-object colo-compare,...` string for a config; the same text goes to QEMU and to us. */
export function compareObject(c: CompareConfig = {}): string {
  let s = "colo-compare,id=cmp,primary_in=pri,secondary_in=sec,outdev=out,iothread=iot";
  if (c.notify !== false) s += ",notify_dev=nfy";
  if (c.compare_timeout !== undefined) s += `,compare_timeout=${c.compare_timeout}`;
  if (c.expired_scan_cycle !== undefined) s += `,expired_scan_cycle=${c.expired_scan_cycle}`;
  if (c.max_queue_size !== undefined) s += `,max_queue_size=${c.max_queue_size}`;
  if (c.vnet_hdr_support) s += ",vnet_hdr_support=on";
  return s;
}

/** Gap between steps so frames on different sockets reach the compare in step order. */
const STEP_GAP_MS = 8;

/** Deadline for an expected output (generous: a loaded CI machine can stall a process for seconds). */
const EXPECTED_WITHIN_MS = 20_000;
/** Deadline for a wait step whose event the caller does not expect (it only delays the next step). */
const UNEXPECTED_WITHIN_MS = 3000;
/** Quiet time after the expected output, to catch extra frames / messages. */
const SETTLE_MS = 120;

/**
 * Plays `sc` against `target` and returns the normalised outcome. `expect` is what the caller
 * will assert: the runner waits (with generous deadlines) until that much output arrived, then a
 * short quiet window for extras — it never decides the outcome, only how long to wait for it.
 */
export async function runScenario(
  target: Target,
  sc: Scenario,
  t: TestCtx,
  expect: Expect,
): Promise<Outcome> {
  const want = expected(expect);
  const cfg = sc.config ?? {};
  const withNotify = cfg.notify !== false;
  const ids = ["pri", "sec", "out", ...(withNotify ? ["nfy"] : [])];
  const running = await target.start({ chardevs: ids, objects: ["iothread,id=iot", compareObject(cfg)] }, t);
  const vnet = cfg.vnet_hdr_support === true;
  // First connections wait for the target's sockets to appear (a process may take a while to
  // start, a minute on a loaded CI machine); reconnects after a crash give up sooner.
  let connectTimeout = 60_000;
  const connect = (id: "pri" | "sec" | "out" | "nfy") =>
    FramedPeer.connect(running.sock(id), { vnetHdr: vnet && id !== "nfy", timeoutMs: connectTimeout }, t);
  const peers: Record<Input, FramedPeer | undefined> = {
    primary: await connect("pri"),
    secondary: await connect("sec"),
    notify: withNotify ? await connect("nfy") : undefined,
  };
  const out = await connect("out");
  await running.waitConnected(ids);
  connectTimeout = 5000;
  const peer = (on: Input): FramedPeer => {
    const p = peers[on];
    if (p === undefined) throw new Error(`scenario ${sc.name}: no ${on} input configured`);
    return p;
  };
  const notifyFrames = () => peers.notify?.frames ?? [];
  for (const step of sc.steps) {
    if ("sleep" in step) await sleep(step.sleep);
    else if ("outCount" in step)
      await out.waitFrames(
        step.outCount,
        want.out.length >= step.outCount ? EXPECTED_WITHIN_MS : UNEXPECTED_WITHIN_MS,
      );
    else if ("notifyCount" in step) {
      const end = performance.now() + (want.notify.length > 0 ? EXPECTED_WITHIN_MS : UNEXPECTED_WITHIN_MS);
      while (notifyFrames().length < step.notifyCount && performance.now() < end) await sleep(5);
    } else if ("reconnect" in step) {
      const old = peer(step.reconnect);
      const kept = old.frames;
      old.close();
      await sleep(20);
      const id = step.reconnect === "primary" ? "pri" : step.reconnect === "secondary" ? "sec" : "nfy";
      // A target that died (QEMU aborts on some bad input) refuses: keep the closed peer.
      const fresh = await connect(id).catch(() => undefined);
      if (fresh !== undefined) {
        fresh.frames.push(...kept);
        peers[step.reconnect] = fresh;
      }
      await sleep(20);
    } else {
      const p = peer(step.on);
      if ("raw" in step) p.sendRaw(step.raw);
      else if ("message" in step) p.send(Buffer.from(step.message, "ascii"));
      else p.send(step.frame, step.vnet ?? 0);
      await p.flush();
      await sleep(STEP_GAP_MS);
    }
  }
  const distinctNotify = (): string[] => {
    const seen: string[] = [];
    for (const f of notifyFrames()) {
      const m = f.data.toString("latin1");
      if (!seen.includes(m)) seen.push(m);
    }
    return seen;
  };
  // Wait for what the caller expects (a target that produces less fails the assertion after the
  // deadline), then for quiet so extra output is seen too.
  await out.waitFrames(want.out.length, EXPECTED_WITHIN_MS);
  await waitUntil(() => {
    const seen = distinctNotify();
    return want.notify.every((m) => seen.includes(m)) && running.alive() === want.alive;
  }, EXPECTED_WITHIN_MS);
  await out.waitQuiet(sc.settleMs ?? SETTLE_MS, 5000);
  const seen = distinctNotify();
  const outcome: Outcome = { out: out.frames.map((f) => hex(f.data)), notify: seen, alive: running.alive() };
  await running.stop();
  return outcome;
}
