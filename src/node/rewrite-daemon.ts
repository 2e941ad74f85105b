/**
 * @module The rewrite daemon: QEMU's filter-rewriter as a process between redirectors. Four
 * chardev endpoints (tx_in → engine.tx → tx_out, rx_in → engine.rx → rx_out); frames are
 * rewritten in place on the decoder's views (zero copy) and queued on the batched writers.
 * Bad bytes on an input reset only that peer (ChardevEndpoint) and are logged with their code.
 * Implements ControlTarget: `checkpoint-done` delivers CHECKPOINT, `failover` FAILOVER.
 */

import type { StatsSnapshot } from "../control/stats.ts";
import type { ConnectionInfo, ControlEventMap, ControlTarget, DaemonStatus } from "../control/target.ts";
import { ConfigError, type FramingError } from "../errors.ts";
import { type Logger, reportRepeat, silentLogger } from "../log.ts";
import { Rewriter } from "../rewrite/engine.ts";
import { ChardevEndpoint } from "../wire/chardev.ts";
import { type ChardevSocketSpec, parseChardevSpec } from "../wire/chardev-spec.ts";
import type { RewriteObjectSpec } from "./rewrite-daemon-config.ts";
import { rewriterConnections, rewriterStats } from "./rewrite-stats.ts";

export interface RewriteDaemonOptions {
  /** Every `--chardev` given (strings in QEMU syntax or parsed specs). */
  chardevs: (string | ChardevSocketSpec)[];
  object: RewriteObjectSpec;
  logger?: Logger;
  /** Monotonic-enough clock in ms for idle expiry. Default Date.now. */
  now?: () => number;
  /** Called for control events (BAD_INPUT, PEER_UP, PEER_LOST, CHECKPOINT_DONE, FAILOVER). */
  onEvent?: <K extends keyof ControlEventMap>(event: K, data: ControlEventMap[K]) => void;
}

type Role = "tx_in" | "tx_out" | "rx_in" | "rx_out";

export class RewriteDaemon implements ControlTarget {
  readonly engine: Rewriter;
  readonly endpoints: Record<Role, ChardevEndpoint>;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly emitEvent: NonNullable<RewriteDaemonOptions["onEvent"]>;
  private readonly badInput: Record<string, number> = {};
  private readonly peerSince: Record<string, number> = {};
  private expiryTimer: NodeJS.Timeout | null = null;
  private started = false;

  constructor(opts: RewriteDaemonOptions) {
    const o = opts.object;
    this.log = opts.logger ?? silentLogger();
    this.now = opts.now ?? Date.now;
    this.emitEvent = opts.onEvent ?? (() => {});
    this.engine = new Rewriter({
      timestamps: o.timestamps,
      maxConnections: o.maxConnections,
      idleTimeoutMs: o.idleTimeoutMs,
      handshakeTimeoutMs: o.handshakeTimeoutMs,
      closedTimeoutMs: o.closedTimeoutMs,
    });
    const specs = new Map<string, ChardevSocketSpec>();
    for (const c of opts.chardevs) {
      const s = typeof c === "string" ? parseChardevSpec(c) : c;
      if (specs.has(s.id)) throw new ConfigError(`chardev id "${s.id}" defined twice`, { id: s.id });
      specs.set(s.id, s);
    }
    const spec = (role: Role, id: string): ChardevSocketSpec => {
      const s = specs.get(id);
      if (s === undefined) {
        throw new ConfigError(
          `filter-rewriter ${role}=${id}: no --chardev with id=${id}`,
          { id },
          "COLO_ERR_REWRITE_OBJECT",
        );
      }
      return s;
    };
    const engine = this.engine;
    const now = this.now;
    // Forward declarations: the input handlers reference their output endpoints.
    let txOut: ChardevEndpoint;
    let rxOut: ChardevEndpoint;
    const mk = (role: Role, id: string, onFrame: (f: Buffer, v: number) => void) =>
      new ChardevEndpoint({ spec: spec(role, id), onFrame, vnetHdr: o.vnetHdr });
    const txIn = mk("tx_in", o.txIn, (f, v) => {
      engine.tx(f, v, now());
      txOut.send(f, v);
    });
    const rxIn = mk("rx_in", o.rxIn, (f, v) => {
      engine.rx(f, v, now());
      rxOut.send(f, v);
    });
    txOut = mk("tx_out", o.txOut, () => this.unexpected("tx_out"));
    rxOut = mk("rx_out", o.rxOut, () => this.unexpected("rx_out"));
    this.endpoints = { tx_in: txIn, tx_out: txOut, rx_in: rxIn, rx_out: rxOut };
    // Backpressure: a congested output pauses its input instead of growing its queue.
    txOut.on("congestion", (c) => (c ? txIn.pause() : txIn.resume()));
    rxOut.on("congestion", (c) => (c ? rxIn.pause() : rxIn.resume()));
    for (const [role, ep] of Object.entries(this.endpoints) as [Role, ChardevEndpoint][]) {
      this.peerSince[role] = this.now();
      ep.on("framing-error", (e: FramingError) => this.bad(role, ep, e.code, e.message));
      ep.on("io-error", (e) =>
        this.log.warn({ chardev: ep.id, role, code: e.code, err: e.message }, "chardev I/O error"),
      );
      ep.on("drop", (e) => this.bad(role, ep, e.code, e.message, true));
      ep.on("connect", (peer) => {
        this.peerSince[role] = this.now();
        this.log.info({ chardev: ep.id, role, peer, readMode: ep.readMode }, "peer connected");
        this.emitEvent("PEER_UP", { peer: role, address: ep.address });
      });
      ep.on("disconnect", (peer, reason) => {
        this.peerSince[role] = this.now();
        this.log.info({ chardev: ep.id, role, peer, reason }, "peer disconnected");
        this.emitEvent("PEER_LOST", { peer: role, address: ep.address, reason });
      });
    }
  }

