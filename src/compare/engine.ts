/**
 * @module The compare engine: COLO's primary-side comparison of PVM and SVM output, sans-IO.
 *
 * Pure and synchronous: frames and the current time (`now`, ms) come in as arguments, decisions go
 * out through a CompareSink. No sockets, timers or logging. Frames are zero-copy views owned by
 * the engine from push until they are released (primary) or discarded (secondary).
 *
 * Semantics, and every deliberate difference from QEMU's colo-compare, are in docs/compare.md.
 */

import { isArpIpv4, type ProtocolName, protocolName } from "../conntrack/flow.ts";
import * as table from "../conntrack/table.ts";
import { ConnTable } from "../conntrack/table.ts";
import { ColoError } from "../errors.ts";
import { type FrameMeta, newFrameMeta, ParseStatus } from "../packet/meta.ts";
import { flowKeyText, parseFrame } from "../packet/parse.ts";
import { checkParam, resolveConfig } from "./config.ts";
import * as row from "./conn.ts";
import { addBytes, addPacket, CompareConn, queueInsertBySeq, queuePush, queueRemove } from "./conn.ts";
import { dumpAround, firstDifference } from "./explain.ts";
import { type Held, type HeldSide, HeldStore, NO_HELD as NO_HELD_ID } from "./held.ts";
import { type PassthroughRule, PassthroughRules } from "./passthrough.ts";
import { type BadInputCode, type CompareStats, newStats, snapshotStats } from "./stats.ts";
import { setTcpWindow, synWindowScale, tcpWindow } from "./tcp-window.ts";
import type {
  CheckpointReason,
  CheckpointRequest,
  CompareConfig,
  CompareSink,
  ConnectionInfo,
  DiscardReason,
  MiscompareReason,
  ReleaseReason,
  Side,
} from "./types.ts";

// The hot row's layout (conntrack/table.ts, conn.ts) as module-level constants of this file: an
// imported binding is read from its module cell at every use (and its bytecode counts against
// the optimizing compiler's inlining budget), a constant of this module is folded.
const PAGE_MASK = table.PAGE_MASK;
const PAGE_SHIFT = table.PAGE_SHIFT;
const ROW_FLAGS = table.ROW_FLAGS;
const ROW_WORDS = table.ROW_WORDS;
const F_BASE_SET = row.F_BASE_SET;
const F_COMPARE_SEQ_SET = row.F_COMPARE_SEQ_SET;
const F_MISCOMPARED = row.F_MISCOMPARED;
const F_P_WSCALE_SHIFT = row.F_P_WSCALE_SHIFT;
const F_PASSTHROUGH = row.F_PASSTHROUGH;
const F_PRIMARY_ACK_SET = row.F_PRIMARY_ACK_SET;
const F_REUSED = row.F_REUSED;
const F_S_WSCALE_SHIFT = row.F_S_WSCALE_SHIFT;
const F_SECONDARY_ACK_SET = row.F_SECONDARY_ACK_SET;
const F_SECONDARY_RIGHT_SET = row.F_SECONDARY_RIGHT_SET;
const F_STREAM = row.F_STREAM;
const F_WSCALE_MASK = row.F_WSCALE_MASK;
const W_COMPARE_SEQ = row.W_COMPARE_SEQ;
const W_FLUSH_MARK = row.W_FLUSH_MARK;
const W_GENERATION = row.W_GENERATION;
const W_P_COUNT = row.W_P_COUNT;
const W_P_HEAD = row.W_P_HEAD;
const W_PRIMARY_ACK = row.W_PRIMARY_ACK;
const W_S_COUNT = row.W_S_COUNT;
const W_S_HEAD = row.W_S_HEAD;
const W_SECONDARY_ACK = row.W_SECONDARY_ACK;
const W_SECONDARY_RIGHT = row.W_SECONDARY_RIGHT;
const NO_HELD = NO_HELD_ID;

const STATUS_CODES: Record<number, BadInputCode> = {
  [ParseStatus.Truncated]: "COLO_ERR_PKT_TRUNCATED",
  [ParseStatus.BadLength]: "COLO_ERR_PKT_BAD_LENGTH",
  [ParseStatus.BadHeader]: "COLO_ERR_PKT_BAD_HEADER",
  [ParseStatus.ExtChain]: "COLO_ERR_PKT_EXT_CHAIN",
};

// Local copies of the const enums: tsx (isolatedModules) does not inline imported const enums,
// and the property loads showed up in profiles of the per-packet path.
const OK = 0 as ParseStatus;
/** Batch status of a frame the first pass did not parse (empty: nothing after the vnet header). */
const NOT_PARSED = 255 as ParseStatus;
const PRIMARY = 0 as HeldSide;
const SECONDARY = 1 as HeldSide;
const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;
/** `found` argument of #primary / #secondary: the frame's connection has not been looked up yet. */
const NOT_LOOKED_UP = -2;

/**
 * a is after b in 32-bit sequence space. Every sequence/ack number the engine stores is an int32
 * (`| 0` on the way in, `>>> 0` where one is reported): V8 keeps int32 values as small integers,
 * while uint32 values >= 2^31 would become boxed doubles, one more cold object per field.
 */
