/**
 * @module The one call a daemon makes to get its operator interface:
 *
 * ```ts
 * const control = await startControl(target, { role: "compare", ...controlOptionsFromArgs(values, "compare") });
 * control.emit("CHECKPOINT_REQUEST", { reason: "payload", explanation, flow, offset, primary, secondary, epoch });
 * await control.close();
 * ```
 *
 * It starts the control socket (UNIX, optional loopback TCP) with the standard commands, the
 * optional Prometheus endpoint, dashboard and --on-checkpoint hook, and logs events (one line
 * per miscompare). Daemons add their own commands with `control.server.register(...)`.
 */
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { ColoError, ConfigError, isColoError } from "../errors.ts";
import { isLogLevel, LOG_LEVELS, type Logger, logMiscompare, silentLogger } from "../log.ts";
import { registerStandardCommands, type StatsReply, type StatusReply } from "./commands.ts";
import { type Dashboard, startDashboard } from "./dashboard.ts";
import { createMetricsRegistry, type HttpEndpoint, startMetricsServer } from "./metrics.ts";
import { OnCheckpointRunner } from "./on-checkpoint.ts";
import { ControlServer, type ControlServerOptions } from "./server.ts";
import type {
  CheckpointRequestData,
  ControlEventMap,
  ControlEventName,
  ControlTarget,
  DaemonRole,
} from "./target.ts";

export type { CommandContext, CommandSpec } from "./server.ts";
export { ControlServer } from "./server.ts";
export * from "./stats.ts";
export * from "./target.ts";

export interface HostPort {
  host: string;
  port: number;
}

export interface ControlOptions {
  role: DaemonRole;
  /**
   * UNIX control socket path. `undefined`: the default path for the role, and failing to bind
   * it is only a warning (e.g. a second daemon of the same role); `null`: no socket. An explicit
   * path that cannot be bound is an error.
   */
  socket?: string | null;
  /** Also listen on TCP (loopback unless a host is given explicitly). */
  tcp?: HostPort | null;
  /** Prometheus endpoint (GET /metrics). */
  metrics?: HostPort | null;
  /** Live dashboard. */
  dashboard?: HostPort | null;
  /** Dashboard tick period in ms (default 1000). */
  dashboardTickMs?: number;
  /** Shell command run on checkpoint requests (rate-limited). */
  onCheckpoint?: { command: string; minIntervalMs?: number; timeoutMs?: number } | null;
  logger?: Logger;
  /** Wall clock in ms (event timestamps, uptime). */
  now?: () => number;
  server?: Pick<ControlServerOptions, "maxLineBytes" | "maxClientOutputBytes" | "maxClients">;
}

export interface Control {
  readonly server: ControlServer;
  /** Bound socket path, or null. */
  readonly socketPath: string | null;
  readonly tcpAddress: HostPort | null;
  /** Bound /metrics endpoint, or null. */
  readonly metrics: HttpEndpoint | null;
  readonly dashboard: Dashboard | null;
  readonly onCheckpoint: OnCheckpointRunner | null;
  /** The query-stats reply (target stats + control counters): the source of /metrics too. */
  stats(): StatsReply;
  emit<K extends ControlEventName>(event: K, data: ControlEventMap[K]): void;
  close(): Promise<void>;
}

export const VERSION: string = pkg.version;

/** Directory for default control sockets: /run/colo-proxy as root, else $XDG_RUNTIME_DIR or the tmpdir. */
export function runtimeDir(): string {
  if (process.env.COLO_PROXY_RUNDIR) return process.env.COLO_PROXY_RUNDIR;
  if (process.getuid?.() === 0) return "/run/colo-proxy";
  return process.env.XDG_RUNTIME_DIR || tmpdir();
}

/** `<runtime dir>/colo-proxy-<role>.sock` — where `colo-proxy ctl` looks by default. */
export function defaultSocketPath(role: DaemonRole): string {
  return join(runtimeDir(), `colo-proxy-${role}.sock`);
}

