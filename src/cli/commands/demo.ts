/**
 * @module `colo-proxy demo`: two real guests (PVM and SVM) behind the real colo-proxy primary and
 * secondary daemons, a client in a network namespace, real checkpoints, a mixed workload with a
 * live status line, then a summary. Everything it starts is torn down on exit (or on Ctrl-C).
 */
import { createWriteStream, mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import pino from "pino";
import { histogramQuantile, type StatsSnapshot } from "../../control/stats.ts";
import { ConfigError } from "../../errors.ts";
import { GUEST } from "../../node/guest/qemu.ts";
import type { ClientOp, ClientResult } from "../../node/lab/client-script.ts";
import type { ColoLab } from "../../node/lab/colo-lab.ts";
import type { ClientSession } from "../../node/lab/guests.ts";

export const summary = "boot two real guests behind the colo-proxy pair and show it working";

export const help = `Usage: colo-proxy demo [--duration S] [--nondeterminism RATE] [--keep] [--dir DIR]

Needs root, qemu-system-x86_64, iproute2 and the guest image (npm run demo installs and builds
them). Boots a PVM and an SVM (KVM if it really works here, else TCG) behind QEMU's COLO filters,
runs 'colo-proxy primary' and 'colo-proxy secondary' (in this process) joined by their
authenticated link on a UNIX socket, and a client in a network namespace created for the demo.
A checkpoint request from the primary triggers a real checkpoint (the PVM is migrated into a
fresh SVM), then checkpoint-done on the primary.

  --duration S           how long to run the workload (default 30)
  --nondeterminism RATE  fraction of requests sent to the guest's nondeterministic :8080, each of
                         which makes the replicas differ and forces a checkpoint (default 0.05)
  --workers N            concurrent client sessions (default 3)
  --keep                 keep everything running after the summary (until Ctrl-C) and print how
                         to reach the control sockets and metrics
  --dir DIR              run directory for sockets and logs (default: a new /tmp/colo-demo-*)
`;

interface Tally {
  ok: number;
  failed: number;
  firstError?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: "string" },
      nondeterminism: { type: "string" },
      workers: { type: "string" },
      keep: { type: "boolean" },
      dir: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  const num = (v: string | undefined, def: number, what: string, lo: number, hi: number) => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isFinite(n) || n < lo || n > hi)
      throw new ConfigError(`--${what} must be a number in [${lo}, ${hi}]`, undefined, "COLO_ERR_USAGE");
    return n;
  };
  return {
    help: values.help === true,
    durationS: num(values.duration, 30, "duration", 1, 86_400),
    rate: num(values.nondeterminism, 0.05, "nondeterminism", 0, 1),
    workers: Math.round(num(values.workers, 3, "workers", 1, 16)),
    keep: values.keep === true,
    dir: values.dir,
  };
}

/** The body of the guest's deterministic HTTP responder (/ → 8 lines, /big → 1600 lines). */
function detBody(lines: number): string {
  let s = "";
  for (let i = 1; i <= lines; i++) s += `line ${String(i).padStart(5, "0")} colo-proxy deterministic body\n`;
  return s;
}

/** One workload step: the operation, its label, and how to check the answer. */
function pickOp(
  rate: number,
  n: number,
): { kind: string; op: ClientOp; check: (r: ClientResult) => boolean } {
  const host = n % 2 === 0 ? GUEST.ip4 : GUEST.ip6;
  const fam = host === GUEST.ip4 ? "v4" : "v6";
  if (Math.random() < rate) {
    return {
      kind: `http :8080 (nondeterministic) ${fam}`,
      op: { op: "http", host, port: 8080, path: "/" },
      check: (r) => r.ok && r.status === 200 && /^[0-9a-f]{32}\n$/.test(r.body ?? ""),
    };
  }
  const small = detBody(8);
  const big = detBody(1600);
  switch (n % 5) {
    case 0:
    case 1:
      return {
        kind: `http / ${fam}`,
        op: { op: "http", host, port: 80, path: "/" },
        check: (r) => r.ok && r.status === 200 && r.body === small,
      };
    case 2:
      return {
        kind: `http /big ${fam}`,
        op: { op: "http", host, port: 80, path: "/big" },
        check: (r) => r.ok && r.status === 200 && r.body === big,
      };
    case 3: {
      const data = `echo ${n} ${"x".repeat(n % 200)}\n`;
      return {
        kind: n % 2 ? `tcp echo ${fam}` : `udp echo ${fam}`,
        op: n % 2 ? { op: "tcp-echo", host, port: 7, data } : { op: "udp-echo", host, port: 7, data },
        check: (r) => r.ok && r.data === data,
      };
    }
    default:
      return { kind: `ping ${fam}`, op: { op: "ping", host }, check: (r) => r.ok };
  }
}