function seqAfter(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

const ETHERTYPE_IPV4 = 0x0800;

/**
 * Frames a batch call warms at a time: enough cache misses in flight to cover the memory latency
 * (the core tracks ~10–12 outstanding line fills), few enough that the warmed lines of the whole
 * batch (2–3 per frame: slab row, hot row) are still in L1/L2 when the second pass reaches them.
 */
export const BATCH = 32;

/**
 * Below this many connections a batch is pushed frame by frame: the table's slots and hot rows
 * (≈ 192 bytes per connection: two 64-byte slots at load <= 1/2, a 64-byte row) fit in the L2
 * cache, so there are no misses to overlap.
 */
export const WARM_MIN_CONNECTIONS = 4096;
/**
 * Largest table presized by `tableConnections` (connections): 2^21, a 256 MiB slab of address
 * space (memory is touched only where connections land); beyond, the table grows as needed.
 */
export const MAX_PRESIZED_CONNECTIONS = 1 << 21;

/**
 * A connection's activity time (lastActive, createdAt; what expiry and eviction order by): `now` in
 * whole milliseconds. The daemon's clock is fractional (performance.now()), and a fractional value
 * stored in a connection is a heap number of its own, written behind a GC write barrier on every
 * packet; whole milliseconds stay small integers (up to 2^31 ms, 24 days of uptime; beyond that
 * V8 falls back to heap numbers, slower but still correct). Held packets keep the exact time.
 */
function activityTime(now: number): number {
  return Math.floor(now);
}

/** Tuning that is not part of the COLO configuration. */
export interface CompareEngineOptions {
  /**
   * Connections from which a batch call takes the two-pass path (default WARM_MIN_CONNECTIONS);
   * below, it pushes frame by frame. Tests set 0 to exercise the two-pass path on small tables.
   */
  batchMinConnections?: number;
  /**
   * Connections the table is sized for at the start (default: small, grown by doubling). Growing
   * rehashes every connection into a new slab in one step: a pause of about 200 ns per
   * connection (13 ms at 65,536, 26–36 ms at 131,072), so a long-running daemon passes
   * max_connections and never grows (up to MAX_PRESIZED_CONNECTIONS). It costs 128 bytes of
   * address space per connection, touched page by page as connections arrive.
   */
  tableConnections?: number;
}

export class CompareEngine {
  readonly #cfg: CompareConfig;
  readonly #sink: CompareSink;
  /**
   * Connections. The per-packet path works on a connection's hot row by its row index `x` (the
   * row is words [b, b + ROW_WORDS) of H, see #page / #base), not on the CompareConn object: with
   * many connections the object's cache lines are misses the row avoids (docs/benchmarks.md,
   * compare engine, "Session 8"). Deleted rows are recycled only between top-level calls
   * (deferFree; see #enter): a call re-entered from a sink callback may delete the connection an
   * outer call is working on, and that call's later writes must land in a dead row, never in a
   * new connection's.
   */
  readonly #table: ConnTable<CompareConn>;
  readonly #pages: readonly Int32Array[];
  /** Created with tableConnections: the table follows max_connections when it is raised. */
  readonly #presized: boolean;
  readonly #held = new HeldStore();
  /** Nesting depth of public calls (a sink callback may call in again). */
  #depth = 0;
  readonly #rules = new PassthroughRules();
  readonly #meta: FrameMeta = CompareEngine.#newMeta();
  readonly #stats: CompareStats = newStats();
  /** A checkpoint request is outstanding (sent, no checkpointDone yet). */
  #pending = false;
  #lastRequest: CheckpointRequest | null = null;
  #lastRequestAt = 0;
  /** Packets the old connection held when #markReuse saw a new one begin (for the explanation). */
  #reuseHeld = 0;
  readonly #paused = { primary: false, secondary: false };
  #failover = false;
  #flushEpoch = 0;
  /** Checkpoints done; a connection's secondary state older than this is brought up to date lazily. */
  #generation = 0;

  // Batch scratch (pushPrimaryBatch / pushSecondaryBatch), allocated once: one parse per frame.
  readonly #batchMetas: FrameMeta[] = Array.from({ length: BATCH }, () => CompareEngine.#newMeta());
  readonly #batchStatus = new Uint8Array(BATCH);
  readonly #batchHashes = new Int32Array(BATCH);
  readonly #batchLens = new Uint8Array(BATCH);
  #inBatch = false;
  readonly #batchMin: number;
  /** What the warming loads read (kept so that they are not optimised away). */
  #warmed = 0;

  /** sink.observe, looked up once: absent in the usual case, so one field test per frame. */
  readonly #observe: CompareSink["observe"];

  /** The parser fills only the key units: lookups need no key string (see conntrack/table.ts). */
  static #newMeta(): FrameMeta {
    const m = newFrameMeta();
    m.keyString = false;
    return m;
  }

  constructor(config: Partial<CompareConfig>, sink: CompareSink, options: CompareEngineOptions = {}) {
    this.#cfg = resolveConfig(config);
    this.#table = new ConnTable<CompareConn>({
      deferFree: true,
      // Load at most 1/2: two slots per connection (ConnTable rounds up to a power of two).
      initialCapacity: 2 * Math.min(options.tableConnections ?? 32, MAX_PRESIZED_CONNECTIONS),
    });
    this.#pages = this.#table.pages;
    this.#presized = options.tableConnections !== undefined;
    this.#sink = sink;
    this.#batchMin = options.batchMinConnections ?? WARM_MIN_CONNECTIONS;
    this.#observe = sink.observe?.bind(sink);
  }

  // ------------------------------------------------------------------------------------------
  // Inputs

  /** A frame the primary guest sent. */
  pushPrimary(frame: Buffer, vnetLen: number, now: number): void {
    this.#enter();
    try {
      this.#primaryOne(frame, vnetLen, now);
    } finally {
      this.#depth--;
    }
  }

  #primaryOne(frame: Buffer, vnetLen: number, now: number): void {
    const m = this.#meta;
    const status = !this.#failover && frame.length > vnetLen ? parseFrame(frame, vnetLen, m) : OK;
    this.#primary(frame, vnetLen, now, m, status, NOT_LOOKED_UP);
  }

  /** A frame the secondary guest sent. */
  pushSecondary(frame: Buffer, vnetLen: number, now: number): void {
    this.#enter();
    try {
      this.#secondaryOne(frame, vnetLen, now);
    } finally {
      this.#depth--;
    }
  }

  #secondaryOne(frame: Buffer, vnetLen: number, now: number): void {
    const m = this.#meta;
    const status = !this.#failover && frame.length > vnetLen ? parseFrame(frame, vnetLen, m) : OK;
    this.#secondary(frame, vnetLen, now, m, status, NOT_LOOKED_UP);
  }

  /**
   * Every public call that changes state starts here (and ends with `#depth--`): at the outermost
   * level no row index is held anywhere, so deleted connections' rows can be reused.
   */
  #enter(): void {
    if (this.#depth++ === 0) this.#table.recycle();
  }

  /**
   * Frames the primary guest sent that arrived together (e.g. the frames of one socket read):
   * frames[0..count) with their vnet header lengths, all at `now`. Exactly the same as calling
   * pushPrimary for each in order (same sink calls in the same order, same counters, same
   * checkpoint requests), but faster with many connections: a first pass parses every frame of
   * the batch (up to BATCH at a time) and loads its connection's table slot and first cache
   * lines, so that the cache misses of different frames overlap, then the frames are processed
   * one by one on warm lines. The frames are the engine's from this call on (zero-copy contract
   * of pushPrimary); `frames` and `vnetLens` are only read during the call and can be reused.
   */
  pushPrimaryBatch(frames: readonly Buffer[], vnetLens: ArrayLike<number>, count: number, now: number): void {
    this.#enter();
    if (!this.#batchPays()) {
      try {
        for (let k = 0; k < count; k++) this.#primaryOne(frames[k]!, vnetLens[k]!, now);
      } finally {
        this.#depth--;
      }
      return;
    }
    this.#inBatch = true;
    try {
      const metas = this.#batchMetas;
      const status = this.#batchStatus;
      const hashes = this.#batchHashes;
      const t = this.#table;
      for (let at = 0; at < count; at += BATCH) {
        const n = Math.min(BATCH, count - at);
        if (n === 1) {
          // Nothing to overlap a lone frame's misses with: two passes only cost more (+15 %).
          this.#primaryOne(frames[at]!, vnetLens[at]!, now);
          continue;
        }
        this.#warmBatch(frames, vnetLens, at, n);
        for (let k = 0; k < n; k++) {
          const m = metas[k]!;
          // Looked up here, just before the frame is processed (earlier frames of the batch may
          // have added or removed connections), with the hash of the first pass.
          const found = status[k] === OK ? t.findIx(m.keyUnits, m.keyLen, hashes[k]!) : NOT_LOOKED_UP;
          this.#primary(frames[at + k]!, vnetLens[at + k]!, now, m, status[k] as ParseStatus, found);
        }
      }
    } finally {
      this.#inBatch = false;
      this.#depth--;
    }
  }

  /**
   * Frames the secondary guest sent that arrived together: like pushPrimaryBatch. (A copy of it
   * rather than one method taking the side: that one was no faster, 254 vs 244 ns per frame at 100k
   * connections.)
   */
  pushSecondaryBatch(
    frames: readonly Buffer[],
    vnetLens: ArrayLike<number>,
    count: number,
    now: number,
  ): void {
    this.#enter();
    if (!this.#batchPays()) {
      try {
        for (let k = 0; k < count; k++) this.#secondaryOne(frames[k]!, vnetLens[k]!, now);
      } finally {
        this.#depth--;
      }
      return;
    }
    this.#inBatch = true;
    try {
      const metas = this.#batchMetas;
      const status = this.#batchStatus;
      const hashes = this.#batchHashes;
      const t = this.#table;
      for (let at = 0; at < count; at += BATCH) {
        const n = Math.min(BATCH, count - at);
        if (n === 1) {
          // Nothing to overlap a lone frame's misses with: two passes only cost more (+15 %).
          this.#secondaryOne(frames[at]!, vnetLens[at]!, now);
          continue;
        }
        this.#warmBatch(frames, vnetLens, at, n);
        for (let k = 0; k < n; k++) {
          const m = metas[k]!;
          // Looked up here, just before the frame is processed (earlier frames of the batch may
          // have added or removed connections), with the hash of the first pass.
          const found = status[k] === OK ? t.findIx(m.keyUnits, m.keyLen, hashes[k]!) : NOT_LOOKED_UP;
          this.#secondary(frames[at + k]!, vnetLens[at + k]!, now, m, status[k] as ParseStatus, found);
        }
      }
    } finally {
      this.#inBatch = false;
      this.#depth--;
    }
  }

  /**
   * Whether a batch takes the two-pass path: not when re-entered from a sink callback (the batch
   * scratch is in use), in failover (nothing is looked up), or while the table is small enough
   * to stay in cache (the first pass would only add work).
   */
  #batchPays(): boolean {
    return !this.#inBatch && !this.#failover && this.#table.size >= this.#batchMin;
  }

  /**
   * First pass over frames[at..at+n): parse each into its own meta, hash its key, then load its
   * slot's slab row and its connection's hot row (ConnTable.warm). Nothing here changes state:
   * the parse is a pure function of the frame's bytes, and the second pass looks every
   * connection up.
   */
  #warmBatch(frames: readonly Buffer[], vnetLens: ArrayLike<number>, at: number, n: number): void {
    const metas = this.#batchMetas;
    const status = this.#batchStatus;
    const hashes = this.#batchHashes;
    const lens = this.#batchLens;
    const t = this.#table;
    for (let k = 0; k < n; k++) {
      const frame = frames[at + k]!;
      const vnetLen = vnetLens[at + k]!;
      const m = metas[k]!;
      // An empty frame is not parsed (#primary / #secondary drop it before looking at `status`).
      const st = frame.length > vnetLen ? parseFrame(frame, vnetLen, m) : NOT_PARSED;
      status[k] = st;
      if (st === OK) {
        hashes[k] = t.hashOf(m.keyUnits, m.keyLen);
        lens[k] = m.keyLen;
      } else {
        hashes[k] = 0;
        lens[k] = 1;
      }
    }
    this.#warmed ^= t.warm(hashes, lens, n);
  }

  /**
   * pushPrimary after parsing: `m` holds the parse when `status` is OK; `found` is the lookup of
   * its key if already done (a batch), null if not.
   */
  #primary(
    frame: Buffer,
    vnetLen: number,
    now: number,
    m: FrameMeta,
    status: ParseStatus,
    found: number,
  ): void {
    const st = this.#stats;
    st.primaryFrames++;
    st.primaryBytes += frame.length;
    if (this.#failover) {
      this.#releaseNow(frame, vnetLen, "failover");
      return;
    }
    if (frame.length <= vnetLen) {
      // Nothing to output: the one explicit primary drop, counted.
      st.badInput.primary.COLO_ERR_FRAME_EMPTY++;
      st.primaryDropped++;
      this.#sink.discard(frame, vnetLen, "primary", "malformed");
      return;
    }
    if (status !== OK) {
      st.badInput.primary[STATUS_CODES[status] ?? "COLO_ERR_PKT_BAD_HEADER"]++;
      this.#releaseNow(frame, vnetLen, "malformed");
      return;
    }
    if (this.#cfg.compatPassthrough && (m.etherType !== ETHERTYPE_IPV4 || m.vlanOuter >= 0)) {
      this.#releaseNow(frame, vnetLen, "compat");
      return;
    }
    const x = this.#lookup(m, found, frame, now, "primary");
    if (this.#observe !== undefined) this.#observe("primary", this.#conn(x).key, frame, vnetLen);
    const H = this.#page(x);
    const b = this.#base(x);
    const f = H[b + ROW_FLAGS]!;
    if (f & F_PASSTHROUGH) this.#releaseNow(frame, vnetLen, "passthrough");
    else if (f & F_STREAM) this.#tcpPrimary(x, H, b, m, frame, vnetLen, now);
    else this.#datagramPrimary(x, H, b, m, frame, vnetLen, now);
    this.#table.touchIx(x, activityTime(now));
  }

  /** pushSecondary after parsing (see #primary). */
  #secondary(
    frame: Buffer,
    vnetLen: number,
    now: number,
    m: FrameMeta,
    status: ParseStatus,
    found: number,
  ): void {
    const st = this.#stats;
    st.secondaryFrames++;
    st.secondaryBytes += frame.length;
    if (this.#failover) {
      this.#discardNow(frame, vnetLen, "failover");
      return;
    }
    if (frame.length <= vnetLen) {
      st.badInput.secondary.COLO_ERR_FRAME_EMPTY++;
      this.#discardNow(frame, vnetLen, "malformed");
      return;
    }
    if (status !== OK) {
      st.badInput.secondary[STATUS_CODES[status] ?? "COLO_ERR_PKT_BAD_HEADER"]++;
      this.#discardNow(frame, vnetLen, "malformed");
      return;
    }
    if (this.#cfg.compatPassthrough && (m.etherType !== ETHERTYPE_IPV4 || m.vlanOuter >= 0)) {
      this.#discardNow(frame, vnetLen, "compat");
      return;
    }
    const x = this.#lookup(m, found, frame, now, "secondary");
    if (this.#observe !== undefined) this.#observe("secondary", this.#conn(x).key, frame, vnetLen);
    const H = this.#page(x);
    const b = this.#base(x);
    const f = H[b + ROW_FLAGS]!;
    if (f & F_PASSTHROUGH) this.#discardNow(frame, vnetLen, "passthrough");
    else if (f & F_STREAM) this.#tcpSecondary(x, H, b, m, frame, vnetLen, now);
    else this.#datagramSecondary(x, H, b, m, frame, vnetLen, now);
    this.#table.touchIx(x, activityTime(now));
  }

  /**
   * Periodic scan (the shell calls it every expired_scan_cycle ms): a held packet older than
   * compare_timeout raises a checkpoint request; pending requests are retried; idle and closed
   * connections holding nothing expire.
   */
  tick(now: number): void {
    this.#enter();
    try {
      this.#tick(now);
    } finally {
      this.#depth--;
    }
  }

  #tick(now: number): void {
    if (this.#failover) return;
    const oldest = this.#held.head;
    if (oldest !== null && now - oldest.arrival > this.#cfg.compareTimeout) {
      const c = this.#conn(oldest.cx);
      const side: Side = oldest.side === PRIMARY ? "primary" : "secondary";
      const age = now - oldest.arrival;
      this.#trigger(now, "timeout", c, () => ({
        side,
        ageMs: age,
        message: `${side} packet held ${age} ms (compare_timeout ${this.#cfg.compareTimeout} ms) on ${c.flowText}`,
      }));
    } else if (
      this.#pending &&
      !this.#cfg.renotify &&
      this.#cfg.checkpointRetry > 0 &&
      this.#held.count > 0 &&
      this.#lastRequest !== null &&
      now - this.#lastRequestAt >= this.#cfg.checkpointRetry
    ) {
      this.#emit({ ...this.#lastRequest, time: now, repeat: true });
    }
    this.#table.expire(now, this.#cfg.idleTimeout, this.#cfg.closedTimeout, () => {
      this.#stats.connectionsExpired++;
    });
    this.#stats.connections = this.#table.size;
  }

  /**
   * A checkpoint completed (COLO CHECKPOINT event / Xen COLO_CHECKPOINT): release every held
   * primary frame (connections in first-seen order; TCP in sequence order, datagrams FIFO),
   * discard every held secondary frame, keep the connection state, lift backpressure.
   */
  checkpointDone(now: number): void {
    this.#enter();
    try {
      this.#checkpointDone(now);
    } finally {
      this.#depth--;
    }
  }

  #checkpointDone(now: number): void {
    this.#stats.checkpoints++;
    this.#generation++;
    this.#flushAll(now, "flush", "flush");
    this.#pending = false;
    this.#lastRequest = null;
    this.#unpause();
    while (this.#table.size > this.#cfg.maxConnections && this.#table.evictOne() !== undefined) {
      this.#stats.connectionsEvicted++;
    }
    this.#stats.connections = this.#table.size;
  }

  /** Failover: release everything held, then pass primary frames straight through for good. */
  failover(now: number): void {
    this.#enter();
    try {
      this.#doFailover(now);
    } finally {
      this.#depth--;
    }
  }

  #doFailover(now: number): void {
    if (this.#failover) return;
    this.#flushAll(now, "failover", "failover");
    this.#failover = true;
    this.#stats.failover = true;
    this.#pending = false;
    this.#lastRequest = null;
    this.#unpause();
    this.#table.clear();
    this.#stats.connections = 0;
  }

  // ------------------------------------------------------------------------------------------
  // Run-time control

  /** Sets compare_timeout / expired_scan_cycle / max_queue_size (or another CompareConfig field). */
  setParam(name: string, value: unknown): number | boolean {
    const { field, value: v } = checkParam(name, value);
    (this.#cfg as unknown as Record<string, number | boolean>)[field] = v;
    // A table sized at start is sized again when the limit is raised: the rehash pause happens
    // now, at the operator's command, not later in the middle of traffic.
    if (field === "maxConnections" && this.#presized) {
      this.#table.reserve(Math.min(v as number, MAX_PRESIZED_CONNECTIONS));
    }
    return v;
  }

  get config(): Readonly<CompareConfig> {
    return { ...this.#cfg };
  }

  /** Slots of the connection table (64 bytes each; at most half are used before it grows). */
  get tableSlots(): number {
    return this.#table.capacity;
  }

  /**
   * Adds a passthrough rule (see passthrough.ts for the syntax); returns its id. Connections that
   * now match are flushed at once (held primary released in order, held secondary discarded).
   * Throws COLO_ERR_COMPARE_RULE on a bad rule.
   */
  addPassthrough(rule: string | PassthroughRule, now: number): { id: number; rule: string } {
    const r = this.#rules.add(rule);
    if (r.added) this.#reapplyRules(now);
    return { id: r.id, rule: r.rule.text };
  }

  /** Removes a rule by id or text; throws COLO_ERR_COMPARE_RULE_NOT_FOUND. */
  removePassthrough(idOrText: number | string, now: number): string {
    const r = this.#rules.remove(idOrText);
    this.#reapplyRules(now);
    return r.text;
  }

  listPassthrough(): { id: number; rule: string }[] {
    return this.#rules.list();
  }

  // ------------------------------------------------------------------------------------------
  // Introspection

  /** A deep copy of the counters. */
  stats(): CompareStats {
    this.#stats.connections = this.#table.size;
    return snapshotStats(this.#stats);
  }

  /** The live counters object (no copy; for a metrics exporter that reads on scrape). */
  get liveStats(): Readonly<CompareStats> {
    return this.#stats;
  }

  get checkpointPending(): boolean {
    return this.#pending;
  }

  get inFailover(): boolean {
    return this.#failover;
  }

  isPaused(side: Side): boolean {
    return this.#paused[side];
  }

  /** Per-flow table in first-seen order (at most `limit` rows). */
  connections(now: number, limit = Number.POSITIVE_INFINITY): ConnectionInfo[] {
    const rows: ConnectionInfo[] = [];
    for (const c of this.#table.values()) {
      if (rows.length >= limit) break;
      let oldest = Number.POSITIVE_INFINITY;
      for (let h = c.pHead; h !== null; h = h.next) oldest = Math.min(oldest, h.arrival);
      for (let h = c.sHead; h !== null; h = h.next) oldest = Math.min(oldest, h.arrival);
      let state = "open";
      if (c.passthrough) state = "passthrough";
      else if (c.reused) state = "reused";
      else if (c.miscompared) state = "miscompared";
      else if (c.closed) state = "closed";
      else if (c.primaryFin || c.secondaryFin) state = "closing";
      rows.push({
        key: c.key,
        flow: c.flowText,
        protocol: c.protocol,
        state,
        primaryQueued: c.pCount,
        secondaryQueued: c.sCount,
        oldestHeldMs: oldest === Number.POSITIVE_INFINITY ? 0 : now - oldest,
        bytesCompared: c.bytesCompared,
        packetsCompared: c.packetsCompared,
        createdAt: c.createdAt,
        lastActive: c.lastActive,
      });
    }
    return rows;
  }

  /**
   * Checks the accounting invariants (primary in = released + held + dropped; secondary in =
   * discarded + held) and the internal structures; throws COLO_ERR_COMPARE_INVARIANT if broken.
   */
  checkInvariant(): void {
    const st = this.#stats;
    const problems: string[] = [];
    if (st.primaryFrames !== st.released + st.heldPrimary + st.primaryDropped) {
      problems.push(
        `primary in ${st.primaryFrames} != released ${st.released} + held ${st.heldPrimary} + dropped ${st.primaryDropped}`,
      );
    }
    if (st.secondaryFrames !== st.discarded + st.heldSecondary) {
      problems.push(
        `secondary in ${st.secondaryFrames} != discarded ${st.discarded} + held ${st.heldSecondary}`,
      );
    }
    const sumBy = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
    if (sumBy(st.releasedBy) !== st.released) problems.push("releasedBy does not sum to released");
    if (sumBy(st.discardedBy) !== st.discarded) problems.push("discardedBy does not sum to discarded");
    if (this.#held.count !== st.heldPrimary + st.heldSecondary) {
      problems.push(`held list ${this.#held.count} != ${st.heldPrimary} + ${st.heldSecondary}`);
    }
    let p = 0;
    let s = 0;
    let bytes = 0;
    for (const c of this.#table.values()) {
      for (const [head, count, side] of [
        [c.pHead, c.pCount, PRIMARY],
        [c.sHead, c.sCount, SECONDARY],
      ] as const) {
        let n = 0;
        for (let h = head; h !== null; h = h.next) {
          n++;
          if (h.cx !== c.ix || h.side !== side) problems.push(`record in wrong queue on ${c.flowText}`);
          // (A reused 4-tuple's queue continues in arrival order: another sequence space.)
          if (c.stream && !c.reused && h.next !== null && seqAfter(h.seq, h.next.seq)) {
            problems.push(`TCP queue out of order on ${c.flowText}`);
          }
          if (side === PRIMARY) bytes += h.frame.length;
        }
        if (n !== count) problems.push(`queue count ${count} != ${n} on ${c.flowText}`);
        if (side === PRIMARY) p += n;
        else s += n;
      }
      if (c.pCount + c.sCount === 0 && !this.#table.isListed(c)) {
        problems.push(`LRU membership wrong on ${c.flowText}`);
      }
    }
    if (p !== st.heldPrimary || s !== st.heldSecondary) {
      problems.push(`queues hold ${p}/${s}, counters say ${st.heldPrimary}/${st.heldSecondary}`);
    }
    if (bytes !== st.heldPrimaryBytes) problems.push(`held bytes ${bytes} != ${st.heldPrimaryBytes}`);
    let n = 0;
    for (let h = this.#held.head; h !== null; h = h.gNext) {
      n++;
      if (h.gNext !== null && h.gNext.arrival < h.arrival) problems.push("held list not in arrival order");
    }
    if (n !== this.#held.count) problems.push(`held list length ${n} != ${this.#held.count}`);
    if (problems.length > 0) {
      throw new ColoError("COLO_ERR_COMPARE_INVARIANT", problems.join("; "), { problems });
    }
  }

  // ------------------------------------------------------------------------------------------
  // Connection table

  /**
   * The row index of the frame's connection (`found`: its lookup if done already, else
   * NOT_LOOKED_UP), created if new.
   */
  #lookup(m: FrameMeta, found: number, frame: Buffer, now: number, side: Side): number {
    const t = this.#table;
    // Fragments have their own (protocol-only) key, so they are compared as datagrams.
    const x0 =
      found === NOT_LOOKED_UP ? t.findIx(m.keyUnits, m.keyLen, t.hashOf(m.keyUnits, m.keyLen)) : found;
    if (x0 >= 0) return x0;
    const key = flowKeyText(m);
    let overLimit = false;
    if (t.size >= this.#cfg.maxConnections) {
      if (t.evictOne() !== undefined) this.#stats.connectionsEvicted++;
      else overLimit = true;
    }
    const at = activityTime(now);
    // The common case constructs it on a staged table row (no private row to allocate); not
    // when over the limit, where the sink is called (and may call in) before it is added.
    const row = overLimit ? null : t.stageRow();
    const c = new CompareConn(
      this.#held,
      key,
      t.nextSerial(),
      m,
      isArpIpv4(m, frame),
      at,
      protocolName(m),
      row,
    );
    c.passthrough = this.#rules.size > 0 && this.#rules.matches(c.flow);
    if (overLimit) {
      // Nothing evictable: every connection holds packets. Admit it anyway (never lose a packet),
      // ask for the checkpoint that empties the queues, and stop that input until then. Paused
      // first and requested before `c` joins the table: a sink that completes the checkpoint
      // inside the request (checkpointDone re-entered) then unpauses for good, and its trimming of
      // the table cannot evict `c`, which holds nothing yet and is about to get this frame.
      this.#stats.connectionsOverLimit++;
      const size = t.size + 1;
      this.#pause(side);
      this.#trigger(now, "table-full", c, () => ({
        depth: size,
        side,
        message: `connection table full (${size} connections, none evictable) at new flow ${c.flowText}`,
      }));
    }
    t.addKeyed(c, at, m.keyUnits, m.keyLen, t.hashOf(m.keyUnits, m.keyLen));
    this.#stats.connectionsCreated++;
    this.#stats.connections = t.size;
    return c.ix;
  }

  /** The connection object of row index `x` (cold paths only: the per-packet path uses the row). */
  #conn(x: number): CompareConn {
    return this.#table.at(x)!;
  }

  /** The page holding row `x` (pages never move: valid for as long as `x` is held). */
  #page(x: number): Int32Array {
    return this.#pages[x >>> PAGE_SHIFT]!;
  }

  /** Row `x`'s first word in its page. */
  #base(x: number): number {
    return (x & PAGE_MASK) * ROW_WORDS;
  }

  #reapplyRules(now: number): void {
    this.#enter();
    try {
      this.#reapply(now);
    } finally {
      this.#depth--;
    }
  }

  #reapply(now: number): void {
    for (const c of this.#table.values()) {
      const pt = this.#rules.size > 0 && this.#rules.matches(c.flow);
      if (pt === c.passthrough) continue;
      c.passthrough = pt;
      if (pt) this.#flushConn(c, now, "passthrough", "passthrough");
      else {
        // Comparison resumes mid-stream: forget positions from before the passthrough period.
        c.compareSeqSet = false;
        c.baseSet = false;
        c.primaryIsnSet = false;
      }
    }
  }

  // ------------------------------------------------------------------------------------------
  // Holding, releasing, discarding

  #hold(x: number, side: HeldSide, frame: Buffer, vnetLen: number, now: number): Held {
    const h = this.#held.alloc();
    h.frame = frame;
    h.vnetLen = vnetLen;
    h.arrival = now;
    h.side = side;
    h.cx = x;
    h.off = 0;
    this.#held.link(h);
    if (side === PRIMARY) {
      this.#stats.heldPrimary++;
      this.#stats.heldPrimaryBytes += frame.length;
    } else this.#stats.heldSecondary++;
    return h;
  }

  /** Releases held primary `h` of the connection whose row is at [b..) of H. */
  #release(H: Int32Array, b: number, h: Held, reason: ReleaseReason, now: number): void {
    queueRemove(H, b, h);
    const frame = h.frame;
    const vnetLen = h.vnetLen;
    const age = now - h.arrival;
    const st = this.#stats;
    st.heldPrimary--;
    st.heldPrimaryBytes -= frame.length;
    this.#held.free(h);
    st.released++;
    st.releasedBytes += frame.length;
    st.releasedBy[reason]++;
    if (reason === "matched") st.matched++;
    this.#sink.release(frame, vnetLen);
    this.#sink.holdTime?.(age, reason);
  }

  /** Discards held secondary `h` of the connection whose row is at [b..) of H. */
  #discard(H: Int32Array, b: number, h: Held, reason: DiscardReason): void {
    queueRemove(H, b, h);
    const frame = h.frame;
    const vnetLen = h.vnetLen;
    this.#stats.heldSecondary--;
    this.#held.free(h);
    this.#stats.discarded++;
    this.#stats.discardedBy[reason]++;
    this.#sink.discard(frame, vnetLen, "secondary", reason);
  }

  #releaseNow(frame: Buffer, vnetLen: number, reason: ReleaseReason): void {
    const st = this.#stats;
    st.released++;
    st.releasedBytes += frame.length;
    st.releasedBy[reason]++;
    this.#sink.release(frame, vnetLen);
    this.#sink.holdTime?.(0, reason);
  }

  #discardNow(frame: Buffer, vnetLen: number, reason: DiscardReason): void {
    this.#stats.discarded++;
    this.#stats.discardedBy[reason]++;
    this.#sink.discard(frame, vnetLen, "secondary", reason);
  }

  /** Flushes one connection: primary in queue order (TCP: sequence order), secondary discarded. */
  #flushConn(c: CompareConn, now: number, rr: ReleaseReason, dr: DiscardReason): void {
    for (let h = c.pHead; h !== null; h = c.pHead) {
      if (c.stream && h.len > 0 && (!c.flushedEndSet || seqAfter(h.end, c.flushedEnd))) {
        c.flushedEnd = h.end;
        c.flushedEndSet = true;
      }
      this.#release(c.rowArr, c.rowBase, h, rr, now);
    }
    for (let h = c.sHead; h !== null; h = c.sHead) this.#discard(c.rowArr, c.rowBase, h, dr);
    // Bytes released uncompared count as compared: after a checkpoint the SVM is a copy of the
    // PVM, so anything the secondary still sends below this point is stale or a retransmission.
    if (c.flushedEndSet && (!c.compareSeqSet || seqAfter(c.flushedEnd, c.compareSeq))) {
      c.compareSeq = c.flushedEnd;
      c.compareSeqSet = true;
    }
    c.flushedEndSet = false;
    c.miscompared = false;
    c.queueFullRaised = false;
    // A reused 4-tuple: what was released mixed two sequence spaces; start over mid-stream.
    if (c.reused) c.resetStream();
    this.#table.touch(c, activityTime(now));
  }

  /** Flushes every connection that holds packets, in first-seen order; O(held + k log k). */
  #flushAll(now: number, rr: ReleaseReason, dr: DiscardReason): void {
    this.#flushEpoch = (this.#flushEpoch + 1) | 0;
    const epoch = this.#flushEpoch;
    const conns: CompareConn[] = [];
    for (let h = this.#held.head; h !== null; h = h.gNext) {
      const H = this.#page(h.cx);
      const b = this.#base(h.cx) + W_FLUSH_MARK;
      if (H[b] !== epoch) {
        H[b] = epoch;
        conns.push(this.#conn(h.cx));
      }
    }
    conns.sort((a, b) => a.serial - b.serial);
    for (const c of conns) this.#flushConn(c, now, rr, dr);
  }

  // ------------------------------------------------------------------------------------------
  // Checkpoint requests and backpressure

  /** A reason to checkpoint: emitted, or coalesced into the pending request (see docs/compare.md). */
  #trigger(
    now: number,
    reason: CheckpointReason,
    c: CompareConn | null,
    detail: () => Partial<CheckpointRequest> & { message: string },
  ): void {
    if (this.#pending && !this.#cfg.renotify) {
      this.#stats.checkpointCoalesced++;
      return;
    }
    const req: CheckpointRequest = { reason, time: now, repeat: this.#pending, ...detail() };
    if (c !== null) {
      req.key = c.key;
      req.flow = c.flowText;
      req.protocol = c.protocol;
    }
    this.#pending = true;
    this.#emit(req);
  }

  #emit(req: CheckpointRequest): void {
    this.#lastRequest = req;
    this.#lastRequestAt = req.time;
    this.#stats.checkpointRequests[req.reason]++;
    this.#sink.checkpointRequest(req);
  }

  #pause(side: Side): void {
    if (this.#paused[side]) return;
    this.#paused[side] = true;
    this.#stats.backpressureEvents++;
    this.#sink.backpressure(side, true);
  }

  #unpause(): void {
    for (const side of ["primary", "secondary"] as const) {
      if (!this.#paused[side]) continue;
      this.#paused[side] = false;
      this.#sink.backpressure(side, false);
    }
  }

  /** After a pass: a queue at max_queue_size asks for a checkpoint and pauses that input. */
  #checkQueue(x: number, H: Int32Array, b: number, side: HeldSide, now: number): void {
    const count = H[side === PRIMARY ? b + W_P_COUNT : b + W_S_COUNT]!;
    const max = this.#cfg.maxQueueSize;
    if (count < max) return;
    const c = this.#conn(x);
    const name: Side = side === PRIMARY ? "primary" : "secondary";
    if (side === PRIMARY && count > max) this.#stats.overQueueLimit++;
    // Paused before the request: a sink that completes the checkpoint inside it (checkpointDone
    // re-entered) has then emptied the queue and lifted the pause, which must stay lifted.
    this.#pause(name);
    if (!c.queueFullRaised) {
      c.queueFullRaised = true;
      const depth = count;
      this.#trigger(now, "queue-full", c, () => ({
        side: name,
        depth,
        message: `${name} queue of ${c.flowText} reached max_queue_size ${max}`,
      }));
    }
  }

  #miscompare(
    c: CompareConn,
    now: number,
    reason: MiscompareReason,
    detail: () => Partial<CheckpointRequest> & { message: string },
  ): void {
    c.miscompared = true;
    c.miscompareReason = reason;
    this.#stats.miscompares[c.protocol as ProtocolName][reason]++;
    this.#stats.miscomparesTotal++;
    this.#trigger(now, reason, c, detail);
  }

  /** A packet arrived on a connection whose comparison is suspended by a miscompare. */
  #renotifyMiscompare(x: number, now: number): void {
    if (!this.#cfg.renotify) return;
    const c = this.#conn(x);
    this.#trigger(now, c.miscompareReason, c, () => ({
      message: `${c.flowText} is still miscompared (${c.miscompareReason})`,
    }));
  }

  // ------------------------------------------------------------------------------------------
  // TCP

  /**
   * Returns true when this SYN begins a new connection while the old one holds packets: the
   * caller then asks for the checkpoint (#requestReuse) once the frame is held or dropped, never
   * before (a sink may complete the checkpoint inside the request, and a connection emptied by
   * that flush can be evicted: a frame held on it afterwards would be lost).
   */
  #onSyn(c: CompareConn, side: HeldSide, seq: number): boolean {
    const known = side === PRIMARY ? c.primaryIsnSet : c.secondarySyn;
    const isn = side === PRIMARY ? c.primaryIsn : c.secondaryIsn;
    // A SYN after close, or with a new ISN, starts a new connection on the same 4-tuple. With
    // nothing held the stream state simply starts afresh; held segments belong to the old
    // sequence space, so then comparison stops until a checkpoint flushes both (see #markReuse).
    let reusedNow = false;
    if (c.closed || (known && isn !== seq)) {
      if (c.pCount + c.sCount === 0) c.resetStream();
      else if (!c.reused) {
        this.#markReuse(c);
        reusedNow = true;
      }
    }
    // Until that flush the new connection's handshake is not learnt: the flush forgets it all.
    if (c.reused) return reusedNow;
    if (side === PRIMARY) {
      if (!c.primaryIsnSet) {
        c.primaryIsnSet = true;
        c.primaryIsn = seq;
        c.base = (seq + 1) | 0;
        c.baseSet = true;
      }
    } else if (!c.secondarySyn) {
      c.secondarySyn = true;
      c.secondaryIsn = seq;
    }
    return false;
  }

  /**
   * A new connection begins on `c`'s 4-tuple while the old one holds packets. Without this, the
   * new connection's segments would be placed in the old one's sequence space: data below the
   * old compared position released as retransmissions, i.e. uncompared, the rest held until the
   * compare timeout. Instead comparison is suspended on the flow (like a miscompare) and a
   * checkpoint requested; until the flush, frames of both sides queue in arrival order behind
   * the old ones, and the flush releases them in that order, then resets the stream state.
   */
  #markReuse(c: CompareConn): void {
    c.reused = true;
    c.miscompared = true;
    c.miscompareReason = "connection-reused";
    this.#stats.connectionsReused++;
    this.#reuseHeld = c.pCount + c.sCount;
  }

  /** The checkpoint request for a reuse marked by #onSyn (`held`: what the old connection held). */
  #requestReuse(c: CompareConn, side: HeldSide, seq: number, now: number): void {
    const name: Side = side === PRIMARY ? "primary" : "secondary";
    const held = this.#reuseHeld;
    this.#trigger(now, "connection-reused", c, () => ({
      side: name,
      seq: seq >>> 0,
      message:
        `${c.flowText}: new connection (${name} SYN, seq ${seq >>> 0}) while the previous one ` +
        `still holds ${held} packet${held === 1 ? "" : "s"}`,
    }));
  }

  /**
   * First TCP packet of a connection since a checkpoint: the SVM is now a copy of the PVM, so it
   * has every byte the PVM acked (its ack is at least the PVM's); its window is the PVM's, and
   * unknown here until it next advertises one.
   */
  #resync(H: Int32Array, b: number): void {
    H[b + W_GENERATION] = this.#generation;
    let f = H[b + ROW_FLAGS]!;
    if (
      f & F_PRIMARY_ACK_SET &&
      (!(f & F_SECONDARY_ACK_SET) || seqAfter(H[b + W_PRIMARY_ACK]!, H[b + W_SECONDARY_ACK]!))
    ) {
      H[b + W_SECONDARY_ACK] = H[b + W_PRIMARY_ACK]!;
      f |= F_SECONDARY_ACK_SET;
    }
    H[b + ROW_FLAGS] = f & ~F_SECONDARY_RIGHT_SET;
  }

  /** The TCP flags that end a connection (cold: once or twice per connection). */
  #tcpEnd(x: number, side: HeldSide, flags: number): void {
    const c = this.#conn(x);
    if (side === PRIMARY) {
      if (flags & RST) {
        c.primaryRst = true;
        c.closed = true;
      }
      if (flags & FIN) {
        c.primaryFin = true;
        if (c.secondaryFin || c.secondaryRst) c.closed = true;
      }
    } else {
      if (flags & RST) {
        c.secondaryRst = true;
        if (c.primaryFin || c.primaryRst) c.closed = true;
      }
      if (flags & FIN) {
        c.secondaryFin = true;
        if (c.primaryFin) c.closed = true;
      }
    }
  }

  /** The first payload byte seen sets the explanations' stream base if no SYN did (cold). */
  #setBase(x: number, seq: number): void {
    const c = this.#conn(x);
    c.base = seq;
    c.baseSet = true;
  }

  #tcpPrimary(
    x: number,
    H: Int32Array,
    b: number,
    m: FrameMeta,
    frame: Buffer,
    vnetLen: number,
    now: number,
  ): void {
    if (H[b + W_GENERATION] !== this.#generation) this.#resync(H, b);
    const flags = m.tcpFlags;
    const tcpSeq = m.tcpSeq | 0;
    const tcpAck = m.tcpAck | 0;
    let reusedNow = false;
    if (flags & SYN) {
      const c = this.#conn(x);
      reusedNow = this.#onSyn(c, PRIMARY, tcpSeq);
      c.primaryWscale = synWindowScale(frame, m.l4Offset, m.tcpHeaderLen);
    }
    if (flags & ACK) {
      const f = H[b + ROW_FLAGS]!;
      if (!(f & F_PRIMARY_ACK_SET) || seqAfter(tcpAck, H[b + W_PRIMARY_ACK]!)) {
        H[b + W_PRIMARY_ACK] = tcpAck;
        H[b + ROW_FLAGS] = f | F_PRIMARY_ACK_SET;
      }
    }
    if (flags & (RST | FIN)) this.#tcpEnd(x, PRIMARY, flags);
    const seq = flags & SYN ? (tcpSeq + 1) | 0 : tcpSeq;
    const len = m.payloadLen;
    if (len > 0 && !(H[b + ROW_FLAGS]! & F_BASE_SET)) this.#setBase(x, seq);
    const h = this.#hold(x, PRIMARY, frame, vnetLen, now);
    h.seq = seq;
    h.end = (seq + len) | 0;
    h.len = len;
    h.dataOff = m.payloadOffset;
    h.l4 = m.l4Offset;
    h.ack = tcpAck;
    h.flags = flags;
    queueInsertBySeq(H, b, this.#held, h);
    if (reusedNow) this.#requestReuse(this.#conn(x), PRIMARY, tcpSeq, now);
    else if (H[b + ROW_FLAGS]! & F_MISCOMPARED) this.#renotifyMiscompare(x, now);
    else this.#runTcp(x, H, b, now);
    this.#checkQueue(x, H, b, PRIMARY, now);
  }

  #tcpSecondary(
    x: number,
    H: Int32Array,
    b: number,
    m: FrameMeta,
    frame: Buffer,
    vnetLen: number,
    now: number,
  ): void {
    if (H[b + W_GENERATION] !== this.#generation) this.#resync(H, b);
    const flags = m.tcpFlags;
    const tcpSeq = m.tcpSeq | 0;
    const tcpAck = m.tcpAck | 0;
    let reusedNow = false;
    if (flags & SYN) {
      const c = this.#conn(x);
      reusedNow = this.#onSyn(c, SECONDARY, tcpSeq);
      c.secondaryWscale = synWindowScale(frame, m.l4Offset, m.tcpHeaderLen);
    }
    if (flags & ACK) {
      let f = H[b + ROW_FLAGS]!;
      if (!(f & F_SECONDARY_ACK_SET) || seqAfter(tcpAck, H[b + W_SECONDARY_ACK]!)) {
        H[b + W_SECONDARY_ACK] = tcpAck;
        f |= F_SECONDARY_ACK_SET;
      }
      const wscale = ((f >>> F_S_WSCALE_SHIFT) & F_WSCALE_MASK) - 1;
      if (wscale >= 0) {
        // The latest advertisement counts (a receiver that shrinks its window drops beyond it);
        // SVM output reaches us in order. A SYN's window is never scaled (RFC 7323).
        const win = tcpWindow(frame, m.l4Offset);
        H[b + W_SECONDARY_RIGHT] = (tcpAck + (flags & SYN ? win : win * 2 ** wscale)) | 0;
        f |= F_SECONDARY_RIGHT_SET;
      }
      H[b + ROW_FLAGS] = f;
    }
    if (flags & (RST | FIN)) this.#tcpEnd(x, SECONDARY, flags);
    const seq = flags & SYN ? (tcpSeq + 1) | 0 : tcpSeq;
    const len = m.payloadLen;
    const end = (seq + len) | 0;
    // Segments without payload are never compared: their ack/flags were recorded above (that is
    // all ack gating needs), so drop them now instead of letting a lone one age into a timeout.
    const f = H[b + ROW_FLAGS]!;
    let reason: DiscardReason | null = null;
    if (len === 0) reason = "no-payload";
    else if (
      (f & (F_COMPARE_SEQ_SET | F_REUSED)) === F_COMPARE_SEQ_SET &&
      !seqAfter(end, H[b + W_COMPARE_SEQ]!)
    ) {
      reason = "already-compared";
    } else if (H[b + W_S_COUNT]! >= this.#cfg.maxQueueSize) reason = "queue-full";
    if (reason !== null) {
      this.#discardNow(frame, vnetLen, reason);
      if (reusedNow) this.#requestReuse(this.#conn(x), SECONDARY, tcpSeq, now);
      if (reason === "queue-full") this.#checkQueue(x, H, b, SECONDARY, now);
      else if (!(H[b + ROW_FLAGS]! & F_MISCOMPARED) && H[b + W_P_COUNT]! > 0) this.#runTcp(x, H, b, now);
      return;
    }
    const h = this.#hold(x, SECONDARY, frame, vnetLen, now);
    h.seq = seq;
    h.end = end;
    h.len = len;
    h.dataOff = m.payloadOffset;
    h.ack = tcpAck;
    h.flags = flags;
    queueInsertBySeq(H, b, this.#held, h);
    if (reusedNow) this.#requestReuse(this.#conn(x), SECONDARY, tcpSeq, now);
    else if (H[b + ROW_FLAGS]! & F_MISCOMPARED) this.#renotifyMiscompare(x, now);
    else this.#runTcp(x, H, b, now);
    this.#checkQueue(x, H, b, SECONDARY, now);
  }

  /** Primary segment without payload: has the secondary caught up with it? */
  #covered(x: number, H: Int32Array, b: number, p: Held): boolean {
    if (p.flags & ACK) {
      return (H[b + ROW_FLAGS]! & F_SECONDARY_ACK_SET) !== 0 && !seqAfter(p.ack, H[b + W_SECONDARY_ACK]!);
    }
    if (p.flags & SYN) return this.#conn(x).secondarySyn;
    if (p.flags & RST) return this.#conn(x).secondaryRst;
    return false;
  }

  /** Ack gating (QEMU rule B): a compared segment is released only if its ack <= min(pack, sack). */
  #ackOk(H: Int32Array, b: number, p: Held): boolean {
    if (!(p.flags & ACK)) return true;
    const f = H[b + ROW_FLAGS]!;
    if (!(f & F_SECONDARY_ACK_SET)) return false;
    const sack = H[b + W_SECONDARY_ACK]!;
    const pack = H[b + W_PRIMARY_ACK]!;
    const min = f & F_PRIMARY_ACK_SET && seqAfter(sack, pack) ? pack : sack;
    return !seqAfter(p.ack, min);
  }

  /** Compares the connection's queues in sequence space as far as both sides allow. */
  #runTcp(x: number, H: Int32Array, b: number, now: number): void {
    const byId = this.#held.byId;
    for (;;) {
      // Secondary segments whose bytes are all compared (retransmissions the SVM sent before the
      // PVM's copy arrived) are done with, even when no primary segment is left to compare.
      let sId = H[b + W_S_HEAD]!;
      let s = sId === NO_HELD ? null : byId[sId]!;
      while (s !== null && H[b + ROW_FLAGS]! & F_COMPARE_SEQ_SET && !seqAfter(s.end, H[b + W_COMPARE_SEQ]!)) {
        this.#discard(H, b, s, "already-compared");
        sId = H[b + W_S_HEAD]!;
        s = sId === NO_HELD ? null : byId[sId]!;
      }
      const pId = H[b + W_P_HEAD]!;
      if (pId === NO_HELD) return;
      const p = byId[pId]!;
      if (p.len === 0) {
        // Released once the secondary has caught up with it (acked as far, or SYN'd / RST'd),
        // so a lone pure ACK never waits; QEMU releases them whenever a secondary packet is
        // queued, which we keep only for segments that acknowledge nothing (strict ack gating).
        if (this.#covered(x, H, b, p) || (H[b + W_S_COUNT]! > 0 && !(p.flags & ACK))) {
          this.#releaseTcp(H, b, p, "no-payload", now);
          continue;
        }
        return;
      }
      if (p.off === p.len) {
        // Fully compared earlier, held by ack gating.
        if (this.#ackOk(H, b, p)) {
          this.#releaseTcp(H, b, p, "matched", now);
          continue;
        }
        return;
      }
      const seqSet = (H[b + ROW_FLAGS]! & F_COMPARE_SEQ_SET) !== 0;
      const compareSeq = H[b + W_COMPARE_SEQ]!;
      let pStart = (p.seq + p.off) | 0;
      if (seqSet && seqAfter(compareSeq, pStart)) {
        if (!seqAfter(p.end, compareSeq) && this.#ackOk(H, b, p)) {
          this.#releaseTcp(H, b, p, "retransmit", now);
          continue;
        }
        if (!seqAfter(p.end, compareSeq)) return;
        p.off = (compareSeq - p.seq) | 0;
        pStart = compareSeq;
      }
      if (s === null) return;
      let sStart = (s.seq + s.off) | 0;
      if (seqSet && seqAfter(compareSeq, sStart)) {
        s.off = (compareSeq - s.seq) | 0;
        sStart = compareSeq;
      }
      if (pStart !== sStart) {
        if (!seqSet) {
          const c = this.#conn(x);
          if (!c.primaryIsnSet && seqAfter(pStart, sStart)) {
            // Picked up mid-stream (no SYN seen): the secondary's earlier bytes went out before
            // we were tracking; start comparing at the primary's first byte.
            H[b + W_COMPARE_SEQ] = pStart;
            H[b + ROW_FLAGS] = H[b + ROW_FLAGS]! | F_COMPARE_SEQ_SET;
            continue;
          }
          if (c.primaryIsnSet && pStart === c.base) {
            // The primary starts its stream right after its SYN; the secondary's first bytes are
            // elsewhere: different sequence spaces (e.g. a connection the rewriter did not fix).
            this.#seqMismatch(c, now, pStart, sStart);
            return;
          }
        }
        // A gap on one side: a reordered segment fills it, or the compare timeout ends it.
        return;
      }
      const pRem = (p.end - pStart) | 0;
      const sRem = (s.end - sStart) | 0;
      const n = Math.min(pRem, sRem);
      const pOff = p.dataOff + p.off;
      const sOff = s.dataOff + s.off;
      if (p.frame.compare(s.frame, sOff, sOff + n, pOff, pOff + n) !== 0) {
        this.#payloadDiffers(this.#conn(x), now, p.frame, pOff, pRem, s.frame, sOff, sRem, n, pStart);
        return;
      }
      p.off += n;
      s.off += n;
      H[b + W_COMPARE_SEQ] = (pStart + n) | 0;
      H[b + ROW_FLAGS] = H[b + ROW_FLAGS]! | F_COMPARE_SEQ_SET;
      const carry = addBytes(H, b, n);
      if (carry !== 0) this.#conn(x).bytesHi += carry;
      if (s.off === s.len) this.#discard(H, b, s, "matched");
      if (p.off === p.len) {
        if (addPacket(H, b) !== 0) this.#conn(x).packetsHi++;
        // Gated on acks even when identical (QEMU's rule A releases those ungated): the client
        // must never see an ack the SVM has not reached, or it would never resend what the SVM lost.
        if (this.#ackOk(H, b, p)) this.#releaseTcp(H, b, p, "matched", now);
        else return;
      }
    }
  }

  /** Releases a TCP segment the comparison let through, after the window clamp. */
  #releaseTcp(H: Int32Array, b: number, p: Held, reason: ReleaseReason, now: number): void {
    this.#clampWindow(H, b, p);
    this.#release(H, b, p, reason, now);
  }

  /**
   * Window clamp: the client may send up to ack + (window << scale) of the segment it last got, so
   * lower the window of a released primary segment until that edge is not beyond the secondary's
   * own advertised right edge; the SVM would drop the excess and, as the PVM acks it, the client
   * would never resend it. Needs both handshakes (the window scales); SYNs and RSTs are left alone.
   */
  #clampWindow(H: Int32Array, b: number, p: Held): void {
    const f = H[b + ROW_FLAGS]!;
    const pWscale = ((f >>> F_P_WSCALE_SHIFT) & F_WSCALE_MASK) - 1;
    if (!(f & F_SECONDARY_RIGHT_SET) || pWscale < 0 || (p.flags & (SYN | RST | ACK)) !== ACK) return;
    const frame = p.frame;
    const win = tcpWindow(frame, p.l4);
    const room = (H[b + W_SECONDARY_RIGHT]! - p.ack) | 0;
    const max = room <= 0 ? 0 : Math.min(0xffff, Math.floor(room / 2 ** pWscale));
    if (win <= max) return;
    setTcpWindow(frame, p.vnetLen, p.l4, max);
    this.#stats.windowClamped++;
  }

  /**
   * TCP payload miscompare. A method of its own, not a closure inside #runTcp: variables captured
   * there made V8 allocate a context object on every loop iteration, i.e. on every compared frame.
   */
  #payloadDiffers(
    c: CompareConn,
    now: number,
    pf: Buffer,
    pOff: number,
    pRem: number,
    sf: Buffer,
    sOff: number,
    sRem: number,
    n: number,
    pStart: number,
  ): void {
    this.#miscompare(c, now, "payload-differs", () => {
      const i = firstDifference(pf, pOff, sf, sOff, n);
      const seq = (pStart + i) >>> 0;
      const dump = dumpAround(pf, pOff, pRem, sf, sOff, sRem, i);
      const rel = c.baseSet ? (seq - c.base) >>> 0 : undefined;
      return {
        seq,
        ...(rel !== undefined ? { streamOffset: rel, hexOffset: rel - (i - dump.from) } : {}),
        primaryHex: dump.primaryHex,
        secondaryHex: dump.secondaryHex,
        message: `payload differs on ${c.flowText} at ${rel !== undefined ? `stream offset ${rel}` : "byte"} (seq ${seq})`,
      };
    });
  }

  #seqMismatch(c: CompareConn, now: number, ps: number, ss: number): void {
    // Reported as uint32 (stored as int32, see seqAfter).
    const pu = ps >>> 0;
    const su = ss >>> 0;
    this.#miscompare(c, now, "seq-mismatch", () => ({
      seq: pu,
      ...(c.baseSet ? { streamOffset: (ps - c.base) >>> 0 } : {}),
      primarySeq: pu,
      secondarySeq: su,
      message: `sequence mismatch on ${c.flowText}: primary stream starts at seq ${pu}, secondary at seq ${su}`,
    }));
  }

  // ------------------------------------------------------------------------------------------
  // Datagrams (UDP, ICMP, ICMPv6, other IP protocols, fragments, ARP and other L2)

  /** Frame range compared: L4 header + payload for IP (L3 payload when no L4 header), L2 payload otherwise. */
  #region(h: Held, m: FrameMeta): void {
    if (m.ipVersion !== 0) {
      const start = m.l4Offset >= 0 ? m.l4Offset : m.payloadOffset;
      h.dataOff = start;
      h.len = m.ipEnd > start ? m.ipEnd - start : 0;
    } else {
      h.dataOff = m.payloadOffset;
      h.len = m.payloadLen;
    }
  }

  #datagramPrimary(
    x: number,
    H: Int32Array,
    b: number,
    m: FrameMeta,
    frame: Buffer,
    vnetLen: number,
    now: number,
  ): void {
    const h = this.#hold(x, PRIMARY, frame, vnetLen, now);
    this.#region(h, m);
    queuePush(H, b, this.#held, h);
    if (H[b + ROW_FLAGS]! & F_MISCOMPARED) this.#renotifyMiscompare(x, now);
    else this.#runDatagram(x, H, b, now);
    this.#checkQueue(x, H, b, PRIMARY, now);
  }

  #datagramSecondary(
    x: number,
    H: Int32Array,
    b: number,
    m: FrameMeta,
    frame: Buffer,
    vnetLen: number,
    now: number,
  ): void {
    if (H[b + W_S_COUNT]! >= this.#cfg.maxQueueSize) {
      this.#discardNow(frame, vnetLen, "queue-full");
      this.#checkQueue(x, H, b, SECONDARY, now);
      return;
    }
    const h = this.#hold(x, SECONDARY, frame, vnetLen, now);
    this.#region(h, m);
    queuePush(H, b, this.#held, h);
    if (H[b + ROW_FLAGS]! & F_MISCOMPARED) this.#renotifyMiscompare(x, now);
    else this.#runDatagram(x, H, b, now);
    this.#checkQueue(x, H, b, SECONDARY, now);
  }

  /** FIFO: the oldest primary is matched against the oldest equal secondary. */
  #runDatagram(x: number, H: Int32Array, b: number, now: number): void {
    const byId = this.#held.byId;
    while (H[b + W_P_HEAD] !== NO_HELD && H[b + W_S_HEAD] !== NO_HELD) {
      const p = byId[H[b + W_P_HEAD]!]!;
      const first = byId[H[b + W_S_HEAD]!]!;
      let s: Held | null = first;
      while (s !== null) {
        if (
          s.len === p.len &&
          p.frame.compare(s.frame, s.dataOff, s.dataOff + s.len, p.dataOff, p.dataOff + p.len) === 0
        ) {
          break;
        }
        s = s.next;
      }
      if (s === null) {
        this.#datagramMiscompare(this.#conn(x), p, first, now);
        return;
      }
      const carry = addBytes(H, b, p.len);
      if (carry !== 0) this.#conn(x).bytesHi += carry;
      if (addPacket(H, b) !== 0) this.#conn(x).packetsHi++;
      this.#release(H, b, p, "matched", now);
      this.#discard(H, b, s, "matched");
    }
  }

  #datagramMiscompare(c: CompareConn, p: Held, s: Held, now: number): void {
    const pf = p.frame;
    const sf = s.frame;
    const pOff = p.dataOff;
    const sOff = s.dataOff;
    const pLen = p.len;
    const sLen = s.len;
    const reason: MiscompareReason = pLen === sLen ? "payload-differs" : "size-differs";
    this.#miscompare(c, now, reason, () => {
      let i = firstDifference(pf, pOff, sf, sOff, Math.min(pLen, sLen));
      if (i < 0) i = Math.min(pLen, sLen);
      const dump = dumpAround(pf, pOff, pLen, sf, sOff, sLen, i);
      return {
        offset: i,
        primaryLength: pLen,
        secondaryLength: sLen,
        primaryHex: dump.primaryHex,
        secondaryHex: dump.secondaryHex,
        hexOffset: dump.from,
        message:
          reason === "size-differs"
            ? `size differs on ${c.flowText}: primary ${pLen} bytes, secondary ${sLen} bytes (first difference at byte ${i})`
            : `payload differs on ${c.flowText} at byte ${i} of ${pLen}`,
      };
    });
  }
}
