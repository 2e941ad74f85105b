/**
 * @module ChardevEndpoint: the I/O shell through which every colo-proxy daemon talks to QEMU's
 * chardev sockets (filter-mirror, filter-redirector, colo-compare, Xen notify_dev) or to another
 * colo-proxy. One endpoint = one QEMU `-chardev socket,...` string, server or client, carrying one
 * framed stream in each direction.
 *
 * - Server: listens (TCP or UNIX) and serves one peer at a time, like QEMU. What happens to a
 *   second connection is the `newPeer` policy: "replace" (default; the newcomer wins, so a peer
 *   that restarted after a crash is not locked out by its own half-open connection), "queue"
 *   (QEMU's behaviour: it waits until the current peer goes away) or "reject".
 * - Client: connects and always reconnects, with exponential backoff from `reconnectInitialMs`
 *   up to the spec's `reconnect=` interval (1 s when unset). QEMU without `reconnect=` gives up
 *   instead; an endpoint that stops working is never what a proxy wants.
 * - Input: one FrameDecoder per connection. A FramingError (garbage, zero or oversized length,
 *   V > N) is counted, emitted as "framing-error", and resets that peer: the socket is destroyed
 *   and the server accepts again / the client reconnects, so the stream restarts on a frame
 *   boundary. Frames decoded before the bad bytes are delivered. Nothing crashes, and the input
 *   never goes deaf for good (QEMU detaches the input forever).
 * - Output: a FrameWriter (one write per event-loop turn, FIFO, backpressure). Frames sent while
 *   no peer is connected wait in its queue for the next peer (QEMU loses them); `congested` and the
 *   "congestion" event tell producers to pause their inputs.
 * - `pause()`/`resume()` stop and restart reading this input (backpressure from the engine).
 *   Frames already in the chunk being decoded are still delivered.
 *
 * Events never include "error", so an unobserved endpoint can never crash the process.
 */
import { EventEmitter } from "node:events";
import { lstatSync, unlinkSync } from "node:fs";
import net from "node:net";
import { ColoError, type ErrorCode, FramingError } from "../errors.ts";
import { type ChardevSocketSpec, parseChardevSpec } from "./chardev-spec.ts";
import { FrameWriter, markReceived } from "./frame-writer.ts";
import { FrameDecoder, type FrameHandler } from "./framing.ts";
import { engageSlabReads, ReceiveSlab, slabOnread } from "./receive-slab.ts";

export type NewPeerPolicy = "replace" | "queue" | "reject";

export interface ChardevEndpointOptions {
  /** A QEMU `-chardev socket,...` string or an already parsed spec. */
  spec: string | ChardevSocketSpec;
  /** Called for every frame received from the peer, in order (see FrameHandler). */
  onFrame: FrameHandler;
  /**
   * Called once per chunk read from the peer, before its frames are delivered (e.g. to read the
   * clock once per read rather than once per frame).
   */
  onChunk?: () => void;
  /**
   * Called once per chunk read from the peer after its frames were delivered — also when a framing
   * error cut the chunk short (the frames before the error were delivered) — e.g. to hand the
   * frames of one read to a batch call.
   */
  onChunkEnd?: () => void;
  /** The vnet_hdr_support of this stream (V word present in both directions). Default false. */
  vnetHdr?: boolean;
  /** Largest frame accepted and sent. Default 69632 (QEMU's NET_BUFSIZE). */
  maxFrameLength?: number;
  /** Server only: what to do with a new connection while a peer is connected. Default "replace". */
  newPeer?: NewPeerPolicy;
  /** Client only: first retry delay (doubles up to the reconnect interval). Default 50 ms. */
  reconnectInitialMs?: number;
  /** Output queue size that reports congestion. Default 1 MiB. */
  highWaterMark?: number;
  /** Output queue hard cap; frames beyond it are dropped and counted. Default 64 MiB. */
  maxQueuedBytes?: number;
}

