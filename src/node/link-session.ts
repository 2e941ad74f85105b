/**
 * @module Sans-IO state machine of one primary↔secondary link connection: handshake (versioned
 * HELLO, HMAC challenge on a shared secret, settings check), heartbeats, checkpoint epochs.
 *
 * No sockets or timers here: the shell feeds decoded message bodies to `receive()`, calls
 * `tick(now)` periodically and writes whatever the session hands to `sink.write()`.
 *
 *   AwaitHello --HELLO ok--> AwaitAuth --AUTH ok--> Established --error/timeout--> Closed
 *        \________________________ any error ____________________________/
 *
 * Epochs: the primary owns the epoch and bumps it on every finished checkpoint (CHECKPOINT
 * message). The secondary stamps the guest output it sends with the epoch it last heard, so the
 * primary can discard output produced before the SVM was re-synchronised.
 */
import { createHmac, randomBytes as cryptoRandomBytes, timingSafeEqual } from "node:crypto";
import { ColoError, type ErrorCode } from "../errors.ts";
import {
  type Channel,
  decodeMessage,
  encodeFrameHeader,
  encodeMessage,
  FLAG_VNET_HDR,
  type Hello,
  LINK_MAGIC,
  LINK_VERSION,
  MsgType,
  NONCE_LEN,
  Role,
  roleName,
} from "./link-protocol.ts";

export interface LinkSessionConfig {
  role: Role;
  /** Shared secret; both ends must hold the same bytes. */
  secret: Buffer;
  vnetHdr: boolean;
  maxFrame: number;
  heartbeatIntervalMs: number;
  /** The peer is declared lost after this long without any message from it. */
  heartbeatTimeoutMs: number;
  handshakeTimeoutMs: number;
  /** Initial epoch (primary); the secondary adopts the primary's. */
  epoch?: number;
  /** Injected for deterministic tests. */
  randomBytes?: (n: number) => Buffer;
}

export interface LinkSessionSink {
  /** Bytes to send, in order; write them as one batch. */
  write(chunks: Buffer[]): void;
  established(peer: Hello): void;
  /** A FRAME from the peer (primary: guest output not from a stale epoch; secondary: client frames). */
  frame(channel: Channel, frame: Buffer, vnetLen: number, epoch: number): void;
  /** Secondary: the primary finished a checkpoint; `epoch` is the new epoch. */
  checkpoint(epoch: number): void;
  /** The peer announced it is failing over / leaving on purpose. */
  peerFailover(reason: string): void;
  /** The session is over; the shell must close the transport. Called at most once. */
  closed(err: ColoError): void;
}

export const enum LinkState {
  AwaitHello = "await-hello",
  AwaitAuth = "await-auth",
  Established = "established",
  Closed = "closed",
}

export interface LinkSessionStats {
  framesIn: number;
  framesOut: number;
  bytesIn: number;
  bytesOut: number;
  staleFrames: number;
  heartbeatsIn: number;
  heartbeatsOut: number;
}

function mac(secret: Buffer, nonce: Buffer, role: Role): Buffer {
  return createHmac("sha256", secret).update(nonce).update(Buffer.of(role)).update(LINK_MAGIC).digest();
}

export class LinkSession {
  readonly #cfg: LinkSessionConfig;
  readonly #sink: LinkSessionSink;
  readonly #nonce: Buffer;
  #state: LinkState = LinkState.AwaitHello;
  #peer: Hello | undefined;
  #peerAuthed = false;
  #epoch: number;
  #startedAt = 0;
  #lastRx = 0;
  #lastTx = 0;
  #hbSeq = 0;
  readonly stats: LinkSessionStats = {
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    staleFrames: 0,
    heartbeatsIn: 0,
    heartbeatsOut: 0,
  };

  constructor(cfg: LinkSessionConfig, sink: LinkSessionSink) {
    this.#cfg = cfg;
    this.#sink = sink;
    this.#nonce = (cfg.randomBytes ?? cryptoRandomBytes)(NONCE_LEN);
    this.#epoch = (cfg.epoch ?? 0) >>> 0;
  }

  get state(): LinkState {
    return this.#state;
  }
  get epoch(): number {
    return this.#epoch;
  }
  get peer(): Hello | undefined {
    return this.#peer;
  }

