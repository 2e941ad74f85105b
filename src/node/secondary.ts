/**
 * @module `colo-proxy secondary`: the secondary host's half of the proxy pair.
 *
 * While COLO runs:
 *   client frames from the primary (link FRAME ClientToGuest, or QEMU primary's mirror socket)
 *     → rewriter.tx (ack/SACK += offset) → guest_in (redirector indev: injected toward the SVM)
 *   SVM output on guest_out (redirector outdev) → rewriter.rx (seq −= offset)
 *     → the primary (link FRAME GuestOutput, or QEMU primary's colo-compare secondary_in socket)
 *   frames from the SVM's own netdev (net_in) are dropped and counted: the client talks to the PVM.
 *   CHECKPOINT from the primary → rewriter offsets reset (the SVM is now a copy of the PVM).
 *
 * After failover (operator `failover`, or the link to the primary lost with auto-failover on)
 * the SVM serves the clients itself: net_in → rewriter.tx → guest_in and
 * guest_out → rewriter.rx → net_out, so established connections keep the sequence numbers the
 * client already knows. If the primary announces that it continues alone, this side stands down
 * (drops everything) instead of taking over: two active replicas would be a split brain.
 */

import {
  type CheckpointDoneResult,
  type ConnectionInfo,
  type Control,
  type ControlOptions,
  type ControlTarget,
  type DaemonStatus,
  type PeerStatus,
  startControl,
} from "../control/index.ts";
import type { StatsSnapshot } from "../control/stats.ts";
import type { ColoError } from "../errors.ts";
import { type Logger, reportRepeat, silentLogger } from "../log.ts";
import { Rewriter, type RewriterOptions } from "../rewrite/engine.ts";
import { ChardevEndpoint } from "../wire/chardev.ts";
import { endpointText } from "./compare-daemon.ts";
import type { EndpointConfig } from "./config.ts";
import { Link } from "./link.ts";
import { Channel } from "./link-protocol.ts";
import type { LinkConfig } from "./primary.ts";
import { type EndpointView, rewriterConnections, rewriterStats } from "./rewrite-stats.ts";

export interface SecondaryConfig {
  guestIn: EndpointConfig;
  guestOut: EndpointConfig;
  /** The SVM's own network path, used after failover (optional: without it failover has no exit). */
  netIn: EndpointConfig | undefined;
  netOut: EndpointConfig | undefined;
  /** Our link to the primary daemon, or QEMU primary mode (primaryMirror + primaryCompare). */
  link: LinkConfig | undefined;
  primaryMirror: EndpointConfig | undefined;
  primaryCompare: EndpointConfig | undefined;
  vnetHdr: boolean;
  rewriter: RewriterOptions;
  autoFailover: boolean;
}

export interface SecondaryOptions {
  logger?: Logger;
  controlSocket?: string | null;
  controlTcp?: { host: string; port: number } | null;
  controlExtra?: Pick<ControlOptions, "metrics" | "dashboard" | "onCheckpoint" | "dashboardTickMs">;
  now?: () => number;
}

type Mode = "colo" | "failover" | "standby";

export class SecondaryDaemon implements ControlTarget {
  readonly config: SecondaryConfig;
  readonly rewriter: Rewriter;
  readonly guestIn: ChardevEndpoint;
  readonly guestOut: ChardevEndpoint;
  readonly netIn: ChardevEndpoint | undefined;
  readonly netOut: ChardevEndpoint | undefined;
  readonly primaryMirror: ChardevEndpoint | undefined;
  readonly primaryCompare: ChardevEndpoint | undefined;
  readonly link: Link | undefined;
  control: Control | undefined;
  /** Frames not forwarded, by reason (counted, never silent). */
  readonly dropped: Record<string, number> = {};
  readonly #badInput: Record<string, number> = {};
  readonly #log: Logger;
  readonly #now: () => number;
  #mode: Mode = "colo";
  #linkWasUp = false;
  #expiry: NodeJS.Timeout | null = null;