export interface ChardevEvents {
  /** Server: listening on `address` (resolved port for port=0). */
  listening: [address: string];
  /** A peer is now connected. */
  connect: [peer: string];
  /** The peer went away (`reason`: "closed", "framing-error", "replaced", "io-error", "closing"). */
  disconnect: [peer: string, reason: string];
  /** Bad bytes from the peer; the peer's connection is being reset. */
  "framing-error": [err: FramingError];
  /** Socket-level failure (reset, broken pipe, listen/accept errors, handler exceptions). */
  "io-error": [err: ColoError];
  /** Output congestion changed: stop/start feeding send(). */
  congestion: [congested: boolean];
  /** A frame was dropped because the output queue hit maxQueuedBytes. */
  drop: [err: FramingError];
}

export interface ChardevCounters {
  framesIn: number;
  /** Raw stream bytes received (prefixes included). */
  bytesIn: number;
  framesOut: number;
  /** Raw stream bytes handed to the socket (prefixes included). */
  bytesOut: number;
  framesDropped: number;
  connects: number;
  disconnects: number;
  /** Client: failed connection attempts. Server: connections refused by the newPeer policy. */
  connectFailures: number;
  /** Count of every error by stable code. */
  errors: Partial<Record<ErrorCode, number>>;
}

const CLIENT_DEFAULT_RECONNECT_MS = 1000;
const MAX_QUEUED_PEERS = 4;
const KEEPALIVE_MS = 5000;

export class ChardevEndpoint extends EventEmitter<ChardevEvents> {
  readonly spec: ChardevSocketSpec;
  readonly id: string;
  readonly vnetHdr: boolean;
  readonly newPeer: NewPeerPolicy;

  #counters = { framesIn: 0, bytesIn: 0, connects: 0, disconnects: 0, connectFailures: 0 };
  #errors: Partial<Record<ErrorCode, number>> = {};
  readonly #decoder: FrameDecoder;
  readonly #writer: FrameWriter;
  readonly #onFrame: FrameHandler;
  readonly #onChunk: (() => void) | undefined;
  readonly #onChunkEnd: (() => void) | undefined;
  readonly #reconnectInitialMs: number;
  readonly #reconnectMaxMs: number;

  #server: net.Server | null = null;
  #sock: net.Socket | null = null;
  #peerName = "";
  #waiting: net.Socket[] = [];
  #paused = false;
  #started = false;
  #closing = false;
  #retryTimer: NodeJS.Timeout | null = null;
  #retryDelay: number;
  #connectedAt = 0;
  #readMode: "slab" | "stream" | "none" = "none";
  #connectWaiters: Array<() => void> = [];

