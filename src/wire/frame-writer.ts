/**
 * @module FrameWriter: the hot-path encoder for one chardev stream. It queues frames, and once per
 * event-loop turn (setImmediate) copies all of them, length prefixes included, into one buffer and
 * hands that to the socket in a single write() (frames ≥ zeroCopyMin bytes are passed by reference
 * instead, between slices of that buffer, all inside one cork()/uncork(), i.e. one writev(); such frames still in
 * the socket read they came from go out in place with their received prefix: see markReceived()). It honours backpressure: after write() returns
 * false nothing more is written until 'drain', and `congested` tells producers to stop reading
 * their inputs. Frames are always written in the order they were sent (FIFO), and frames queued
 * while no socket is attached wait for the next one.
 */
import type { Writable } from "node:stream";
import { FramingError } from "../errors.ts";
import {
  checkEncodable,
  DEFAULT_MAX_FRAME_LENGTH,
  headerLength,
  NodeBuffer,
  writeFrameHeader,
} from "./framing.ts";

/** Frames at least this long are written by reference (FrameWriterOptions.zeroCopyMin). */
const DEFAULT_ZERO_COPY_MIN = 1024;

/** What a drained queue slot holds (a frame reference there would keep its memory alive). */
const EMPTY = new Uint8Array(0);
/** Queue slots kept between batches; a queue that grew past this (a blocked peer) is let go. */
const RETAINED_QUEUE_SLOTS = 4096;

/** Bytes per gather slab (see #gatherBuffer). */
const GATHER_SLAB_BYTES = 256 * 1024;

/** Received chunks (by their memory) and the range of it they cover: see markReceived(). */
const received = new WeakMap<ArrayBufferLike, { start: number; end: number }>();

/**
 * Declare that `chunk` holds bytes of a framed stream as received (a socket read) and that nothing
 * will ever modify its prefix bytes. A frame decoded from it (a view, see FrameDecoder) whose
 * length prefix still sits right before it is then written by reference together with that
 * prefix, and a run of such frames, consecutive in the chunk, as one view: a frame relayed
 * unchanged costs no copy and no iovec of its own. The prefix bytes are checked against the frame
 * before each write, so a view that does not fit (a frame split across reads, a V that differs)
 * simply goes the normal way.
 */
