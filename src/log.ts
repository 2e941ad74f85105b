/**
 * @module Logging: one pino JSON logger per process (`--log-level`), plus the one-line
 * miscompare record. Nothing here is called per packet: daemons log state changes, bad input
 * (rate-limited by the caller) and miscompares, which are rare by construction (each one costs
 * a checkpoint).
 */
import { pino } from "pino";
import type { CheckpointRequestData, HexWindow } from "./control/target.ts";

export type Logger = pino.Logger;
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  level?: LogLevel | string;
  /** Component name, logged as `name` (e.g. "compare", "ctl"). */
  name?: string;
  /** Where to write; defaults to stderr so stdout stays free for command output. */
  destination?: pino.DestinationStream;
}

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

/** A pino logger writing JSON lines (to stderr by default), ISO timestamps. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? "info";
  const options: pino.LoggerOptions = {
    level,
    timestamp: pino.stdTimeFunctions.isoTime,
    base: { pid: process.pid },
  };
  if (opts.name !== undefined) options.name = opts.name;
  return pino(options, opts.destination ?? pino.destination({ fd: 2, sync: true }));
}

/**
 * Whether the `count`-th occurrence of a per-frame event (a frame dropped at a full queue, a
 * frame on a write-only chardev) is logged and announced: the 1st and every 1000th. Under a flood
 * such events come at the packet rate, and a synchronous log line (and control event) for each
 * made the daemon several times slower exactly when it was overloaded. The count is in every
 * line, and the counters (query-stats, /metrics) have every event.
 */
export function reportRepeat(count: number): boolean {
  return count === 1 || count % 1000 === 0;
}

/** A logger that discards everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

/**
 * Compact hex (`@1230: 48 54 [54] 50 …`) of a window, at most `max` bytes starting a little
 * before stream offset `at` (the first difference, bracketed) when it lies inside the window.
 */
export function shortHex(w: HexWindow, at?: number, max = 16): string {
  const hex = w.hex.replace(/\s+/g, "");
  const n = hex.length >> 1;
  const rel = at === undefined ? -1 : at - w.offset;
  const start = rel > 4 && rel < n ? rel - 4 : 0;
  const end = Math.min(n, start + max);
  const parts: string[] = [];
  for (let i = start; i < end; i++) {
    const b = hex.slice(i * 2, i * 2 + 2);
    parts.push(i === rel ? `[${b}]` : b);
  }
  return `@${w.offset + start}: ${parts.join(" ")}${end < n ? " …" : ""}`;
}

/**
 * Logs one line per miscompare: flow, reason, stream offset and a short hexdump of both sides
 * at the first difference. Fields are structured (for jq) and the message is readable alone.
 */
export function logMiscompare(log: Logger, m: CheckpointRequestData): void {
  const fields: Record<string, unknown> = {
    event: "miscompare",
    reason: m.reason,
    flow: m.flow,
    offset: m.offset,
    epoch: m.epoch,
  };
  if (m.primary !== undefined) fields.primary = shortHex(m.primary, m.offset);
  if (m.secondary !== undefined) fields.secondary = shortHex(m.secondary, m.offset);
  log.warn(fields, m.explanation);
}
