/**
 * @module A small client for the control socket (used by `colo-proxy ctl` and tests): connect,
 * read the greeting, run commands (matched to replies by id), receive events.
 */
import { createConnection, type Socket } from "node:net";
import { ColoError, type ErrorCode } from "../errors.ts";
import { type ErrorBody, type EventMessage, type Greeting, LineSplitter } from "./protocol.ts";

export type ControlAddress = { path: string } | { host: string; port: number };

/** An error reply from the daemon, with its class and stable code. */
export class ControlCommandError extends ColoError {
  readonly errorClass: string;
  constructor(body: ErrorBody) {
    super(body.code, body.desc, { class: body.class });
    this.name = "ControlCommandError";
    this.errorClass = body.class;
  }
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout | undefined;
}

export interface ClientOptions {
  /** ms to wait for the connection + greeting, and for each reply; 0 = forever. */
  timeoutMs?: number;
  /** Largest line accepted from the daemon. */
  maxLineBytes?: number;
}

export class ControlClient {
  readonly greeting: Greeting;
  readonly #socket: Socket;
  readonly #pending = new Map<number, Pending>();
  readonly #eventListeners = new Set<(e: EventMessage) => void>();
  readonly #closeListeners = new Set<(err?: Error) => void>();
  readonly #timeoutMs: number;
  #nextId = 1;
  #closed = false;
  /** Lines received before the caller could subscribe; null once delivered. */
  #early: string[] | null = [];

  private constructor(socket: Socket, greeting: Greeting, splitter: LineSplitter, timeoutMs: number) {
    this.#socket = socket;
    this.greeting = greeting;
    this.#timeoutMs = timeoutMs;
    socket.on("data", (chunk: Buffer) => {
      for (const item of splitter.push(chunk)) {
        if ("line" in item) {
          if (this.#early !== null) this.#early.push(item.line);
          else this.#onLine(item.line);
        } else this.#fatal(new ColoError("COLO_ERR_CTL_PROTOCOL", "daemon sent an overlong line"));
      }
    });
    socket.on("error", (e) =>
      this.#fatal(new ColoError("COLO_ERR_CTL_CONNECT", e.message, undefined, { cause: e })),
    );
    socket.on("close", () => this.#fatal(new ColoError("COLO_ERR_CTL_CONNECT", "control connection closed")));
  }

  /** Connects and waits for the greeting. Throws ColoError COLO_ERR_CTL_CONNECT / _PROTOCOL / _TIMEOUT. */
  static connect(addr: ControlAddress, opts: ClientOptions = {}): Promise<ControlClient> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const splitter = new LineSplitter(opts.maxLineBytes ?? 16 * 1024 * 1024);
    const where = "path" in addr ? addr.path : `${addr.host}:${addr.port}`;
    return new Promise((resolve, reject) => {
      const socket = "path" in addr ? createConnection(addr.path) : createConnection(addr.port, addr.host);
      let timer: NodeJS.Timeout | undefined;
      const fail = (code: ErrorCode, msg: string): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(new ColoError(code, msg, { address: where }));
      };
      if (timeoutMs > 0)
        timer = setTimeout(() => fail("COLO_ERR_CTL_TIMEOUT", `no greeting from ${where}`), timeoutMs);
      socket.once("error", (e: NodeJS.ErrnoException) =>
        fail("COLO_ERR_CTL_CONNECT", `cannot connect to ${where}: ${e.code ?? e.message}`),
      );
      socket.once("close", () =>
        fail("COLO_ERR_CTL_CONNECT", `${where} closed the connection before greeting`),
      );
      const onData = (chunk: Buffer): void => {
        const items = splitter.push(chunk);
        const first = items.shift();
        if (first === undefined) return;
        socket.off("data", onData);
        socket.removeAllListeners("error");
        socket.removeAllListeners("close");
        clearTimeout(timer);
        let g: unknown;
        try {
          g = "line" in first ? JSON.parse(first.line) : null;
        } catch {
          g = null;
        }
        if (typeof g !== "object" || g === null || !("QMP" in g)) {
          const err = g as { error?: ErrorBody } | null;
          if (err?.error !== undefined) fail(err.error.code, err.error.desc);
          else fail("COLO_ERR_CTL_PROTOCOL", `${where} did not send a QMP greeting`);
          return;
        }
        const client = new ControlClient(socket, g as Greeting, splitter, timeoutMs);
        // Lines after the greeting (events) are delivered, in order, once the caller has had a
        // chance to subscribe: it resumes from `await connect()` before the next macrotask.
        for (const item of items) if ("line" in item) client.#early?.push(item.line);
        resolve(client);
        setImmediate(() => {
          const early = client.#early ?? [];
          client.#early = null;
          for (const line of early) client.#onLine(line);
        });
      };
      socket.on("data", onData);
    });
  }

  /** Runs a command and resolves with its `return` value; rejects with ControlCommandError. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.#closed)
      return Promise.reject(new ColoError("COLO_ERR_CTL_CONNECT", "control connection closed"));
    const id = this.#nextId++;
    const msg: Record<string, unknown> = { execute: command, id };
    if (args !== undefined) msg.arguments = args;
    return new Promise<T>((resolve, reject) => {
      const p: Pending = { resolve: resolve as (v: unknown) => void, reject, timer: undefined };
      if (this.#timeoutMs > 0) {
        p.timer = setTimeout(() => {
          this.#pending.delete(id);
          reject(new ColoError("COLO_ERR_CTL_TIMEOUT", `no reply to ${command}`));
        }, this.#timeoutMs);
      }
      this.#pending.set(id, p);
      this.#socket.write(`${JSON.stringify(msg)}\n`);
    });
  }

  /** Sends a raw line (tests of malformed input). */
  sendRaw(text: string): void {
    this.#socket.write(text);
  }

  onEvent(listener: (e: EventMessage) => void): () => void {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  /** Called once when the connection ends (with the reason when abnormal). */
  onClose(listener: (err?: Error) => void): void {
    this.#closeListeners.add(listener);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    this.#rejectAll(new ColoError("COLO_ERR_CTL_CONNECT", "control connection closed"));
    for (const l of this.#closeListeners) l();
  }

  #onLine(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.#fatal(new ColoError("COLO_ERR_CTL_PROTOCOL", "daemon sent invalid JSON"));
      return;
    }
    if (typeof msg.event === "string") {
      for (const l of this.#eventListeners) l(msg as unknown as EventMessage);
      return;
    }
    const id = msg.id;
    const p = typeof id === "number" ? this.#pending.get(id) : undefined;
    if (p === undefined) {
      // Replies without our id (e.g. a line-length error) cannot be matched: surface them.
      if (msg.error !== undefined && this.#pending.size === 1) {
        const [only] = this.#pending.values();
        this.#pending.clear();
        clearTimeout(only?.timer);
        only?.reject(new ControlCommandError(msg.error as ErrorBody));
      }
      return;
    }
    this.#pending.delete(id as number);
    clearTimeout(p.timer);
    if (msg.error !== undefined) p.reject(new ControlCommandError(msg.error as ErrorBody));
    else p.resolve(msg.return);
  }

  #rejectAll(e: Error): void {
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.#pending.clear();
  }

  #fatal(e: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    this.#rejectAll(e);
    for (const l of this.#closeListeners) l(e);
  }
}
