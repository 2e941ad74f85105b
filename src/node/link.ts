/**
 * @module Link: the I/O shell around LinkSession — the one TCP (optionally TLS) connection between
 * a colo-proxy primary and its secondary.
 *
 * The secondary listens on `addr`, the primary connects to it and reconnects with exponential
 * backoff whenever the connection is lost. A new connection on the secondary replaces the old one
 * only after it has authenticated, so a stray or unauthenticated client cannot knock out a
 * working link. Messages are length-prefixed exactly like QEMU chardev frames, so the same
 * FrameDecoder reads them; bad bytes end that connection (counted, reported), never the process.
 *
 * Reading from the link is never paused: heartbeats share the connection, and a paused reader
 * would look like a dead peer. Consumers that cannot keep up drop into their own bounded queues.
 */
import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { ColoError, type ErrorCode, FramingError } from "../errors.ts";
import { DEFAULT_MAX_FRAME_LENGTH, FrameDecoder } from "../wire/framing.ts";
import { type Channel, FRAME_HDR_LEN, type Hello, Role, roleName } from "./link-protocol.ts";
import { LinkSession, type LinkState } from "./link-session.ts";

export interface LinkAddress {
  host?: string;
  port?: number;
  path?: string;
}

export interface LinkTlsOptions {
  /** PEM files. The secondary (server) needs key+cert; both may pin a CA. */
  keyFile?: string;
  certFile?: string;
  caFile?: string;
  /** Server name to verify on the primary side (default: the certificate is checked against the CA only). */
  serverName?: string;
}

export interface LinkOptions {
  role: "primary" | "secondary";
  addr: LinkAddress;
  secret: Buffer;
  vnetHdr?: boolean;
  maxFrameLength?: number;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  tls?: LinkTlsOptions;
  /** Injected clock (ms). */
  now?: () => number;
}

export interface LinkEvents {
  listening: [address: string];
  /** The link is authenticated and carries frames. */
  up: [peer: Hello, remote: string];
  /** The established link was lost (it will be re-established by the primary's reconnect). */
  down: [err: ColoError];
  frame: [channel: Channel, frame: Buffer, vnetLen: number, epoch: number];
  /** Secondary: the primary finished a checkpoint. */
  checkpoint: [epoch: number];
  peerFailover: [reason: string];
  /** A connection attempt or connection failed (bad secret, wrong role, garbage...). */
  "link-error": [err: ColoError];
  /** The socket's send buffer is full (true) / drained (false): pause / resume the producers. */
  congestion: [congested: boolean];
}

interface Conn {
  sock: net.Socket;
  session: LinkSession;
  decoder: FrameDecoder;
  remote: string;
  pending: Buffer[];
  scheduled: boolean;
}

export class Link extends EventEmitter<LinkEvents> {
  readonly role: Role;
  readonly #opts: Required<Omit<LinkOptions, "tls" | "addr" | "secret">> & Pick<LinkOptions, "tls">;
  readonly #addr: LinkAddress;
  readonly #secret: Buffer;
  #server: net.Server | null = null;
  #active: Conn | null = null;
  #candidates = new Set<Conn>();
  #timer: NodeJS.Timeout | null = null;
  #reconnectTimer: NodeJS.Timeout | null = null;
  #backoff: number;
  #closed = false;
  #epoch = 0;
  #congested = false;
  readonly errors: Partial<Record<ErrorCode, number>> = {};
  readonly counters = {
    connects: 0,
    ups: 0,
    downs: 0,
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    staleFrames: 0,
  };

