/**
 * @module Prometheus metrics (`--metrics HOST:PORT`, GET /metrics) on a private prom-client
 * Registry. Every colo_proxy_* series is computed at scrape time from ONE stats snapshot (the
 * same object `query-stats` returns), never from separately incremented counters, so the two
 * always agree exactly and the hot path pays nothing for metrics.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";
import { ColoError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import type { StatsReply } from "./commands.ts";
import { isLoopback } from "./server.ts";
import type { HistogramSnapshot } from "./stats.ts";
import type { DaemonStatus } from "./target.ts";

type Labels = Record<string, string>;
interface Sample {
  value: number;
  labels: Labels;
  metricName?: string;
}
type MetricType = "counter" | "gauge" | "histogram";

/** A prom-client-compatible metric whose samples are derived from the current snapshot. */
class SnapshotMetric {
  readonly aggregator = "sum";
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: MetricType,
    private readonly samples: () => Sample[],
  ) {}
  get(): { name: string; help: string; type: MetricType; aggregator: string; values: Sample[] } {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.samples(),
    };
  }
  reset(): void {}
}

function histogramSamples(name: string, h: HistogramSnapshot): Sample[] {
  const out: Sample[] = [];
  let cum = 0;
  h.bounds.forEach((b, i) => {
    cum += h.counts[i] ?? 0;
    out.push({ metricName: `${name}_bucket`, labels: { le: String(b) }, value: cum });
  });
  out.push({ metricName: `${name}_bucket`, labels: { le: "+Inf" }, value: h.count });
  out.push({ metricName: `${name}_sum`, labels: {}, value: h.sum });
  out.push({ metricName: `${name}_count`, labels: {}, value: h.count });
  return out;
}

function byLabel(rec: Record<string, number>, label: string): Sample[] {
  return Object.entries(rec).map(([k, v]) => ({ labels: { [label]: k }, value: v }));
}

export interface MetricsSource {
  stats(): StatsReply;
  status(): DaemonStatus;
}

export interface MetricsOptions {
  /** Include prom-client's process metrics (CPU, memory, event-loop lag). Default true. */
  processMetrics?: boolean;
  version?: string;
}

/**
 * Builds the registry. The snapshot is taken once per scrape: the first metric read in a
 * synchronous run takes it and it is dropped on the next macrotask, so all series of one scrape
 * come from the same instant.
 */
