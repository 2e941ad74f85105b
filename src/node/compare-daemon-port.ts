/**
 * @module One framed chardev socket of the compare daemon: listens (QEMU server=on, one client at
 * a time, later clients wait their turn) or connects with reconnect; decodes frames with
 * FrameDecoder; writes frames batched once per event-loop turn with socket backpressure; and on
 * bad input (FramingError) reports it, drops only that connection and takes the next one.
 */
import { lstatSync, unlinkSync } from "node:fs";
import net from "node:net";
import type { FramingError } from "../errors.ts";
import { FrameDecoder, type FrameHandler, headerLength, writeFrameHeader } from "../wire/framing.ts";
import type { EndpointConfig } from "./config.ts";

export interface PortHandlers {
  onFrame?: FrameHandler;
  /** Bad bytes on the stream: the connection is being dropped (already counted). */
  onBadInput?(err: FramingError): void;
  onConnect?(): void;
  onDisconnect?(): void;
  /** Output backlog crossed the high-water mark (true) or drained (false). */
  onCongestion?(congested: boolean): void;
}

export interface PortOptions {
  vnetHdr: boolean;
  /** Largest accepted/sent frame (default 69632, QEMU's NET_BUFSIZE). */
  maxFrameLength?: number;
  /** Bytes queued for output above which the port reports congestion. Default 4 MiB. */
  highWaterMark?: number;
}

export class FramedPort {
  /** Frames and bytes received / handed to the socket; bad-input resets; connections taken. */
  framesIn = 0;
  framesOut = 0;
  bytesOut = 0;
  badInput = 0;
  connections = 0;

  readonly #ep: EndpointConfig;
  readonly #h: PortHandlers;
  readonly #decoder: FrameDecoder;
  readonly #hdrLen: number;
  readonly #highWater: number;
  #server: net.Server | null = null;
  #sock: net.Socket | null = null;
  #waiting: net.Socket[] = [];
  #paused = false;
  #closed = false;
  #reconnectTimer: NodeJS.Timeout | null = null;
  /** Output queue: frames and their vnet lengths, written in one batch per turn. */
  #outFrames: Uint8Array[] = [];
  #outVnets: number[] = [];
  #outBytes = 0;
  #scheduled = false;
  #blocked = false;
  #congested = false;

  constructor(ep: EndpointConfig, opts: PortOptions, handlers: PortHandlers) {
    this.#ep = ep;
    this.#h = handlers;
    const max = opts.maxFrameLength ?? 69632;
    this.#decoder = new FrameDecoder({ vnetHdr: opts.vnetHdr, maxFrameLength: max });
    this.#hdrLen = headerLength(opts.vnetHdr);
    this.#highWater = opts.highWaterMark ?? 4 * 1024 * 1024;
  }

  get id(): string {
    return this.#ep.id;
  }
  get connected(): boolean {
    return this.#sock !== null;
  }
  get congested(): boolean {
    return this.#congested;
  }
  /** Frames queued for output and not yet handed to the socket. */
  get queuedFrames(): number {
    return this.#outFrames.length;
  }
  /** Bytes queued for output and not yet handed to the socket. */
  get queuedBytes(): number {
    return this.#outBytes;
  }

