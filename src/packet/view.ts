/**
 * @module Base classes of the zero-copy views: a header view over `buf[off, end)` and an
 * option-cursor over `buf[pos, end)`. Both are re-pointable with `reset()` so a hot loop can
 * reuse one instance instead of allocating per packet.
 */

/** A protocol header at `off` in `buf`; `end` bounds what may be read (frame or datagram end). */
export class View {
  buf: Uint8Array;
  off: number;
  end: number;
  constructor(buf: Uint8Array, off = 0, end = buf.length) {
    this.buf = buf;
    this.off = off;
    this.end = end;
  }
  /** Re-points this view and returns it. */
  reset(buf: Uint8Array, off = 0, end = buf.length): this {
    this.buf = buf;
    this.off = off;
    this.end = end;
    return this;
  }
}

/** Shared state of the allocation-free option iterators (TCP, IPv6 TLV, NDP). */
export class OptionCursor {
  buf: Uint8Array = new Uint8Array(0);
  pos = 0;
  end = 0;
  /** Set when an option's length is impossible; iteration then stops. */
  malformed = false;
  reset(buf: Uint8Array, start: number, end: number): this {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    this.malformed = false;
    return this;
  }
  /** Marks the option area malformed and ends the iteration. */
  protected stop(): false {
    this.malformed = true;
    this.pos = this.end;
    return false;
  }
}