  /** Starts the four endpoints (servers listen, clients connect in the background) and expiry. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    // Outputs first, so nothing read from an input is ever queued for an output not yet started.
    for (const role of ["tx_out", "rx_out", "tx_in", "rx_in"] as const) {
      const ep = this.endpoints[role];
      const p = ep.start();
      // A server with wait=on blocks until its peer connects (QEMU semantics): do not serialise
      // the other endpoints behind it.
      if (ep.spec.server && ep.spec.wait) p.catch(() => {});
      else await p;
    }
    this.expiryTimer = setInterval(() => this.engine.expire(this.now()), 1000);
    this.expiryTimer.unref();
    this.log.info(
      Object.fromEntries(Object.entries(this.endpoints).map(([r, e]) => [r, e.address])),
      "filter-rewriter running",
    );
  }

  async close(): Promise<void> {
    if (this.expiryTimer !== null) clearInterval(this.expiryTimer);
    this.expiryTimer = null;
    await Promise.all(Object.values(this.endpoints).map((e) => e.close()));
  }

  /** COLO CHECKPOINT: offsets reset (the SVM is a copy of the PVM). */
  checkpoint(): number {
    this.engine.checkpoint(this.now());
    const epoch = this.engine.stats.checkpoints;
    this.emitEvent("CHECKPOINT_DONE", { epoch, released: 0, dropped: 0 });
    return epoch;
  }

  checkpointDone(): { epoch: number; released: number; dropped: number } {
    return { epoch: this.checkpoint(), released: 0, dropped: 0 };
  }

  failover(): void {
    if (this.engine.stats.failover) return;
    this.engine.failover();
    this.log.warn("failover: tracked connections keep their offsets, new ones pass untouched");
    this.emitEvent("FAILOVER", { reason: "command" });
  }

  status(): DaemonStatus {
    const peers = (Object.entries(this.endpoints) as [Role, ChardevEndpoint][]).map(([role, ep]) => ({
      name: role,
      state: ep.connected ? ("up" as const) : ("down" as const),
      address: ep.connected && ep.peer !== "" ? ep.peer : ep.address,
      sinceMs: this.peerSince[role] ?? 0,
    }));
    return {
      role: "rewrite",
      mode: this.engine.stats.failover ? "failover" : "colo",
      peers,
      checkpointEpoch: this.engine.stats.checkpoints,
    };
  }

  stats(): StatsSnapshot {
    return rewriterStats(this.engine, this.endpoints, this.badInput);
  }

  connections(): ConnectionInfo[] {
    return rewriterConnections(this.engine);
  }

  private countBad(code: string): number {
    const count = (this.badInput[code] ?? 0) + 1;
    this.badInput[code] = count;
    return count;
  }

  /** `perFrame`: an event of every frame of a flood (a drop), logged and announced by reportRepeat. */
  private bad(role: Role, ep: ChardevEndpoint, code: string, desc: string, perFrame = false): void {
    const count = this.countBad(code);
    if (perFrame && !reportRepeat(count)) return;
    this.log.warn({ chardev: ep.id, role, code, count }, `bad input: ${desc}`);
    this.emitEvent("BAD_INPUT", { code, source: role, desc, count });
  }

  /** Outputs are write-only in the filter chain; frames arriving there are ignored but counted. */
  private unexpected(role: Role): void {
    const code = "COLO_ERR_REWRITE_UNEXPECTED_FRAME";
    const count = this.countBad(code);
    if (reportRepeat(count)) {
      this.log.warn({ role, code, count }, "frame received on an output chardev ignored");
    }
  }
}
