/**
 * @module The live dashboard (`--dashboard HOST:PORT`): one page (src/control/dashboard/) with
 * uPlot charts of released frames/s, checkpoint requests/s by reason and hold-time percentiles,
 * the connection table and the last miscompares with side-by-side hexdumps. Everything is
 * served by the daemon itself (uPlot from node_modules, no CDN); updates flow by server-sent
 * events: a `tick` each `tickMs` while someone watches, and each miscompare as it happens.
 *
 * Rates and percentiles are computed here from consecutive stats snapshots (the same source
 * as query-stats and /metrics), so the page needs no arithmetic beyond drawing.
 */
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Logger, silentLogger } from "../log.ts";
import type { StatsReply, StatusReply } from "./commands.ts";
import { type HttpEndpoint, listenHttp } from "./metrics.ts";
import type { ControlServer } from "./server.ts";
import { type HistogramSnapshot, histogramQuantile, total } from "./stats.ts";
import type { CheckpointRequestData, ConnectionInfo } from "./target.ts";

export interface DashboardSource {
  status(): StatusReply;
  stats(): StatsReply;
  connections(): ConnectionInfo[];
}

export interface DashboardOptions {
  host: string;
  port: number;
  source: DashboardSource;
  /** Where CHECKPOINT_REQUEST and other events come from. */
  server: ControlServer;
  logger?: Logger;
  now?: () => number;
  /** ms between ticks while at least one page is open. Default 1000. */
  tickMs?: number;
  /** Miscompares kept for new pages. Default 20. */
  keepMiscompares?: number;
  /** Connection rows sent per tick (largest queues first). Default 200. */
  maxConnectionRows?: number;
  maxClients?: number;
  /** Per-page unsent-bytes limit before the page's stream is dropped. */
  maxClientBufferBytes?: number;
}

export interface Tick {
  /** Wall-clock seconds. */
  t: number;
  /** Released primary frames per second over the last interval; null without a previous tick. */
  releasedPerSec: number | null;
  /** Checkpoint requests per second over the last interval, by reason (null values without a previous tick). */
  requestsPerSec: Record<string, number | null>;
  /** Hold-time percentiles (ms) of frames released during the last interval; null when none. */
  holdMs: { p50: number | null; p90: number | null; p99: number | null };
  totals: {
    released: number;
    checkpointRequests: number;
    checkpoints: number;
    miscompares: number;
    badInput: number;
  };
  queues: { primary: number; secondary: number };
  status: StatusReply;
  connections: ConnectionInfo[];
  connectionsTotal: number;
}

export interface MiscompareItem extends CheckpointRequestData {
  timeMs: number;
}

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

function loadAssets(): Map<string, { type: string; body: Buffer }> {
  const uplotDir = dirname(require.resolve("uplot/dist/uPlot.iife.min.js"));
  const a = new Map<string, { type: string; body: Buffer }>();
  const add = (route: string, file: string, type: string) => a.set(route, { type, body: readFileSync(file) });
  add("/", join(here, "dashboard", "index.html"), "text/html; charset=utf-8");
  add("/app.js", join(here, "dashboard", "app.js"), "text/javascript; charset=utf-8");
  add("/style.css", join(here, "dashboard", "style.css"), "text/css; charset=utf-8");
  add("/uplot/uPlot.iife.min.js", join(uplotDir, "uPlot.iife.min.js"), "text/javascript; charset=utf-8");
  add("/uplot/uPlot.min.css", join(uplotDir, "uPlot.min.css"), "text/css; charset=utf-8");
  return a;
}

function deltaHistogram(cur: HistogramSnapshot, prev: HistogramSnapshot | null): HistogramSnapshot {
  if (prev === null) return cur;
  return {
    bounds: cur.bounds,
    counts: cur.counts.map((c, i) => c - (prev.counts[i] ?? 0)),
    sum: cur.sum - prev.sum,
    count: cur.count - prev.count,
  };
}

const ms = (s: number | null): number | null => (s === null ? null : Math.round(s * 1e6) / 1e3);