  private constructor(config: SecondaryConfig, opts: SecondaryOptions) {
    this.config = config;
    this.#log = opts.logger ?? silentLogger();
    this.#now = opts.now ?? Date.now;
    this.rewriter = new Rewriter(config.rewriter);
    const vnetHdr = config.vnetHdr;
    const mk = (spec: EndpointConfig, onFrame: (f: Buffer, v: number) => void) =>
      new ChardevEndpoint({ spec, vnetHdr, onFrame });
    this.guestIn = mk(config.guestIn, () => this.#drop("unexpected-on-guest_in"));
    this.guestOut = mk(config.guestOut, (f, v) => this.#guestOutput(f, v));
    this.netIn = config.netIn && mk(config.netIn, (f, v) => this.#netFrame(f, v));
    this.netOut = config.netOut && mk(config.netOut, () => this.#drop("unexpected-on-net_out"));
    this.primaryMirror = config.primaryMirror && mk(config.primaryMirror, (f, v) => this.#clientFrame(f, v));
    this.primaryCompare =
      config.primaryCompare && mk(config.primaryCompare, () => this.#drop("unexpected-on-compare"));
    for (const [name, e] of this.#endpoints()) this.#watch(name, e);
    // Backpressure: the SVM's slow injection pauses what feeds it (never the link: heartbeats),
    // i.e. a QEMU primary's mirror. Never net_in after failover: its writer is the SVM's own QEMU,
    // whose main loop reads guest_in only while its blocking write to net_in is not waiting, so
    // pausing net_in until guest_in drains would deadlock both (docs/e2e.md).
    this.guestIn.on("congestion", (c) => {
      const src = this.#mode === "failover" ? undefined : this.primaryMirror;
      if (src !== undefined) c ? src.pause() : src.resume();
    });
    if (config.link !== undefined) {
      const l = config.link;
      const link = new Link({
        role: "secondary",
        addr: l.addr,
        secret: l.secret,
        vnetHdr,
        heartbeatIntervalMs: l.heartbeatIntervalMs,
        heartbeatTimeoutMs: l.heartbeatTimeoutMs,
        ...(l.tls ? { tls: l.tls } : {}),
      });
      this.link = link;
      link.on("frame", (channel, frame, vnetLen) => {
        if (channel === Channel.ClientToGuest) this.#clientFrame(frame, vnetLen);
        else this.#drop("unexpected-link-channel");
      });
      link.on("checkpoint", (epoch) => this.#checkpoint(epoch));
      link.on("up", (peer, remote) => {
        this.#linkWasUp = true;
        if (this.#mode === "standby") this.#mode = "colo";
        this.#log.info({ remote, epoch: peer.epoch }, "primary link up");
        this.control?.emit("PEER_UP", { peer: "primary", address: remote });
      });
      link.on("down", (err) => {
        this.#log.warn({ code: err.code }, `primary link down: ${err.message}`);
        this.control?.emit("PEER_LOST", { peer: "primary", reason: err.message });
        if (this.config.autoFailover && this.#linkWasUp && this.#mode === "colo") {
          this.failover(`primary lost: ${err.message}`);
        }
      });
      link.on("peerFailover", (reason) => {
        this.#log.warn({ reason }, "the primary continues alone: standing down");
        this.#mode = "standby";
        this.control?.emit("PEER_LOST", { peer: "primary", reason: `stand down: ${reason}` });
      });
      link.on("link-error", (err) => this.#bad("link", err));
    }
  }

  static async start(config: SecondaryConfig, opts: SecondaryOptions = {}): Promise<SecondaryDaemon> {
    const d = new SecondaryDaemon(config, opts);
    try {
      for (const [, e] of d.#endpoints()) {
        const p = e.start();
        if (e.spec.server && e.spec.wait) p.catch(() => {});
        else await p;
      }
      await d.link?.start();
      if (opts.controlSocket !== null || opts.controlTcp != null) {
        d.control = await startControl(d, {
          role: "secondary",
          ...(opts.controlSocket === undefined ? {} : { socket: opts.controlSocket }),
          tcp: opts.controlTcp ?? null,
          logger: d.#log,
          ...opts.controlExtra,
        });
      }
    } catch (e) {
      await d.close();
      throw e;
    }
    d.#expiry = setInterval(() => d.rewriter.expire(d.#now()), 1000);
    d.#expiry.unref();
    d.#log.info(
      {
        guest_in: endpointText(config.guestIn),
        guest_out: endpointText(config.guestOut),
        primary: d.link?.describe() ?? (config.primaryMirror && endpointText(config.primaryMirror)),
      },
      "secondary running",
    );
    return d;
  }

  /** A client frame (from the primary while COLO runs). */
  #clientFrame(frame: Buffer, vnetLen: number): void {
    if (this.#mode !== "colo") {
      this.#drop(`client-frame-in-${this.#mode}`);
      return;
    }
    this.rewriter.tx(frame, vnetLen, this.#now());
    this.guestIn.send(frame, vnetLen);
  }

  /** A frame from the SVM's own netdev: only used after failover. */
  #netFrame(frame: Buffer, vnetLen: number): void {
    if (this.#mode !== "failover") {
      this.#drop("net-frame-while-replicating");
      return;
    }
    this.rewriter.tx(frame, vnetLen, this.#now());
    this.guestIn.send(frame, vnetLen);
  }

  #guestOutput(frame: Buffer, vnetLen: number): void {
    if (this.#mode === "standby") {
      this.#drop("guest-output-in-standby");
      return;
    }
    this.rewriter.rx(frame, vnetLen, this.#now());
    if (this.#mode === "failover") {
      if (this.netOut !== undefined) this.netOut.send(frame, vnetLen);
      else this.#drop("guest-output-no-net_out");
      return;
    }
    if (this.link !== undefined) {
      if (!this.link.sendFrame(Channel.GuestOutput, frame, vnetLen)) this.#drop("guest-output-link-down");
    } else if (this.primaryCompare !== undefined) {
      this.primaryCompare.send(frame, vnetLen);
    }
  }

  #checkpoint(epoch: number): void {
    this.rewriter.checkpoint(this.#now());
    this.control?.emit("CHECKPOINT_DONE", { epoch, released: 0, dropped: 0 });
  }

  #drop(reason: string): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
  }

  #endpoints(): [string, ChardevEndpoint][] {
    const all: [string, ChardevEndpoint | undefined][] = [
      ["guest_in", this.guestIn],
      ["guest_out", this.guestOut],
      ["net_in", this.netIn],
      ["net_out", this.netOut],
      ["primary_mirror", this.primaryMirror],
      ["primary_compare", this.primaryCompare],
    ];
    return all.filter((e): e is [string, ChardevEndpoint] => e[1] !== undefined);
  }

  #watch(name: string, e: ChardevEndpoint): void {
    e.on("framing-error", (err) => this.#bad(name, err));
    e.on("drop", (err) => this.#bad(name, err, true));
    e.on("connect", (peer) => this.control?.emit("PEER_UP", { peer: name, address: peer }));
    e.on("disconnect", (peer, reason) => {
      this.control?.emit("PEER_LOST", { peer: name, address: peer, reason });
      // In QEMU-primary mode the mirror/compare sockets are the only sign of the primary.
      if (
        name === "primary_mirror" &&
        this.config.autoFailover &&
        this.#mode === "colo" &&
        reason !== "closing"
      ) {
        this.failover(`primary mirror lost: ${reason}`);
      }
    });
  }

  /** `perFrame`: an event of every frame of a flood (a drop), logged and announced by reportRepeat. */
  #bad(source: string, err: ColoError, perFrame = false): void {
    const count = (this.#badInput[err.code] ?? 0) + 1;
    this.#badInput[err.code] = count;
    if (perFrame && !reportRepeat(count)) return;
    this.#log.error({ code: err.code, source, count }, `bad input on ${source}: ${err.message}`);
    this.control?.emit("BAD_INPUT", { code: err.code, source, desc: err.message, count });
  }

  // --- ControlTarget ------------------------------------------------------------------------------

  get mode(): Mode {
    return this.#mode;
  }

  /** Take over: the SVM serves the clients through net_in/net_out from now on. */
  failover(reason = "command"): void {
    if (this.#mode === "failover") return;
    this.#mode = "failover";
    this.rewriter.failover();
    this.primaryMirror?.pause();
    void this.link?.close();
    this.#log.warn({ reason }, "failover: the secondary now serves the clients");
    this.control?.emit("FAILOVER", { reason });
  }

  /** A checkpoint finished (QEMU-primary mode has no link to say so): reset the rewriter. */
  checkpointDone(): CheckpointDoneResult {
    this.rewriter.checkpoint(this.#now());
    const epoch = this.rewriter.stats.checkpoints;
    this.control?.emit("CHECKPOINT_DONE", { epoch, released: 0, dropped: 0 });
    return { epoch, released: 0, dropped: 0 };
  }

  status(): DaemonStatus {
    const peers: PeerStatus[] = [];
    if (this.link !== undefined) {
      const remote = this.link.remote;
      peers.push({
        name: "primary",
        state: this.link.up ? "up" : "down",
        ...(remote ? { address: remote } : {}),
      });
    }
    for (const [name, e] of this.#endpoints()) {
      peers.push({ name, state: e.connected ? "up" : "down", address: endpointText(e.spec) });
    }
    return {
      role: "secondary",
      mode: this.#mode === "standby" ? "starting" : this.#mode,
      peers,
      checkpointEpoch: this.link?.epoch ?? this.rewriter.stats.checkpoints,
    };
  }

  stats(): StatsSnapshot {
    const eps: Record<string, EndpointView> = Object.fromEntries(this.#endpoints());
    if (this.link !== undefined) {
      const l = this.link;
      eps.link = {
        counters: {
          framesIn: l.counters.framesIn,
          bytesIn: l.counters.bytesIn,
          framesOut: l.counters.framesOut,
          bytesOut: l.counters.bytesOut,
          framesDropped: 0,
        },
        connected: l.up,
      };
    }
    return rewriterStats(this.rewriter, eps, this.#badInput, this.dropped);
  }

  connections(): ConnectionInfo[] {
    return rewriterConnections(this.rewriter);
  }

  async close(): Promise<void> {
    if (this.#expiry !== null) clearInterval(this.#expiry);
    await this.control?.close();
    await this.link?.close();
    for (const [, e] of this.#endpoints()) await e.close();
  }
}