/** Parses `HOST:PORT`, `[V6]:PORT` or just `PORT` (host defaults to 127.0.0.1). */
export function parseHostPort(s: string, what: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s) ?? /^()()(\d{1,5})$/.exec(s);
  const port = m === null ? Number.NaN : Number(m[3]);
  if (m === null || !(port >= 0 && port <= 65535)) {
    throw new ConfigError(`${what}: expected HOST:PORT or PORT, got '${s}'`);
  }
  return { host: m[1] || m[2] || "127.0.0.1", port };
}

/**
 * Option specs for node:util parseArgs that every daemon accepts; spread them into the
 * daemon's own `options` and pass the values to controlOptionsFromArgs().
 */
export const CONTROL_ARG_OPTIONS = {
  control: { type: "string" },
  "control-tcp": { type: "string" },
  metrics: { type: "string" },
  dashboard: { type: "string" },
  "on-checkpoint": { type: "string" },
  "on-checkpoint-interval": { type: "string" },
  "log-level": { type: "string" },
} as const;

/** Help text for CONTROL_ARG_OPTIONS, to append to a daemon's --help. */
export const CONTROL_ARG_HELP = `Operator interface:
  --control PATH            control socket (default ${join("$RUNDIR", "colo-proxy-<role>.sock")}; 'none' disables)
  --control-tcp HOST:PORT   also accept control connections on TCP (loopback unless a host is given)
  --metrics HOST:PORT       Prometheus /metrics endpoint (host defaults to 127.0.0.1)
  --dashboard HOST:PORT     live web dashboard (host defaults to 127.0.0.1)
  --on-checkpoint CMD       run CMD (via /bin/sh) on each checkpoint request, details in COLO_* env vars
  --on-checkpoint-interval MS  minimum ms between two runs of the hook (default 1000)
  --log-level LEVEL         ${LOG_LEVELS.join("|")} (default info)`;

export interface ControlArgValues {
  control?: string | undefined;
  "control-tcp"?: string | undefined;
  metrics?: string | undefined;
  dashboard?: string | undefined;
  "on-checkpoint"?: string | undefined;
  "on-checkpoint-interval"?: string | undefined;
  "log-level"?: string | undefined;
}

/** Everything the CLI flags configure, validated (ConfigError on bad values). */
export interface ControlCliConfig {
  socket: string | null | undefined;
  tcp: HostPort | null;
  metrics: HostPort | null;
  dashboard: HostPort | null;
  onCheckpoint: { command: string; minIntervalMs: number } | null;
  logLevel: string;
}

export function controlOptionsFromArgs(v: ControlArgValues): ControlCliConfig {
  const logLevel = v["log-level"] ?? "info";
  if (!isLogLevel(logLevel)) throw new ConfigError(`--log-level must be one of ${LOG_LEVELS.join(", ")}`);
  let minIntervalMs = 1000;
  if (v["on-checkpoint-interval"] !== undefined) {
    minIntervalMs = Number(v["on-checkpoint-interval"]);
    if (!Number.isInteger(minIntervalMs) || minIntervalMs < 0) {
      throw new ConfigError("--on-checkpoint-interval must be a non-negative integer (ms)");
    }
  }
  return {
    socket: v.control === "none" ? null : v.control,
    tcp: v["control-tcp"] === undefined ? null : parseHostPort(v["control-tcp"], "--control-tcp"),
    metrics: v.metrics === undefined ? null : parseHostPort(v.metrics, "--metrics"),
    dashboard: v.dashboard === undefined ? null : parseHostPort(v.dashboard, "--dashboard"),
    onCheckpoint: v["on-checkpoint"] === undefined ? null : { command: v["on-checkpoint"], minIntervalMs },
    logLevel,
  };
}

