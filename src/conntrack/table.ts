/**
 * @module Bounded connection table with O(1) eviction and idle expiry.
 *
 * Connections live in a Map (insertion order = first-seen order). Connections sit on one of two
 * intrusive lists, `closed` or `idle`, ordered by the time they were (re)listed. The lists are
 * maintained lazily so that the per-packet path only writes `lastActive`: a connection touched
 * since it was listed is moved to the tail when it reaches the head, and a connection holding
 * packets (`holding()`) is unlinked when met at the head and relisted when it empties. So a
 * connection holding packets is never evicted or expired, and the table never loses a queued
 * packet (unlike QEMU's wipe at 16,384 entries). Eviction takes the least recently active closed
 * connection, then the least recently active idle one (approximately: second-chance order), and
 * expiry may find a connection late by at most one timeout in rare orders. Both are amortised O(1).
 */
import type { FlowTuple } from "./flow.ts";

const enum ListId {
  None = 0,
  Idle = 1,
  Closed = 2,
}

/** Fields the table manages; the compare engine extends this with its per-connection state. */
export class TrackedConn {
  // Declaration order is layout order: what touch() reads and writes on every packet comes first
  // (fewer cache lines per packet when the table is large and cold).
  lastActive: number;
  /** Set by the owner when the flow has ended (FIN exchange, RST); prefers it for eviction. */
  closed = false;
  list: ListId = ListId.None;
  /** @internal `lastActive` when it was put on its list (a difference means touched since). */
  listedAt: number;
  /** @internal list links */
  lPrev: TrackedConn | null = null;
  lNext: TrackedConn | null = null;
  readonly key: string;
  /** Creation order, unique per table. */
  readonly serial: number;
  readonly flow: FlowTuple;
  readonly createdAt: number;

  constructor(key: string, serial: number, flow: FlowTuple, now: number) {
    this.key = key;
    this.serial = serial;
    this.flow = flow;
    this.createdAt = now;
    this.lastActive = now;
    this.listedAt = now;
  }

  /** Whether the connection holds packets (never evicted or expired then). Owners override. */
  holding(): boolean {
    return false;
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
  #lastKey = "";
  #last: C | undefined = undefined;

  get size(): number {
    return this.#map.size;
  }

  /** Connections on the lists (an upper bound of the evictable ones). */
  get listed(): number {
    return this.#idle.size + this.#closed.size;
  }

  get(key: string): C | undefined {
    // One-entry cache: a flow's primary and secondary copies (and bursts) arrive back to back, and
    // comparing two short strings is much cheaper than hashing a fresh key into a large Map.
    if (key === this.#lastKey) return this.#last;
    const c = this.#map.get(key);
    if (c !== undefined) {
      this.#lastKey = key;
      this.#last = c;
    }
    return c;
  }

  nextSerial(): number {
    return this.#serial++;
  }

  /** Adds a new connection (listed as idle or closed). */
  add(conn: C, now: number): void {
    this.#map.set(conn.key, conn);
    this.touch(conn, now);
  }

  /** Iterates in first-seen order. */
  values(): IterableIterator<C> {
    return this.#map.values();
  }

  /** Records activity; puts the connection on its list if it is not on the right one. O(1). */
  touch(conn: C, now: number): void {
    conn.lastActive = now;
    const want = conn.closed ? ListId.Closed : ListId.Idle;
    if (conn.list === want) return;
    this.#unlink(conn);
    this.#listTail(conn, want);
  }

  /** Whether the connection is on one of the lists (a connection holding packets may not be). */
  isListed(conn: C): boolean {
    return conn.list !== ListId.None;
  }

  delete(conn: C): void {
    if (this.#last === conn) {
      this.#lastKey = "";
      this.#last = undefined;
    }
    this.#unlink(conn);
    this.#map.delete(conn.key);
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

  #listTail(c: C, id: ListId): void {
    c.listedAt = c.lastActive;
    c.list = id;
    (id === ListId.Closed ? this.#closed : this.#idle).push(c);
  }

  #unlink(c: C): void {
    if (c.list === ListId.Idle) this.#idle.remove(c);
    else if (c.list === ListId.Closed) this.#closed.remove(c);
    c.list = ListId.None;
  }

  clear(): void {
    this.#map.clear();
    this.#lastKey = "";
    this.#last = undefined;
    this.#idle.head = this.#idle.tail = null;
    this.#closed.head = this.#closed.tail = null;
    this.#idle.size = this.#closed.size = 0;
  }
}
