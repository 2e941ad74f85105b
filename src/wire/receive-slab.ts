/**
 * @module Socket reads into slabs: the memory a chardev's bytes are received into.
 *
 * A plain `net.Socket` hands every read to JavaScript as a fresh buffer: Node mallocs 64 KiB,
 * reads, shrinks it to the bytes read, wraps it in an ArrayBuffer, then pushes it through the
 * Readable stream machinery ('data', a `process.nextTick` per read). At a few frames per read
 * that is most of a daemon's per-read cost, and its garbage (ArrayBuffers with external memory,
 * tick objects) is what the young-generation collector pauses for.
 *
 * Instead, Node's user-buffer read mode (`onread`, public for client sockets) reads straight into
 * consecutive regions of a 256 KiB slab: each read lands right after the previous one and is
 * never overwritten, so the frames the decoder makes from it are zero-copy views that stay valid
 * for as long as anyone holds them (the compare engine holds primary frames; outdev queues
 * hold releases). A full slab is simply left to the garbage collector, which frees it once no
 * frame points into it; reads then go to a new one. The cost: a frame held for a long time keeps
 * its whole slab alive (at most 256 KiB per held frame, and never more than the bytes received
 * while it is held), where a per-read buffer kept only that read.
 *
 * Sockets accepted by a `net.Server` cannot be given `onread` through any public API; for them
 * `engageSlabReads` sets the same three fields `net.Socket`'s constructor sets for that option,
 * found by their symbols' descriptions, and hands the first region to the handle exactly as
 * Node's own socket set-up does. If this Node lacks any of it, the socket keeps plain 'data'
 * reads (slower, same behaviour); the endpoint reports which mode it got (`readMode`), and a test
 * checks that the fast one is taken on the Node version CI runs.
 */
import type net from "node:net";
import { markReceived } from "./frame-writer.ts";
import { NodeBuffer } from "./framing.ts";

/** Bytes per slab. */
export const SLAB_BYTES = 256 * 1024;
/** Largest single read (libuv's default suggestion for stream reads is the same). */
export const MAX_READ_BYTES = 64 * 1024;
/** A slab with less room than this left is retired rather than used for short reads. */
const MIN_READ_BYTES = 16 * 1024;

/**
 * Hands out the region the next read goes to (`next`) and turns a completed read into a view of
 * its bytes (`take`). One per socket: a region is only ever read into once.
 */
export class ReceiveSlab {
  #mem: ArrayBuffer | null = null;
  #base = 0;
  #size = 0;
  /** Offset (within the slab) of the region last handed out by next(). */
  #off = 0;
  /** Slabs allocated so far. */
  slabs = 0;

  /** The region the next read goes to: up to MAX_READ_BYTES right after the last read. */
  next(): Buffer {
    if (this.#mem === null || this.#size - this.#off < MIN_READ_BYTES) this.#grow();
    return new NodeBuffer(
      this.#mem!,
      this.#base + this.#off,
      Math.min(MAX_READ_BYTES, this.#size - this.#off),
    );
  }

  /** The read into the last region from next() brought `n` bytes: a view of them (never reused). */
  take(n: number): Buffer {
    const view = new NodeBuffer(this.#mem!, this.#base + this.#off, n);
    this.#off += n;
    return view;
  }

  #grow(): void {
    // allocUnsafeSlow: a slab of its own, not a slice of Node's shared 8 KiB pool.
    const slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    // Bytes of a slab are written once, by the read that received them: frames relayed unchanged
    // can be written in place with their received length prefix (see FrameWriter).
    markReceived(slab);
    this.#mem = slab.buffer as ArrayBuffer;
    this.#base = slab.byteOffset;
    this.#size = slab.length;
    this.#off = 0;
    this.slabs++;
  }
}

/** `onread` for net.connect(): every read of the socket into `slab`, its bytes to `onRead`. */
export function slabOnread(slab: ReceiveSlab, onRead: (bytes: Buffer) => void): net.OnReadOpts {
  return {
    buffer: () => slab.next(),
    callback: (n: number) => {
      onRead(slab.take(n));
      return true;
    },
  };
}

interface UserBufferHandle {
  useUserBuffer?: (buf: Uint8Array) => void;
  reading?: boolean;
}

/**
 * Switch an accepted socket that has not started reading (server created with
 * `pauseOnConnect: true`) to slab reads, as `onread` would have. Returns false, changing
 * nothing, when this Node does not have the internals it needs; the caller then reads 'data'.
 */
export function engageSlabReads(
  sock: net.Socket,
  slab: ReceiveSlab,
  onRead: (bytes: Buffer) => void,
): boolean {
  const handle = (sock as unknown as { _handle?: UserBufferHandle | null })._handle;
  if (
    handle === null ||
    handle === undefined ||
    typeof handle.useUserBuffer !== "function" ||
    handle.reading
  ) {
    return false;
  }
  const own = Object.getOwnPropertySymbols(sock);
  const find = (name: string) => own.find((s) => s.description === name);
  const kBuffer = find("kBuffer");
  const kBufferCb = find("kBufferCb");
  const kBufferGen = find("kBufferGen");
  if (kBuffer === undefined || kBufferCb === undefined || kBufferGen === undefined) return false;
  const fields = sock as unknown as Record<symbol, unknown>;
  if (fields[kBuffer] !== null || fields[kBufferCb] !== null || fields[kBufferGen] !== null) return false;
  const opts = slabOnread(slab, onRead);
  const first = slab.next();
  fields[kBufferGen] = opts.buffer;
  fields[kBufferCb] = opts.callback;
  fields[kBuffer] = first;
  handle.useUserBuffer(first);
  return true;
}
