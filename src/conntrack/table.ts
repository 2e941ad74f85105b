/**
 * @module Bounded connection table: allocation-free lookup by flow key, O(1) eviction and idle expiry.
 *
 * Lookup: an open-addressing hash table (linear probing, backward-shift deletion, load <= 1/2)
 * keyed by the flow key's 16-bit code units (FrameMeta.keyUnits). Each slot is one 64-byte row of a
 * preallocated Uint16Array slab holding the key length, its 32-bit hash, the connection's row
 * index and the key itself, so a lookup hashes the units, reads one slab row (usually), compares
 * the key unit by unit and returns the slot's row index (or connection): no string is built,
 * hashed or compared per packet, and nothing is allocated. The key string (TrackedConn.key) is made once, when a connection is created.
 * Connections also sit on an insertion-order list (first-seen order for `values()`).
 *
 * Hot rows: each connection in the table has a stable index (`ix`) and a row of ROW_WORDS int32
 * words in one of the table's pages (4096 rows of 64 bytes each, never moved or reallocated): word
 * ROW_LAST_ACTIVE and the table's bits of ROW_FLAGS are the table's, the rest the owner's. The
 * slot stores the index next to the key, so a lookup can return the index (`findIx`) and the
 * caller read and write the connection's per-packet state in one cache line of a typed array
 * without touching the connection object at all: with 100k connections nothing is in cache, and
 * an object costs more lines (and a map check) than the row (docs/benchmarks.md, compare engine,
 * "Session 8"). A connection outside a table keeps a private copy of its row (`rowArr` /
 * `rowBase` always say where the row is): after `delete`, and before `add` unless it was
 * constructed on a row the table staged for it (`stageRow`: the row it will have, so opening a
 * connection allocates no private row). The slab stores no pointer to the connection and the
 * connection no slot: `delete` finds the slot by probing from the stored hash. With `deferFree`, a deleted
 * connection's index is reused only after `recycle()`: code still holding the index (a caller
 * re-entered from a callback that deleted it) then writes a dead row, never another connection's.
 *
 * Eviction and expiry: connections sit on one of two intrusive lists, `closed` or `idle`,
 * ordered by the time they were (re)listed. The lists are maintained lazily so that the
 * per-packet path only writes `lastActive`: a connection touched since it was listed is moved to
 * the tail when it reaches the head, and a connection holding packets (`holding()`) is unlinked
 * when met at the head and relisted when it empties. So a connection holding packets is never
 * evicted or expired, and the table never loses a queued packet (unlike QEMU's wipe at 16,384
 * entries). Eviction takes the least recently active closed connection, then the least recently
 * active idle one (approximately: second-chance order), and expiry may find a connection late by
 * at most one timeout in rare orders. Both are amortised O(1).
 */
import { ColoError } from "../errors.ts";
import type { FlowTuple } from "./flow.ts";

const enum ListId {
  None = 0,
  Idle = 1,
  Closed = 2,
}

/** int32 words per hot row: one 64-byte cache line. */
export const ROW_WORDS = 16;
/** Row word: last activity (Tracked.lastActive). */
export const ROW_LAST_ACTIVE = 0;
/** Row word: the table's flags (bits 0–2 and 30) and the owner's (bits 3–29). */
export const ROW_FLAGS = 1;
/** First row word the owner may use (words ROW_OWNER .. ROW_WORDS - 1). */
export const ROW_OWNER = 2;
/** ROW_FLAGS bits the table uses: closed, the list id (two bits), and "deleted" (a dead row). */
export const FLAG_CLOSED = 1 << 0;
export const FLAG_LIST_SHIFT = 1;
export const FLAG_LIST_MASK = 3 << FLAG_LIST_SHIFT;
export const FLAG_DEAD = 1 << 30;
/** Rows per page (256 KiB pages): row `ix` is at pages[ix >>> PAGE_SHIFT], word (ix & PAGE_MASK) * ROW_WORDS. */
export const PAGE_SHIFT = 12;
export const PAGE_MASK = (1 << PAGE_SHIFT) - 1;

