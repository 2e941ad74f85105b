/**
 * @module The secondary-side TCP sequence rewriter (sans-IO). A drop-in for QEMU's
 * filter-rewriter: it sees client→guest frames (`tx`) and guest→client frames (`rx`), learns per
 * connection the difference between the secondary's (SVM) and primary's (PVM) initial sequence
 * numbers, and rewrites frames in place so the SVM's TCP stacks stay consistent with a client that
 * only ever sees the PVM's numbers. Pure and synchronous: time is passed in, nothing is logged.
 *
 * Beyond the reference (docs/rewrite.md): guest-initiated (active-open) connections, SACK blocks,
 * optional TCP timestamp translation, IPv6 and VLAN frames, close tracking on FIN/RST with idle
 * expiry, a bounded table, and checkpoints during a handshake.
 */
import { newFrameMeta, ParseStatus, TcpFlag } from "../packet/meta.ts";
import { parseFrame, parseStatusCode, reverseFlowKey } from "../packet/parse.ts";
import { connInfo, newConn, Origin, Phase, type RewriteConn, type RewriteConnInfo } from "./connection.ts";
import { addToField, findTimestamp, read32, shiftClientOptions } from "./tcp-fields.ts";

export interface RewriterOptions {
  /** Most connections tracked at once; the oldest is evicted beyond this. Default 65536. */
  maxConnections?: number;
  /** Idle time after which an established or closing entry is forgotten. Default 1 h. */
  idleTimeoutMs?: number;
  /** Idle time after which an unfinished handshake is forgotten. Default 60 s. */
  handshakeTimeoutMs?: number;
  /** How long a closed entry lingers to rewrite retransmissions. Default 30 s. */
  closedTimeoutMs?: number;
  /** Translate TCP timestamps (TSval of guest frames, TSecr of client frames). Default false. */
  timestamps?: boolean;
}

/** What `tx()`/`rx()` did to the frame. The frame is always forwarded. */
export const enum Verdict {
  /** Forward unchanged. */
  Pass = 0,
  /** Forward; bytes were rewritten in place. */
  Rewritten = 1,
}

export interface RewriterStats {
  framesTx: number;
  framesRx: number;
  /** Frames rewritten in place, per direction. */
  rewrittenTx: number;
  rewrittenRx: number;
  /** TCP frames of connections not in the table (passed unchanged). */
  untracked: number;
  /** Non-TCP (or non-first-fragment) frames, passed unchanged. */
  nonTcp: number;
  /** Frames that failed to parse, passed unchanged, by error code. */
  malformed: number;
  malformedByCode: Record<string, number>;
  connectionsOpened: number;
  /** A SYN with a new ISN on a 4-tuple still in the table. */
  connectionsReused: number;
  connectionsClosed: number;
  connectionsExpired: number;
  connectionsEvicted: number;
  offsetsLearned: number;
  sackBlocksRewritten: number;
  timestampsRewritten: number;
  checkpoints: number;
  /** Handshake ACKs from the client that arrived before the SVM's SYN-ACK (could not be rewritten). */
  earlyHandshakeAcks: number;
  failover: boolean;
  connections: number;
}

const SYN = TcpFlag.SYN;
const ACK = TcpFlag.ACK;
const FIN = TcpFlag.FIN;
const RST = TcpFlag.RST;

/** Signed distance a − b in 32-bit sequence space. */
function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

