/**
 * @module Held packets: one pooled record per frame the engine holds, linked into its
 * connection's per-side queue and into one global arrival-ordered list (oldest first, for O(1)
 * timeout checks). Records are recycled, so holding a frame allocates nothing in steady state;
 * the frame itself is never copied.
 */

const EMPTY = Buffer.alloc(0);

export const enum HeldSide {
  Primary = 0,
  Secondary = 1,
}

export class Held {
  frame: Buffer = EMPTY;
  vnetLen = 0;
  arrival = 0;
  side: HeldSide = HeldSide.Primary;
  /** Owning connection (typed loosely to avoid a cycle; the engine knows the type). */
  conn: unknown = null;
  /**
   * TCP: sequence number of the first payload byte and of the byte after the payload, and the ack,
   * as int32 (`| 0`, compared by signed difference) so they stay small integers, never boxed.
   */
  seq = 0;
  end = 0;
  /** Compared bytes: TCP payload, or the datagram's compared region. */
  len = 0;
  /** TCP: payload bytes already compared. */
  off = 0;
  /** Frame offset of the first compared byte. */
  dataOff = 0;
  /** TCP: frame offset of the TCP header (the window clamp rewrites its window field). */
  l4 = 0;
  ack = 0;
  flags = 0;
  prev: Held | null = null;
  next: Held | null = null;
  gPrev: Held | null = null;
  gNext: Held | null = null;
}

/** Every held record of both sides in arrival order, plus the record pool. */
export class HeldStore {
  head: Held | null = null;
  tail: Held | null = null;
  count = 0;
  readonly #pool: Held[] = [];

  alloc(): Held {
    return this.#pool.pop() ?? new Held();
  }

  /** Links a record as the newest held packet. */
  link(h: Held): void {
    h.gPrev = this.tail;
    h.gNext = null;
    if (this.tail) this.tail.gNext = h;
    else this.head = h;
    this.tail = h;
    this.count++;
  }

  /** Unlinks and recycles a record (after the frame has been handed to the sink). */
  free(h: Held): void {
    if (h.gPrev) h.gPrev.gNext = h.gNext;
    else this.head = h.gNext;
    if (h.gNext) h.gNext.gPrev = h.gPrev;
    else this.tail = h.gPrev;
    h.gPrev = null;
    h.gNext = null;
    h.frame = EMPTY;
    h.conn = null;
    this.count--;
    if (this.#pool.length < 4096) this.#pool.push(h);
  }
}