/** Sets or clears a flag bit in a connection's row (owners use it for their own bits too). */
export function setRowFlag(c: Tracked, mask: number, on: boolean): void {
  const i = c.rowBase + ROW_FLAGS;
  const f = c.rowArr[i]!;
  c.rowArr[i] = on ? f | mask : f & ~mask;
}

function setRowList(c: Tracked, id: number): void {
  const i = c.rowBase + ROW_FLAGS;
  c.rowArr[i] = (c.rowArr[i]! & ~FLAG_LIST_MASK) | (id << FLAG_LIST_SHIFT);
}

/**
 * What the table needs of a connection. TrackedConn implements it (owners extend it: the compare
 * engine's CompareConn); the per-packet fields are in the hot row, so the object's layout does
 * not matter to the per-packet cost.
 */
export interface Tracked {
  /** Last activity (the owner's clock, an int32); written by touch() on every packet. Row word. */
  lastActive: number;
  /** Set by the owner when the flow has ended (FIN exchange, RST); prefers it for eviction. Row bit. */
  closed: boolean;
  /** @internal the list it is on (0 none, 1 idle, 2 closed); row bits */
  list: number;
  /** @internal where the hot row is: a table page while in a table, else a private copy */
  rowArr: Int32Array;
  /** @internal word offset of the row in rowArr */
  rowBase: number;
  /** @internal stable row index while in a table, -1 outside */
  ix: number;
  /** @internal `lastActive` when it was put on its list (a difference means touched since). */
  listedAt: number;
  /** @internal list links */
  lPrev: Tracked | null;
  lNext: Tracked | null;
  /** @internal the table's hash of the key (hashOf), set by add: delete probes from it for the slot */
  hash: number;
  /** @internal insertion-order links */
  oPrev: Tracked | null;
  oNext: Tracked | null;
  /** The flow key (FrameMeta.key of the frame that created it). */
  readonly key: string;
  /** Creation order, unique per table. */
  readonly serial: number;
  readonly flow: FlowTuple;
  readonly createdAt: number;
  /** Whether the connection holds packets (never evicted or expired then). */
  holding(): boolean;
}

/** Where a staged row is (ConnTable.stageRow): pass it to the constructor of the connection to add next. */
export interface StagedRow {
  readonly arr: Int32Array;
  readonly base: number;
}

/** The plain implementation of Tracked (its hot fields live in the row, see the module doc). */
export class TrackedConn implements Tracked {
  rowArr: Int32Array;
  rowBase: number;
  ix = -1;
  /** @internal `lastActive` when it was put on its list (a difference means touched since). */
  listedAt: number;
  /** @internal list links */
  lPrev: Tracked | null = null;
  lNext: Tracked | null = null;
  /** @internal the table's hash of the key (hashOf), set by add: delete probes from it for the slot */
  hash = 0;
  /** @internal insertion-order links */
  oPrev: Tracked | null = null;
  oNext: Tracked | null = null;
  /** The flow key (FrameMeta.key of the frame that created it). */
  readonly key: string;
  /** Creation order, unique per table. */
  readonly serial: number;
  readonly createdAt: number;
  #flow: FlowTuple | null;

  /**
   * `flow` null: made on first use by makeFlow() (an owner that can rebuild it saves the work).
   * `row`: a row staged by the table the connection is added to next (ConnTable.stageRow), else
   * null for a private row.
   */
  constructor(
    key: string,
    serial: number,
    flow: FlowTuple | null,
    now: number,
    row: StagedRow | null = null,
  ) {
    this.rowArr = row === null ? new Int32Array(ROW_WORDS) : row.arr;
    this.rowBase = row === null ? 0 : row.base;
    this.key = key;
    this.serial = serial;
    this.#flow = flow;
    this.createdAt = now;
    this.lastActive = now;
    this.listedAt = now;
  }