  constructor(opts: LinkOptions) {
    super();
    this.role = opts.role === "primary" ? Role.Primary : Role.Secondary;
    this.#addr = opts.addr;
    this.#secret = opts.secret;
    this.#opts = {
      role: opts.role,
      vnetHdr: opts.vnetHdr ?? false,
      maxFrameLength: opts.maxFrameLength ?? DEFAULT_MAX_FRAME_LENGTH,
      heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 200,
      heartbeatTimeoutMs: opts.heartbeatTimeoutMs ?? 1500,
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 3000,
      reconnectInitialMs: opts.reconnectInitialMs ?? 50,
      reconnectMaxMs: opts.reconnectMaxMs ?? 2000,
      now: opts.now ?? (() => performance.now()),
      tls: opts.tls,
    };
    this.#backoff = this.#opts.reconnectInitialMs;
  }

  /** True while an authenticated connection carries frames. */
  get up(): boolean {
    return this.#active !== null;
  }
  get epoch(): number {
    return this.#active?.session.epoch ?? this.#epoch;
  }
  get remote(): string | null {
    return this.#active?.remote ?? null;
  }

  async start(): Promise<void> {
    const tick = Math.max(10, Math.floor(this.#opts.heartbeatIntervalMs / 2));
    this.#timer = setInterval(() => this.#tick(), tick);
    this.#timer.unref();
    if (this.role === Role.Secondary) await this.#listen();
    else this.#connect();
  }

  /** Sends a frame to the peer; false when the link is down (the caller decides what that means). */
  sendFrame(channel: Channel, frame: Buffer, vnetLen: number): boolean {
    const c = this.#active;
    if (c === null) return false;
    const ok = c.session.sendFrame(channel, frame, vnetLen, this.#opts.now());
    if (ok) {
      this.counters.framesOut++;
      this.counters.bytesOut += frame.length;
    }
    return ok;
  }

  /** Primary: a checkpoint finished; the secondary is told and older guest output is discarded. */
  checkpoint(): number {
    const c = this.#active;
    if (c !== null) this.#epoch = c.session.checkpoint(this.#opts.now());
    else this.#epoch = (this.#epoch + 1) >>> 0;
    return this.#epoch;
  }

  /** Operator failover: tell the peer, then stop the link for good. */
  failover(reason: string): void {
    const c = this.#active;
    if (c !== null) {
      c.session.failover(reason, this.#opts.now());
      this.#flush(c);
    }
    void this.close();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    for (const c of [...this.#candidates, ...(this.#active ? [this.#active] : [])]) c.sock.destroy();
    this.#candidates.clear();
    this.#active = null;
    // A closed link holds nothing back: producers paused on its congestion must resume (the
    // primary's mirror_in, whose writer is QEMU's blocking filter-mirror).
    this.#setCongested(false);
    const srv = this.#server;
    this.#server = null;
    if (srv !== null) await new Promise<void>((r) => srv.close(() => r()));
  }

  #listen(): Promise<void> {
    const t = this.#opts.tls;
    const onConn = (sock: net.Socket) => this.#adopt(sock);
    const srv =
      t !== undefined
        ? tls.createServer(
            {
              key: t.keyFile ? readFileSync(t.keyFile) : undefined,
              cert: t.certFile ? readFileSync(t.certFile) : undefined,
              ca: t.caFile ? readFileSync(t.caFile) : undefined,
            },
            onConn,
          )
        : net.createServer(onConn);
    this.#server = srv;
    return new Promise((resolve, reject) => {
      srv.once("error", (e) => reject(new ColoError("COLO_ERR_LINK_LISTEN", `cannot listen: ${e.message}`)));
      const done = () => {
        const a = srv.address();
        this.emit("listening", typeof a === "string" ? a : `${a?.address}:${a?.port}`);
        srv.on("error", (e) => this.#error(new ColoError("COLO_ERR_LINK_LISTEN", e.message)));
        resolve();
      };
      if (this.#addr.path !== undefined) srv.listen(this.#addr.path, done);
      else srv.listen(this.#addr.port ?? 0, this.#addr.host ?? "127.0.0.1", done);
    });
  }

  /** Actual listening address (secondary), e.g. to learn an ephemeral port. */
  address(): net.AddressInfo | string | null {
    return this.#server?.address() ?? null;
  }

  #connect(): void {
    if (this.#closed || this.#active !== null || this.#candidates.size > 0) return;
    const t = this.#opts.tls;
    const a = this.#addr;
    const sock =
      t !== undefined
        ? tls.connect({
            ...(a.path !== undefined ? { path: a.path } : { host: a.host ?? "127.0.0.1", port: a.port ?? 0 }),
            ...(t.caFile ? { ca: readFileSync(t.caFile) } : {}),
            ...(t.keyFile ? { key: readFileSync(t.keyFile) } : {}),
            ...(t.certFile ? { cert: readFileSync(t.certFile) } : {}),
            // Without a server name the pinned CA alone authenticates the secondary.
            ...(t.serverName ? { servername: t.serverName } : { checkServerIdentity: () => undefined }),
          })
        : a.path !== undefined
          ? net.connect(a.path)
          : net.connect(a.port ?? 0, a.host ?? "127.0.0.1");
    this.#adopt(sock, t !== undefined ? "secureConnect" : "connect");
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.role !== Role.Primary || this.#reconnectTimer !== null) return;
    const delay = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, this.#opts.reconnectMaxMs);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      this.#connect();
    }, delay);
    this.#reconnectTimer.unref();
  }

  #adopt(sock: net.Socket, readyEvent?: "connect" | "secureConnect"): void {
    if (this.#closed) {
      sock.destroy();
      return;
    }
    sock.setNoDelay(true);
    const conn: Conn = {
      sock,
      remote: "",
      pending: [],
      scheduled: false,
      decoder: new FrameDecoder({ maxFrameLength: this.#opts.maxFrameLength + FRAME_HDR_LEN }),
      session: undefined as unknown as LinkSession,
    };
    conn.session = new LinkSession(
      {
        role: this.role,
        secret: this.#secret,
        vnetHdr: this.#opts.vnetHdr,
        maxFrame: this.#opts.maxFrameLength,
        heartbeatIntervalMs: this.#opts.heartbeatIntervalMs,
        heartbeatTimeoutMs: this.#opts.heartbeatTimeoutMs,
        handshakeTimeoutMs: this.#opts.handshakeTimeoutMs,
        epoch: this.#epoch,
      },
      {
        write: (chunks) => {
          for (const b of chunks) conn.pending.push(b);
          if (!conn.scheduled) {
            conn.scheduled = true;
            setImmediate(() => this.#flush(conn));
          }
        },
        established: (peer) => this.#established(conn, peer),
        frame: (channel, frame, vnetLen, epoch) => {
          this.counters.framesIn++;
          this.counters.bytesIn += frame.length;
          this.emit("frame", channel, frame, vnetLen, epoch);
        },
        checkpoint: (epoch) => {
          this.#epoch = epoch;
          this.emit("checkpoint", epoch);
        },
        peerFailover: (reason) => this.emit("peerFailover", reason),
        closed: (err) => {
          this.#flush(conn);
          conn.sock.end();
          setTimeout(() => conn.sock.destroy(), 100).unref();
          this.#lost(conn, err);
        },
      },
    );
    this.#candidates.add(conn);
    const begin = () => {
      conn.remote =
        sock.remotePort !== undefined ? `${sock.remoteAddress}:${sock.remotePort}` : String(this.#addr.path);
      this.counters.connects++;
      conn.session.start(this.#opts.now());
    };
    if (readyEvent === undefined) begin();
    else sock.once(readyEvent, begin);
    sock.on("data", (chunk: Buffer) => {
      try {
        conn.decoder.push(chunk, (body) => conn.session.receive(body, this.#opts.now()));
      } catch (e) {
        const err =
          e instanceof FramingError
            ? new ColoError("COLO_ERR_LINK_PROTOCOL", `bad framing on the link: ${e.message}`, {
                cause: e.code,
              })
            : new ColoError("COLO_ERR_INTERNAL", String(e));
        conn.session.transportClosed(this.#opts.now());
        this.#error(err);
        sock.destroy();
      }
    });
    sock.on("error", () => {
      /* reported through close */
    });
    sock.on("close", () => {
      conn.session.transportClosed(this.#opts.now());
      this.#lost(conn, new ColoError("COLO_ERR_LINK_CLOSED", "link connection closed"));
    });
  }

  #established(conn: Conn, peer: Hello): void {
    this.#candidates.delete(conn);
    const old = this.#active;
    this.#active = conn;
    this.#backoff = this.#opts.reconnectInitialMs;
    if (old !== null) {
      // An authenticated newcomer replaces a connection the old peer may no longer be using.
      old.sock.destroy();
    }
    if (this.role === Role.Primary) this.#epoch = conn.session.epoch;
    this.counters.ups++;
    this.emit("up", peer, conn.remote);
  }

  #lost(conn: Conn, err: ColoError): void {
    if (this.#candidates.delete(conn)) {
      if (err.code !== "COLO_ERR_LINK_CLOSED") this.#error(err);
      this.#scheduleReconnect();
      return;
    }
    if (this.#active !== conn) return;
    this.#active = null;
    this.#setCongested(false);
    this.counters.downs++;
    this.counters.staleFrames += conn.session.stats.staleFrames;
    this.#count(err.code);
    this.emit("down", err);
    this.#scheduleReconnect();
  }

  #flush(conn: Conn): void {
    conn.scheduled = false;
    if (conn.pending.length === 0 || conn.sock.destroyed) return;
    const out = conn.pending.length === 1 ? conn.pending[0]! : Buffer.concat(conn.pending);
    conn.pending = [];
    if (!conn.sock.write(out) && conn === this.#active && !this.#congested) {
      this.#setCongested(true);
      conn.sock.once("drain", () => this.#setCongested(false));
    }
  }

  #setCongested(c: boolean): void {
    if (c === this.#congested) return;
    this.#congested = c;
    this.emit("congestion", c);
  }

  /** True while the link's send buffer is over its high-water mark. */
  get congested(): boolean {
    return this.#congested;
  }

  #tick(): void {
    const now = this.#opts.now();
    for (const c of this.#candidates) c.session.tick(now);
    this.#active?.session.tick(now);
  }

  #count(code: ErrorCode): void {
    this.errors[code] = (this.errors[code] ?? 0) + 1;
  }

  #error(err: ColoError): void {
    this.#count(err.code);
    this.emit("link-error", err);
  }

  /** The state of the current or pending session, for status displays. */
  get state(): LinkState | "idle" {
    return this.#active?.session.state ?? [...this.#candidates][0]?.session.state ?? "idle";
  }

  describe(): string {
    return `${roleName(this.role)} link ${this.#addr.path ?? `${this.#addr.host ?? "127.0.0.1"}:${this.#addr.port}`}`;
  }
}