export function createMetricsRegistry(source: MetricsSource, opts: MetricsOptions = {}): Registry {
  const registry = new Registry();
  let cached: { stats: StatsReply; status: DaemonStatus } | null = null;
  const snap = (): { stats: StatsReply; status: DaemonStatus } => {
    if (cached === null) {
      cached = { stats: source.stats(), status: source.status() };
      setImmediate(() => {
        cached = null;
      });
    }
    return cached;
  };
  const s = () => snap().stats;
  const add = (name: string, help: string, type: MetricType, samples: () => Sample[]) =>
    registry.registerMetric(new SnapshotMetric(`colo_proxy_${name}`, help, type, samples) as never);

  add("info", "Constant 1, labelled with version and role.", "gauge", () => [
    { labels: { version: opts.version ?? "unknown", role: snap().status.role }, value: 1 },
  ]);
  add("mode", "1 for the current mode (starting, colo, failover, passthrough).", "gauge", () =>
    (["starting", "colo", "failover", "passthrough"] as const).map((m) => ({
      labels: { mode: m },
      value: snap().status.mode === m ? 1 : 0,
    })),
  );
  add("checkpoint_epoch", "Completed checkpoints since start (flush generation).", "gauge", () => [
    { labels: {}, value: snap().status.checkpointEpoch },
  ]);
  add("frames_total", "Frames through each endpoint.", "counter", () =>
    Object.entries(s().endpoints).flatMap(([endpoint, e]) => [
      { labels: { endpoint, direction: "in" }, value: e.framesIn },
      { labels: { endpoint, direction: "out" }, value: e.framesOut },
    ]),
  );
  add("bytes_total", "Bytes through each endpoint.", "counter", () =>
    Object.entries(s().endpoints).flatMap(([endpoint, e]) => [
      { labels: { endpoint, direction: "in" }, value: e.bytesIn },
      { labels: { endpoint, direction: "out" }, value: e.bytesOut },
    ]),
  );
  add("released_frames_total", "Primary frames released toward the client, by cause.", "counter", () =>
    byLabel(s().released, "cause"),
  );
  add("discarded_frames_total", "Secondary frames discarded (never output), by reason.", "counter", () =>
    byLabel(s().discarded ?? {}, "reason"),
  );
  add("dropped_frames_total", "Frames lost, by reason.", "counter", () => byLabel(s().dropped, "reason"));
  add("miscompares_total", "Miscompares by reason and protocol.", "counter", () =>
    Object.entries(s().miscompares).flatMap(([reason, byProto]) =>
      Object.entries(byProto).map(([protocol, v]) => ({ labels: { reason, protocol }, value: v })),
    ),
  );
  add("checkpoint_requests_total", "Checkpoint requests sent, by reason.", "counter", () =>
    byLabel(s().checkpointRequests, "reason"),
  );
  add("checkpoints_total", "Completed checkpoints.", "counter", () => [
    { labels: {}, value: s().checkpoints },
  ]);
  add("checkpoint_interval_seconds", "Seconds between completed checkpoints.", "histogram", () =>
    histogramSamples("colo_proxy_checkpoint_interval_seconds", s().checkpointInterval),
  );
  add("hold_time_seconds", "Seconds a primary frame was held, arrival to release.", "histogram", () =>
    histogramSamples("colo_proxy_hold_time_seconds", s().holdTime),
  );
  add("queue_frames", "Frames queued now, per side.", "gauge", () => byLabel(s().queues, "side"));
  add("connections", "Tracked connections now.", "gauge", () => [
    { labels: {}, value: s().connections.active },
  ]);
  add("connections_opened_total", "Connections tracked since start.", "counter", () => [
    { labels: {}, value: s().connections.opened },
  ]);
  add("bad_input_total", "Bad input by stable error code.", "counter", () => byLabel(s().badInput, "code"));
  add("link_up", "1 when the link/peer is up.", "gauge", () =>
    Object.entries(s().links).map(([link, up]) => ({ labels: { link }, value: up ? 1 : 0 })),
  );
  add("other_total", "Further daemon counters, by name.", "counter", () =>
    byLabel(s().counters ?? {}, "name"),
  );
  add("other", "Further daemon gauges, by name.", "gauge", () => byLabel(s().gauges ?? {}, "name"));
  add("control_clients", "Connected control-socket clients.", "gauge", () => [
    { labels: {}, value: s().control.clients },
  ]);
  add("control_requests_total", "Control-socket requests.", "counter", () => [
    { labels: {}, value: s().control.requests },
  ]);
  add("control_errors_total", "Control-socket error replies by code.", "counter", () =>
    byLabel(s().control.errors, "code"),
  );
  add(
    "on_checkpoint_runs_total",
    "--on-checkpoint hook runs by result (ok, failed, coalesced).",
    "counter",
    () => {
      const h = s().control.onCheckpoint;
      return h === undefined
        ? []
        : [
            { labels: { result: "ok" }, value: h.ok },
            { labels: { result: "failed" }, value: h.failed },
            { labels: { result: "coalesced" }, value: h.coalesced },
          ];
    },
  );
  if (opts.processMetrics !== false)
    collectDefaultMetrics({ register: registry, prefix: "colo_proxy_process_" });
  return registry;
}

export interface HttpEndpoint {
  server: Server;
  host: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Starts an HTTP server on host:port (port 0 = ephemeral). Non-loopback hosts are allowed
 * (explicitly configured) but logged as a warning.
 */
export async function listenHttp(
  host: string,
  port: number,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  log: Logger,
  what: string,
): Promise<HttpEndpoint> {
  if (!isLoopback(host)) log.warn({ host, port }, `${what} listening on a non-loopback address`);
  const server = createServer(handler);
  server.on("clientError", (_e, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) =>
      reject(new ColoError("COLO_ERR_CONFIG", `${what}: cannot listen on ${host}:${port}: ${e.message}`)),
    );
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    server,
    host: a.address,
    port: a.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Serves GET /metrics from the registry. */
export async function startMetricsServer(
  registry: Registry,
  host: string,
  port: number,
  logger: Logger = silentLogger(),
): Promise<HttpEndpoint> {
  return listenHttp(
    host,
    port,
    (req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
        return;
      }
      if (path === "/metrics") {
        registry.metrics().then(
          (text) => {
            res.writeHead(200, { "content-type": registry.contentType });
            res.end(req.method === "HEAD" ? undefined : text);
          },
          (e: Error) => {
            logger.error({ err: e }, "metrics collection failed");
            res
              .writeHead(500, { "content-type": "text/plain" })
              .end(`metrics collection failed: ${e.message}\n`);
          },
        );
        return;
      }
      if (path === "/") {
        res.writeHead(200, { "content-type": "text/html" }).end('<a href="/metrics">/metrics</a>\n');
        return;
      }
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    },
    logger,
    "metrics",
  );
}
