/**
 * @module One rewriter table entry: what the rewriter knows about a TCP connection between a
 * client and the secondary guest (SVM), in the guest-outbound orientation.
 */
import { formatFlowKey } from "../packet/parse.ts";

/** Who opened the connection. */
export const enum Origin {
  /** The client connected to the guest (client SYN, guest SYN-ACK): reference-compatible case. */
  Passive = 0,
  /** The guest connected out (guest SYN, peer SYN-ACK): the reference never corrects these. */
  Active = 1,
}

export const enum Phase {
  /** SYN seen, offset not learned yet. */
  Handshake = 0,
  /** Offset learned (possibly 0 after a checkpoint), no FIN/RST yet. */
  Established = 1,
  /** A FIN was seen in at least one direction. */
  Closing = 2,
  /** Both FINs acknowledged, or an RST: kept briefly so retransmissions are still rewritten. */
  Closed = 3,
}

export const originNames = ["passive", "active"] as const;
export const phaseNames = ["handshake", "established", "closing", "closed"] as const;

export interface RewriteConn {
  /** Flow key of the guest's frames (rx) and of the client's frames (tx). */
  key: string;
  txKey: string;
  origin: Origin;
  phase: Phase;
  /** Whether `offset`/`tsOffset` are final (learned, or zeroed by a checkpoint). */
  known: boolean;
  /** SVM ISN − PVM ISN (mod 2^32), added to client acks, subtracted from guest seqs. */
  offset: number;
  /** SVM TSval − PVM TSval (mod 2^32), only with the timestamps option. */
  tsOffset: number;
  /** Client ISN (passive) — to tell a retransmitted SYN from a reused 4-tuple. */
  clientIsn: number;
  /** SVM's ISN from its SYN (active) or SYN-ACK (passive), and its TSval there (-1: none). */
  svmIsn: number;
  haveSvm: boolean;
  svmTsval: number;
  /** PVM's ISN as acked by the client (ack − 1), and the client's TSecr there (-1: none). */
  pvmIsn: number;
  havePvm: boolean;
  pvmTsval: number;
  /** FIN tracking: sequence number right after each side's FIN (client space / SVM space). */
  finTx: boolean;
  finTxEnd: number;
  finTxAcked: boolean;
  finRx: boolean;
  finRxEnd: number;
  finRxAcked: boolean;
  firstSeen: number;
  lastSeen: number;
  packetsTx: number;
  packetsRx: number;
  rewrittenTx: number;
  rewrittenRx: number;
}

export function newConn(key: string, txKey: string, origin: Origin, now: number): RewriteConn {
  return {
    key,
    txKey,
    origin,
    phase: Phase.Handshake,
    known: false,
    offset: 0,
    tsOffset: 0,
    clientIsn: 0,
    svmIsn: 0,
    haveSvm: false,
    svmTsval: -1,
    pvmIsn: 0,
    havePvm: false,
    pvmTsval: -1,
    finTx: false,
    finTxEnd: 0,
    finTxAcked: false,
    finRx: false,
    finRxEnd: 0,
    finRxAcked: false,
    firstSeen: now,
    lastSeen: now,
    packetsTx: 0,
    packetsRx: 0,
    rewrittenTx: 0,
    rewrittenRx: 0,
  };
}

/** Public, JSON-friendly view of an entry (connections() listing). */
export interface RewriteConnInfo {
  /** Human-readable guest-outbound flow, e.g. `tcp 10.0.0.2:80 > 10.0.0.1:40000`. */
  flow: string;
  origin: (typeof originNames)[number];
  phase: (typeof phaseNames)[number];
  offsetKnown: boolean;
  offset: number;
  tsOffset: number;
  firstSeen: number;
  lastSeen: number;
  packetsTx: number;
  packetsRx: number;
  rewrittenTx: number;
  rewrittenRx: number;
}

export function connInfo(c: RewriteConn): RewriteConnInfo {
  return {
    flow: formatFlowKey(c.key),
    origin: originNames[c.origin],
    phase: phaseNames[c.phase],
    offsetKnown: c.known,
    offset: c.offset,
    tsOffset: c.tsOffset,
    firstSeen: c.firstSeen,
    lastSeen: c.lastSeen,
    packetsTx: c.packetsTx,
    packetsRx: c.packetsRx,
    rewrittenTx: c.rewrittenTx,
    rewrittenRx: c.rewrittenRx,
  };
}
