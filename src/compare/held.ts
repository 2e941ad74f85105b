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
  /** TCP: sequence number of the first payload byte and of the byte after the payload (uint32). */
  seq = 0;
  end = 0;
  /** Compared bytes: TCP payload, or the datagram's compared region. */
  len = 0;
  /** TCP: payload bytes already compared. */
  off = 0;
  /** Frame offset of the first compared byte. */
  dataOff = 0;
  ack = 0;
  flags = 0;
  prev: Held | null = null;
  next: Held | null = null;
  gPrev: Held | null = null;
  gNext: Held | null = null;
}

/** A per-connection, per-side queue (intrusive doubly linked list). */
export class HeldQueue {
  head: Held | null = null;
  tail: Held | null = null;
  count = 0;

  push(h: Held): void {
    h.prev = this.tail;
    h.next = null;
    if (this.tail) this.tail.next = h;
    else this.head = h;
    this.tail = h;
    this.count++;
  }

  /**
   * Inserts keeping ascending TCP sequence order (signed 32-bit difference, so it survives
   * wraparound); equal sequence numbers keep arrival order. Scans from the tail: in-order
   * arrivals, the common case, cost O(1).
   */
  insertBySeq(h: Held): void {
    let at = this.tail;
    while (at !== null && ((at.seq - h.seq) | 0) > 0) at = at.prev;
    if (at === this.tail) {
      this.push(h);
      return;
    }
    h.prev = at;
    h.next = at === null ? this.head : at.next;
    if (h.next) h.next.prev = h;
    if (at === null) this.head = h;
    else at.next = h;
    this.count++;
  }

  remove(h: Held): void {
    if (h.prev) h.prev.next = h.next;
    else this.head = h.next;
    if (h.next) h.next.prev = h.prev;
    else this.tail = h.prev;
    h.prev = null;
    h.next = null;
    this.count--;
  }
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
