/**
 * @module `colo-proxy compare`: the drop-in replacement for QEMU's `-object colo-compare`. A thin
 * shell around the sans-IO CompareEngine: framed chardev sockets for primary_in / secondary_in /
 * outdev (and Xen's notify_dev), a timer calling tick() every expired_scan_cycle, released frames
 * written to outdev in order and batched, engine backpressure applied by pausing input (never
 * outdev congestion: see the outdev comment below), checkpoint requests sent as DO_CHECKPOINT on notify_dev or as CHECKPOINT_REQUEST events
 * on the control socket, and bad input on any socket reset without disturbing the others.
 */
import { performance } from "node:perf_hooks";
import { FrameBatch } from "../compare/batch.ts";
import { CompareEngine } from "../compare/engine.ts";
import type { CheckpointRequest, CompareSink, Side } from "../compare/types.ts";
import { checkpointEventData, compareSnapshot } from "../control/compare-adapter.ts";
import {
  type CheckpointDoneResult,
  ColoStats,
  type ConnectionInfo,
  type Control,
  type ControlOptions,
  type ControlParams,
  type ControlTarget,
  type DaemonRole,
  type DaemonStatus,
  type PassthroughEntry,
  type PeerStatus,
  type StatsSnapshot,
  startControl,
} from "../control/index.ts";
import type { ColoError } from "../errors.ts";
import { type Logger, reportRepeat, silentLogger } from "../log.ts";
import { ChardevEndpoint } from "../wire/chardev.ts";
import {
  CHECKPOINT,
  DO_CHECKPOINT,
  NotifyDecoder,
  notifyPayload,
  PROXY_INIT,
  XEN_INIT_REPLY,
} from "../wire/notify.ts";
import { MiscompareCapture } from "./capture.ts";
import type { CompareDaemonConfig, EndpointConfig } from "./config.ts";

export interface CompareDaemonOptions {
  logger?: Logger;
  /** Control socket: undefined = the role's default path (warning if unavailable), null = none. */
  controlSocket?: string | null;
  controlTcp?: { host: string; port: number } | null;
  /** Monotonic clock in ms for the engine (default performance.now). */
  now?: () => number;
  /** Metrics, dashboard and on-checkpoint hook of the control layer (off when absent). */
  controlExtra?: Pick<ControlOptions, "metrics" | "dashboard" | "onCheckpoint" | "dashboardTickMs">;
  /** Role reported on the control socket (default "compare"; the primary daemon says "primary"). */
  role?: DaemonRole;
  /**
   * Set by a daemon that feeds secondary frames itself (the primary, from its link) instead of a
   * secondary_in chardev; it receives the engine's secondary backpressure and control hooks.
   */
  external?: ExternalSecondary;
}

/** Hooks for a daemon that wraps CompareDaemon and supplies the secondary side itself. */
export interface ExternalSecondary {
  /** Stop (true) / restart (false) reading the secondary's frames. */
  pause(paused: boolean): void;
  /** After each checkpoint flush (e.g. bump the link epoch so stale secondary output is dropped). */
  checkpointDone?(epoch: number): void;
  /** After the engine switched to failover. */
  failover?(reason: string): void;
  /** Extra peers for query-status (e.g. the link). */
  peers?(): PeerStatus[];
}

type PortName = "primary_in" | "secondary_in" | "outdev" | "notify_dev";

export class CompareDaemon implements ControlTarget {
  readonly config: CompareDaemonConfig;
  readonly counters = new ColoStats();
  readonly engine: CompareEngine;
  readonly primary: ChardevEndpoint;
  /** undefined when an external source (the primary's link) supplies secondary frames. */
  readonly secondary: ChardevEndpoint | undefined;
  readonly outdev: ChardevEndpoint;
  readonly notify: ChardevEndpoint | undefined;
  control: Control | undefined;
  /** Miscompare captures (--capture DIR), when on. */
  readonly capture: MiscompareCapture | undefined;
  epoch = 0;