const ms = (s: number | null) => (s === null ? "-" : `${(s * 1000).toFixed(2)} ms`);
const sum = (r: Record<string, number> | undefined) => Object.values(r ?? {}).reduce((a, b) => a + b, 0);

export async function run(argv: string[]): Promise<number> {
  let o: ReturnType<typeof parse>;
  try {
    o = parse(argv);
  } catch (e) {
    process.stderr.write(`colo-proxy demo: ${(e as Error).message}\n${help}`);
    return 2;
  }
  if (o.help) {
    process.stdout.write(help);
    return 0;
  }
  const out = (s: string) => process.stdout.write(s);
  const { labMissing, ClientSession: Session, detectAccel } = await import("../../node/lab/guests.ts");
  const missing = labMissing({ netns: true });
  if (missing.length > 0) {
    process.stderr.write("colo-proxy demo: cannot run here, missing:\n");
    for (const m of missing) process.stderr.write(`  - ${m.what}: ${m.fix}\n`);
    return 1;
  }
  const runDir = o.dir ?? mkdtempSync(path.join(os.tmpdir(), "colo-demo-"));
  const logFile = (name: string) =>
    pino(
      { level: "info", name, timestamp: pino.stdTimeFunctions.isoTime },
      createWriteStream(path.join(runDir, `${name}.log`)),
    );
  const { ColoLab } = await import("../../node/lab/colo-lab.ts");

  let lab: ColoLab | undefined;
  const sessions: ClientSession[] = [];
  let stopping = false;
  let interrupted = false;
  const onSignal = () => {
    if (stopping) return;
    interrupted = true;
    stopping = true;
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const accel = await detectAccel();
    out(`colo-proxy demo: run directory ${runDir}\n`);
    out(`booting PVM and SVM (${accel.toUpperCase()}), primary and secondary daemons, client netns...\n`);
    const t0 = Date.now();
    lab = await ColoLab.start({
      runDir,
      accel,
      nice: 0,
      metrics: true,
      primaryLogger: logFile("primary"),
      secondaryLogger: logFile("secondary"),
      netnsPrefix: "colo-demo",
    });
    out(
      `ready in ${((Date.now() - t0) / 1000).toFixed(1)} s; netns ${lab.ns.name}, guest ${GUEST.ip4} / ${GUEST.ip6}\n`,
    );
    out(`workload: ${o.durationS} s, ${o.workers} client sessions, nondeterminism ${o.rate}\n`);

    const tallies = new Map<string, Tally>();
    const latencies: number[] = [];
    let requests = 0;
    let n = 0;
    const end = Date.now() + o.durationS * 1000;
    const worker = async (s: ClientSession) => {
      while (!stopping && Date.now() < end) {
        const step = pickOp(o.rate, n++);
        const t = performance.now();
        const r = await s.request(step.op);
        latencies.push(performance.now() - t);
        requests++;
        const tally = tallies.get(step.kind) ?? { ok: 0, failed: 0 };
        tallies.set(step.kind, tally);
        if (step.check(r)) tally.ok++;
        else {
          tally.failed++;
          tally.firstError ??= r.ok ? `unexpected answer: ${JSON.stringify(r).slice(0, 200)}` : r.error;
        }
      }
    };
    for (let i = 0; i < o.workers; i++) sessions.push(Session.start(lab.ns));
    const l = lab;
    const status = () => {
      const st = l.primary.compare.stats();
      const failed = [...tallies.values()].reduce((a, t) => a + t.failed, 0);
      const left = Math.max(0, Math.ceil((end - Date.now()) / 1000));
      const busy =
        l.executor !== undefined &&
        l.checkpoints.length + l.checkpointErrors.length < sum(st.checkpointRequests)
          ? " (checkpointing)"
          : "";
      const line = `[${String(left).padStart(3)} s left] requests ${requests} (${failed} failed)  compared ${st.released.matched ?? 0}  checkpoints ${l.checkpoints.length}${busy}  added latency p50 ${ms(histogramQuantile(st.holdTime, 0.5))} p99 ${ms(histogramQuantile(st.holdTime, 0.99))}`;
      if (process.stdout.isTTY)
        out(
          `\r${line.padEnd(process.stdout.columns ? process.stdout.columns - 1 : 120).slice(0, (process.stdout.columns ?? 121) - 1)}`,
        );
      else out(`${line}\n`);
    };
    const timer = setInterval(status, process.stdout.isTTY ? 500 : 5000);
    try {
      await Promise.all(sessions.map(worker));
      await lab.settled(60_000);
    } finally {
      clearInterval(timer);
      status();
      out("\n");
    }
    report(lab, tallies, latencies, requests, interrupted);

    if (o.keep && !interrupted) {
      const m = lab.metricsUrls();
      out(
        [
          "",
          "Still running (--keep). Press Ctrl-C to tear everything down.",
          `  colo-proxy ctl --socket ${lab.controlSockets.primary} query-stats`,
          `  colo-proxy ctl --socket ${lab.controlSockets.secondary} query-status`,
          `  colo-proxy ctl --socket ${lab.controlSockets.primary} watch`,
          `  metrics: ${m.primary ?? "-"} (primary), ${m.secondary ?? "-"} (secondary)`,
          `  client:  ip netns exec ${lab.ns.name} curl http://${GUEST.ip4}/`,
          "",
        ].join("\n"),
      );
      while (!stopping) await sleep(200);
    }
    const failed = [...tallies.values()].reduce((a, t) => a + t.failed, 0);
    return failed > 0 || lab.checkpointErrors.length > 0 ? 1 : 0;
  } finally {
    for (const s of sessions) s.close();
    out("tearing down (QEMUs, daemons, netns)...\n");
    await lab?.close();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    out(`logs: ${runDir} (primary.log, secondary.log, *.console.log, *.stderr.log)\n`);
  }
}

