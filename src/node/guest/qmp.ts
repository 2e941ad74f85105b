/**
 * @module Minimal QMP (QEMU Machine Protocol) client over a UNIX socket: greeting, capability
 * negotiation, commands matched to replies by id, and asynchronous events.
 */
import { EventEmitter } from "node:events";
import net from "node:net";
import { ColoError } from "../../errors.ts";

/** One asynchronous QMP event, e.g. `{ event: "MIGRATION", data: { status: "completed" } }`. */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  command: string;
  timer: NodeJS.Timeout;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A connected, negotiated QMP session. Emits `event` (QmpEvent) and `close`. */
export class QmpClient extends EventEmitter {
  #sock: net.Socket;
  #buf = "";
  #nextId = 1;
  #pending = new Map<string, Pending>();
  #greeting: ((v: unknown) => void) | undefined;
  #closed = false;

  private constructor(sock: net.Socket) {
    super();
    this.#sock = sock;
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => this.#onData(chunk));
    sock.on("error", () => {});
    sock.on("close", () => this.#onClose());
  }

  /**
   * Connects to a QMP server socket, retrying until it exists and accepts (QEMU creates it a
   * moment after starting), then negotiates capabilities.
   */
  static async connect(
    path: string,
    timeoutMs = 10_000,
    alive: () => boolean = () => true,
  ): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(path);
          s.once("connect", () => resolve(s));
          s.once("error", reject);
        });
        const qmp = new QmpClient(sock);
        await qmp.#handshake(Math.max(1000, deadline - Date.now()));
        return qmp;
      } catch (e) {
        if (Date.now() > deadline || !alive()) {
          throw new ColoError("COLO_ERR_QMP", `cannot connect to QMP at ${path}: ${(e as Error).message}`);
        }
        await sleep(20);
      }
    }
  }

  async #handshake(timeoutMs: number): Promise<void> {
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no QMP greeting")), timeoutMs);
      this.#greeting = (v) => {
        clearTimeout(t);
        resolve(v);
      };
    });
    await this.execute("qmp_capabilities", undefined, timeoutMs);
  }

  /** Runs one command and resolves with its `return` value; rejects with COLO_ERR_QMP on `error`. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    if (this.#closed) return Promise.reject(new ColoError("COLO_ERR_QMP", `QMP closed (${command})`));
    const id = String(this.#nextId++);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new ColoError("COLO_ERR_QMP", `QMP ${command} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, command, timer });
      this.#sock.write(
        `${JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id })}\n`,
      );
    });
  }

  /** Waits for the next event named `name` whose data satisfies `pred`. */
  waitEvent(
    name: string,
    pred: (data: Record<string, unknown>) => boolean = () => true,
    timeoutMs = 30_000,
  ): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (ev: QmpEvent) => {
        if (ev.event === name && pred(ev.data ?? {})) {
          cleanup();
          resolve(ev);
        }
      };
      const onClose = () => {
        cleanup();
        reject(new ColoError("COLO_ERR_QMP", `QMP closed while waiting for ${name}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new ColoError("COLO_ERR_QMP", `no ${name} event within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off("event", onEvent);
        this.off("close", onClose);
      };
      this.on("event", onEvent);
      this.on("close", onClose);
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    this.#sock.destroy();
  }

  #onData(chunk: string): void {
    this.#buf += chunk;
    for (let nl = this.#buf.indexOf("\n"); nl >= 0; nl = this.#buf.indexOf("\n")) {
      const line = this.#buf.slice(0, nl).trim();
      this.#buf = this.#buf.slice(nl + 1);
      if (line) this.#onMessage(line);
    }
  }

  #onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // QEMU only sends JSON; ignore anything else rather than crash
    }
    if ("QMP" in msg) {
      this.#greeting?.(msg);
      this.#greeting = undefined;
      return;
    }
    if ("event" in msg) {
      this.emit("event", msg as unknown as QmpEvent);
      return;
    }
    const id = typeof msg.id === "string" ? msg.id : undefined;
    const p = id === undefined ? undefined : this.#pending.get(id);
    if (!p || id === undefined) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    if ("error" in msg) {
      const err = msg.error as { class?: string; desc?: string };
      p.reject(
        new ColoError("COLO_ERR_QMP", `QMP ${p.command}: ${err.class ?? "Error"}: ${err.desc ?? "?"}`),
      );
    } else {
      p.resolve(msg.return);
    }
  }

  #onClose(): void {
    this.#closed = true;
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(new ColoError("COLO_ERR_QMP", `QMP connection closed during ${p.command}`));
    }
    this.#pending.clear();
    this.emit("close");
  }
}
