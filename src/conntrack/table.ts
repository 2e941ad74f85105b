/**
 * @module Bounded connection table with O(1) eviction and idle expiry.
 *
 * Connections live in a Map (insertion order = first-seen order, used for flushes). A connection
 * with nothing queued sits on one of two intrusive LRU lists, `closed` or `idle`, ordered by last
 * activity; a connection holding packets ("busy") is on neither, so it can never be evicted or
 * expired and the table never loses a queued packet (unlike QEMU's wipe at 16,384 entries).
 * Eviction takes the least recently active closed connection, then the least recently active idle
 * one. All operations are O(1) except expiry, which is O(expired).
 */
import type { FlowTuple } from "./flow.ts";

const enum ListId {
  None = 0,
  Idle = 1,
  Closed = 2,
}

/** Fields the table manages; the compare engine extends this with its per-connection state. */
export class TrackedConn {
  readonly key: string;
  /** Creation order, unique per table. */
  readonly serial: number;
  readonly flow: FlowTuple;
  readonly createdAt: number;
  lastActive: number;
  /** Set by the owner when the flow has ended (FIN exchange, RST); prefers it for eviction. */
  closed = false;
  /** @internal list links */
  lPrev: TrackedConn | null = null;
  lNext: TrackedConn | null = null;
  list: ListId = ListId.None;

  constructor(key: string, serial: number, flow: FlowTuple, now: number) {
    this.key = key;
    this.serial = serial;
    this.flow = flow;
    this.createdAt = now;
    this.lastActive = now;
  }
}

class ConnList {
  head: TrackedConn | null = null;
  tail: TrackedConn | null = null;
  size = 0;

  push(c: TrackedConn): void {
    c.lPrev = this.tail;
    c.lNext = null;
    if (this.tail) this.tail.lNext = c;
    else this.head = c;
    this.tail = c;
    this.size++;
  }

  remove(c: TrackedConn): void {
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

export class ConnTable<C extends TrackedConn> {
  readonly #map = new Map<string, C>();
  readonly #idle = new ConnList();
  readonly #closed = new ConnList();
  #serial = 0;

  get size(): number {
    return this.#map.size;
  }

  /** Connections with nothing queued (evictable). */
  get evictable(): number {
    return this.#idle.size + this.#closed.size;
  }

  get(key: string): C | undefined {
    return this.#map.get(key);
  }

  nextSerial(): number {
    return this.#serial++;
  }

  /** Adds a new connection; it starts busy (on no list) until `idle()` is called. */
  add(conn: C): void {
    this.#map.set(conn.key, conn);
  }

  /** Iterates in first-seen order. */
  values(): IterableIterator<C> {
    return this.#map.values();
  }

  /** The connection now holds packets: take it off the LRU lists. */
  busy(conn: C): void {
    if (conn.list === ListId.Idle) this.#idle.remove(conn);
    else if (conn.list === ListId.Closed) this.#closed.remove(conn);
    conn.list = ListId.None;
  }

  /** The connection holds nothing: (re)append it to its LRU list as most recently active. */
  idle(conn: C, now: number): void {
    this.busy(conn);
    conn.lastActive = now;
    if (conn.closed) {
      this.#closed.push(conn);
      conn.list = ListId.Closed;
    } else {
      this.#idle.push(conn);
      conn.list = ListId.Idle;
    }
  }

  isBusy(conn: C): boolean {
    return conn.list === ListId.None;
  }

  delete(conn: C): void {
    this.busy(conn);
    this.#map.delete(conn.key);
  }

  /** Removes the best eviction candidate (closed first, then least recently active); undefined if none. */
  evictOne(): C | undefined {
    const c = (this.#closed.head ?? this.#idle.head) as C | null;
    if (c === null) return undefined;
    this.delete(c);
    return c;
  }

  /**
   * Removes closed connections inactive for more than `closedMs` and idle ones inactive for more
   * than `idleMs`; calls `onRemove` for each. Lists are ordered by activity, so this stops at the
   * first survivor.
   */
  expire(now: number, idleMs: number, closedMs: number, onRemove: (c: C) => void): void {
    for (let c = this.#closed.head; c !== null && now - c.lastActive > closedMs; c = this.#closed.head) {
      this.delete(c as C);
      onRemove(c as C);
    }
    for (let c = this.#idle.head; c !== null && now - c.lastActive > idleMs; c = this.#idle.head) {
      this.delete(c as C);
      onRemove(c as C);
    }
  }

  clear(): void {
    this.#map.clear();
    this.#idle.head = this.#idle.tail = null;
    this.#closed.head = this.#closed.tail = null;
    this.#idle.size = this.#closed.size = 0;
  }
}
