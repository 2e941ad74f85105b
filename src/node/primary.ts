/**
 * @module `colo-proxy primary`: the primary host's half of the proxy pair.
 *
 * It is the compare daemon (src/node/compare-daemon.ts: PVM output on primary_in, releases on
 * outdev, notify_dev / control socket for checkpoints) plus the client side:
 *
 *   client frames (filter-mirror copies, or a redirector's consumed frames) on mirror_in
 *     ├─> guest_in (only when the frames were redirected rather than mirrored: inject into PVM)
 *     └─> the secondary: over our link (FRAME ClientToGuest), or, in QEMU's canonical topology,
 *         to secondary_out, where a QEMU secondary's filter-redirector (red0) reads them
 *   SVM output: from the link (FRAME GuestOutput) or from secondary_in (QEMU's red1) → compare
 *
 * Checkpoint done → the link's epoch is bumped, so SVM output produced before the checkpoint is
 * discarded and the secondary resets its rewriter. Failover (operator command, or the link lost
 * after it had been up, unless auto-failover is off) → everything held is released and traffic
 * passes straight through; the secondary is told to stand down.
 */
import type { ColoError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { ChardevEndpoint } from "../wire/chardev.ts";
import { CompareDaemon, type CompareDaemonOptions, endpointText } from "./compare-daemon.ts";
import type { CompareDaemonConfig, EndpointConfig } from "./config.ts";
import { Link, type LinkAddress, type LinkTlsOptions } from "./link.ts";
import { Channel } from "./link-protocol.ts";

export interface LinkConfig {
  addr: LinkAddress;
  secret: Buffer;
  tls?: LinkTlsOptions;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
}

export interface PrimaryConfig {
  /** secondaryIn is set only in QEMU-secondary mode (no link). */
  compare: CompareDaemonConfig;
  mirrorIn: EndpointConfig;
  guestIn: EndpointConfig | undefined;
  /** QEMU-secondary mode: where the QEMU secondary's red0 picks up client frames. */
  secondaryOut: EndpointConfig | undefined;
  link: LinkConfig | undefined;
  /** Fail over when an established link is lost (default true). */
  autoFailover: boolean;
}

export type PrimaryOptions = Omit<CompareDaemonOptions, "role" | "external">;

export class PrimaryDaemon {
  readonly config: PrimaryConfig;
  readonly compare: CompareDaemon;
  readonly mirrorIn: ChardevEndpoint;
  readonly guestIn: ChardevEndpoint | undefined;
  readonly secondaryOut: ChardevEndpoint | undefined;
  readonly link: Link | undefined;
  /** Client frames not sent to the secondary because it was unreachable or we failed over. */
  readonly counters = { clientFrames: 0, toSecondary: 0, secondaryUnreachable: 0, linkUps: 0, linkDowns: 0 };
  readonly #log: Logger;
  #linkWasUp = false;
  #linkSince = Date.now();
  /** Re-evaluates whether mirror_in must stay paused (congestion of what it feeds). */
  #pauseClient: () => void = () => {};

  private constructor(config: PrimaryConfig, compare: CompareDaemon, log: Logger) {
    this.config = config;
    this.compare = compare;
    this.#log = log;
    const vnetHdr = config.compare.vnetHdr;
    const ep = this.compare.counters.endpoint("mirror_in");
    this.mirrorIn = new ChardevEndpoint({
      spec: config.mirrorIn,
      vnetHdr,
      onFrame: (frame, vnetLen) => {
        ep.framesIn++;
        ep.bytesIn += frame.length;
        this.#clientFrame(frame, vnetLen);
      },
    });
    this.guestIn =
      config.guestIn === undefined
        ? undefined
        : new ChardevEndpoint({ spec: config.guestIn, vnetHdr, onFrame: () => {} });
    this.secondaryOut =
      config.secondaryOut === undefined
        ? undefined
        : new ChardevEndpoint({ spec: config.secondaryOut, vnetHdr, onFrame: () => {} });
    for (const [name, e] of [
      ["mirror_in", this.mirrorIn],
      ["guest_in", this.guestIn],
      ["secondary_out", this.secondaryOut],
    ] as const) {
      if (e === undefined) continue;
      e.on("framing-error", (err) => this.#badInput(name, err));
      e.on("connect", (peer) => this.compare.control?.emit("PEER_UP", { peer: name, address: peer }));
      e.on("disconnect", (peer, reason) =>
        this.compare.control?.emit("PEER_LOST", { peer: name, address: peer, reason }),
      );
    }
    // The PVM must not outrun the secondary's input: a congested path to the secondary pauses
    // the client input (until failover: then nothing goes there). Never guest_in's congestion:
    // its reader is a redirector in the PVM's own QEMU, whose main loop reads nothing while its
    // blocking write of the next client frame to mirror_in waits — a deadlock (docs/e2e.md).
    const pauseClient = () => {
      const want =
        this.compare.mode !== "failover" && Boolean(this.secondaryOut?.congested || this.link?.congested);
      if (want && !this.mirrorIn.paused) this.mirrorIn.pause();
      else if (!want && this.mirrorIn.paused) this.mirrorIn.resume();
    };
    this.#pauseClient = pauseClient;
    this.secondaryOut?.on("congestion", pauseClient);
    if (config.link !== undefined) {
      const l = config.link;
      this.link = new Link({
        role: "primary",
        addr: l.addr,
        secret: l.secret,
        vnetHdr,
        heartbeatIntervalMs: l.heartbeatIntervalMs,
        heartbeatTimeoutMs: l.heartbeatTimeoutMs,
        ...(l.tls ? { tls: l.tls } : {}),
      });
      this.link.on("congestion", pauseClient);
      this.#wireLink(this.link);
    }
  }

  static async start(config: PrimaryConfig, opts: PrimaryOptions = {}): Promise<PrimaryDaemon> {
    const log = opts.logger ?? silentLogger();
    let self: PrimaryDaemon | undefined;
    const compare = await CompareDaemon.start(config.compare, {
      ...opts,
      role: "primary",
      external: {
        // Only used with the link: never pause it (heartbeats share it); the engine drops excess
        // secondary frames itself (counted) while a checkpoint is pending.
        pause: () => {},
        checkpointDone: () => self?.link?.checkpoint(),
        failover: (reason: string) => {
          if (self !== undefined) self.#standDown(reason);
        },
        peers: () => (self !== undefined ? self.#peers() : []),
      },
    });
    self = new PrimaryDaemon(config, compare, log);
    try {
      const ports = [self.secondaryOut, self.guestIn, self.mirrorIn].filter((p) => p !== undefined);
      for (const p of ports) {
        const started = p.start();
        if (p.spec.server && p.spec.wait) started.catch(() => {});
        else await started;
      }
      await self.link?.start();
    } catch (e) {
      await self.close();
      throw e;
    }
    log.info(
      {
        mirror_in: endpointText(config.mirrorIn),
        guest_in: config.guestIn && endpointText(config.guestIn),
        secondary: self.link?.describe() ?? (config.secondaryOut && endpointText(config.secondaryOut)),
      },
      "primary running",
    );
    return self;
  }

  #clientFrame(frame: Buffer, vnetLen: number): void {
    this.counters.clientFrames++;
    this.guestIn?.send(frame, vnetLen);
    if (this.compare.mode === "failover") return;
    if (this.link !== undefined) {
      if (this.link.sendFrame(Channel.ClientToGuest, frame, vnetLen)) this.counters.toSecondary++;
      else this.counters.secondaryUnreachable++;
    } else if (this.secondaryOut !== undefined) {
      this.secondaryOut.send(frame, vnetLen);
      this.counters.toSecondary++;
    }
  }

  #wireLink(link: Link): void {
    link.on("frame", (channel, frame, vnetLen) => {
      if (channel !== Channel.GuestOutput || this.compare.mode === "failover") return;
      this.compare.pushSecondary(frame, vnetLen);
    });
    link.on("up", (peer, remote) => {
      this.#linkWasUp = true;
      this.#linkSince = Date.now();
      this.counters.linkUps++;
      this.#log.info({ remote, epoch: peer.epoch }, "secondary link up");
      this.compare.control?.emit("PEER_UP", { peer: "secondary", address: remote });
    });
    link.on("down", (err) => {
      this.#linkSince = Date.now();
      this.counters.linkDowns++;
      this.#log.warn({ code: err.code }, `secondary link down: ${err.message}`);
      this.compare.control?.emit("PEER_LOST", { peer: "secondary", reason: err.message });
      if (this.config.autoFailover && this.#linkWasUp)
        this.compare.failover(`secondary lost: ${err.message}`);
    });
    link.on("link-error", (err) => this.#badInput("link", err));
    link.on("peerFailover", (reason) => {
      // The secondary never tells the primary to stand down; log it for the operator.
      this.#log.warn({ reason }, "secondary announced a failover");
    });
  }

  /** After failover the primary runs alone: tell the secondary to stand down and stop the link. */
  #standDown(reason: string): void {
    this.link?.failover(`primary continues alone (${reason})`);
    this.#pauseClient();
  }

  #badInput(source: string, err: ColoError): void {
    this.compare.counters.badInputSeen(err.code);
    const count = this.compare.counters.badInput[err.code] ?? 0;
    this.#log.error({ code: err.code, source, count }, `bad input on ${source}: ${err.message}`);
    this.compare.control?.emit("BAD_INPUT", { code: err.code, source, desc: err.message, count });
  }

  #peers() {
    const out: { name: string; state: "up" | "down"; address?: string; sinceMs?: number }[] = [];
    if (this.link !== undefined) {
      const remote = this.link.remote;
      out.push({
        name: "secondary",
        state: this.link.up ? "up" : "down",
        sinceMs: this.#linkSince,
        ...(remote !== null ? { address: remote } : {}),
      });
    }
    for (const [name, e] of [
      ["mirror_in", this.mirrorIn],
      ["guest_in", this.guestIn],
      ["secondary_out", this.secondaryOut],
    ] as const) {
      if (e !== undefined)
        out.push({ name, state: e.connected ? "up" : "down", address: endpointText(e.spec) });
    }
    return out;
  }

  async close(): Promise<void> {
    await this.link?.close();
    for (const p of [this.mirrorIn, this.guestIn, this.secondaryOut]) await p?.close();
    await this.compare.close();
  }
}