export class Rewriter {
  readonly #stats: RewriterStats = {
    framesTx: 0,
    framesRx: 0,
    rewrittenTx: 0,
    rewrittenRx: 0,
    untracked: 0,
    nonTcp: 0,
    malformed: 0,
    malformedByCode: {},
    connectionsOpened: 0,
    connectionsReused: 0,
    connectionsClosed: 0,
    connectionsExpired: 0,
    connectionsEvicted: 0,
    offsetsLearned: 0,
    sackBlocksRewritten: 0,
    timestampsRewritten: 0,
    checkpoints: 0,
    earlyHandshakeAcks: 0,
    failover: false,
    connections: 0,
  };
  /** Entries by guest-outbound key (rx frames) and by client-outbound key (tx frames): two
   * indexes onto the same objects, so no per-packet key reversal is needed. */
  private readonly table = new Map<string, RewriteConn>();
  private readonly byTx = new Map<string, RewriteConn>();
  private readonly meta = newFrameMeta();
  private readonly max: number;
  private readonly idleMs: number;
  private readonly handshakeMs: number;
  private readonly closedMs: number;
  private readonly ts: boolean;
  private lastScan = Number.NEGATIVE_INFINITY;

  constructor(opts: RewriterOptions = {}) {
    this.max = Math.max(1, opts.maxConnections ?? 65536);
    this.idleMs = opts.idleTimeoutMs ?? 3_600_000;
    this.handshakeMs = opts.handshakeTimeoutMs ?? 60_000;
    this.closedMs = opts.closedTimeoutMs ?? 30_000;
    this.ts = opts.timestamps === true;
  }

  /** Client→guest frame (`frame` includes `vnetLen` bytes of virtio-net header). */
  tx(frame: Uint8Array, vnetLen: number, now: number): Verdict {
    this.#stats.framesTx++;
    const m = this.meta;
    if (!this.parse(frame, vnetLen)) return Verdict.Pass;
    const flags = m.tcpFlags;
    const tcp = m.l4Offset;
    let c = this.byTx.get(m.key);
    if ((flags & (SYN | ACK)) === SYN) {
      // Client SYN: a passive open, a retransmission, or a reused 4-tuple.
      if (
        c === undefined ||
        c.origin !== Origin.Passive ||
        c.phase === Phase.Closed ||
        c.clientIsn !== m.tcpSeq
      ) {
        c = this.open(reverseFlowKey(m), m.key, c, Origin.Passive, now);
        if (c === undefined) return Verdict.Pass;
        c.clientIsn = m.tcpSeq;
      }
    } else if (c === undefined) {
      if ((flags & (SYN | ACK)) === (SYN | ACK) && !this.#stats.failover) {
        // Peer SYN-ACK before the SVM's SYN was seen (lagging SVM): remember the PVM side.
        c = this.open(reverseFlowKey(m), m.key, undefined, Origin.Active, now)!;
        this.notePvm(c, frame, m.tcpAck, tcp);
      }
      this.#stats.untracked++;
      return Verdict.Pass;
    }
    c.packetsTx++;
    c.lastSeen = now;
    if (!c.known && !c.havePvm) {
      // The PVM's ISN is what the client acknowledges: handshake ACK (passive) or SYN-ACK (active).
      const hs =
        c.origin === Origin.Passive ? (flags & (SYN | ACK)) === ACK : (flags & (SYN | ACK)) === (SYN | ACK);
      if (hs) {
        this.notePvm(c, frame, m.tcpAck, tcp);
        if (!c.haveSvm) this.#stats.earlyHandshakeAcks++;
        this.learn(c);
      }
    }
    let rewritten = false;
    if (c.known) {
      const off = c.offset;
      if (off !== 0 && (flags & ACK) !== 0) {
        addToField(frame, tcp, tcp + 8, off);
        rewritten = true;
      }
      const tsd = this.ts && (flags & ACK) !== 0 ? c.tsOffset : 0;
      if ((off !== 0 || tsd !== 0) && m.tcpHeaderLen > 20) {
        const before = this.#stats.sackBlocksRewritten;
        const tsAt = tsd !== 0 ? findTimestamp(frame, tcp, m.tcpHeaderLen) : -1;
        const n = shiftClientOptions(frame, tcp, m.tcpHeaderLen, off, tsd);
        this.#stats.sackBlocksRewritten = before + n;
        if (tsAt >= 0) this.#stats.timestampsRewritten++;
        if (n > 0 || tsAt >= 0) rewritten = true;
      }
    }
    // Close tracking, in client-visible (PVM) sequence space.
    if ((flags & RST) !== 0) this.close(c);
    else {
      if ((flags & FIN) !== 0 && !m.fragment) {
        c.finTx = true;
        c.finTxEnd = (m.tcpSeq + m.payloadLen + 1) >>> 0;
        if (c.phase < Phase.Closing) c.phase = Phase.Closing;
      }
      if ((flags & ACK) !== 0 && c.finRx && !c.finRxAcked && seqDiff(m.tcpAck, c.finRxEnd) >= 0) {
        c.finRxAcked = true;
        if (c.finTxAcked) this.close(c);
      }
    }
    c.rewrittenTx += rewritten ? 1 : 0;
    if (rewritten) {
      this.#stats.rewrittenTx++;
      return Verdict.Rewritten;
    }
    return Verdict.Pass;
  }

  /** Guest→client frame (`frame` includes `vnetLen` bytes of virtio-net header). */
  rx(frame: Uint8Array, vnetLen: number, now: number): Verdict {
    this.#stats.framesRx++;
    const m = this.meta;
    if (!this.parse(frame, vnetLen)) return Verdict.Pass;
    const flags = m.tcpFlags;
    const tcp = m.l4Offset;
    let c = this.table.get(m.key);
    if ((flags & (SYN | ACK)) === SYN) {
      // Guest SYN: an active open (or its retransmission, or a reused 4-tuple).
      const retransmit =
        c !== undefined &&
        c.origin === Origin.Active &&
        c.phase !== Phase.Closed &&
        c.haveSvm &&
        c.svmIsn === m.tcpSeq;
      const awaited =
        c !== undefined && c.origin === Origin.Active && !c.haveSvm && c.phase === Phase.Handshake;
      if (!retransmit && !awaited) {
        c = this.open(m.key, reverseFlowKey(m), c, Origin.Active, now);
        if (c === undefined) return Verdict.Pass;
      }
      if (!c!.haveSvm) {
        this.noteSvm(c!, frame, m.tcpSeq, tcp);
        this.learn(c!);
      }
    } else if (c === undefined) {
      this.#stats.untracked++;
      return Verdict.Pass;
    }
    const conn = c!;
    conn.packetsRx++;
    conn.lastSeen = now;
    if (
      (flags & (SYN | ACK)) === (SYN | ACK) &&
      conn.origin === Origin.Passive &&
      !conn.known &&
      !conn.haveSvm
    ) {
      this.noteSvm(conn, frame, m.tcpSeq, tcp);
      this.learn(conn);
    }
    let rewritten = false;
    let seq = m.tcpSeq;
    if (conn.known) {
      if (conn.offset !== 0) {
        addToField(frame, tcp, tcp + 4, -conn.offset);
        seq = (seq - conn.offset) >>> 0;
        rewritten = true;
      }
      if (this.ts && conn.tsOffset !== 0 && m.tcpHeaderLen > 20) {
        const at = findTimestamp(frame, tcp, m.tcpHeaderLen);
        if (at >= 0) {
          addToField(frame, tcp, at, -conn.tsOffset);
          this.#stats.timestampsRewritten++;
          rewritten = true;
        }
      }
    }
    if ((flags & RST) !== 0) this.close(conn);
    else {
      if ((flags & FIN) !== 0 && !m.fragment) {
        conn.finRx = true;
        conn.finRxEnd = (seq + m.payloadLen + 1) >>> 0;
        if (conn.phase < Phase.Closing) conn.phase = Phase.Closing;
      }
      if ((flags & ACK) !== 0 && conn.finTx && !conn.finTxAcked && seqDiff(m.tcpAck, conn.finTxEnd) >= 0) {
        conn.finTxAcked = true;
        if (conn.finRxAcked) this.close(conn);
      }
    }
    conn.rewrittenRx += rewritten ? 1 : 0;
    if (rewritten) {
      this.#stats.rewrittenRx++;
      return Verdict.Rewritten;
    }
    return Verdict.Pass;
  }

  /**
   * COLO checkpoint: the SVM is now a copy of the PVM, so every connection's sequence spaces
   * coincide. Offsets become 0 and are final — an unfinished handshake must not learn a stale
   * offset afterwards (the reference does, see docs/rewrite.md).
   */
  checkpoint(_now: number): void {
    this.#stats.checkpoints++;
    for (const c of this.table.values()) {
      c.offset = 0;
      c.tsOffset = 0;
      c.known = true;
      if (c.phase === Phase.Handshake) c.phase = Phase.Established;
    }
  }

  /**
   * Failover: the SVM takes over. Connections already tracked keep being rewritten (including
   * handshakes still learning their offset); connections opened from now on are left untouched.
   */
  failover(): void {
    this.#stats.failover = true;
  }

  /** Forgets idle entries; returns how many were removed. Call periodically from the shell. */
  expire(now: number): number {
    this.lastScan = now;
    let n = 0;
    for (const [k, c] of this.table) {
      const limit =
        c.phase === Phase.Closed
          ? this.closedMs
          : c.phase === Phase.Handshake
            ? this.handshakeMs
            : this.idleMs;
      if (now - c.lastSeen >= limit) {
        this.table.delete(k);
        this.byTx.delete(c.txKey);
        if (c.phase !== Phase.Closed) this.#stats.connectionsExpired++;
        n++;
      }
    }
    this.#stats.connections = this.table.size;
    return n;
  }

  /** The live counters (no copy; exporters read them on scrape). */
  get stats(): Readonly<RewriterStats> {
    this.#stats.connections = this.table.size;
    return this.#stats;
  }

  /** A deep copy of the counters. */
  statsSnapshot(): RewriterStats {
    const s = this.stats;
    return { ...s, malformedByCode: { ...s.malformedByCode } };
  }

  /** The table, oldest entry first (at most `limit` rows). */
  connections(limit = Number.POSITIVE_INFINITY): RewriteConnInfo[] {
    const rows: RewriteConnInfo[] = [];
    for (const c of this.table.values()) {
      if (rows.length >= limit) break;
      rows.push(connInfo(c));
    }
    return rows;
  }

  get size(): number {
    return this.table.size;
  }

  private parse(frame: Uint8Array, vnetLen: number): boolean {
    const m = this.meta;
    const st = parseFrame(frame, vnetLen, m);
    if (st !== ParseStatus.Ok) {
      this.#stats.malformed++;
      const code = parseStatusCode(st) ?? "COLO_ERR_INTERNAL";
      this.#stats.malformedByCode[code] = (this.#stats.malformedByCode[code] ?? 0) + 1;
      return false;
    }
    if (m.proto !== 6 || m.l4Offset < 0) {
      this.#stats.nonTcp++;
      return false;
    }
    return true;
  }

  /** Creates (or re-creates over `old`) an entry; undefined in failover mode (left untouched). */
  private open(
    key: string,
    txKey: string,
    old: RewriteConn | undefined,
    origin: Origin,
    now: number,
  ): RewriteConn | undefined {
    if (old !== undefined) {
      this.table.delete(old.key);
      this.byTx.delete(old.txKey);
      this.#stats.connectionsReused++;
    }
    if (this.#stats.failover) {
      this.#stats.untracked++;
      this.#stats.connections = this.table.size;
      return undefined;
    }
    if (this.table.size >= this.max) {
      // A full scan at most once a second keeps SYN floods O(1) per packet.
      if (now - this.lastScan >= 1000) this.expire(now);
      if (this.table.size >= this.max) {
        const oldest = this.table.values().next().value;
        if (oldest !== undefined) {
          this.table.delete(oldest.key);
          this.byTx.delete(oldest.txKey);
        }
        this.#stats.connectionsEvicted++;
      }
    }
    const c = newConn(key, txKey, origin, now);
    this.table.set(key, c);
    this.byTx.set(txKey, c);
    this.#stats.connectionsOpened++;
    this.#stats.connections = this.table.size;
    return c;
  }

  private noteSvm(c: RewriteConn, frame: Uint8Array, seq: number, tcp: number): void {
    c.svmIsn = seq;
    c.haveSvm = true;
    const at = this.ts ? findTimestamp(frame, tcp, this.meta.tcpHeaderLen) : -1;
    c.svmTsval = at >= 0 ? read32(frame, at) : -1;
  }

  private notePvm(c: RewriteConn, frame: Uint8Array, ack: number, tcp: number): void {
    c.pvmIsn = (ack - 1) >>> 0;
    c.havePvm = true;
    const at = this.ts ? findTimestamp(frame, tcp, this.meta.tcpHeaderLen) : -1;
    c.pvmTsval = at >= 0 ? read32(frame, at + 4) : -1;
  }

  private learn(c: RewriteConn): void {
    if (c.known || !c.haveSvm || !c.havePvm) return;
    c.offset = (c.svmIsn - c.pvmIsn) >>> 0;
    c.tsOffset = c.svmTsval >= 0 && c.pvmTsval >= 0 ? (c.svmTsval - c.pvmTsval) >>> 0 : 0;
    c.known = true;
    if (c.phase === Phase.Handshake) c.phase = Phase.Established;
    this.#stats.offsetsLearned++;
  }

  private close(c: RewriteConn): void {
    if (c.phase !== Phase.Closed) {
      c.phase = Phase.Closed;
      this.#stats.connectionsClosed++;
    }
  }
}