function report(
  lab: ColoLab,
  tallies: Map<string, Tally>,
  latencies: number[],
  requests: number,
  interrupted: boolean,
): void {
  const out = (s: string) => process.stdout.write(`${s}\n`);
  const st: StatsSnapshot = lab.primary.compare.stats();
  const sec = lab.secondary.stats();
  out(interrupted ? "\nSummary (interrupted)" : "\nSummary");
  out("  traffic");
  for (const [kind, t] of [...tallies].sort()) {
    out(`    ${kind.padEnd(36)} ${String(t.ok).padStart(6)} ok ${String(t.failed).padStart(4)} failed`);
    if (t.firstError) out(`      first failure: ${t.firstError}`);
  }
  latencies.sort((a, b) => a - b);
  const pct = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  out(
    `    ${"total requests".padEnd(36)} ${requests}  (client round trip p50 ${pct(0.5).toFixed(1)} ms, p99 ${pct(0.99).toFixed(1)} ms)`,
  );
  out("  comparison (primary)");
  out(`    frames released: ${JSON.stringify(st.released)}`);
  out(
    `    secondary frames: ${JSON.stringify(st.discarded ?? {})}; stale (old epoch): ${st.counters?.stale_frames ?? 0}`,
  );
  out(`    connections tracked: ${st.connections.opened}`);
  const mis = Object.entries(st.miscompares)
    .map(([r, p]) => [r, Object.fromEntries(Object.entries(p).filter(([, v]) => v > 0))] as const)
    .filter(([, p]) => Object.keys(p).length > 0);
  out(
    `    miscompares: ${mis.length === 0 ? "none" : mis.map(([r, p]) => `${r} ${JSON.stringify(p)}`).join(", ")}`,
  );
  const first = lab.events.find((e) => e.daemon === "primary" && e.event === "CHECKPOINT_REQUEST");
  if (first) {
    const d = first.data;
    out(`    first checkpoint request: ${d.reason ?? "?"} on ${JSON.stringify(d.flow ?? "?")}`);
    if (typeof d.explanation === "string") out(`      ${d.explanation.split("\n").join("\n      ")}`);
  }
  out("  checkpoints");
  const reqs = Object.entries(st.checkpointRequests).filter(([, v]) => v > 0);
  out(
    `    requests: ${reqs.length === 0 ? "none" : reqs.map(([r, v]) => `${r} ${v}`).join(", ")}; done: ${st.checkpoints}`,
  );
  if (lab.checkpoints.length > 0) {
    const d = lab.checkpoints.map((c) => c.totalMs).sort((a, b) => a - b);
    const p = lab.checkpoints.map((c) => c.pausedMs).sort((a, b) => a - b);
    const mid = (xs: number[]) => xs[Math.floor(xs.length / 2)] ?? 0;
    out(
      `    executed: ${lab.checkpoints.length}; duration median ${mid(d).toFixed(0)} ms (max ${(d.at(-1) ?? 0).toFixed(0)} ms), PVM paused median ${mid(p).toFixed(0)} ms`,
    );
  }
  for (const e of lab.checkpointErrors.slice(0, 3)) out(`    FAILED: ${e}`);
  out("  added latency (primary frames held until the SVM's twin arrived)");
  out(
    `    p50 ${ms(histogramQuantile(st.holdTime, 0.5))}  p99 ${ms(histogramQuantile(st.holdTime, 0.99))}  over ${st.holdTime.count} frames`,
  );
  out("  secondary");
  out(
    `    connections rewritten: ${sec.connections.opened}; link frames ${JSON.stringify(sec.endpoints.link ?? {})}`,
  );
  out(`    dropped: ${JSON.stringify(sec.dropped)}; bad input: ${JSON.stringify(sec.badInput)}`);
}
