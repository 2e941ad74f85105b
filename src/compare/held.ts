/**
 * @module Held packets: one pooled record per frame the engine holds, linked into its
 * connection's per-side queue and into one global arrival-ordered list (oldest first, for O(1)
 * timeout checks). Records are recycled, so holding a frame allocates nothing in steady state;
 * the frame itself is never copied. Each record has a stable id: a connection's queue ends are
 * ids in its hot row (conntrack/table.ts), integers rather than pointers.
 */

const EMPTY = Buffer.alloc(0);

export const enum HeldSide {
  Primary = 0,
  Secondary = 1,
}

/** Id of "no record" (an empty queue's ends). */
export const NO_HELD = -1;

/** Free records kept for reuse; beyond, a freed record is left to the garbage collector. */
const POOL_LIMIT = 4096;

export class Held {
  frame: Buffer = EMPTY;
  vnetLen = 0;
  arrival = 0;
  side: HeldSide = HeldSide.Primary;
  /** Row index of the owning connection (conntrack/table.ts): an integer, no pointer to store. */
  cx = -1;
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
  readonly id: number;

  constructor(id: number) {
    this.id = id;
  }
}

/** Every held record of both sides in arrival order, plus the record pool and the id map. */
export class HeldStore {
  head: Held | null = null;
  tail: Held | null = null;
  count = 0;
  /** Record by id (holes where a record went to the garbage collector). */
  readonly byId: (Held | undefined)[] = [];
  readonly #pool: Held[] = [];
  /** Ids whose records went to the garbage collector, for reuse. */
  readonly #freeIds: number[] = [];

  alloc(): Held {
    const h = this.#pool.pop();
    if (h !== undefined) return h;
    const id = this.#freeIds.pop() ?? this.byId.length;
    const n = new Held(id);
    this.byId[id] = n;
    return n;
  }

  /** The record with this id, or null for NO_HELD. */
  get(id: number): Held | null {
    return id === NO_HELD ? null : this.byId[id]!;
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
    h.cx = -1;
    this.count--;
    if (this.#pool.length < POOL_LIMIT) this.#pool.push(h);
    else {
      this.byId[h.id] = undefined;
      this.#freeIds.push(h.id);
    }
  }
}
