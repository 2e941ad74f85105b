/**
 * @module FrameWriter: the hot-path encoder for one chardev stream. It queues frames, and once per
 * event-loop turn (setImmediate) copies all of them, length prefixes included, into one buffer and
 * hands that to the socket in a single write() (frames ≥ zeroCopyMin bytes are passed by reference
 * instead, between slices of that buffer, all inside one cork()/uncork(), i.e. one writev()). It honours backpressure: after write() returns
 * false nothing more is written until 'drain', and `congested` tells producers to stop reading
 * their inputs. Frames are always written in the order they were sent (FIFO), and frames queued
 * while no socket is attached wait for the next one.
 */
import type { Writable } from "node:stream";
import { FramingError } from "../errors.ts";
import { checkEncodable, DEFAULT_MAX_FRAME_LENGTH, headerLength, writeFrameHeader } from "./framing.ts";

/** What FrameWriter needs from a socket (net.Socket and any stream.Writable fit). */
export type FrameSink = Pick<Writable, "write" | "once" | "removeListener" | "destroyed" | "cork" | "uncork">;

export interface FrameWriterOptions {
  /** Emit the V word after the length (the endpoint's vnet_hdr_support). Default false. */
  vnetHdr?: boolean;
  /** Largest frame accepted by send(). Default 69632 (QEMU's NET_BUFSIZE). */
  maxFrameLength?: number;
  /**
   * Queued bytes at which the writer reports itself congested even though the socket still
   * accepts data (or when no socket is attached). Default 1 MiB.
   */
  highWaterMark?: number;
  /**
   * Hard cap on queued bytes. A frame that would push the queue past it is dropped and reported
   * through onDrop; this only happens to producers that ignore `congested`. Default 64 MiB.
   */
  maxQueuedBytes?: number;
  /** Largest single write() handed to the socket. Default 1 MiB. */
  maxWriteBytes?: number;
  /**
   * Frames of at least this many bytes are written by reference (cork + writev) instead of being
   * copied into the batch buffer. Default 1024: copying wins for small frames, and for
   * full-size frames skipping the copy was ~1.3x faster end to end (docs/benchmarks.md).
   */
  zeroCopyMin?: number;
  /** Called whenever `congested` changes. */
  onCongestion?: (congested: boolean) => void;
  /** Called for each frame dropped because the queue hit maxQueuedBytes. */
  onDrop?: (err: FramingError) => void;
}

/** Queue of frames waiting for one write: frames, their V, and wire bytes, FIFO from #head. */
export class FrameWriter {
  readonly vnetHdr: boolean;
  readonly maxFrameLength: number;
  readonly highWaterMark: number;
  readonly maxQueuedBytes: number;
  readonly maxWriteBytes: number;
  readonly zeroCopyMin: number;

  /** Frames and bytes handed to the socket (not necessarily transmitted yet). */
  framesOut = 0;
  bytesOut = 0;
  /** Frames refused because the queue was over maxQueuedBytes. */
  framesDropped = 0;