export class Dashboard {
  readonly #o: Required<Omit<DashboardOptions, "logger" | "now">>;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #assets = loadAssets();
  readonly #clients = new Set<ServerResponse>();
  readonly #miscompares: MiscompareItem[] = [];
  #prev: {
    timeMs: number;
    released: number;
    requests: Record<string, number>;
    hold: HistogramSnapshot;
  } | null = null;
  #timer: NodeJS.Timeout | null = null;
  #http: HttpEndpoint | null = null;
  #unsubscribe: () => void = () => undefined;
  /** Pages dropped because they did not keep up. */
  dropped = 0;

  constructor(opts: DashboardOptions) {
    this.#o = {
      tickMs: 1000,
      keepMiscompares: 20,
      maxConnectionRows: 200,
      maxClients: 32,
      maxClientBufferBytes: 4 * 1024 * 1024,
      ...opts,
    } as Required<Omit<DashboardOptions, "logger" | "now">>;
    this.#log = opts.logger ?? silentLogger();
    this.#now = opts.now ?? Date.now;
  }

  get host(): string {
    return this.#http?.host ?? this.#o.host;
  }
  get port(): number {
    return this.#http?.port ?? this.#o.port;
  }
  get url(): string {
    return `http://${this.host.includes(":") ? `[${this.host}]` : this.host}:${this.port}/`;
  }
  get clients(): number {
    return this.#clients.size;
  }

  async start(): Promise<void> {
    this.#unsubscribe = this.#o.server.subscribe((e) => {
      if (e.event === "CHECKPOINT_REQUEST") {
        const item: MiscompareItem = { ...(e.data as CheckpointRequestData), timeMs: e.timeMs };
        this.#miscompares.push(item);
        if (this.#miscompares.length > this.#o.keepMiscompares) this.#miscompares.shift();
        this.#broadcast("miscompare", item);
      } else {
        this.#broadcast("control", { event: e.event, data: e.data, timeMs: e.timeMs });
      }
    });
    this.#http = await listenHttp(
      this.#o.host,
      this.#o.port,
      (req, res) => this.#handle(req, res),
      this.#log,
      "dashboard",
    );
  }

  async close(): Promise<void> {
    this.#unsubscribe();
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    for (const c of this.#clients) c.destroy();
    this.#clients.clear();
    await this.#http?.close();
  }

  /** Computes a tick from the current stats (and the previous tick), and sends it to every page. */
  tick(): Tick {
    const t = this.#makeTick();
    this.#broadcast("tick", t);
    return t;
  }

  #makeTick(): Tick {
    const src = this.#o.source;
    const stats = src.stats();
    const nowMs = this.#now();
    const released = total(stats.released);
    const prev = this.#prev;
    const dt = prev === null ? 0 : (nowMs - prev.timeMs) / 1000;
    const requestsPerSec: Record<string, number | null> = {};
    for (const [reason, n] of Object.entries(stats.checkpointRequests)) {
      requestsPerSec[reason] = dt > 0 ? (n - (prev?.requests[reason] ?? 0)) / dt : null;
    }
    const hold = deltaHistogram(stats.holdTime, prev?.hold ?? null);
    this.#prev = { timeMs: nowMs, released, requests: { ...stats.checkpointRequests }, hold: stats.holdTime };
    const all = src.connections();
    const rows = [...all]
      .sort((a, b) => b.primaryQueued + b.secondaryQueued - (a.primaryQueued + a.secondaryQueued))
      .slice(0, this.#o.maxConnectionRows);
    let miscompares = 0;
    for (const byProto of Object.values(stats.miscompares)) miscompares += total(byProto);
    return {
      t: nowMs / 1000,
      releasedPerSec: dt > 0 && prev !== null ? (released - prev.released) / dt : null,
      requestsPerSec,
      holdMs: {
        p50: ms(histogramQuantile(hold, 0.5)),
        p90: ms(histogramQuantile(hold, 0.9)),
        p99: ms(histogramQuantile(hold, 0.99)),
      },
      totals: {
        released,
        checkpointRequests: total(stats.checkpointRequests),
        checkpoints: stats.checkpoints,
        miscompares,
        badInput: total(stats.badInput),
      },
      queues: { ...stats.queues },
      status: src.status(),
      connections: rows,
      connectionsTotal: all.length,
    };
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    const asset = this.#assets.get(path);
    if (asset !== undefined) {
      res.writeHead(200, { "content-type": asset.type, "cache-control": "no-cache" });
      res.end(req.method === "HEAD" ? undefined : asset.body);
      return;
    }
    if (path === "/api/state") {
      const body = JSON.stringify({ tick: this.#makeTickPreview(), miscompares: this.#miscompares });
      res.writeHead(200, { "content-type": "application/json" }).end(body);
      return;
    }
    if (path === "/favicon.ico") {
      res.writeHead(204).end();
      return;
    }
    if (path === "/events") {
      this.#openStream(res);
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  }

  /** A tick for /api/state that does not disturb the rate baseline of the live stream. */
  #makeTickPreview(): Tick {
    const saved = this.#prev;
    const t = this.#makeTick();
    this.#prev = saved;
    return t;
  }

  #openStream(res: ServerResponse): void {
    if (this.#clients.size >= this.#o.maxClients) {
      res.writeHead(503, { "content-type": "text/plain" }).end("too many dashboard clients\n");
      return;
    }
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
    });
    this.#clients.add(res);
    res.on("close", () => {
      this.#clients.delete(res);
      if (this.#clients.size === 0 && this.#timer !== null) {
        clearInterval(this.#timer);
        this.#timer = null;
      }
    });
    this.#send(res, "hello", { miscompares: this.#miscompares, tickMs: this.#o.tickMs });
    this.#send(res, "tick", this.#makeTickPreview());
    if (this.#timer === null) {
      this.#timer = setInterval(() => this.tick(), this.#o.tickMs);
      this.#timer.unref();
    }
  }

  #broadcast(event: string, data: unknown): void {
    if (this.#clients.size === 0) return;
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const c of this.#clients) this.#write(c, frame);
  }

  #send(res: ServerResponse, event: string, data: unknown): void {
    this.#write(res, `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  #write(res: ServerResponse, frame: string): void {
    res.write(frame);
    if (res.writableLength > this.#o.maxClientBufferBytes) {
      this.dropped++;
      this.#clients.delete(res);
      this.#log.warn({ buffered: res.writableLength }, "dashboard page is not keeping up; dropped");
      res.destroy();
    }
  }
}

export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
  const d = new Dashboard(opts);
  await d.start();
  return d;
}