/** Starts the control socket(s), metrics, dashboard and hook for `target`, and wires event logging. */
export async function startControl(target: ControlTarget, opts: ControlOptions): Promise<Control> {
  const log = opts.logger ?? silentLogger();
  const now = opts.now ?? Date.now;
  const startMs = now();
  const server = new ControlServer({ ...opts.server, version: VERSION, now, logger: log });
  const hook =
    opts.onCheckpoint == null
      ? null
      : new OnCheckpointRunner({ ...opts.onCheckpoint, role: opts.role, logger: log, now });
  const stats = (): StatsReply => {
    const control: StatsReply["control"] = server.stats;
    if (hook !== null) control.onCheckpoint = hook.stats;
    return { ...target.stats(), control };
  };
  const status = (): StatusReply => ({
    ...target.status(),
    version: VERSION,
    pid: process.pid,
    uptime: Math.max(0, Math.floor((now() - startMs) / 1000)),
  });
  registerStandardCommands(server, target, { version: VERSION, now, startMs, stats });
  server.subscribe((e) => {
    if (e.event === "CHECKPOINT_REQUEST") {
      const d = e.data as CheckpointRequestData;
      // Re-notifications of a pending request (compare engine `repeat`) are not new miscompares.
      if (d.repeat !== true) logMiscompare(log, d);
      hook?.request(d, e.timeMs);
    } else if (e.event === "BAD_INPUT") log.warn({ event: e.event, ...e.data }, "bad input");
    else log.info({ event: e.event, ...e.data }, e.event.toLowerCase().replace("_", " "));
  });

  let socketPath: string | null = null;
  let tcpAddress: HostPort | null = null;
  let metrics: HttpEndpoint | null = null;
  let dashboard: Dashboard | null = null;
  const closeAll = async (): Promise<void> => {
    hook?.close();
    await dashboard?.close();
    await metrics?.close();
    await server.close();
  };
  try {
    if (opts.socket !== null) {
      const path = opts.socket ?? defaultSocketPath(opts.role);
      try {
        if (opts.socket === undefined && process.getuid?.() === 0)
          mkdirSync(runtimeDir(), { recursive: true, mode: 0o700 });
        await server.listenUnix(path);
        socketPath = path;
        log.info({ path }, "control socket listening");
      } catch (e) {
        if (opts.socket !== undefined) throw e;
        log.warn(
          { path, err: isColoError(e) ? e.message : String(e) },
          "default control socket unavailable; continuing without it",
        );
      }
    }
    if (opts.tcp != null) {
      const a = await server.listenTcp(opts.tcp.host, opts.tcp.port);
      tcpAddress = { host: a.address, port: a.port };
      log.info(tcpAddress, "control TCP listening");
    }
    if (opts.metrics != null) {
      const registry = createMetricsRegistry({ stats, status }, { version: VERSION });
      metrics = await startMetricsServer(registry, opts.metrics.host, opts.metrics.port, log);
      log.info({ host: metrics.host, port: metrics.port }, "metrics listening on /metrics");
    }
    if (opts.dashboard != null) {
      const connections = target.connections?.bind(target) ?? (() => []);
      const dashOpts: Parameters<typeof startDashboard>[0] = {
        host: opts.dashboard.host,
        port: opts.dashboard.port,
        source: { stats, status, connections },
        server,
        logger: log,
        now,
      };
      if (opts.dashboardTickMs !== undefined) dashOpts.tickMs = opts.dashboardTickMs;
      dashboard = await startDashboard(dashOpts);
      log.info({ url: dashboard.url }, "dashboard listening");
    }
  } catch (e) {
    await closeAll();
    if (isColoError(e)) throw e;
    throw new ColoError(
      "COLO_ERR_CONFIG",
      `cannot start control interface: ${(e as Error).message}`,
      undefined,
      {
        cause: e,
      },
    );
  }

  return {
    server,
    socketPath,
    tcpAddress,
    metrics,
    dashboard,
    onCheckpoint: hook,
    stats,
    emit: (event, data) => server.emit(event, data),
    close: closeAll,
  };
}