  get flow(): FlowTuple {
    if (this.#flow === null) this.#flow = this.makeFlow();
    return this.#flow;
  }

  /** The tuple of a connection constructed without one (owners that do that override it). */
  protected makeFlow(): FlowTuple {
    // A programming error: a TrackedConn made without a tuple by a class that cannot rebuild it.
    throw new ColoError("COLO_ERR_INTERNAL", "connection constructed without a flow tuple");
  }

  get lastActive(): number {
    return this.rowArr[this.rowBase + ROW_LAST_ACTIVE]!;
  }
  set lastActive(v: number) {
    this.rowArr[this.rowBase + ROW_LAST_ACTIVE] = v;
  }
  /** Set by the owner when the flow has ended (FIN exchange, RST); prefers it for eviction. */
  get closed(): boolean {
    return (this.rowArr[this.rowBase + ROW_FLAGS]! & FLAG_CLOSED) !== 0;
  }
  set closed(v: boolean) {
    setRowFlag(this, FLAG_CLOSED, v);
  }
  get list(): number {
    return (this.rowArr[this.rowBase + ROW_FLAGS]! & FLAG_LIST_MASK) >>> FLAG_LIST_SHIFT;
  }
  set list(v: number) {
    setRowList(this, v);
  }

  /** Whether the connection holds packets (never evicted or expired then). Owners override. */
  holding(): boolean {
    return false;
  }
}

class ConnList {
  head: Tracked | null = null;
  tail: Tracked | null = null;
  size = 0;

  push(c: Tracked): void {
    c.lPrev = this.tail;
    c.lNext = null;
    if (this.tail) this.tail.lNext = c;
    else this.head = c;
    this.tail = c;
    this.size++;
  }