  #frames: Uint8Array[] = [];
  #vnets: number[] = [];
  #head = 0;
  #queuedBytes = 0;
  #sink: FrameSink | null = null;
  #blocked = false;
  #scheduled: NodeJS.Immediate | null = null;
  #congested = false;
  readonly #hdrLen: number;
  readonly #onCongestion: ((congested: boolean) => void) | undefined;
  readonly #onDrop: ((err: FramingError) => void) | undefined;
  readonly #onDrain = (): void => {
    this.#blocked = false;
    this.flush();
  };
  readonly #flushSoon = (): void => {
    this.#scheduled = null;
    this.flush();
  };

  constructor(options: FrameWriterOptions = {}) {
    this.vnetHdr = options.vnetHdr ?? false;
    this.maxFrameLength = options.maxFrameLength ?? DEFAULT_MAX_FRAME_LENGTH;
    this.highWaterMark = options.highWaterMark ?? 1 << 20;
    this.maxQueuedBytes = options.maxQueuedBytes ?? 64 << 20;
    this.maxWriteBytes = Math.max(options.maxWriteBytes ?? 1 << 20, this.maxFrameLength + 8);
    this.#hdrLen = headerLength(this.vnetHdr);
    this.zeroCopyMin = options.zeroCopyMin ?? 1024;
    this.#onCongestion = options.onCongestion;
    this.#onDrop = options.onDrop;
  }

  /** True while producers should stop: the socket refused more data, or the queue is above highWaterMark. */
  get congested(): boolean {
    return this.#congested;
  }

  /** Frames and wire bytes queued and not yet handed to the socket. */
  get queuedFrames(): number {
    return this.#frames.length - this.#head;
  }
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Whether a socket is attached. */
  get attached(): boolean {
    return this.#sink !== null;
  }

  /** Start writing to `sink` (queued frames go first, at the next turn). Detaches any previous sink. */
  attach(sink: FrameSink): void {
    this.detach();
    this.#sink = sink;
    this.#schedule();
  }

  /** Stop writing to the current socket; queued frames stay queued for the next one. */
  detach(): void {
    if (this.#sink !== null && this.#blocked) this.#sink.removeListener("drain", this.#onDrain);
    this.#sink = null;
    this.#blocked = false;
    if (this.#scheduled !== null) {
      clearImmediate(this.#scheduled);
      this.#scheduled = null;
    }
    this.#updateCongestion();
  }

  /**
   * Queue one frame. The frame is referenced, not copied, until the next flush: do not modify it
   * afterwards. Returns false when the producer should stop (congested, or the frame was dropped).
   * Throws FramingError for a frame that cannot be encoded (empty, over maxFrameLength, V > N).
   */
  send(frame: Uint8Array, vnetLen = 0): boolean {
    const v = this.vnetHdr ? vnetLen : 0;
    checkEncodable(frame.length, v, this.maxFrameLength);
    const wire = this.#hdrLen + frame.length;
    if (this.#queuedBytes + wire > this.maxQueuedBytes) {
      this.framesDropped++;
      this.#onDrop?.(
        new FramingError("COLO_ERR_CHARDEV_QUEUE_FULL", "output queue full; frame dropped", {
          queuedBytes: this.#queuedBytes,
          max: this.maxQueuedBytes,
        }),
      );
      return false;
    }
    this.#frames.push(frame);
    this.#vnets.push(v);
    this.#queuedBytes += wire;
    this.#schedule();
    if (!this.#congested && this.#queuedBytes >= this.highWaterMark) this.#updateCongestion();
    return !this.#congested;
  }

  /** Write everything queued now (normally called for you once per event-loop turn). */
  flush(): void {
    const sink = this.#sink;
    if (sink === null || this.#blocked) return;
    if (sink.destroyed) return;
    while (this.#head < this.#frames.length) {
      // Gather as many frames as fit one write into one freshly allocated buffer; the socket may
      // keep it until transmitted, so it is never reused.
      let bytes = 0;
      let n = this.#head;
      while (n < this.#frames.length) {
        const w = this.#hdrLen + this.#frames[n]!.length;
        if (bytes + w > this.maxWriteBytes && bytes > 0) break;
        bytes += w;
        n++;
      }
      const more = this.#writeBatch(sink, n, bytes);
      if (!more) {
        this.#blocked = true;
        sink.once("drain", this.#onDrain);
        break;
      }
    }
    if (this.#head === this.#frames.length) {
      // An explicit flush (e.g. the compare daemon's, right after each input chunk) leaves the
      // turn-end flush nothing to do: cancel it rather than pay an empty callback per chunk.
      if (this.#scheduled !== null) {
        clearImmediate(this.#scheduled);
        this.#scheduled = null;
      }
      this.#frames.length = 0;
      this.#vnets.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#frames.length) {
      // Compact so a long-blocked queue does not keep growing its arrays' dead prefix.
      this.#frames = this.#frames.slice(this.#head);
      this.#vnets = this.#vnets.slice(this.#head);
      this.#head = 0;
    }
    this.#updateCongestion();
  }

  /** Drop every queued frame (e.g. on shutdown); returns how many were discarded. */
  clear(): number {
    const n = this.queuedFrames;
    this.#frames.length = 0;
    this.#vnets.length = 0;
    this.#head = 0;
    this.#queuedBytes = 0;
    this.#updateCongestion();
    return n;
  }

  /** Hand frames [#head, n) (`bytes` wire bytes) to the socket; returns write()'s verdict. */
  #writeBatch(sink: FrameSink, n: number, bytes: number): boolean {
    const zc = this.zeroCopyMin;
    let gather = 0;
    for (let i = this.#head; i < n; i++) {
      const len = this.#frames[i]!.length;
      gather += this.#hdrLen + (len >= zc ? 0 : len);
    }
    const out = Buffer.allocUnsafe(gather);
    let at = 0;
    let more: boolean;
    if (gather === bytes) {
      // Only small frames: copy everything into one buffer, one write().
      for (let i = this.#head; i < n; i++) {
        const f = this.#frames[i]!;
        at = writeFrameHeader(out, at, f.length, this.#vnets[i]!, this.vnetHdr);
        out.set(f, at);
        at += f.length;
      }
      more = sink.write(out);
    } else {
      // Large frames go by reference between slices of the gather buffer; cork turns the lot
      // into one writev() on a socket. write()'s verdict while corked only reflects buffering,
      // so the last one counts.
      let start = 0;
      more = true;
      sink.cork();
      for (let i = this.#head; i < n; i++) {
        const f = this.#frames[i]!;
        at = writeFrameHeader(out, at, f.length, this.#vnets[i]!, this.vnetHdr);
        if (f.length >= zc) {
          sink.write(out.subarray(start, at));
          more = sink.write(f);
          start = at;
        } else {
          out.set(f, at);
          at += f.length;
        }
      }
      if (at > start) more = sink.write(out.subarray(start, at));
      sink.uncork();
    }
    this.framesOut += n - this.#head;
    this.bytesOut += bytes;
    this.#queuedBytes -= bytes;
    this.#head = n;
    return more;
  }

  #schedule(): void {
    if (this.#scheduled === null && this.#sink !== null && !this.#blocked) {
      this.#scheduled = setImmediate(this.#flushSoon);
    }
  }

  #updateCongestion(): void {
    const c = this.#blocked || this.#queuedBytes >= this.highWaterMark;
    if (c !== this.#congested) {
      this.#congested = c;
      this.#onCongestion?.(c);
    }
  }
}