  readonly #deliver: FrameHandler = (frame, vnetLen) => {
    this.#counters.framesIn++;
    this.#onFrame(frame, vnetLen);
  };

  constructor(options: ChardevEndpointOptions) {
    super();
    this.spec = typeof options.spec === "string" ? parseChardevSpec(options.spec) : options.spec;
    this.id = this.spec.id;
    this.vnetHdr = options.vnetHdr ?? false;
    this.newPeer = options.newPeer ?? "replace";
    this.#onFrame = options.onFrame;
    this.#onChunk = options.onChunk;
    this.#onChunkEnd = options.onChunkEnd;
    this.#decoder = new FrameDecoder({ vnetHdr: this.vnetHdr, maxFrameLength: options.maxFrameLength });
    this.#writer = new FrameWriter({
      vnetHdr: this.vnetHdr,
      maxFrameLength: options.maxFrameLength,
      highWaterMark: options.highWaterMark,
      maxQueuedBytes: options.maxQueuedBytes,
      onCongestion: (c) => this.emit("congestion", c),
      onDrop: (e) => {
        this.#count(e.code);
        this.emit("drop", e);
      },
    });
    this.#reconnectMaxMs = this.spec.reconnectMs > 0 ? this.spec.reconnectMs : CLIENT_DEFAULT_RECONNECT_MS;
    this.#reconnectInitialMs = Math.min(options.reconnectInitialMs ?? 50, this.#reconnectMaxMs);
    this.#retryDelay = this.#reconnectInitialMs;
  }

  /** Whether a peer is connected now. */
  get connected(): boolean {
    return this.#sock !== null;
  }

  /** The connected peer's address ("" when none). */
  get peer(): string {
    return this.#peerName;
  }

  /** True while send() callers should hold back (see FrameWriter.congested). */
  get congested(): boolean {
    return this.#writer.congested;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /**
   * How the current peer's bytes are read: "slab" (straight into receive slabs, see
   * receive-slab.ts), "stream" (plain 'data' events: a Node without the internals slab reads
   * need) or "none" (no peer).
   */
  get readMode(): "slab" | "stream" | "none" {
    return this.#readMode;
  }

  /** Frames waiting for the socket (e.g. while no peer is connected). */
  get queuedFrames(): number {
    return this.#writer.queuedFrames;
  }

  get counters(): ChardevCounters {
    return {
      ...this.#counters,
      framesOut: this.#writer.framesOut,
      bytesOut: this.#writer.bytesOut,
      framesDropped: this.#writer.framesDropped,
      errors: { ...this.#errors },
    };
  }

  /**
   * Where this endpoint listens or connects: "host:port" (IPv6 as "[h]:port") or the UNIX path.
   * For a server with port=0 this is the port actually bound once started.
   */
  get address(): string {
    const a = this.#server?.address();
    if (a !== null && a !== undefined && typeof a === "object") return fmtHostPort(a.address, a.port);
    return this.spec.transport === "unix" ? this.spec.path : fmtHostPort(this.spec.host, this.spec.port);
  }

  /** TCP port actually bound (server, after start) or the configured port. */
  get port(): number {
    const a = this.#server?.address();
    return a !== null && a !== undefined && typeof a === "object" ? a.port : this.spec.port;
  }

  /**
   * Server: listen; resolves when listening, or (spec wait=on, QEMU's default for servers) once
   * the first peer connected. Client: starts connecting in the background and resolves at once;
   * use waitConnected() to wait for the peer. Rejects (COLO_ERR_CHARDEV_IO) if it cannot listen.
   */
  async start(): Promise<void> {
    if (this.#started) throw new ColoError("COLO_ERR_INTERNAL", `chardev ${this.id} already started`);
    this.#started = true;
    if (!this.spec.server) {
      this.#connect();
      return;
    }
    const server = net.createServer({ pauseOnConnect: true, noDelay: this.spec.nodelay });
    this.#server = server;
    server.on("connection", (s) => this.#onConnection(s));
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => {
        reject(
          new ColoError(
            "COLO_ERR_CHARDEV_IO",
            `chardev ${this.id}: cannot listen on ${this.address}: ${e.message}`,
            {
              id: this.id,
              errno: e.code,
            },
          ),
        );
      };
      server.once("error", onError);
      const ready = () => {
        server.removeListener("error", onError);
        server.on("error", (e) => this.#ioError(e, "server"));
        resolve();
      };
      if (this.spec.transport === "unix") {
        removeStaleSocket(this.spec.path);
        server.listen(this.spec.path, ready);
      } else {
        server.listen(
          { host: this.spec.host, port: this.spec.port, ipv6Only: this.spec.family === 6 },
          ready,
        );
      }
    });
    this.emit("listening", this.address);
    if (this.spec.wait) await this.waitConnected();
  }

  /** Resolves once a peer is connected (at once if one is). Rejects after `timeoutMs` if given. */
  waitConnected(timeoutMs?: number): Promise<void> {
    if (this.#sock !== null) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        if (timer !== undefined) clearTimeout(timer);
        resolve();
      };
      this.#connectWaiters.push(done);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.#connectWaiters = this.#connectWaiters.filter((w) => w !== done);
          reject(new ColoError("COLO_ERR_CHARDEV_IO", `chardev ${this.id}: no peer after ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  /**
   * Queue a frame for the peer (batched; written at the end of this event-loop turn). Returns false
   * when the caller should stop producing (congested or dropped). Throws FramingError for a frame
   * that cannot be encoded (empty, too large, V > N).
   */
  send(frame: Uint8Array, vnetLen = 0): boolean {
    return this.#writer.send(frame, vnetLen);
  }

  /**
   * Queue a frame without scheduling the end-of-turn write: the caller calls flush() before it
   * returns to the event loop (see FrameWriter.queue). Otherwise as send().
   */
  queue(frame: Uint8Array, vnetLen = 0): boolean {
    return this.#writer.queue(frame, vnetLen);
  }

  /** Write queued frames now instead of at the end of the turn. */
  flush(): void {
    this.#writer.flush();
  }

  /** Stop reading from the peer (engine backpressure). */
  pause(): void {
    this.#paused = true;
    this.#sock?.pause();
  }

  resume(): void {
    this.#paused = false;
    this.#sock?.resume();
  }

  /**
   * Stop: flush what the socket accepts, close the peer and the listener, stop reconnecting.
   * Returns the number of queued frames that could not be written and were discarded.
   */
  async close(): Promise<number> {
    if (this.#closing) return 0;
    this.#closing = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    for (const w of this.#waiting) w.destroy();
    this.#waiting = [];
    const sock = this.#sock;
    if (sock !== null) {
      this.#writer.flush();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => sock.destroy(), 1000);
        sock.once("close", () => {
          clearTimeout(timer);
          resolve();
        });
        sock.end();
      });
    }
    const discarded = this.#writer.clear();
    const server = this.#server;
    if (server !== null) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (this.spec.transport === "unix") removeStaleSocket(this.spec.path);
    }
    return discarded;
  }

  // --- connections -----------------------------------------------------------------------

  #onConnection(sock: net.Socket): void {
    sock.on("error", (e) => this.#ioError(e, "peer"));
    if (this.#closing) {
      sock.destroy();
      return;
    }
    if (this.#sock === null) {
      this.#adopt(sock);
      return;
    }
    if (this.newPeer === "replace") {
      const old = this.#sock;
      this.#release(old, "replaced");
      old.destroy();
      this.#adopt(sock);
    } else if (this.newPeer === "queue" && this.#waiting.length < MAX_QUEUED_PEERS) {
      this.#waiting.push(sock);
      sock.once("close", () => {
        this.#waiting = this.#waiting.filter((w) => w !== sock);
      });
    } else {
      this.#counters.connectFailures++;
      sock.destroy();
    }
  }

  #connect(): void {
    this.#retryTimer = null;
    if (this.#closing) return;
    // Reads go straight into this socket's slabs (public `onread` option: see receive-slab.ts).
    const onread = slabOnread(new ReceiveSlab(), (bytes) => this.#onData(sock, bytes, false));
    const sock: net.Socket =
      this.spec.transport === "unix"
        ? net.connect({ path: this.spec.path, onread })
        : net.connect({
            host: this.spec.host,
            port: this.spec.port,
            family: this.spec.family === 0 ? undefined : this.spec.family,
            noDelay: this.spec.nodelay,
            onread,
          });
    let connected = false;
    sock.on("error", (e: NodeJS.ErrnoException) => {
      if (connected) this.#ioError(e, "peer");
      else {
        this.#counters.connectFailures++;
      }
    });
    sock.once("connect", () => {
      connected = true;
      if (this.#closing) {
        sock.destroy();
        return;
      }
      this.#adopt(sock, true);
    });
    sock.once("close", () => {
      if (!connected) this.#scheduleReconnect();
    });
  }

  #scheduleReconnect(): void {
    if (this.#closing || this.spec.server || this.#retryTimer !== null) return;
    const delay = this.#retryDelay;
    this.#retryDelay = Math.min(delay * 2, this.#reconnectMaxMs);
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  /** `slabbed`: the socket was created reading into slabs (client); a server's is switched here. */
  #adopt(sock: net.Socket, slabbed = false): void {
    this.#sock = sock;
    this.#peerName = peerName(sock, this.spec);
    this.#connectedAt = Date.now();
    this.#decoder.reset();
    // A peer host that dies leaves a half-open TCP connection; keepalive lets a client notice
    // and reconnect (a server gets the peer's new connection via newPeer=replace anyway).
    if (this.spec.transport === "tcp") sock.setKeepAlive(true, KEEPALIVE_MS);
    if (slabbed || engageSlabReads(sock, new ReceiveSlab(), (bytes) => this.#onData(sock, bytes, false))) {
      this.#readMode = "slab";
    } else {
      this.#readMode = "stream";
      sock.on("data", (chunk: Buffer) => this.#onData(sock, chunk, true));
    }
    sock.once("close", () => {
      if (this.#sock === sock) {
        this.#release(sock, this.#closing ? "closing" : "closed");
        this.#afterLoss();
      }
    });
    if (this.#paused) sock.pause();
    else sock.resume();
    this.#writer.attach(sock);
    this.#counters.connects++;
    this.emit("connect", this.#peerName);
    for (const w of this.#connectWaiters.splice(0)) w();
  }

  /** Forget the current peer (without destroying it). */
  #release(sock: net.Socket, reason: string): void {
    if (this.#sock !== sock) return;
    const name = this.#peerName;
    this.#sock = null;
    this.#peerName = "";
    this.#readMode = "none";
    this.#writer.detach();
    this.#decoder.reset();
    this.#counters.disconnects++;
    this.emit("disconnect", name, reason);
  }

  /** After the peer went away: accept the next queued peer (server) or reconnect (client). */
  #afterLoss(): void {
    if (this.#closing) return;
    if (this.spec.server) {
      const next = this.#waiting.shift();
      if (next !== undefined) this.#adopt(next);
      return;
    }
    // A connection that lived a while resets the backoff; one dropped at once keeps backing off.
    if (Date.now() - this.#connectedAt >= this.#reconnectMaxMs) this.#retryDelay = this.#reconnectInitialMs;
    this.#scheduleReconnect();
  }

  /** `mark`: a 'data' chunk (slab reads are marked once per slab, see ReceiveSlab). */
  #onData(sock: net.Socket, chunk: Buffer, mark: boolean): void {
    if (this.#sock !== sock) return;
    this.#counters.bytesIn += chunk.length;
    if (mark) markReceived(chunk);
    let failure: unknown;
    try {
      this.#onChunk?.();
      this.#decoder.push(chunk, this.#deliver);
    } catch (e) {
      failure = e;
    }
    if (this.#onChunkEnd !== undefined) {
      // Even after a framing error: the frames decoded before it were delivered and must not wait.
      try {
        this.#onChunkEnd();
      } catch (e) {
        failure ??= e;
      }
    }
    if (failure === undefined) return;
    if (failure instanceof FramingError) {
      this.#count(failure.code);
      this.emit("framing-error", failure);
    } else {
      // The frame handler threw: a bug upstream; keep the endpoint alive and restart the stream.
      const err = new ColoError(
        "COLO_ERR_INTERNAL",
        `chardev ${this.id}: frame handler threw: ${failure instanceof Error ? failure.message : String(failure)}`,
        { id: this.id },
        { cause: failure },
      );
      this.#count(err.code);
      this.emit("io-error", err);
    }
    this.#release(sock, "framing-error");
    sock.destroy();
    this.#afterLoss();
  }

  #ioError(e: NodeJS.ErrnoException, where: string): void {
    const err = new ColoError(
      "COLO_ERR_CHARDEV_IO",
      `chardev ${this.id}: ${where} socket error: ${e.message}`,
      {
        id: this.id,
        errno: e.code,
      },
    );
    this.#count(err.code);
    this.emit("io-error", err);
  }

  #count(code: ErrorCode): void {
    this.#errors[code] = (this.#errors[code] ?? 0) + 1;
  }
}

function fmtHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

function peerName(sock: net.Socket, spec: ChardevSocketSpec): string {
  if (spec.transport === "unix") return `unix:${spec.path.replace("\0", "@")}`;
  return sock.remoteAddress === undefined ? "tcp:?" : fmtHostPort(sock.remoteAddress, sock.remotePort ?? 0);
}

/** QEMU unlinks a leftover server socket before binding; do the same, but only for sockets. */
function removeStaleSocket(path: string): void {
  if (path.startsWith("\0")) return;
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // absent: nothing to remove
  }
}
