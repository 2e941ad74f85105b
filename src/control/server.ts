/**
 * @module The control server: QMP-style JSON lines over a UNIX socket (mode 0600) and,
 * optionally, TCP on loopback. Commands are registered by the daemon with a zod schema for
 * their arguments; events are broadcast to every client and to in-process subscribers
 * (dashboard, on-checkpoint hook, logs).
 *
 * Robustness: bad JSON, unknown commands and bad arguments get error replies with stable codes
 * (counted per code) and the connection stays open; request lines are bounded (`maxLineBytes`);
 * clients are bounded (`maxClients`); a client that does not read is dropped once its pending
 * output exceeds `maxClientOutputBytes`, so it can never make the daemon buffer without bound
 * or stall. Per client, requests are answered in order, one at a time.
 */
import { chmod, lstat, unlink } from "node:fs/promises";
import { type AddressInfo, createConnection, createServer, isIP, type Server, type Socket } from "node:net";
import type { z } from "zod";
import { ColoError, type ErrorCode, isColoError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import {
  decodeRequest,
  type ErrorBody,
  encode,
  errorBody,
  greeting,
  type LineItem,
  LineSplitter,
  type Request,
  type RequestId,
  timestampOf,
} from "./protocol.ts";
import type { ControlEvent, ControlEventMap, ControlEventName } from "./target.ts";

/** What a handler learns about the request (for commands that care who asked). */
export interface CommandContext {
  /** "unix", "tcp" or "local" (in-process `execute()`). */
  transport: "unix" | "tcp" | "local";
  clientId: number;
}

export interface CommandSpec<S extends z.ZodType = z.ZodType> {
  /** One line for `query-commands` and docs. */
  help: string;
  /** Schema of the `arguments` object; absent means the command takes none (extra keys rejected). */
  args?: S;
  handler(args: z.output<S>, ctx: CommandContext): unknown;
}

export interface ControlServerOptions {
  /** Version for the greeting (`0.1.0`). */
  version?: string;
  /** Wall clock in ms for event timestamps; injected for tests. */
  now?: () => number;
  maxLineBytes?: number;
  maxClientOutputBytes?: number;
  maxClients?: number;
  /** Requests a client may have queued before we stop reading from it. */
  maxPendingRequests?: number;
  logger?: Logger;
}

/** The server's own counters, reported under `control` in query-stats and as metrics. */
export interface ControlServerStats {
  clients: number;
  clientsTotal: number;
  clientsDropped: number;
  clientsRejected: number;
  requests: number;
  /** Error replies by code. */
  errors: Record<string, number>;
  events: number;
}

export type EventListener = (e: ControlEvent) => void;

interface Client {
  id: number;
  socket: Socket;
  transport: "unix" | "tcp";
  splitter: LineSplitter;
  chain: Promise<void>;
  pending: number;
  negotiated: boolean;
  dead: boolean;
}

type Reply = { return: unknown; id?: RequestId } | { error: ErrorBody; id?: RequestId };

const NO_ARGS_MESSAGE = "takes no arguments";

export class ControlServer {
  readonly #commands = new Map<string, CommandSpec>();
  readonly #clients = new Set<Client>();
  readonly #listeners = new Set<EventListener>();
  readonly #servers: Server[] = [];
  readonly #unixPaths: string[] = [];
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #version: string;
  readonly #maxLine: number;
  readonly #maxOut: number;
  readonly #maxClients: number;
  readonly #maxPending: number;
  #nextId = 1;
  readonly #stats: ControlServerStats = {
    clients: 0,
    clientsTotal: 0,
    clientsDropped: 0,
    clientsRejected: 0,
    requests: 0,
    errors: {},
    events: 0,
  };

  constructor(opts: ControlServerOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#log = opts.logger ?? silentLogger();
    this.#version = opts.version ?? "0.0.0";
    this.#maxLine = opts.maxLineBytes ?? 64 * 1024;
    this.#maxOut = opts.maxClientOutputBytes ?? 1024 * 1024;
    this.#maxClients = opts.maxClients ?? 64;
    this.#maxPending = opts.maxPendingRequests ?? 32;
    this.register("qmp_capabilities", {
      help: "QMP capabilities negotiation; optional here (events flow without it). No capabilities are offered.",
      handler: () => ({}),
    });
    this.register("query-commands", {
      help: "List the commands this daemon accepts.",
      handler: () => [...this.#commands.entries()].map(([name, c]) => ({ name, help: c.help })),
    });
    this.register("query-version", {
      help: "Version of colo-proxy.",
      handler: () => greeting(this.#version).QMP.version,
    });
  }

  /** Registers a command. Throws when the name is taken (two modules fighting over a name is a bug). */
  register<S extends z.ZodType>(name: string, spec: CommandSpec<S>): void {
    if (this.#commands.has(name))
      throw new ColoError("COLO_ERR_INTERNAL", `control command '${name}' registered twice`);
    this.#commands.set(name, spec as unknown as CommandSpec);
  }

  has(name: string): boolean {
    return this.#commands.has(name);
  }

  get stats(): ControlServerStats {
    return { ...this.#stats, errors: { ...this.#stats.errors }, clients: this.#clients.size };
  }

  /** Broadcasts an event to all clients and in-process subscribers. Never throws. */
  emit<K extends ControlEventName>(event: K, data: ControlEventMap[K]): void {
    const timeMs = this.#now();
    this.#stats.events++;
    const line = encode({ event, data, timestamp: timestampOf(timeMs) });
    for (const c of this.#clients) this.#write(c, line);
    const ev = { event, data, timeMs } as ControlEvent;
    for (const l of this.#listeners) {
      try {
        l(ev);
      } catch (e) {
        this.#log.error({ err: e, event }, "control event listener failed");
      }
    }
  }

  /** Subscribes in-process to every event; returns the unsubscribe function. */
  subscribe(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Runs one request in-process (same validation and error replies as over the socket).
   * Used by the dashboard and by tests.
   */
  async execute(execute: string, args: Record<string, unknown> = {}): Promise<Reply> {
    return this.#dispatch({ execute, arguments: args, hasId: false }, { transport: "local", clientId: 0 });
  }

  /**
   * Listens on a UNIX socket with mode 0600. A stale socket file (no daemon answering) is
   * replaced; a live one is an error, and so is any non-socket file at the path.
   */
  async listenUnix(path: string): Promise<void> {
    const st = await lstat(path).catch(() => null);
    if (st !== null) {
      if (!st.isSocket()) {
        throw new ColoError("COLO_ERR_CTL_SOCKET_IN_USE", `${path} exists and is not a socket`, { path });
      }
      const live = await new Promise<boolean>((resolve) => {
        const s = createConnection(path);
        s.once("connect", () => {
          s.destroy();
          resolve(true);
        });
        s.once("error", () => resolve(false));
      });
      if (live) throw new ColoError("COLO_ERR_CTL_SOCKET_IN_USE", undefined, { path });
      await unlink(path);
    }
    const server = this.#newServer("unix");
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
    // Tiny window between bind and chmod; the directory's own permissions are the real fence.
    await chmod(path, 0o600);
    this.#unixPaths.push(path);
    this.#servers.push(server);
  }

  /** Listens on TCP (port 0 = ephemeral). Non-loopback hosts are allowed only when given explicitly. */
  async listenTcp(host = "127.0.0.1", port = 0): Promise<AddressInfo> {
    if (isIP(host) === 0 && host !== "localhost") {
      throw new ColoError("COLO_ERR_CONFIG", `control TCP host must be an IP address, got '${host}'`);
    }
    if (!isLoopback(host))
      this.#log.warn({ host, port }, "control socket listening on a non-loopback address");
    const server = this.#newServer("tcp");
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.#servers.push(server);
    return server.address() as AddressInfo;
  }

  /** Stops listening, disconnects every client and removes the UNIX socket files. */
  async close(): Promise<void> {
    for (const c of this.#clients) c.socket.destroy();
    this.#clients.clear();
    await Promise.all(this.#servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    this.#servers.length = 0;
    await Promise.all(this.#unixPaths.map((p) => unlink(p).catch(() => undefined)));
    this.#unixPaths.length = 0;
  }

  #newServer(transport: "unix" | "tcp"): Server {
    const server = createServer((socket) => this.#accept(socket, transport));
    server.on("error", (e) => this.#log.error({ err: e }, "control server error"));
    return server;
  }

  #accept(socket: Socket, transport: "unix" | "tcp"): void {
    if (this.#clients.size >= this.#maxClients) {
      this.#stats.clientsRejected++;
      this.#countError("COLO_ERR_CTL_TOO_MANY_CLIENTS");
      socket.end(encode({ error: errorBody("COLO_ERR_CTL_TOO_MANY_CLIENTS") }));
      socket.on("error", () => undefined);
      return;
    }
    const client: Client = {
      id: this.#nextId++,
      socket,
      transport,
      splitter: new LineSplitter(this.#maxLine),
      chain: Promise.resolve(),
      pending: 0,
      negotiated: false,
      dead: false,
    };
    this.#clients.add(client);
    this.#stats.clientsTotal++;
    const drop = (): void => {
      client.dead = true;
      this.#clients.delete(client);
    };
    socket.on("close", drop);
    socket.on("error", (e) => {
      this.#log.debug({ err: e, client: client.id }, "control client socket error");
      drop();
    });
    socket.on("data", (chunk: Buffer) => this.#onData(client, chunk));
    this.#write(client, encode(greeting(this.#version)));
  }

  #onData(client: Client, chunk: Buffer): void {
    const items: LineItem[] = client.splitter.push(chunk);
    for (const item of items) {
      if ("overflow" in item) {
        this.#countError("COLO_ERR_CTL_LINE_TOO_LONG");
        this.#write(
          client,
          encode({
            error: errorBody(
              "COLO_ERR_CTL_LINE_TOO_LONG",
              `request line longer than ${this.#maxLine} bytes; discarded up to the next newline`,
            ),
          }),
        );
        continue;
      }
      if (item.line.trim() === "") continue;
      client.pending++;
      if (client.pending >= this.#maxPending) client.socket.pause();
      const line = item.line;
      client.chain = client.chain.then(async () => {
        const reply = await this.#handleLine(client, line);
        if (!client.dead) this.#write(client, encode(reply));
        client.pending--;
        if (client.pending < this.#maxPending && !client.dead) client.socket.resume();
      });
    }
  }

  async #handleLine(client: Client, line: string): Promise<Reply> {
    const decoded = decodeRequest(line);
    if (!decoded.ok) {
      this.#stats.requests++;
      this.#countError(decoded.error.code);
      return decoded.id === undefined ? { error: decoded.error } : { error: decoded.error, id: decoded.id };
    }
    const req = decoded.request;
    if (req.execute === "qmp_capabilities") {
      if (client.negotiated) {
        return this.#fail(req, "COLO_ERR_CTL_NEGOTIATION", "capabilities negotiation is already complete");
      }
      const enable = req.arguments.enable;
      if (enable !== undefined && (!Array.isArray(enable) || enable.length > 0)) {
        return this.#fail(
          req,
          "COLO_ERR_CTL_NEGOTIATION",
          "no capabilities are offered; 'enable' must be empty",
        );
      }
      client.negotiated = true;
    }
    return this.#dispatch(req, { transport: client.transport, clientId: client.id });
  }

  async #dispatch(req: Request, ctx: CommandContext): Promise<Reply> {
    this.#stats.requests++;
    const spec = this.#commands.get(req.execute);
    if (spec === undefined) {
      return this.#fail(req, "COLO_ERR_CTL_UNKNOWN_COMMAND", `The command ${req.execute} has not been found`);
    }
    let args: unknown = req.arguments;
    if (spec.args === undefined) {
      const extra = Object.keys(req.arguments).filter(
        (k) => !(req.execute === "qmp_capabilities" && k === "enable"),
      );
      if (extra.length > 0) {
        return this.#fail(
          req,
          "COLO_ERR_CTL_BAD_ARGS",
          `${req.execute} ${NO_ARGS_MESSAGE} (got '${extra.join("', '")}')`,
        );
      }
    } else {
      const parsed = spec.args.safeParse(req.arguments);
      if (!parsed.success) {
        const desc = parsed.error.issues
          .map((i) => `${i.path.length > 0 ? i.path.join(".") : "arguments"}: ${i.message}`)
          .join("; ");
        return this.#fail(req, "COLO_ERR_CTL_BAD_ARGS", `${req.execute}: ${desc}`);
      }
      args = parsed.data;
    }
    try {
      const value = await spec.handler(args, ctx);
      const ret = value === undefined ? {} : value;
      return req.hasId ? { return: ret, id: req.id } : { return: ret };
    } catch (e) {
      if (isColoError(e)) {
        // Command-level failures keep their own code (e.g. COLO_ERR_CTL_BAD_RULE).
        return this.#fail(req, e.code, e.message);
      }
      this.#log.error({ err: e, command: req.execute }, "control command failed");
      return this.#fail(
        req,
        "COLO_ERR_CTL_COMMAND_FAILED",
        `${req.execute}: ${(e as Error)?.message ?? String(e)}`,
      );
    }
  }

  #fail(req: Request, code: ErrorCode, desc: string): Reply {
    this.#countError(code);
    const error = errorBody(code, desc);
    return req.hasId ? { error, id: req.id } : { error };
  }

  #countError(code: string): void {
    this.#stats.errors[code] = (this.#stats.errors[code] ?? 0) + 1;
  }

  #write(c: Client, line: string): void {
    if (c.dead) return;
    c.socket.write(line);
    if (c.socket.writableLength > this.#maxOut) {
      c.dead = true;
      this.#clients.delete(c);
      this.#stats.clientsDropped++;
      this.#countError("COLO_ERR_CTL_SLOW_CLIENT");
      this.#log.warn(
        { client: c.id, buffered: c.socket.writableLength, code: "COLO_ERR_CTL_SLOW_CLIENT" },
        "control client is not reading; dropped",
      );
      c.socket.destroy();
    }
  }
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
