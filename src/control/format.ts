/**
 * @module Human-readable rendering of control replies and events for `colo-proxy ctl`: aligned
 * tables and short summaries. Pure functions from reply objects to text (tested without a daemon).
 */
import type { StatsReply, StatusReply } from "./commands.ts";
import { hexdumpPair } from "./hexdump.ts";
import type { EventMessage } from "./protocol.ts";
import { histogramQuantile, total } from "./stats.ts";
import type { CheckpointRequestData, ConnectionInfo, ControlParams, PassthroughEntry } from "./target.ts";

/** Left-aligned text columns, right-aligned numeric ones, two spaces apart. */
export function table(header: string[], rows: (string | number)[][], numeric: boolean[] = []): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === "number" ? String(c) : c)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (numeric[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function formatDuration(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  if (d > 0) return `${d}d ${h}h ${m}m`;
  if (h > 0) return `${h}h ${m}m ${s}s`;
  if (m > 0) return `${m}m ${s}s`;
  return `${s}s`;
}

function ms(seconds: number | null): string {
  if (seconds === null) return "-";
  const v = seconds * 1000;
  return v < 10 ? `${v.toFixed(2)} ms` : v < 1000 ? `${v.toFixed(1)} ms` : `${(v / 1000).toFixed(2)} s`;
}

function kv(pairs: [string, string][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join("\n");
}

function breakdown(rec: Record<string, number>): string {
  // Zero entries are noise (the compare engine pre-fills every reason).
  const parts = Object.entries(rec)
    .filter(([, v]) => v !== 0)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`);
  return parts.length === 0 ? "0" : `${total(rec)} (${parts.join(", ")})`;
}

export function formatStatus(s: StatusReply): string {
  const pairs: [string, string][] = [
    ["role", s.role],
    ["mode", s.mode],
    ["checkpoint epoch", String(s.checkpointEpoch)],
    ["uptime", formatDuration(s.uptime)],
    ["version", `${s.version} (pid ${s.pid})`],
  ];
  const out = kv(pairs);
  if (s.peers.length === 0) return out;
  return `${out}\n\n${table(
    ["PEER", "STATE", "ADDRESS"],
    s.peers.map((p) => [p.name, p.state, p.address ?? ""]),
  )}`;
}

export function formatConnections(rows: ConnectionInfo[]): string {
  if (rows.length === 0) return "no connections";
  return table(
    ["FLOW", "STATE", "PRI-Q", "SEC-Q", "OLDEST-HELD", "COMPARED"],
    rows.map((c) => [
      c.flow,
      c.state,
      c.primaryQueued,
      c.secondaryQueued,
      c.oldestHeldMs === null || (c.oldestHeldMs === 0 && c.primaryQueued + c.secondaryQueued === 0)
        ? "-"
        : `${Math.round(c.oldestHeldMs)} ms`,
      c.bytesCompared,
    ]),
    [false, false, true, true, true, true],
  );
}

export function formatStats(s: StatsReply): string {
  const parts: string[] = [];
  const eps = Object.entries(s.endpoints);
  if (eps.length > 0) {
    parts.push(
      table(
        ["ENDPOINT", "FRAMES-IN", "BYTES-IN", "FRAMES-OUT", "BYTES-OUT"],
        eps.map(([name, e]) => [name, e.framesIn, e.bytesIn, e.framesOut, e.bytesOut]),
        [false, true, true, true, true],
      ),
    );
  }
  const mis: Record<string, number> = {};
  for (const [reason, byProto] of Object.entries(s.miscompares)) {
    for (const [proto, n] of Object.entries(byProto)) mis[`${reason}/${proto}`] = n;
  }
  const h = s.holdTime;
  const ci = s.checkpointInterval;
  const hook = s.control.onCheckpoint;
  const pairs: [string, string][] = [
    ["released", breakdown(s.released)],
    ["discarded (secondary)", breakdown(s.discarded ?? {})],
    ["dropped", breakdown(s.dropped)],
    ["miscompares", breakdown(mis)],
    ["checkpoint requests", breakdown(s.checkpointRequests)],
    [
      "checkpoints",
      ci.count === 0
        ? String(s.checkpoints)
        : `${s.checkpoints} (interval p50 ${ms(histogramQuantile(ci, 0.5))}, mean ${ms(ci.sum / ci.count)})`,
    ],
    [
      "hold time",
      h.count === 0
        ? "-"
        : `p50 ${ms(histogramQuantile(h, 0.5))}  p90 ${ms(histogramQuantile(h, 0.9))}  p99 ${ms(histogramQuantile(h, 0.99))}  (${h.count} frames)`,
    ],
    ["queued", `primary ${s.queues.primary}, secondary ${s.queues.secondary}`],
    ["connections", `${s.connections.active} active, ${s.connections.opened} opened`],
    ["bad input", breakdown(s.badInput)],
    [
      "links",
      Object.entries(s.links)
        .map(([k, up]) => `${k} ${up ? "up" : "DOWN"}`)
        .join(", ") || "-",
    ],
    [
      "control",
      `${s.control.clients} clients, ${s.control.requests} requests, errors ${breakdown(s.control.errors)}`,
    ],
  ];
  for (const [k, v] of Object.entries(s.counters ?? {})) pairs.push([k.replaceAll("_", " "), String(v)]);
  for (const [k, v] of Object.entries(s.gauges ?? {})) pairs.push([k.replaceAll("_", " "), String(v)]);
  if (hook !== undefined) {
    pairs.push(["on-checkpoint", `ok ${hook.ok}, failed ${hook.failed}, coalesced ${hook.coalesced}`]);
  }
  parts.push(kv(pairs));
  return parts.join("\n\n");
}

export function formatParams(p: ControlParams): string {
  const entries = Object.entries(p);
  if (entries.length === 0) return "no parameters";
  return kv(entries.map(([k, v]) => [k, typeof v === "boolean" ? (v ? "on" : "off") : String(v)]));
}

export function formatRules(rules: PassthroughEntry[]): string {
  if (rules.length === 0) return "no passthrough rules";
  return table(
    ["ID", "RULE"],
    rules.map((r) => [r.id, r.rule]),
    [true, false],
  );
}

function isoOf(e: EventMessage): string {
  return new Date(e.timestamp.seconds * 1000 + Math.floor(e.timestamp.microseconds / 1000)).toISOString();
}

/** One event as a headline plus, for checkpoint requests, the explanation and hexdump. */
export function formatEvent(e: EventMessage, color = false): string {
  const t = isoOf(e);
  const d = e.data;
  switch (e.event) {
    case "CHECKPOINT_REQUEST": {
      const c = d as CheckpointRequestData;
      const where = [c.flow, c.offset === undefined ? undefined : `@ ${c.offset}`].filter(Boolean).join(" ");
      const lines = [`${t} CHECKPOINT_REQUEST ${c.reason}${where ? ` ${where}` : ""} (epoch ${c.epoch})`];
      lines.push(`  ${c.explanation}`);
      for (const l of hexdumpPair(c.primary, c.secondary, color)) lines.push(`  ${l}`);
      return lines.join("\n");
    }
    case "CHECKPOINT_DONE":
      return `${t} CHECKPOINT_DONE epoch ${d.epoch}: released ${d.released}, dropped ${d.dropped}`;
    case "FAILOVER":
      return `${t} FAILOVER (${d.reason})`;
    case "PEER_LOST":
      return `${t} PEER_LOST ${d.peer}${d.address ? ` ${d.address}` : ""}: ${d.reason}`;
    case "PEER_UP":
      return `${t} PEER_UP ${d.peer}${d.address ? ` ${d.address}` : ""}`;
    case "BAD_INPUT":
      return `${t} BAD_INPUT ${d.code} from ${d.source} (${d.count} so far): ${d.desc}`;
    default:
      return `${t} ${e.event} ${JSON.stringify(d)}`;
  }
}
