/**
 * @module FrameBatch: collects the frames one socket read delivers, for CompareEngine's batch calls
 * (pushPrimaryBatch / pushSecondaryBatch: one pass that overlaps the cache misses of all their
 * connections, see docs/benchmarks.md "Batch calls"). A shell keeps one per input, adds each
 * decoded frame instead of pushing it, and flushes once the read is decoded. Its arrays grow to the
 * most frames one read has carried and are reused; nothing is allocated per read after that.
 */
import type { CompareEngine } from "./engine.ts";

export class FrameBatch {
  // Two sets of arrays: a flush hands one to the engine and collects into the other, so a frame
  // added while the engine is still reading a batch (from a sink callback) cannot overwrite it.
  #frames: Buffer[] = [];
  #vnetLens: number[] = [];
  /** The other set, null while it is being flushed (a nested flush then starts a third). */
  #spareFrames: Buffer[] | null = [];
  #spareVnetLens: number[] | null = [];
  #count = 0;

  /** Frames added since the last flush. */
  get count(): number {
    return this.#count;
  }

  add(frame: Buffer, vnetLen: number): void {
    this.#frames[this.#count] = frame;
    this.#vnetLens[this.#count] = vnetLen;
    this.#count++;
  }

  /** Pushes the frames added since the last flush as primary frames (one batch call), in order. */
  flushPrimary(engine: CompareEngine, now: number): void {
    this.#flush(engine, now, true);
  }

  /** Pushes the frames added since the last flush as secondary frames, in order. */
  flushSecondary(engine: CompareEngine, now: number): void {
    this.#flush(engine, now, false);
  }

  #flush(engine: CompareEngine, now: number, primary: boolean): void {
    const n = this.#count;
    if (n === 0) return;
    const frames = this.#frames;
    const vnetLens = this.#vnetLens;
    this.#frames = this.#spareFrames ?? [];
    this.#vnetLens = this.#spareVnetLens ?? [];
    this.#spareFrames = null;
    this.#spareVnetLens = null;
    this.#count = 0;
    try {
      if (primary) engine.pushPrimaryBatch(frames, vnetLens, n, now);
      else engine.pushSecondaryBatch(frames, vnetLens, n, now);
    } finally {
      // The engine holds what it keeps; the batch must not keep released frames (and the socket
      // buffers under them) alive until the next read.
      // A loop, not fill(): Array.prototype.fill is a C++ builtin call, ~1 % of the daemon's
      // per-read time for a few frames.
      for (let k = 0; k < n; k++) frames[k] = EMPTY;
      this.#spareFrames = frames;
      this.#spareVnetLens = vnetLens;
    }
  }
}

const EMPTY = Buffer.alloc(0);