  readonly #log: Logger;
  readonly #role: DaemonRole;
  readonly #external: ExternalSecondary | undefined;
  readonly #secCounters;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | null = null;
  #mode: "colo" | "failover" = "colo";
  /** Inputs the engine asked to pause (backpressure). */
  #enginePaused = { primary: false, secondary: false };
  /** A DO_CHECKPOINT owed to a notify_dev peer that was not connected when it was raised. */
  #notifyOwed = false;
  #closed = false;

  private constructor(config: CompareDaemonConfig, opts: CompareDaemonOptions) {
    this.config = config;
    this.#log = opts.logger ?? silentLogger();
    this.#now = opts.now ?? (() => performance.now());
    this.#role = opts.role ?? "compare";
    this.#external = opts.external;
    this.#scanCycle = config.expiredScanCycle;
    const sink: CompareSink = {
      release: (frame, vnetLen) => {
        this.outdev.queue(frame, vnetLen);
        // Written once the current input read is processed (#endRead), all its releases in one
        // write; releases outside a read (tick, checkpoint, failover, the primary's link) are
        // written by a microtask, i.e. right after the callback that made them. Nothing is
        // allocated per read for this (a microtask or an Immediate per read was young garbage).
        if (!this.#flushQueued) {
          this.#flushQueued = true;
          if (!this.#inRead) queueMicrotask(this.#flushOut);
        }
      },
      discard: () => undefined,
      checkpointRequest: (req) => this.#onCheckpointRequest(req),
      backpressure: (side, paused) => this.#onBackpressure(side, paused),
      holdTime: (ms) => this.#onHold(ms),
    };
    if (config.capture !== undefined) {
      const cap = new MiscompareCapture({ ...config.capture, logger: this.#log });
      this.capture = cap;
      // Wrapped only when capturing: without --capture the sink (and the engine) do no extra work.
      const { release, discard, holdTime } = sink;
      sink.observe = (side, key, frame, vnetLen) => cap.observe(side, key, frame, vnetLen);
      sink.release = (frame, vnetLen) => {
        cap.released(frame);
        release(frame, vnetLen);
      };
      sink.discard = (frame, vnetLen, side, reason) => {
        cap.discarded(frame, reason);
        discard(frame, vnetLen, side, reason);
      };
      sink.holdTime = (ms, reason) => {
        cap.releaseReason(reason);
        holdTime?.(ms, reason);
      };
    }
    this.engine = new CompareEngine(
      {
        compareTimeout: config.compareTimeout,
        expiredScanCycle: config.expiredScanCycle,
        maxQueueSize: config.maxQueueSize,
        maxConnections: config.maxConnections,
        idleTimeout: config.idleTimeout,
        closedTimeout: config.closedTimeout,
        compatPassthrough: config.compatPassthrough,
      },
      sink,
      // Sized for max_connections up front: growing the table later is a pause (see the option).
      { tableConnections: config.maxConnections },
    );
    for (const rule of config.passthrough ?? []) this.engine.addPassthrough(rule, this.#now());
    const vnetHdr = config.vnetHdr;
    const pri = this.counters.endpoint("primary_in");
    const sec = this.counters.endpoint("secondary_in");
    this.#secCounters = sec;
    const priBatch = new FrameBatch();
    const secBatch = new FrameBatch();
    this.primary = new ChardevEndpoint({
      spec: config.primaryIn,
      vnetHdr,
      onChunk: this.#readClock,
      onFrame: (frame, vnetLen) => {
        pri.framesIn++;
        pri.bytesIn += frame.length;
        priBatch.add(frame, vnetLen);
      },
      // The frames of one read go to the engine in one batch call (it overlaps the cache misses of
      // their connections: docs/benchmarks.md, compare engine, "Batch calls").
      onChunkEnd: () => this.#endRead(priBatch, true),
    });
    this.secondary =
      config.secondaryIn === undefined
        ? undefined
        : new ChardevEndpoint({
            spec: config.secondaryIn,
            vnetHdr,
            onChunk: this.#readClock,
            onFrame: (frame, vnetLen) => {
              sec.framesIn++;
              sec.bytesIn += frame.length;
              secBatch.add(frame, vnetLen);
            },
            onChunkEnd: () => this.#endRead(secBatch, false),
          });
    // outdev: released frames only; anything the peer sends us is ignored. Its congestion must
    // not pause primary_in: outdev's reader is a redirector in the PVM's own QEMU, whose main
    // loop blocks in the (blocking) write of the PVM's next frame to primary_in and reads nothing
    // meanwhile, so pausing primary_in until outdev drains deadlocks both for good (docs/e2e.md).
    // The PVM's TCP is paced by its clients' acks, which come after outdev; outdev's queue is
    // capped (maxQueuedBytes, excess dropped and counted as outdev-queue-full).
    this.outdev = new ChardevEndpoint({ spec: config.outdev, vnetHdr, onFrame: () => {} });
    this.#watch("primary_in", this.primary);
    if (this.secondary !== undefined) this.#watch("secondary_in", this.secondary);
    this.#watch("outdev", this.outdev);
    if (config.notifyDev !== undefined) {
      const decoder = new NotifyDecoder({
        role: "proxy",
        onMessage: (msg) => {
          if (msg === PROXY_INIT) this.notify?.send(notifyPayload(XEN_INIT_REPLY));
          else if (msg === CHECKPOINT) this.checkpointDone();
        },
        onUnknown: (err) => this.#badInput("notify_dev", err, false),
      });
      // notify_dev never carries the vnet word here: Xen cannot send it (QEMU expects it).
      const notify = new ChardevEndpoint({
        spec: config.notifyDev,
        vnetHdr: false,
        maxFrameLength: 4096,
        onFrame: decoder.handleFrame,
      });
      this.notify = notify;
      this.#watch("notify_dev", notify);
      notify.on("connect", () => {
        if (this.#notifyOwed) {
          this.#notifyOwed = false;
          notify.send(notifyPayload(DO_CHECKPOINT));
        }
      });
    }
  }

  /** Binds/connects every socket and starts the scan timer (and the control socket). */
  static async start(config: CompareDaemonConfig, opts: CompareDaemonOptions = {}): Promise<CompareDaemon> {
    const d = new CompareDaemon(config, opts);
    try {
      // Listen everywhere first: a wait=on server blocks until its peer connects, as in QEMU.
      await Promise.all(d.#ports().map((p) => p.start()));
      if (opts.controlSocket !== null || opts.controlTcp != null) {
        d.control = await startControl(d, {
          role: d.#role,
          ...opts.controlExtra,
          ...(opts.controlSocket === undefined ? {} : { socket: opts.controlSocket }),
          tcp: opts.controlTcp ?? null,
          logger: d.#log,
        });
      }
    } catch (e) {
      await d.close();
      throw e;
    }
    d.#timer = setInterval(d.#tick, config.expiredScanCycle);
    d.#log.info(
      {
        id: config.id,
        primary_in: endpointText(config.primaryIn),
        secondary_in: config.secondaryIn ? endpointText(config.secondaryIn) : "external",
        outdev: endpointText(config.outdev),
        notify_dev: config.notifyDev && endpointText(config.notifyDev),
        compare_timeout: config.compareTimeout,
        expired_scan_cycle: config.expiredScanCycle,
        max_queue_size: config.maxQueueSize,
        max_connections: config.maxConnections,
        vnet_hdr_support: config.vnetHdr,
        passthrough: config.passthrough,
        capture: config.capture?.dir,
      },
      "compare running",
    );
    return d;
  }

  /**
   * The expiry scan (engine.tick) runs every expired_scan_cycle ms: inline at the end of an input
   * read while traffic flows (#endRead), from the interval timer only when a whole cycle passed
   * without one (each inline scan refreshes the timer). A timer callback every second was the
   * daemon's slowest routine event: it runs Node's timer machinery and code that is cold by then
   * (0.2–2 ms per call in a CPU profile of the paced benchmark), delaying whatever batch arrives
   * meanwhile. Inside a read, after its releases are written, the same scan took under 0.1 ms,
   * at most 0.3 (still code that runs once a second), with no timer machinery around it.
   */
  readonly #tick = (): void => this.#scan(this.#now());
  /** When the last expiry scan ran (daemon clock). */
  #lastScan = Number.NEGATIVE_INFINITY;
  #scanCycle: number;

  #scan(now: number): void {
    this.#lastScan = now;
    this.engine.tick(now);
  }

  /**
   * Arrival time of the input chunk being decoded: the clock is read once per socket read, not
   * once per frame (frames of one read arrived together; performance.now() per frame was ~3 % of
   * the daemon's time at 1000-byte frames).
   */
  #chunkAt = 0;
  /** Between an input read's onChunk and its onChunkEnd: releases are written at #endRead. */
  #inRead = false;
  readonly #readClock = (): void => {
    this.#chunkAt = this.#now();
    this.#inRead = true;
  };

  /** Releases queued on outdev and not yet written. */
  #flushQueued = false;
  readonly #flushOut = (): void => {
    this.#flushQueued = false;
    this.outdev.flush();
  };

  /**
   * End of an input read: its frames go to the engine in one batch call, then its releases out,
   * then the expiry scan if one is due (after the write: it must not delay the releases).
   */
  #endRead(batch: FrameBatch, primary: boolean): void {
    const now = this.#chunkAt;
    try {
      if (primary) batch.flushPrimary(this.engine, now);
      else batch.flushSecondary(this.engine, now);
    } finally {
      this.#inRead = false;
      if (this.#flushQueued) this.#flushOut();
    }
    if (now - this.#lastScan >= this.#scanCycle) {
      this.#scan(now);
      this.#timer?.refresh();
    }
  }

  #ports(): ChardevEndpoint[] {
    return [
      this.primary,
      ...(this.secondary ? [this.secondary] : []),
      this.outdev,
      ...(this.notify ? [this.notify] : []),
    ];
  }

