/**
 * @module `colo-proxy replay PRIMARY SECONDARY`: runs the compare engine over a capture of the
 * PVM's output and one of the SVM's output, merged by timestamp, and reports what the proxy
 * would have done: frames compared, connections, every checkpoint request with its
 * explanation, checkpoints per minute, and the flows causing them (passthrough candidates).
 */
import { parseArgs } from "node:util";
import { parsePassthroughRule } from "../../compare/passthrough.ts";
import type { CheckpointReason } from "../../compare/types.ts";
import { ConfigError, isColoError, PcapError } from "../../errors.ts";
import type { CaptureInterface, CapturePacket } from "../../wire/pcap-format.ts";
import { type CaptureDecoder, readCapture } from "../../wire/pcap-reader.ts";
import { LineOutput } from "../line-output.ts";
import { type ReplayReport, replayCaptures } from "../replay-sim.ts";
import { formatTimestamp } from "./pcap-inspect.ts";

export const summary = "replay PVM and SVM output captures through the compare engine and report checkpoints";

const HELP = `Usage: colo-proxy replay [options] PRIMARY SECONDARY
       colo-proxy replay [options] CAPTURE.pcapng

Runs the compare engine over two pcap/pcapng captures: PRIMARY holds the primary VM's output
(what QEMU sends to primary_in), SECONDARY the secondary VM's output (secondary_in). Frames are
merged by timestamp and the capture timestamps are the engine's clock. Reports the frames
compared, connections, every checkpoint request with its explanation, the predicted checkpoints
per minute and the flows causing them, with a passthrough rule for each.

With one pcapng file, the primary and secondary are two of its interfaces: by default the one
named pvm (or primary) and the one named svm (or secondary); e.g.
  colo-proxy replay test/fixtures/sample.pcapng

Options:
  --compare-timeout MS   ms a packet may wait for its twin (default 3000)
  --scan-cycle MS        ms between timeout scans (expired_scan_cycle, default 1000)
  --max-queue-size N     packets per connection per side before a checkpoint (default 1024)
  --checkpoint-ms MS     how long a checkpoint takes, request to completion (default 0)
  --passthrough RULE     do not compare flows matching RULE (repeatable), e.g. "tcp 10.0.0.1:22"
  --primary-if NAME|N    the interface holding the PVM's output (default: all, or pvm/primary)
  --secondary-if NAME|N  the interface holding the SVM's output (default: all, or svm/secondary)
  --compat               QEMU-like: pass non-IPv4 and VLAN-tagged frames through uncompared
  --top N                flows listed as passthrough candidates (default 10)
  --events N             checkpoint requests listed in text output (default 20; --json lists all)
  --json                 one JSON object instead of text
  -h, --help             show this help
`;

function positiveInt(name: string, v: string | undefined, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > 0xffffffff) {
    throw new ConfigError(`--${name} needs an integer ≥ ${min}, got '${v}'`, undefined, "COLO_ERR_USAGE");
  }
  return Number(v);
}

/**
 * Capture packets, with errors naming the file they come from. With a selector (an interface
 * name or index, or a list of names tried in order), only that interface's packets.
 */