  /** Sends our HELLO; call once the transport is connected. */
  start(now: number): void {
    this.#startedAt = now;
    this.#lastRx = now;
    this.#send(
      encodeMessage({
        type: MsgType.Hello,
        version: LINK_VERSION,
        role: this.#cfg.role,
        flags: this.#cfg.vnetHdr ? FLAG_VNET_HDR : 0,
        maxFrame: this.#cfg.maxFrame,
        epoch: this.#epoch,
        nonce: this.#nonce,
      }),
      now,
    );
  }

  /** Feeds one message body (without its length prefix). Never throws. */
  receive(body: Buffer, now: number): void {
    if (this.#state === LinkState.Closed) return;
    this.#lastRx = now;
    let msg: ReturnType<typeof decodeMessage>;
    try {
      msg = decodeMessage(body);
    } catch (e) {
      this.#fail(e instanceof ColoError ? e : new ColoError("COLO_ERR_LINK_PROTOCOL", String(e)), now, true);
      return;
    }
    switch (msg.type) {
      case MsgType.Hello:
        this.#onHello(msg, now);
        return;
      case MsgType.Auth: {
        if (this.#state !== LinkState.AwaitAuth) {
          this.#unexpected("AUTH", now);
          return;
        }
        const want = mac(this.#cfg.secret, this.#nonce, this.#peer!.role);
        if (!timingSafeEqual(want, msg.mac)) {
          this.#fail(
            new ColoError("COLO_ERR_LINK_AUTH", "peer failed authentication: wrong shared secret"),
            now,
            true,
          );
          return;
        }
        this.#peerAuthed = true;
        this.#state = LinkState.Established;
        if (this.#cfg.role === Role.Secondary) this.#epoch = this.#peer!.epoch;
        this.#sink.established(this.#peer!);
        return;
      }
      case MsgType.Error:
        this.#fail(
          new ColoError("COLO_ERR_LINK_PEER_ERROR", `peer closed the link: ${msg.message} (${msg.code})`, {
            peerCode: msg.code,
          }),
          now,
          false,
        );
        return;
      default:
        break;
    }
    if (this.#state !== LinkState.Established) {
      this.#unexpected(`message type ${msg.type}`, now);
      return;
    }
    switch (msg.type) {
      case MsgType.Frame:
        this.stats.framesIn++;
        this.stats.bytesIn += msg.frame.length;
        // Guest output produced before the last checkpoint describes an SVM that no longer exists.
        if (this.#cfg.role === Role.Primary && msg.epoch !== this.#epoch) {
          this.stats.staleFrames++;
          return;
        }
        this.#sink.frame(msg.channel, msg.frame, msg.vnetLen, msg.epoch);
        return;
      case MsgType.Heartbeat:
        this.stats.heartbeatsIn++;
        return;
      case MsgType.Checkpoint:
        if (this.#cfg.role !== Role.Secondary) {
          this.#unexpected("CHECKPOINT", now);
          return;
        }
        this.#epoch = msg.epoch;
        this.#sink.checkpoint(msg.epoch);
        return;
      case MsgType.Failover:
        this.#sink.peerFailover(msg.reason);
        return;
    }
  }

  /** Heartbeats and timeouts; call every heartbeat interval or more often. */
  tick(now: number): void {
    if (this.#state === LinkState.Closed) return;
    if (this.#state !== LinkState.Established) {
      if (now - this.#startedAt > this.#cfg.handshakeTimeoutMs) {
        this.#fail(new ColoError("COLO_ERR_LINK_TIMEOUT", "link handshake timed out"), now, true);
      }
      return;
    }
    if (now - this.#lastRx > this.#cfg.heartbeatTimeoutMs) {
      this.#fail(
        new ColoError("COLO_ERR_LINK_TIMEOUT", `no message from the peer for ${now - this.#lastRx} ms`),
        now,
        false,
      );
      return;
    }
    if (now - this.#lastTx >= this.#cfg.heartbeatIntervalMs) {
      this.stats.heartbeatsOut++;
      this.#send(encodeMessage({ type: MsgType.Heartbeat, seq: this.#hbSeq++ >>> 0 }), now);
    }
  }

  /** Sends a frame (zero-copy: the frame buffer is handed to the writer as is). */
  sendFrame(channel: Channel, frame: Buffer, vnetLen: number, now: number): boolean {
    if (this.#state !== LinkState.Established) return false;
    this.stats.framesOut++;
    this.stats.bytesOut += frame.length;
    this.#lastTx = now;
    this.#sink.write([encodeFrameHeader(channel, vnetLen, this.#epoch, frame.length), frame]);
    return true;
  }

  /** Primary: a checkpoint finished; bump the epoch and tell the secondary. Returns the new epoch. */
  checkpoint(now: number): number {
    if (this.#cfg.role !== Role.Primary)
      throw new ColoError("COLO_ERR_INTERNAL", "only the primary ends checkpoints");
    this.#epoch = (this.#epoch + 1) >>> 0;
    if (this.#state === LinkState.Established) {
      this.#send(encodeMessage({ type: MsgType.Checkpoint, epoch: this.#epoch }), now);
    }
    return this.#epoch;
  }

  /** Tells the peer we are leaving on purpose (operator failover), then closes. */
  failover(reason: string, now: number): void {
    if (this.#state === LinkState.Established)
      this.#send(encodeMessage({ type: MsgType.Failover, reason }), now);
    this.#fail(new ColoError("COLO_ERR_LINK_CLOSED", `failover: ${reason}`), now, false);
  }

  /** The transport closed underneath us. */
  transportClosed(now: number): void {
    this.#fail(new ColoError("COLO_ERR_LINK_CLOSED", "link connection closed"), now, false);
  }

  #onHello(h: Hello, now: number): void {
    if (this.#state !== LinkState.AwaitHello) {
      this.#unexpected("second HELLO", now);
      return;
    }
    if (h.version !== LINK_VERSION) {
      this.#refuse(
        "COLO_ERR_LINK_VERSION",
        `peer speaks link version ${h.version}, we speak ${LINK_VERSION}`,
        now,
      );
      return;
    }
    const want = this.#cfg.role === Role.Primary ? Role.Secondary : Role.Primary;
    if (h.role !== want) {
      this.#refuse(
        "COLO_ERR_LINK_ROLE",
        `peer is ${roleName(h.role)}, expected ${roleName(want)}: both ends are configured as ${roleName(this.#cfg.role)}?`,
        now,
      );
      return;
    }
    const ourVnet = this.#cfg.vnetHdr ? FLAG_VNET_HDR : 0;
    if ((h.flags & FLAG_VNET_HDR) !== ourVnet) {
      this.#refuse(
        "COLO_ERR_LINK_SETTINGS",
        `vnet_hdr_support mismatch: peer ${h.flags & FLAG_VNET_HDR ? "on" : "off"}, ours ${ourVnet ? "on" : "off"}`,
        now,
      );
      return;
    }
    if (h.maxFrame !== this.#cfg.maxFrame) {
      this.#refuse(
        "COLO_ERR_LINK_SETTINGS",
        `max frame length mismatch: peer ${h.maxFrame}, ours ${this.#cfg.maxFrame}`,
        now,
      );
      return;
    }
    this.#peer = { ...h, nonce: Buffer.from(h.nonce) };
    this.#state = LinkState.AwaitAuth;
    this.#send(
      encodeMessage({ type: MsgType.Auth, mac: mac(this.#cfg.secret, this.#peer.nonce, this.#cfg.role) }),
      now,
    );
  }

  #unexpected(what: string, now: number): void {
    this.#fail(
      new ColoError("COLO_ERR_LINK_PROTOCOL", `unexpected ${what} in state ${this.#state}`),
      now,
      true,
    );
  }

  #refuse(code: ErrorCode, message: string, now: number): void {
    this.#fail(new ColoError(code, message), now, true);
  }

  #fail(err: ColoError, now: number, tellPeer: boolean): void {
    if (this.#state === LinkState.Closed) return;
    if (tellPeer)
      this.#send(encodeMessage({ type: MsgType.Error, code: err.code, message: err.message }), now);
    this.#state = LinkState.Closed;
    this.#sink.closed(err);
  }

  #send(buf: Buffer, now: number): void {
    this.#lastTx = now;
    this.#sink.write([buf]);
  }

  /** True once the peer has proven it holds the secret. */
  get authenticated(): boolean {
    return this.#peerAuthed;
  }
}