  /** Starts listening (resolves once bound) or connecting (resolves at once). */
  async start(): Promise<void> {
    if (!this.#ep.server) {
      this.#dial();
      return;
    }
    const srv = net.createServer({ noDelay: true, pauseOnConnect: true }, (s) => this.#accept(s));
    this.#server = srv;
    if (this.#ep.kind === "unix") {
      try {
        if (lstatSync(this.#ep.path).isSocket()) unlinkSync(this.#ep.path);
      } catch {
        // no stale socket
      }
    }
    await new Promise<void>((resolve, reject) => {
      srv.once("error", reject);
      const done = () => {
        srv.removeListener("error", reject);
        resolve();
      };
      if (this.#ep.kind === "unix") srv.listen(this.#ep.path, done);
      else srv.listen(this.#ep.port, this.#ep.host, done);
    });
    srv.on("error", () => {});
  }

  /** The bound address (TCP: port, useful with port 0; UNIX: the path). */
  address(): string | number {
    const a = this.#server?.address();
    if (a !== null && typeof a === "object") return a.port;
    return this.#ep.path;
  }

  #dial(): void {
    if (this.#closed) return;
    const s =
      this.#ep.kind === "unix"
        ? net.connect({ path: this.#ep.path })
        : net.connect({ port: this.#ep.port, host: this.#ep.host, noDelay: true });
    s.pause();
    s.once("connect", () => this.#adopt(s));
    s.once("error", () => {});
    s.once("close", () => {
      if (this.#sock !== s) this.#scheduleDial();
    });
  }

  #scheduleDial(): void {
    if (this.#closed || this.#reconnectTimer !== null) return;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      this.#dial();
    }, this.#ep.reconnectMs || 1000);
  }

  #accept(s: net.Socket): void {
    if (this.#closed) {
      s.destroy();
      return;
    }
    // QEMU serves one client at a time; later ones wait until the current one goes.
    if (this.#sock !== null) {
      this.#waiting.push(s);
      s.once("close", () => {
        const i = this.#waiting.indexOf(s);
        if (i >= 0) this.#waiting.splice(i, 1);
      });
      return;
    }
    this.#adopt(s);
  }

  #adopt(s: net.Socket): void {
    this.#sock = s;
    this.connections++;
    this.#decoder.reset();
    this.#blocked = false;
    s.setNoDelay?.(true);
    s.on("error", () => {});
    s.on("data", (chunk: Buffer) => this.#onData(s, chunk));
    s.once("close", () => this.#onClose(s));
    if (!this.#paused) s.resume();
    this.#h.onConnect?.();
    if (this.#outFrames.length > 0) this.#schedule();
  }

  #onData(s: net.Socket, chunk: Buffer): void {
    if (this.#sock !== s) return;
    try {
      this.#decoder.push(chunk, this.#onFrame);
    } catch (e) {
      this.badInput++;
      this.#decoder.reset();
      s.destroy();
      this.#h.onBadInput?.(e as FramingError);
    }
  }

  readonly #onFrame: FrameHandler = (frame, vnetLen) => {
    this.framesIn++;
    this.#h.onFrame?.(frame, vnetLen);
  };

  #onClose(s: net.Socket): void {
    if (this.#sock !== s) return;
    this.#sock = null;
    this.#decoder.reset();
    this.#h.onDisconnect?.();
    if (this.#closed) return;
    if (!this.#ep.server) {
      this.#scheduleDial();
      return;
    }
    const next = this.#waiting.shift();
    if (next !== undefined) this.#adopt(next);
  }

  /** Stop / restart reading input (compare backpressure). */
  pause(): void {
    this.#paused = true;
    this.#sock?.pause();
  }
  resume(): void {
    this.#paused = false;
    this.#sock?.resume();
  }
  get paused(): boolean {
    return this.#paused;
  }

  /**
   * Queues a frame for output; frames go out in order, batched once per turn. While no client is
   * connected they wait for one (QEMU loses them). The frame must not be modified afterwards.
   */
  send(frame: Uint8Array, vnetLen = 0): void {
    this.#outFrames.push(frame);
    this.#outVnets.push(vnetLen);
    this.#outBytes += frame.length + this.#hdrLen;
    if (!this.#congested && this.#outBytes > this.#highWater) this.#setCongested(true);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#blocked || this.#sock === null) return;
    this.#scheduled = true;
    setImmediate(this.#flush);
  }

  readonly #flush = (): void => {
    this.#scheduled = false;
    const s = this.#sock;
    if (s === null || this.#blocked || this.#outFrames.length === 0) return;
    // One buffer per batch: copying small frames is cheaper than a writev of 2×N pieces.
    const n = this.#outFrames.length;
    const total = this.#outBytes;
    const buf = Buffer.allocUnsafe(total);
    let off = 0;
    for (let i = 0; i < n; i++) {
      const f = this.#outFrames[i]!;
      off = writeFrameHeader(buf, off, f.length, this.#outVnets[i]!, this.#hdrLen === 8);
      buf.set(f, off);
      off += f.length;
    }
    this.#outFrames = [];
    this.#outVnets = [];
    this.#outBytes = 0;
    this.framesOut += n;
    this.bytesOut += total;
    const ok = s.write(buf);
    if (!ok) {
      this.#blocked = true;
      if (!this.#congested) this.#setCongested(true);
      s.once("drain", () => {
        this.#blocked = false;
        if (this.#outBytes <= this.#highWater) this.#setCongested(false);
        this.#schedule();
      });
    } else if (this.#congested) this.#setCongested(false);
  };

  #setCongested(c: boolean): void {
    this.#congested = c;
    this.#h.onCongestion?.(c);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#reconnectTimer !== null) clearTimeout(this.#reconnectTimer);
    // Give queued output one last chance, then go.
    if (this.#sock !== null && this.#outFrames.length > 0 && !this.#blocked) this.#flush();
    for (const w of this.#waiting.splice(0)) w.destroy();
    this.#sock?.end();
    this.#sock?.destroySoon?.();
    const srv = this.#server;
    if (srv !== null) await new Promise<void>((r) => srv.close(() => r()));
  }
}