async function* labelled(path: string, select?: string | readonly string[]): AsyncGenerator<CapturePacket> {
  let dec: CaptureDecoder | undefined;
  let chosen: number | undefined;
  try {
    for await (const p of readCapture(path, { onHeader: (d) => (dec = d) })) {
      if (select === undefined) {
        yield p;
        continue;
      }
      chosen ??= pickInterface(dec?.interfaces ?? [], select);
      if (p.interfaceId === chosen) yield p;
    }
  } catch (e) {
    if (e instanceof PcapError) throw new PcapError(e.code, `${path}: ${e.message}`, e.details);
    if (!isColoError(e) && typeof (e as NodeJS.ErrnoException).code === "string") {
      throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`, { path }, "COLO_ERR_USAGE");
    }
    throw e;
  }
  if (select !== undefined && chosen === undefined && (dec?.interfaces.length ?? 0) > 0) {
    chosen = pickInterface(dec!.interfaces, select); // throws the explanation when nothing matches
  }
  function pickInterface(ifaces: readonly CaptureInterface[], sel: string | readonly string[]): number {
    const names = typeof sel === "string" ? [sel] : sel;
    for (const n of names) {
      const i = /^\d+$/.test(n) ? Number(n) : ifaces.findIndex((f) => f.name === n);
      if (i >= 0 && i < ifaces.length) return i;
    }
    const have = ifaces.map((f, i) => (f.name ? `${i} (${f.name})` : String(i))).join(", ");
    throw new ConfigError(
      `${path}: no interface ${names.map((n) => `'${n}'`).join(" or ")}; it has ${have || "none"}`,
      { path },
      "COLO_ERR_USAGE",
    );
  }
}

export async function run(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}\n${HELP}`, undefined, "COLO_ERR_USAGE");
  }
  const v = args.values;
  if (v.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const pos = args.positionals;
  if (pos.length !== 1 && pos.length !== 2) {
    throw new ConfigError(
      `expected PRIMARY and SECONDARY captures, or one pcapng\n${HELP}`,
      undefined,
      "COLO_ERR_USAGE",
    );
  }
  const primaryPath = pos[0]!;
  const secondaryPath = pos[1] ?? primaryPath;
  // One file: both sides are interfaces of it (as in a miscompare capture or the sample).
  const pSel = v["primary-if"] ?? (pos.length === 1 ? ["pvm", "primary"] : undefined);
  const sSel = v["secondary-if"] ?? (pos.length === 1 ? ["svm", "secondary"] : undefined);
  const passthrough = v.passthrough ?? [];
  for (const rule of passthrough) {
    try {
      parsePassthroughRule(rule);
    } catch (e) {
      throw new ConfigError(`--passthrough: ${(e as Error).message}`, { rule }, "COLO_ERR_USAGE");
    }
  }
  const config = {
    compareTimeout: positiveInt("compare-timeout", v["compare-timeout"], 3000),
    expiredScanCycle: positiveInt("scan-cycle", v["scan-cycle"], 1000),
    maxQueueSize: positiveInt("max-queue-size", v["max-queue-size"], 1024),
    compatPassthrough: v.compat === true,
  };
  const report = await replayCaptures(labelled(primaryPath, pSel), labelled(secondaryPath, sSel), {
    config,
    checkpointMs: positiveInt("checkpoint-ms", v["checkpoint-ms"], 0, 0),
    passthrough,
    top: positiveInt("top", v.top, 10),
  });
  const out = new LineOutput(process.stdout);
  if (v.json) await out.write(JSON.stringify(toJson(report, primaryPath, secondaryPath, config)));
  else {
    const lines = textReport(
      report,
      primaryPath,
      secondaryPath,
      config,
      positiveInt("events", v.events, 20, 0),
    );
    for (const l of lines) if (!(await out.write(l))) break;
  }
  await out.end();
  return 0;
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      "compare-timeout": { type: "string" },
      "scan-cycle": { type: "string" },
      "max-queue-size": { type: "string" },
      "checkpoint-ms": { type: "string" },
      passthrough: { type: "string", multiple: true },
      compat: { type: "boolean" },
      top: { type: "string" },
      events: { type: "string" },
      "primary-if": { type: "string" },
      "secondary-if": { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
}

const reasonList = (r: Partial<Record<CheckpointReason, number>>) =>
  Object.entries(r)
    .filter(([, n]) => (n ?? 0) > 0)
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");

const byList = (r: Record<string, number>) =>
  Object.entries(r)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");

const seconds = (ms: number) => `${(ms / 1000).toFixed(3)} s`;

export function textReport(
  r: ReplayReport,
  primaryPath: string,
  secondaryPath: string,
  config: { compareTimeout: number; expiredScanCycle: number; maxQueueSize: number },
  maxEvents: number,
): string[] {
  const s = r.stats;
  const L: string[] = [];
  L.push(
    `replay: ${primaryPath} (${r.frames.primary} frames) vs ${secondaryPath} (${r.frames.secondary} frames), ${seconds(r.durationMs)} of traffic` +
      (r.firstNs !== null ? ` from ${formatTimestamp(r.firstNs)}` : ""),
  );
  L.push(
    `engine: compare_timeout ${config.compareTimeout} ms, expired_scan_cycle ${config.expiredScanCycle} ms, max_queue_size ${config.maxQueueSize}`,
  );
  L.push(
    `primary: ${s.primaryFrames} frames, ${s.released} released (${byList(s.releasedBy) || "none"})` +
      (s.heldPrimary > 0 ? `, ${s.heldPrimary} still held` : ""),
  );
  L.push(
    `secondary: ${s.secondaryFrames} frames, ${s.discarded} discarded (${byList(s.discardedBy) || "none"})`,
  );
  L.push(`connections: ${s.connectionsCreated}`);
  const mis: string[] = [];
  for (const [proto, reasons] of Object.entries(s.miscompares)) {
    for (const [reason, n] of Object.entries(reasons)) if (n > 0) mis.push(`${proto} ${reason} ${n}`);
  }
  L.push(`miscompares: ${s.miscomparesTotal}${mis.length ? ` (${mis.join(", ")})` : ""}`);
  L.push(
    `checkpoint requests: ${r.requests}${r.requests ? ` (${reasonList(r.byReason)})` : ""}; checkpoints: ${r.checkpoints}` +
      (s.checkpointCoalesced ? `; ${s.checkpointCoalesced} triggers coalesced into pending requests` : ""),
  );
  if (r.heldAtEnd.primary + r.heldAtEnd.secondary > 0 || r.requestsAfterEnd > 0) {
    L.push(
      `at the end of the captures: ${r.heldAtEnd.primary} primary and ${r.heldAtEnd.secondary} secondary frames still waiting` +
        ` (${r.requestsAfterEnd} more request${r.requestsAfterEnd === 1 ? "" : "s"} when they time out, not counted above)`,
    );
  }
  L.push(
    `predicted checkpoints per minute: ${r.checkpointsPerMinute === null ? "n/a (captures span no time)" : r.checkpointsPerMinute.toFixed(2)}`,
  );
  if (r.clockBackwards > 0) L.push(`warning: ${r.clockBackwards} frames had timestamps going backwards`);
  if (r.events.length > 0 && maxEvents > 0) {
    L.push("", "checkpoint requests:");
    for (const e of r.events.slice(0, maxEvents)) {
      L.push(
        `  +${seconds(e.timeMs)}${e.afterEnd ? " (after end)" : ""}${e.repeat ? " (repeat)" : ""} ${e.message}`,
      );
      const q = e.request;
      if (q.primaryHex !== undefined) {
        L.push(
          `      primary   @${q.hexOffset}: ${q.primaryHex}`,
          `      secondary @${q.hexOffset}: ${q.secondaryHex}`,
        );
      }
    }
    const more = r.events.length - Math.min(maxEvents, r.events.length) + r.eventsDropped;
    if (more > 0) L.push(`  ... ${more} more (--events N, or --json for all)`);
  }
  if (r.topFlows.length > 0) {
    L.push("", "flows causing checkpoints (passthrough candidates):");
    for (const f of r.topFlows) {
      L.push(
        `  ${String(f.requests).padStart(5)}  ${f.flow}  (${reasonList(f.byReason)})` +
          (f.passthroughRule ? `  -> --passthrough "${f.passthroughRule}"` : ""),
      );
    }
  }
  return L;
}

function toJson(
  r: ReplayReport,
  primaryPath: string,
  secondaryPath: string,
  config: Record<string, unknown>,
): Record<string, unknown> {
  return {
    primary: primaryPath,
    secondary: secondaryPath,
    config,
    frames: r.frames,
    first: r.firstNs === null ? null : formatTimestamp(r.firstNs),
    last: r.lastNs === null ? null : formatTimestamp(r.lastNs),
    durationMs: r.durationMs,
    clockBackwards: r.clockBackwards,
    requests: r.requests,
    requestsAfterEnd: r.requestsAfterEnd,
    byReason: r.byReason,
    checkpoints: r.checkpoints,
    checkpointsPerMinute: r.checkpointsPerMinute,
    heldAtEnd: r.heldAtEnd,
    backpressure: r.backpressure,
    // Flow keys are binary strings (Map keys); the readable `flow` stands in for them.
    topFlows: r.topFlows.map(({ key: _key, ...f }) => f),
    events: r.events.map((e) => {
      const { key: _key, ...req } = e.request;
      return { ...req, timeMs: e.timeMs, afterEnd: e.afterEnd };
    }),
    eventsDropped: r.eventsDropped,
    stats: r.stats,
  };
}