  remove(c: Tracked): void {
    if (c.lPrev) c.lPrev.lNext = c.lNext;
    else this.head = c.lNext;
    if (c.lNext) c.lNext.lPrev = c.lPrev;
    else this.tail = c.lPrev;
    c.lPrev = null;
    c.lNext = null;
    this.size--;
  }
}

export type RemoveCause = "expired" | "evicted";

/** Hash of a key's first `len` code units. */
export type KeyHash = (units: Uint16Array, len: number) => number;

export interface ConnTableOptions {
  /** Initial number of slots (rounded up to a power of two, at least 8). Default 64. */
  initialCapacity?: number;
  /**
   * Keep a deleted connection's row index out of use until recycle() (default false: reused at
   * once). For an owner that may be re-entered while it holds an index (see the module doc).
   */
  deferFree?: boolean;
  /** Key hash (default hashKeyUnits); tests inject weak ones to force collisions. */
  hash?: KeyHash;
}

/**
 * Units per slot: [0] key length + 1 (0 = empty slot), [1] hash >>> 16, [2] hash & 0xffff,
 * [3] [4] the connection's row index (high, low), then the key.
 */
const STRIDE = 32;
const HDR = 5;
/** Longest key the table stores (flow keys have at most 22 units, see MAX_KEY_UNITS). */
export const MAX_TABLE_KEY_UNITS = STRIDE - HDR;

/**
 * Murmur3-style 32-bit hash of 16-bit code units taken two at a time, with the final mix so that
 * the low bits (the slot index) depend on every unit.
 */
export function hashKeyUnits(u: Uint16Array, len: number): number {
  let h = 0x9747b28c ^ len;
  let i = 0;
  for (; i + 1 < len; i += 2) {
    let k = (u[i]! << 16) | u[i + 1]!;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < len) {
    let k = Math.imul(u[i]!, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class ConnTable<C extends Tracked> {
  readonly #hash: KeyHash;
  readonly #initialCapacity: number;
  #slab: Uint16Array;
  #mask: number;
  #size = 0;
  /** Hot rows (see the module doc); the array only grows, its pages never move. */
  readonly #pages: Int32Array[] = [];
  /** Connection by row index. */
  readonly #byIx: (C | undefined)[] = [];
  /** Row indices free for reuse, and (deferFree) deleted ones waiting for recycle(). */
  readonly #free: number[] = [];
  readonly #limbo: number[] = [];
  readonly #deferFree: boolean;
  /** Insertion order (first-seen order) */
  #first: C | null = null;
  #lastAdded: C | null = null;
  readonly #idle = new ConnList();
  readonly #closed = new ConnList();
  #serial = 0;
  /** Scratch units for string-keyed calls (get, add). */
  readonly #units = new Uint16Array(MAX_TABLE_KEY_UNITS);
  /** The staged row's index (stageRow), -1 when none; and the one object stageRow returns. */
  #staged = -1;
  readonly #stagedRow: { arr: Int32Array; base: number } = { arr: new Int32Array(0), base: 0 };

  constructor(options: ConnTableOptions = {}) {
    this.#hash = options.hash ?? hashKeyUnits;
    this.#deferFree = options.deferFree ?? false;
    let cap = 8;
    while (cap < (options.initialCapacity ?? 64)) cap *= 2;
    this.#initialCapacity = cap;
    this.#slab = new Uint16Array(cap * STRIDE);
    this.#mask = cap - 1;
  }

  get size(): number {
    return this.#size;
  }

  /** Number of slots (grows by doubling to keep the load at most 1/2; memory: 64 B per slot). */
  get capacity(): number {
    return this.#mask + 1;
  }

  /** Connections on the lists (an upper bound of the evictable ones). */
  get listed(): number {
    return this.#idle.size + this.#closed.size;
  }

  /**
   * The hot-row pages: row `ix` is words [(ix & PAGE_MASK) * ROW_WORDS, + ROW_WORDS) of
   * pages[ix >>> PAGE_SHIFT]. The same array for the table's lifetime (it only grows).
   */
  get pages(): readonly Int32Array[] {
    return this.#pages;
  }

  /**
   * The connection with row index `ix`: undefined when that row is free; a deleted connection
   * while its index waits for recycle() (deferFree).
   */
  at(ix: number): C | undefined {
    return this.#byIx[ix];
  }

  /**
   * The connection whose key is the first `len` code units of `units` (e.g. FrameMeta.keyUnits /
   * keyLen). No allocation.
   */
  find(units: Uint16Array, len: number): C | undefined {
    const ix = this.findIx(units, len, this.#hash(units, len) | 0);
    return ix < 0 ? undefined : this.#byIx[ix];
  }

  /** find() with the key's hash already computed by hashOf (e.g. in a batch's first pass). */
  findHashed(units: Uint16Array, len: number, h: number): C | undefined {
    const ix = this.findIx(units, len, h);
    return ix < 0 ? undefined : this.#byIx[ix];
  }

  /**
   * The per-packet lookup: the row index of the connection with this key (hash `h` from hashOf),
   * or -1. Reads the slab only: the connection object is not touched.
   */
  findIx(units: Uint16Array, len: number, h: number): number {
    const slab = this.#slab;
    const mask = this.#mask;
    const tag = len + 1;
    const hi = h >>> 16;
    const lo = h & 0xffff;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const b = i * STRIDE;
      const t = slab[b]!;
      if (t === 0) return -1;
      if (t === tag && slab[b + 1] === hi && slab[b + 2] === lo) {
        let k = 0;
        const at = b + HDR;
        while (k < len && slab[at + k] === units[k]) k++;
        if (k === len) return (slab[b + 3]! << 16) | slab[b + 4]!;
      }
    }
  }

  /**
   * This table's hash of a key (for findIx and warm), as an int32: a uint32 >= 2^31 passed between
   * functions can be a heap number, i.e. an allocation.
   */
  hashOf(units: Uint16Array, len: number): number {
    return this.#hash(units, len) | 0;
  }

  /**
   * Memory-level parallelism for a batch of lookups: loads the home slot's slab row of each of
   * `count` hashes (hashes[k], of a key of lens[k] units) and, if the slot is in use, the first
   * word of its connection's hot row (the home slot's connection is usually the key's; a hint
   * only). The loads of different keys do not depend on each other, so in this tight loop the CPU
   * overlaps their cache misses instead of taking them one after another as interleaved lookups
   * would. Changes nothing; returns a value computed from the loaded words so the loads cannot be
   * optimised away.
   */
  warm(hashes: Int32Array, lens: Uint8Array, count: number): number {
    const slab = this.#slab;
    const pages = this.#pages;
    const mask = this.#mask;
    let acc = 0;
    for (let k = 0; k < count; k++) {
      const b = (hashes[k]! & mask) * STRIDE;
      // First and last unit the lookup reads: a row may straddle two cache lines.
      acc ^= slab[b]! ^ slab[b + HDR - 1 + lens[k]!]!;
      if (slab[b] !== 0) {
        const ix = (slab[b + 3]! << 16) | slab[b + 4]!;
        acc ^= pages[ix >>> PAGE_SHIFT]![(ix & PAGE_MASK) * ROW_WORDS]!;
      }
    }
    return acc;
  }

  /** The connection with this key string (converts to units; for tools and tests). */
  get(key: string): C | undefined {
    return this.find(this.#unitsOf(key), key.length);
  }

  nextSerial(): number {
    return this.#serial++;
  }

  /**
   * Stages a zeroed row for the connection about to be constructed on it (TrackedConn's `row`)
   * and added right after: its row words are then written in place, and no private row is
   * allocated (a 16-word typed array is 264 bytes of heap, a third of what opening a connection
   * allocated). The returned object is the table's own, valid until the next call. Until that
   * add, staging again returns the same row, zeroed again: so the connection must be added
   * before another is constructed on a staged row, and must not be used if it is not added.
   */
  stageRow(): StagedRow {
    if (this.#staged < 0) this.#staged = this.#allocRow();
    const ix = this.#staged;
    const page = this.#pages[ix >>> PAGE_SHIFT]!;
    const base = (ix & PAGE_MASK) * ROW_WORDS;
    for (let k = 0; k < ROW_WORDS; k++) page[base + k] = 0;
    const r = this.#stagedRow;
    r.arr = page;
    r.base = base;
    return r;
  }

  /**
   * Adds a new connection (listed as idle or closed) under conn.key (at most MAX_TABLE_KEY_UNITS
   * code units, else RangeError). A connection already stored under that key is deleted first.
   * The connection's row moves into a table page (its private copy's words are kept).
   */
  add(conn: C, now: number): void {
    const key = conn.key;
    const units = this.#unitsOf(key);
    this.addKeyed(conn, now, units, key.length, this.#hash(units, key.length) | 0);
  }

  /**
   * add() for a caller that has the key's code units and hash (hashOf) at hand, e.g. from the
   * frame's parse: `units[0..len)` must be conn.key's code units. Saves converting the string
   * back and hashing it again on the connection-opening path.
   */
  addKeyed(conn: C, now: number, units: Uint16Array, len: number, h: number): void {
    const old = this.findHashed(units, len, h);
    if (old !== undefined) this.delete(old);
    if (2 * (this.#size + 1) > this.#mask + 1) this.#grow();
    const i = this.#freeSlot(h);
    const ix = this.#rowFor(conn);
    const b = i * STRIDE;
    const slab = this.#slab;
    slab[b] = len + 1;
    slab[b + 1] = h >>> 16;
    slab[b + 2] = h & 0xffff;
    slab[b + 3] = ix >>> 16;
    slab[b + 4] = ix & 0xffff;
    for (let k = 0; k < len; k++) slab[b + HDR + k] = units[k]!;
    const page = this.#pages[ix >>> PAGE_SHIFT]!;
    const base = (ix & PAGE_MASK) * ROW_WORDS;
    if (conn.rowArr !== page || conn.rowBase !== base) {
      // A private row. Word by word: subarray() of a small (on-heap) typed array moves its
      // storage off the heap, a malloc and a free per connection.
      const from = conn.rowArr;
      const fb = conn.rowBase;
      for (let k = 0; k < ROW_WORDS; k++) page[base + k] = from[fb + k]!;
    }
    page[base + ROW_FLAGS] = page[base + ROW_FLAGS]! & ~FLAG_DEAD;
    conn.rowArr = page;
    conn.rowBase = base;
    conn.ix = ix;
    this.#byIx[ix] = conn;
    conn.hash = h;
    conn.oPrev = this.#lastAdded;
    conn.oNext = null;
    if (this.#lastAdded !== null) this.#lastAdded.oNext = conn;
    else this.#first = conn;
    this.#lastAdded = conn;
    this.#size++;
    this.touch(conn, now);
  }

  /** Iterates in first-seen order (do not add or delete while iterating). */
  *values(): IterableIterator<C> {
    for (let c = this.#first; c !== null; c = c.oNext as C | null) yield c;
  }

  /** Records activity; puts the connection on its list if it is not on the right one. O(1). */
  touch(conn: C, now: number): void {
    conn.lastActive = now;
    const want = conn.closed ? ListId.Closed : ListId.Idle;
    // Not relisted once deleted: a checkpoint completed from inside a push can evict the very
    // connection that push is working on, and a listed stranger would be "evicted" forever.
    if (conn.list === want || conn.ix < 0) return;
    this.#unlink(conn);
    this.#listTail(conn, want);
  }

  /**
   * touch() by row index (the per-packet path: only the row is read unless the connection must
   * change lists). A deleted row (still in limbo) is left alone.
   */
  touchIx(ix: number, now: number): void {
    const page = this.#pages[ix >>> PAGE_SHIFT]!;
    const b = (ix & PAGE_MASK) * ROW_WORDS;
    page[b + ROW_LAST_ACTIVE] = now;
    const f = page[b + ROW_FLAGS]!;
    const want = f & FLAG_CLOSED ? ListId.Closed : ListId.Idle;
    if ((f & FLAG_LIST_MASK) >>> FLAG_LIST_SHIFT === want || (f & FLAG_DEAD) !== 0) return;
    const conn = this.#byIx[ix]!;
    this.#unlink(conn);
    this.#listTail(conn, want);
  }

  /** Whether the connection is on one of the lists (a connection holding packets may not be). */
  isListed(conn: C): boolean {
    return conn.list !== ListId.None;
  }

  /** Removes the connection (no-op when it is not in this table). */
  delete(conn: C): void {
    const ix = conn.ix;
    if (ix < 0 || this.#byIx[ix] !== conn) return;
    this.#unlink(conn);
    this.#removeSlot(this.#slotOf(conn.hash, ix));
    if (conn.oPrev !== null) conn.oPrev.oNext = conn.oNext;
    else this.#first = conn.oNext as C | null;
    if (conn.oNext !== null) conn.oNext.oPrev = conn.oPrev;
    else this.#lastAdded = conn.oPrev as C | null;
    conn.oPrev = null;
    conn.oNext = null;
    this.#detach(conn);
    this.#size--;
  }

  /** Makes deleted rows' indices reusable (deferFree): call when no caller holds an index. */
  recycle(): void {
    const limbo = this.#limbo;
    while (limbo.length > 0) {
      const ix = limbo.pop()!;
      this.#byIx[ix] = undefined;
      this.#free.push(ix);
    }
  }

  /** Removes the best eviction candidate (closed first, then least recently active); undefined if none. */
  evictOne(): C | undefined {
    const c =
      this.#candidate(this.#closed, Number.NEGATIVE_INFINITY) ??
      this.#candidate(this.#idle, Number.NEGATIVE_INFINITY);
    if (c === undefined) return undefined;
    this.delete(c);
    return c;
  }

  /**
   * Removes closed connections inactive for more than `closedMs` and idle ones inactive for more
   * than `idleMs`; calls `onRemove` for each.
   */
  expire(now: number, idleMs: number, closedMs: number, onRemove: (c: C) => void): void {
    for (;;) {
      const c = this.#candidate(this.#closed, now - closedMs);
      if (c === undefined) break;
      this.delete(c);
      onRemove(c);
    }
    for (;;) {
      const c = this.#candidate(this.#idle, now - idleMs);
      if (c === undefined) break;
      this.delete(c);
      onRemove(c);
    }
  }

  /**
   * Normalises the head of `list` (unlinks connections holding packets, requeues ones touched
   * since listed, moves ones whose closed flag changed) and returns it if it was last active
   * before `before` (any time when -Infinity), else undefined.
   */
  #candidate(list: ConnList, before: number): C | undefined {
    const any = before === Number.NEGATIVE_INFINITY;
    for (let c = list.head as C | null; c !== null; c = list.head as C | null) {
      if (c.holding()) {
        this.#unlink(c);
        continue;
      }
      const want = c.closed ? ListId.Closed : ListId.Idle;
      if (c.list !== want) {
        this.#unlink(c);
        this.#listTail(c, want);
        continue;
      }
      if (c.lastActive !== c.listedAt) {
        // Touched since listed: expired anyway (expiry), or a second chance at the tail.
        if (!any && c.lastActive < before) return c;
        this.#unlink(c);
        this.#listTail(c, want);
        if (list.head === c) return any ? c : undefined;
        continue;
      }
      return any || c.lastActive < before ? c : undefined;
    }
    return undefined;
  }

  #listTail(c: C, id: number): void {
    c.listedAt = c.lastActive;
    c.list = id;
    (id === ListId.Closed ? this.#closed : this.#idle).push(c);
  }

  #unlink(c: C): void {
    const list = c.list;
    if (list === ListId.Idle) this.#idle.remove(c);
    else if (list === ListId.Closed) this.#closed.remove(c);
    if (list !== ListId.None) c.list = ListId.None;
  }

  /** The row index for a connection being added: its staged row if it has it, else a new one. */
  #rowFor(conn: C): number {
    const s = this.#staged;
    if (
      s >= 0 &&
      conn.rowArr === this.#pages[s >>> PAGE_SHIFT] &&
      conn.rowBase === (s & PAGE_MASK) * ROW_WORDS
    ) {
      this.#staged = -1;
      return s;
    }
    return this.#allocRow();
  }

  /** A row index for a new connection: a free one, else the next, adding a page when needed. */
  #allocRow(): number {
    const free = this.#free;
    if (free.length > 0) return free.pop()!;
    const ix = this.#byIx.length;
    if ((ix & PAGE_MASK) === 0) this.#pages.push(new Int32Array((PAGE_MASK + 1) * ROW_WORDS));
    this.#byIx.push(undefined);
    return ix;
  }

  /**
   * Gives a deleted connection a private copy of its row, marks the table's row dead, and frees
   * the index (or parks it until recycle(), deferFree).
   */
  #detach(conn: C): void {
    const ix = conn.ix;
    const page = conn.rowArr;
    const b = conn.rowBase;
    conn.rowArr = page.slice(b, b + ROW_WORDS);
    conn.rowBase = 0;
    conn.ix = -1;
    page[b + ROW_FLAGS] = page[b + ROW_FLAGS]! | FLAG_DEAD;
    // In limbo, at(ix) still answers the (deleted) connection for code that holds the index.
    if (this.#deferFree) this.#limbo.push(ix);
    else {
      this.#byIx[ix] = undefined;
      this.#free.push(ix);
    }
  }

  /** Copies a key string's code units into the scratch array. */
  #unitsOf(key: string): Uint16Array {
    if (key.length > MAX_TABLE_KEY_UNITS) {
      throw new RangeError(`connection key of ${key.length} units (at most ${MAX_TABLE_KEY_UNITS})`);
    }
    const u = this.#units;
    for (let k = 0; k < key.length; k++) u[k] = key.charCodeAt(k);
    return u;
  }

  /** First empty slot on the probe path of hash `h`. */
  #freeSlot(h: number): number {
    const mask = this.#mask;
    let i = h & mask;
    while (this.#slab[i * STRIDE] !== 0) i = (i + 1) & mask;
    return i;
  }

  /**
   * The slot holding row index `ix` on the probe path of hash `h`. The slot is found, not stored
   * in the connection: growing and backward-shift deletion then move slab rows without writing
   * to the connections they name (one cache miss each, most of what growing cost).
   */
  #slotOf(h: number, ix: number): number {
    const slab = this.#slab;
    const mask = this.#mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const b = i * STRIDE;
      if (((slab[b + 3]! << 16) | slab[b + 4]!) === ix && slab[b] !== 0) return i;
      // An empty slot first would mean a corrupt table: fail loudly, not delete a stranger.
      if (slab[b] === 0) throw new ColoError("COLO_ERR_INTERNAL", `row ${ix} not on its probe path`);
    }
  }

  /**
   * Grows the slab now, if needed, so that `connections` fit without growing later (load at most
   * 1/2): the rehash pause happens at a moment the caller chooses (an operator raising the limit),
   * not when traffic reaches it. Never shrinks.
   */
  reserve(connections: number): void {
    let cap = this.#mask + 1;
    while (cap < 2 * connections) cap *= 2;
    if (cap > this.#mask + 1) this.#resize(cap);
  }

  #grow(): void {
    this.#resize(2 * (this.#mask + 1));
  }

  /** Rehashes every entry into a new slab of `cap` slots (a power of two, larger than now). */
  #resize(cap: number): void {
    const oldSlab = this.#slab;
    const oldCap = this.#mask + 1;
    const slab = new Uint16Array(cap * STRIDE);
    this.#slab = slab;
    this.#mask = cap - 1;
    for (let j = 0; j < oldCap; j++) {
      const b = j * STRIDE;
      const tag = oldSlab[b]!;
      if (tag === 0) continue;
      const h = ((oldSlab[b + 1]! << 16) | oldSlab[b + 2]!) >>> 0;
      const i = this.#freeSlot(h);
      // The header and the key only (tag = key length + 1), with no view allocated per entry.
      const to = i * STRIDE;
      for (let k = 0; k < HDR - 1 + tag; k++) slab[to + k] = oldSlab[b + k]!;
    }
  }

  /**
   * Empties slot `i` by backward-shift deletion: later entries of the probe run move back into
   * the hole when their home slot allows, so lookups never need tombstones.
   */
  #removeSlot(i: number): void {
    const slab = this.#slab;
    const mask = this.#mask;
    let hole = i;
    for (let j = (i + 1) & mask; slab[j * STRIDE] !== 0; j = (j + 1) & mask) {
      const b = j * STRIDE;
      const home = ((slab[b + 1]! << 16) | slab[b + 2]!) & mask;
      // The entry at j may fill the hole if the hole lies on its probe path [home, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        // The header and the key only, unit by unit (copyWithin is a C++ builtin call).
        const to = hole * STRIDE;
        const n = HDR - 1 + slab[b]!;
        for (let k = 0; k < n; k++) slab[to + k] = slab[b + k]!;
        hole = j;
      }
    }
    slab[hole * STRIDE] = 0;
  }

  /** Removes every connection and returns to the initial capacity. */
  clear(): void {
    for (let c = this.#first; c !== null; ) {
      const next = c.oNext as C | null;
      c.lPrev = c.lNext = c.oPrev = c.oNext = null;
      c.list = ListId.None;
      this.#detach(c);
      c = next;
    }
    const cap = this.#initialCapacity;
    this.#slab = new Uint16Array(cap * STRIDE);
    this.#mask = cap - 1;
    this.#size = 0;
    this.#first = null;
    this.#lastAdded = null;
    this.#idle.head = this.#idle.tail = null;
    this.#closed.head = this.#closed.tail = null;
    this.#idle.size = this.#closed.size = 0;
  }
}
