/**
 * @module The contract between a daemon (compare, rewrite, primary, secondary) and the control
 * layer: what the daemon exposes (`ControlTarget`) and the events it emits (`ControlEventMap`).
 *
 * A daemon implements ControlTarget (optional methods it cannot support are simply left out:
 * their commands are then not registered and answer CommandNotFound), hands it to
 * `startControl()` (src/control/index.ts), and calls `control.emit("CHECKPOINT_REQUEST", ...)`.
 */
import type { StatsSnapshot } from "./stats.ts";

export type DaemonRole = "compare" | "rewrite" | "primary" | "secondary";

/**
 * "colo": replicating and comparing; "failover": everything passes through (after `failover`);
 * "passthrough": comparison disabled by configuration; "starting": waiting for endpoints.
 */
export type DaemonMode = "starting" | "colo" | "failover" | "passthrough";

export interface PeerStatus {
  /** What the peer is: "secondary" (link), "notify" (Xen notify_dev), "secondary_in" (chardev) ... */
  name: string;
  state: "up" | "down";
  /** Remote address as text (`10.0.0.2:9000`, `/run/colo/sec.sock`), when known. */
  address?: string;
  /** Wall-clock ms of the last state change, when known. */
  sinceMs?: number;
}

export interface DaemonStatus {
  role: DaemonRole;
  mode: DaemonMode;
  /** Peers and endpoints with their state; empty when the daemon has none. */
  peers: PeerStatus[];
  /** Number of completed checkpoints since start (the flush generation). */
  checkpointEpoch: number;
}

/**
 * One tracked flow as `query-connections` reports it. Field names follow the compare engine's
 * ConnectionInfo (src/compare/types.ts), so its rows can be returned as they are; extra fields
 * a daemon adds are passed to clients unchanged.
 */
export interface ConnectionInfo {
  /** Human-readable flow: `tcp 10.0.0.1:40000 > 10.0.0.2:80`. */
  flow: string;
  /** "tcp", "udp", "icmp", "icmpv6", "ip", "arp", "l2". */
  protocol: string;
  /** e.g. "open", "closing", "closed", "miscompared", "reused", "passthrough" (compare); TCP phase (rewrite). */
  state: string;
  /** Frames held from the primary, and queued from the secondary. */
  primaryQueued: number;
  secondaryQueued: number;
  /** Age in ms of the oldest held frame; 0 (or null) when nothing is held. */
  oldestHeldMs: number | null;
  /** Payload bytes compared equal on this flow so far. */
  bytesCompared: number;
  /** Connection-table key, when the daemon has one. */
  key?: string;
  packetsCompared?: number;
}

/** A passthrough rule as listed: id (for deletion) and canonical text. */
export interface PassthroughEntry {
  id: number;
  rule: string;
}

/** Run-time parameter values by name (QEMU names such as compare_timeout, or the daemon's own). */
export type ControlParams = Record<string, number | boolean>;

export interface CheckpointDoneResult {
  /** The epoch after this checkpoint. */
  epoch: number;
  /** Primary frames released and secondary frames dropped by the flush. */
  released: number;
  dropped: number;
}

/** Implemented by every daemon. Synchronous or async; a throw becomes a command error reply. */
export interface ControlTarget {
  status(): DaemonStatus;
  stats(): StatsSnapshot;
  connections?(): ConnectionInfo[];
  /** The checkpoint finished: release held primary frames, drop secondary ones, bump the epoch. */
  checkpointDone?(): CheckpointDoneResult | Promise<CheckpointDoneResult>;
  /** Switch to failover: pass everything through from now on. */
  failover?(): void | Promise<void>;
  /**
   * Adds a passthrough rule given as text (the daemon's grammar, e.g. the compare engine's
   * `tcp 10.0.0.0/24:3389`); returns its id and canonical text. Throws a ColoError (its code is
   * passed to the client) on a bad rule. Adding an existing rule returns the existing id.
   */
  passthroughAdd?(rule: string): PassthroughEntry;
  /** Removes a rule by id or text; returns the removed rule's text; throws a ColoError when absent. */
  passthroughDel?(idOrRule: number | string): string;
  passthroughList?(): PassthroughEntry[];
  /** Current values; required together with setParam. */
  params?(): ControlParams;
  /** Validates and sets a parameter (throws a ColoError on a bad name/value); returns the value set. */
  setParam?(name: string, value: number | boolean | string): unknown;
}

/** A window of bytes around the first difference, hex-encoded (JSON-safe). */
export interface HexWindow {
  /** Stream/payload offset of the first byte in `hex`. */
  offset: number;
  hex: string;
}

/** Why a checkpoint was requested, in the words an operator needs. */
export interface CheckpointRequestData {
  [key: string]: unknown;
  /** Stable reason tag (compare engine: "payload-differs", "size-differs", "seq-mismatch", "timeout", "queue-full", "table-full", "connection-reused"). */
  reason: string;
  /** One sentence for humans (the compare engine's CheckpointRequest.message). */
  explanation: string;
  flow?: string;
  protocol?: string;
  /** Stream (TCP) or payload offset of the first differing byte. */
  offset?: number;
  primary?: HexWindow;
  secondary?: HexWindow;
  /** Checkpoint epoch when the request was made. */
  epoch: number;
}

export interface ControlEventMap {
  CHECKPOINT_REQUEST: CheckpointRequestData;
  CHECKPOINT_DONE: { [key: string]: unknown; epoch: number; released: number; dropped: number };
  FAILOVER: { [key: string]: unknown; reason: string };
  PEER_LOST: { [key: string]: unknown; peer: string; address?: string; reason: string };
  PEER_UP: { [key: string]: unknown; peer: string; address?: string };
  BAD_INPUT: { [key: string]: unknown; code: string; source: string; desc: string; count: number };
}
export type ControlEventName = keyof ControlEventMap;
export const CONTROL_EVENTS: readonly ControlEventName[] = [
  "CHECKPOINT_REQUEST",
  "CHECKPOINT_DONE",
  "FAILOVER",
  "PEER_LOST",
  "PEER_UP",
  "BAD_INPUT",
];

/** A delivered event, as every subscriber (socket clients, dashboard, hooks) sees it. */
export interface ControlEvent<K extends ControlEventName = ControlEventName> {
  event: K;
  data: ControlEventMap[K];
  /** Wall-clock ms (from the injected clock). */
  timeMs: number;
}