export function markReceived(chunk: Uint8Array): void {
  // A chunk too short to hold a frame of the default zeroCopyMin is not worth an entry (and its
  // garbage: the compare daemon's latency at small frames is made of young-generation garbage per
  // read); a writer with a smaller zeroCopyMin simply copies frames from such chunks.
  if (chunk.length < DEFAULT_ZERO_COPY_MIN + 4) return;
  // Numbers only: a value that referenced its key's memory would keep the chunk alive longer.
  received.set(chunk.buffer, { start: chunk.byteOffset, end: chunk.byteOffset + chunk.length });
}

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
  /**
   * Called for each frame dropped because the queue hit maxQueuedBytes. Drops in a row (no frame
   * queued in between) share one error object.
   */
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
  /** Scratch for #writeBatch: 1 where a frame goes out in place with its received prefix. */
  #inPlace = new Uint8Array(1024);
  /**
   * Scratch for #writeBatch: the memory of each frame that goes out in place (`.buffer` is a C++
   * call for each use: fetched once per frame); cleared after each batch so it keeps nothing alive.
   */
  #memOf: (ArrayBufferLike | null)[] = new Array<ArrayBufferLike | null>(1024).fill(null);
  /** The last buffer #hasPrefix looked up, and its received range (frames come in runs). */
  #lastBuf: ArrayBufferLike | null = null;
  #lastRange: { start: number; end: number } | undefined = undefined;
  #lastBytes: Uint8Array | null = null;
  #vnets: number[] = [];
  #head = 0;
  /**
   * End of the queue in #frames/#vnets. The arrays keep their length and capacity between
   * batches (a drained queue only moves #head and #tail back to 0): `length = 0` would drop their
   * backing stores and every batch would allocate new ones as it grows them again, a fifth of the
   * daemon's garbage per paced batch (sampling heap profile, session 7).
   */
  #tail = 0;
  #queuedBytes = 0;
  /** The error reported for the current run of drops (see queue()). */
  #dropError: FramingError | null = null;
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
    this.zeroCopyMin = options.zeroCopyMin ?? DEFAULT_ZERO_COPY_MIN;
    this.#onCongestion = options.onCongestion;
    this.#onDrop = options.onDrop;
  }

  /** True while producers should stop: the socket refused more data, or the queue is above highWaterMark. */
  get congested(): boolean {
    return this.#congested;
  }

  /** Frames and wire bytes queued and not yet handed to the socket. */
  get queuedFrames(): number {
    return this.#tail - this.#head;
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
    const ok = this.queue(frame, vnetLen);
    this.#schedule();
    return ok;
  }

  /**
   * Like send(), but without scheduling the turn-end write: the caller calls flush() itself
   * before it gives the event loop back (the compare daemon does, once per socket read; a
   * scheduled write costs an Immediate per read even when the explicit flush then cancels it).
   * Frames left queued go out with the next flush, drain or send().
   */
  queue(frame: Uint8Array, vnetLen = 0): boolean {
    const v = this.vnetHdr ? vnetLen : 0;
    checkEncodable(frame.length, v, this.maxFrameLength);
    const wire = this.#hdrLen + frame.length;
    if (this.#queuedBytes + wire > this.maxQueuedBytes) {
      this.framesDropped++;
      // One error per run of drops (until a frame is queued again): building an Error (its stack
      // trace) for every frame of a flood cost more than the flood's frames themselves.
      this.#dropError ??= new FramingError(
        "COLO_ERR_CHARDEV_QUEUE_FULL",
        "output queue full; frame dropped",
        {
          queuedBytes: this.#queuedBytes,
          max: this.maxQueuedBytes,
        },
      );
      this.#onDrop?.(this.#dropError);
      return false;
    }
    this.#dropError = null;
    // Stores at #tail: an append while the arrays are filling, a reuse once they have grown.
    this.#frames[this.#tail] = frame;
    this.#vnets[this.#tail] = v;
    this.#tail++;
    this.#queuedBytes += wire;
    if (!this.#congested && this.#queuedBytes >= this.highWaterMark) this.#updateCongestion();
    return !this.#congested;
  }

  /** Write everything queued now (normally called for you once per event-loop turn). */
  flush(): void {
    const sink = this.#sink;
    if (sink === null || this.#blocked) return;
    if (sink.destroyed) return;
    while (this.#head < this.#tail) {
      // Gather as many frames as fit one write into one freshly allocated buffer; the socket may
      // keep it until transmitted, so it is never reused.
      let bytes = 0;
      let n = this.#head;
      const limit = Math.min(this.#tail, this.#head + this.#inPlace.length);
      while (n < limit) {
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
    if (this.#head === this.#tail) {
      // An explicit flush (e.g. the compare daemon's, right after each input chunk) leaves the
      // turn-end flush nothing to do: cancel it rather than pay an empty callback per chunk.
      if (this.#scheduled !== null) {
        clearImmediate(this.#scheduled);
        this.#scheduled = null;
      }
      this.#reset();
    } else if (this.#head > 1024 && this.#head * 2 > this.#tail) {
      // Compact so a long-blocked queue does not keep growing its arrays' dead prefix.
      this.#frames = this.#frames.slice(this.#head, this.#tail);
      this.#vnets = this.#vnets.slice(this.#head, this.#tail);
      this.#tail -= this.#head;
      this.#head = 0;
    }
    this.#updateCongestion();
  }

  /** Drop every queued frame (e.g. on shutdown); returns how many were discarded. */
  clear(): number {
    const n = this.queuedFrames;
    this.#reset();
    this.#queuedBytes = 0;
    this.#updateCongestion();
    return n;
  }

  /**
   * Empties the queue: drops the references to written frames (the queue must not keep their
   * memory alive) but keeps the arrays, unless a burst grew them past RETAINED_QUEUE_SLOTS.
   */
  #reset(): void {
    const frames = this.#frames;
    if (frames.length > RETAINED_QUEUE_SLOTS) {
      this.#frames = [];
      this.#vnets = [];
    } else {
      for (let i = this.#tail - 1; i >= 0; i--) frames[i] = EMPTY; // not fill(): a C++ call
    }
    this.#head = 0;
    this.#tail = 0;
  }

  /** The slab gather buffers are cut from, and where its unused part begins. */
  #gatherMem: ArrayBuffer | null = null;
  #gatherOff = 0;

  /**
   * A buffer of `n` bytes for one write's copied frames: the next region of a slab that is never
   * reused (the socket may keep a written buffer until the kernel takes it; a full slab is left to
   * the garbage collector). `Buffer.allocUnsafe` cut them from Node's 8 KiB pool instead, whose
   * refill (`createPool`, a new ArrayBuffer every ~16 paced batches, never optimised at that rate)
   * was a tenth of the daemon's outdev write path in a CPU profile of the paced benchmark.
   */
  #gatherBuffer(n: number): Buffer {
    // A large gather (a backlog under load) gets its own uninitialised allocation, as before.
    if (n > GATHER_SLAB_BYTES >>> 2) return Buffer.allocUnsafe(n);
    let mem = this.#gatherMem;
    if (mem === null || mem.byteLength - this.#gatherOff < n) {
      mem = new ArrayBuffer(GATHER_SLAB_BYTES);
      this.#gatherMem = mem;
      this.#gatherOff = 0;
    }
    const b = new NodeBuffer(mem, this.#gatherOff, n);
    // Next region 8-byte aligned, like Node's pool.
    this.#gatherOff = (this.#gatherOff + n + 7) & ~7;
    return b;
  }

  /** Hand frames [#head, n) (`bytes` wire bytes) to the socket; returns write()'s verdict. */
  #writeBatch(sink: FrameSink, n: number, bytes: number): boolean {
    const zc = this.zeroCopyMin;
    const hdr = this.#hdrLen;
    const frames = this.#frames;
    const vnets = this.#vnets;
    // Pass 1: which frames still sit in a received chunk right after their own prefix (those go
    // out by reference, prefix included), and how many bytes the rest needs in the gather buffer.
    const inPlace = this.#inPlace;
    const memOf = this.#memOf;
    let gather = 0;
    let pieces = 0;
    let runEnd = -1;
    let runBuf: ArrayBufferLike | null = null;
    for (let i = this.#head; i < n; i++) {
      const f = frames[i]!;
      const k = i - this.#head;
      if (f.length < zc) {
        // Small frames are copied: cheaper than finding out whether they could go in place.
        inPlace[k] = 0;
        runBuf = null;
        pieces++;
        gather += hdr + f.length;
        continue;
      }
      const buf = f.buffer;
      if (this.#hasPrefix(f, buf, vnets[i]!)) {
        inPlace[k] = 1;
        memOf[k] = buf;
        if (buf !== runBuf || f.byteOffset - hdr !== runEnd) pieces++;
        runBuf = buf;
        runEnd = f.byteOffset + f.length;
        continue;
      }
      inPlace[k] = 0;
      runBuf = null;
      pieces += 2;
      gather += hdr;
    }
    let more: boolean;
    if (gather === bytes) {
      // Nothing by reference: copy everything into one buffer, one write().
      const out = this.#gatherBuffer(gather);
      let at = 0;
      for (let i = this.#head; i < n; i++) {
        const f = frames[i]!;
        at = writeFrameHeader(out, at, f.length, vnets[i]!, this.vnetHdr);
        out.set(f, at);
        at += f.length;
      }
      more = sink.write(out);
    } else if (gather === 0 && pieces === 1) {
      // One run of received frames, prefixes and all, exactly as they came in: one view, no copy
      // (what a plain relay writes).
      const f0 = frames[this.#head]!;
      const last = frames[n - 1]!;
      more = sink.write(
        Buffer.from(memOf[0]!, f0.byteOffset - hdr, last.byteOffset + last.length - f0.byteOffset + hdr),
      );
    } else {
      // Mixed: runs and large frames by reference between slices of the gather buffer; cork turns
      // the lot into one writev() on a socket. write()'s verdict while corked only reflects
      // buffering, so the last one counts.
      const out = this.#gatherBuffer(gather);
      let at = 0;
      let start = 0;
      let run: Uint8Array | null = null;
      let runMem: ArrayBufferLike | null = null;
      let runStart = 0;
      more = true;
      const endRun = (): void => {
        if (run !== null) {
          more = sink.write(Buffer.from(runMem!, runStart, run.byteOffset + run.length - runStart));
          run = null;
        }
      };
      sink.cork();
      for (let i = this.#head; i < n; i++) {
        const f = frames[i]!;
        if (inPlace[i - this.#head] === 1) {
          if (at > start) {
            more = sink.write(out.subarray(start, at));
            start = at;
          }
          const mem = memOf[i - this.#head]!;
          if (run !== null && (mem !== runMem || f.byteOffset - hdr !== run.byteOffset + run.length))
            endRun();
          if (run === null) {
            runStart = f.byteOffset - hdr;
            runMem = mem;
          }
          run = f;
          continue;
        }
        endRun();
        at = writeFrameHeader(out, at, f.length, vnets[i]!, this.vnetHdr);
        if (f.length >= zc) {
          sink.write(out.subarray(start, at));
          more = sink.write(f);
          start = at;
        } else {
          out.set(f, at);
          at += f.length;
        }
      }
      endRun();
      if (at > start) more = sink.write(out.subarray(start, at));
      sink.uncork();
    }
    if (gather !== bytes) for (let k = n - this.#head - 1; k >= 0; k--) memOf[k] = null; // not fill(): a C++ call
    this.framesOut += n - this.#head;
    this.bytesOut += bytes;
    this.#queuedBytes -= bytes;
    this.#head = n;
    return more;
  }

  /** Whether `f` (in `buf`)'s wire prefix sits right before it inside a chunk given to markReceived(). */
  #hasPrefix(f: Uint8Array, buf: ArrayBufferLike, vnet: number): boolean {
    if (buf !== this.#lastBuf) {
      this.#lastBuf = buf;
      this.#lastRange = received.get(buf);
      this.#lastBytes = this.#lastRange === undefined ? null : new Uint8Array(buf);
    }
    const range = this.#lastRange;
    const b = this.#lastBytes;
    if (range === undefined || b === null) return false;
    const at = f.byteOffset - this.#hdrLen;
    const len = f.length;
    if (at < range.start || at + this.#hdrLen + len > range.end) return false;
    if (
      b[at] !== len >>> 24 ||
      b[at + 1] !== ((len >>> 16) & 0xff) ||
      b[at + 2] !== ((len >>> 8) & 0xff) ||
      b[at + 3] !== (len & 0xff)
    )
      return false;
    if (!this.vnetHdr) return true;
    return (
      b[at + 4] === vnet >>> 24 &&
      b[at + 5] === ((vnet >>> 16) & 0xff) &&
      b[at + 6] === ((vnet >>> 8) & 0xff) &&
      b[at + 7] === (vnet & 0xff)
    );
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