  #watch(name: PortName, ep: ChardevEndpoint): void {
    ep.on("framing-error", (err) => this.#badInput(name, err, true));
    ep.on("io-error", (err) => this.#log.warn({ code: err.code, peer: name }, err.message));
    const dropReason = `${name}-queue-full`;
    ep.on("drop", (err) => {
      this.counters.drop(dropReason);
      const count = this.counters.dropped[dropReason] ?? 0;
      if (reportRepeat(count)) this.#log.error({ code: err.code, peer: name, count }, err.message);
    });
    ep.on("connect", (peer) => {
      this.counters.setLink(name, true);
      this.#log.info({ peer: name, address: peer, readMode: ep.readMode }, "peer connected");
      if (ep.readMode === "stream") {
        this.#log.warn(
          { peer: name },
          "this Node version lacks what reads into receive slabs need: plain socket reads, slower (docs/wire-protocol.md)",
        );
      }
      this.control?.emit("PEER_UP", { peer: name, address: peer });
    });
    ep.on("disconnect", (peer, reason) => {
      this.counters.setLink(name, false);
      if (this.#closed) return;
      this.#log.warn({ peer: name, address: peer, reason }, "peer disconnected");
      this.control?.emit("PEER_LOST", { peer: name, address: peer, reason });
    });
  }

  #badInput(source: PortName, err: ColoError, reset: boolean): void {
    this.counters.badInputSeen(err.code);
    const count = this.counters.badInput[err.code] ?? 0;
    this.#log.error(
      { code: err.code, source, count, ...err.details },
      `bad input on ${source}: ${err.message}${reset ? "; stream reset, waiting for the peer to reconnect" : "; ignored"}`,
    );
    this.control?.emit("BAD_INPUT", { code: err.code, source, desc: err.message, count });
  }

  // Releases, discards, miscompares and requests are counted by the engine (compareSnapshot);
  // the daemon keeps only what the engine cannot see: endpoints, links, framing errors, hold times.
  #onHold(ms: number): void {
    this.counters.observeHold(ms);
  }

  #onCheckpointRequest(req: CheckpointRequest): void {
    void this.capture?.request(req);
    if (this.notify !== undefined) {
      if (this.notify.connected) this.notify.send(notifyPayload(DO_CHECKPOINT));
      else this.#notifyOwed = true;
    }
    // Explanation, offset, hex windows and every engine detail (seq, side, repeat, ...).
    const data = checkpointEventData(req, this.epoch);
    this.control?.emit("CHECKPOINT_REQUEST", data);
  }

  #onBackpressure(side: Side, paused: boolean): void {
    this.#enginePaused[side] = paused;
    this.#applyPause(side);
  }

  #applyPause(side: Side): void {
    const want = this.#enginePaused[side];
    if (side === "secondary" && this.secondary === undefined) {
      this.#external?.pause(want);
      return;
    }
    const port = side === "primary" ? this.primary : this.secondary;
    if (port === undefined) return;
    if (want && !port.paused) port.pause();
    else if (!want && port.paused) port.resume();
  }

  // --- ControlTarget ------------------------------------------------------------------------------

  /** COLO_CHECKPOINT on notify_dev, or `checkpoint-done` on the control socket. */
  checkpointDone(): CheckpointDoneResult {
    const before = this.#releasedTotal();
    const droppedBefore = this.#droppedTotal();
    this.engine.checkpointDone(this.#now());
    this.epoch++;
    this.counters.checkpointDone(Date.now());
    const result = {
      epoch: this.epoch,
      released: this.#releasedTotal() - before,
      dropped: this.#droppedTotal() - droppedBefore,
    };
    this.#external?.checkpointDone?.(this.epoch);
    this.control?.emit("CHECKPOINT_DONE", result);
    return result;
  }

  #releasedTotal(): number {
    return this.engine.liveStats.released;
  }

  /** Secondary frames discarded (a checkpoint flush drops the secondary's queue). */
  #droppedTotal(): number {
    return this.engine.liveStats.discarded;
  }

  connections(): ConnectionInfo[] {
    return this.engine.connections(this.#now(), 10_000).map((c) => ({
      flow: c.flow,
      protocol: c.protocol,
      state: c.state,
      primaryQueued: c.primaryQueued,
      secondaryQueued: c.secondaryQueued,
      oldestHeldMs: c.primaryQueued + c.secondaryQueued > 0 ? c.oldestHeldMs : null,
      bytesCompared: c.bytesCompared,
    }));
  }

  /** Passthrough rules in the engine's grammar (docs/compare.md); it validates them. */
  passthroughAdd(rule: string): PassthroughEntry {
    const r = this.engine.addPassthrough(rule, this.#now());
    this.#log.info({ rule: r.rule, id: r.id }, "passthrough rule added");
    return r;
  }

  passthroughDel(idOrRule: number | string): string {
    const removed = this.engine.removePassthrough(idOrRule, this.#now());
    this.#log.info({ rule: removed }, "passthrough rule removed");
    return removed;
  }

  passthroughList(): PassthroughEntry[] {
    return this.engine.listPassthrough();
  }

  params(): ControlParams {
    const c = this.engine.config;
    return {
      compare_timeout: c.compareTimeout,
      expired_scan_cycle: c.expiredScanCycle,
      max_queue_size: c.maxQueueSize,
      max_connections: c.maxConnections,
      idle_timeout: c.idleTimeout,
      closed_timeout: c.closedTimeout,
    };
  }

  setParam(name: string, value: number | boolean | string): number | boolean {
    // The engine validates the name and value (COLO_ERR_COMPARE_PARAM) and returns the value set.
    const v = this.engine.setParam(name, value);
    if ((name === "expired_scan_cycle" || name === "expiredScanCycle") && this.#timer !== null) {
      this.#scanCycle = v as number;
      clearInterval(this.#timer);
      this.#timer = setInterval(this.#tick, v as number);
    }
    this.#log.info({ name, value: v }, "parameter changed");
    return v;
  }

  /** Frames of the secondary guest when no secondary_in chardev exists (the primary's link). */
  pushSecondary(frame: Buffer, vnetLen: number): void {
    this.#pushSecondaryAt(frame, vnetLen, this.#now());
  }

  #pushSecondaryAt(frame: Buffer, vnetLen: number, now: number): void {
    this.#secCounters.framesIn++;
    this.#secCounters.bytesIn += frame.length;
    this.engine.pushSecondary(frame, vnetLen, now);
  }

  get mode(): "colo" | "failover" {
    return this.#mode;
  }

  /** Release everything held and pass primary traffic straight through from now on. */
  failover(reason = "command"): void {
    if (this.#mode === "failover") return;
    this.#mode = "failover";
    this.engine.failover(this.#now());
    // Nothing may stay paused in failover (the engine lifts its own backpressure; this makes sure).
    for (const side of ["primary", "secondary"] as const) this.#onBackpressure(side, false);
    this.#log.warn({ reason }, "failover: passing everything through");
    this.#external?.failover?.(reason);
    this.control?.emit("FAILOVER", { reason });
  }

  status(): DaemonStatus {
    const ports: [string, ChardevEndpoint | undefined, EndpointConfig | undefined][] = [
      ["primary_in", this.primary, this.config.primaryIn],
      ["secondary_in", this.secondary, this.config.secondaryIn],
      ["outdev", this.outdev, this.config.outdev],
      ["notify_dev", this.notify, this.config.notifyDev],
    ];
    const peers: PeerStatus[] = [];
    for (const [name, port, ep] of ports) {
      if (port === undefined || ep === undefined) continue;
      peers.push({ name, state: port.connected ? "up" : "down", address: endpointText(ep) });
    }
    peers.push(...(this.#external?.peers?.() ?? []));
    return { role: this.#role, mode: this.#mode, peers, checkpointEpoch: this.epoch };
  }

  stats(): StatsSnapshot {
    for (const [name, ep] of [
      ["primary_in", this.primary],
      ["secondary_in", this.secondary],
      ["outdev", this.outdev],
      ["notify_dev", this.notify],
    ] as const) {
      if (ep === undefined) continue;
      const c = ep.counters;
      const e = this.counters.endpoint(name);
      e.framesOut = c.framesOut;
      e.bytesOut = c.bytesOut;
    }
    const own = this.counters.snapshot();
    const snap = compareSnapshot(this.engine.liveStats, {
      endpoints: own.endpoints,
      links: own.links,
      badInput: own.badInput,
      dropped: own.dropped,
      holdTime: this.counters.holdTime,
      checkpointInterval: this.counters.checkpointInterval,
    });
    const cap = this.capture?.stats;
    if (cap !== undefined) {
      // --capture: files written and miscompares not captured (caps), for ctl stats and /metrics.
      snap.counters = {
        ...snap.counters,
        capture_files_written: cap.written,
        capture_bytes_written: cap.bytesWritten,
        capture_skipped_rate: cap.skippedRate,
        capture_skipped_bytes: cap.skippedBytes,
        capture_errors: cap.errors,
        capture_rings_evicted: cap.ringsEvicted,
      };
    }
    return snap;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    await this.control?.close();
    for (const p of this.#ports()) await p.close();
  }
}

export function endpointText(ep: EndpointConfig): string {
  const where =
    ep.transport === "unix"
      ? `unix:${ep.path}`
      : `${ep.host.includes(":") ? `[${ep.host}]` : ep.host}:${ep.port}`;
  return ep.server ? where : `connect:${where}`;
}
