/**
 * @module Xen notify_dev channel (libxl's userspace COLO proxy ↔ colo-compare). Each message is one
 * chardev frame (u32 BE length + ASCII text, no NUL). Messages, matched by exact length and bytes:
 *
 * | direction   | text                        | meaning                                   |
 * |-------------|-----------------------------|-------------------------------------------|
 * | Xen → proxy | `COLO_USERSPACE_PROXY_INIT` | handshake; answer `COLO_COMPARE_GET_XEN_INIT` |
 * | Xen → proxy | `COLO_CHECKPOINT`           | a checkpoint completed: flush all queues  |
 * | proxy → Xen | `DO_CHECKPOINT`             | miscompare / timeout: please checkpoint   |
 * | proxy → Xen | `COLO_COMPARE_GET_XEN_INIT` | handshake answer                          |
 *
 * Anything else is counted as COLO_ERR_NOTIFY_UNKNOWN and ignored, like QEMU's "unsupported
 * instruction". Deliberate difference: QEMU decodes notify input with the colo-compare object's
 * vnet_hdr_support flag, so with vnet on it expects a V word Xen never sends (the channel breaks).
 * We never expect a V word on notify_dev unless `vnetHdr` is set explicitly for compatibility.
 */
import { FramingError } from "../errors.ts";
import { FrameDecoder, type FrameHandler } from "./framing.ts";

export const PROXY_INIT = "COLO_USERSPACE_PROXY_INIT";
export const XEN_INIT_REPLY = "COLO_COMPARE_GET_XEN_INIT";
export const CHECKPOINT = "COLO_CHECKPOINT";
export const DO_CHECKPOINT = "DO_CHECKPOINT";

export type NotifyMessage =
  | typeof PROXY_INIT
  | typeof XEN_INIT_REPLY
  | typeof CHECKPOINT
  | typeof DO_CHECKPOINT;

/** Which end of the channel we are: decides which messages are valid input. */
export type NotifyRole = "proxy" | "xen";

const ALL: readonly NotifyMessage[] = [PROXY_INIT, XEN_INIT_REPLY, CHECKPOINT, DO_CHECKPOINT];
const PAYLOADS: ReadonlyMap<NotifyMessage, Buffer> = new Map(ALL.map((m) => [m, Buffer.from(m, "latin1")]));
const INPUT: Readonly<Record<NotifyRole, readonly NotifyMessage[]>> = {
  proxy: [PROXY_INIT, CHECKPOINT],
  xen: [XEN_INIT_REPLY, DO_CHECKPOINT],
};

/** Largest notify frame we accept; real messages are ≤ 25 bytes, so anything big is garbage. */
export const DEFAULT_NOTIFY_MAX_FRAME = 4096;

/** The frame payload (no length prefix) of a message, e.g. for ChardevEndpoint.send(). */
export function notifyPayload(msg: NotifyMessage): Buffer {
  return PAYLOADS.get(msg)!;
}

/** A complete notify_dev frame (length prefix + text), ready to write to a socket. */
export function encodeNotify(msg: NotifyMessage): Buffer {
  const p = PAYLOADS.get(msg)!;
  const out = Buffer.allocUnsafe(4 + p.length);
  out.writeUInt32BE(p.length, 0);
  p.copy(out, 4);
  return out;
}

/** The message a payload spells exactly, or null. */
export function parseNotify(payload: Uint8Array): NotifyMessage | null {
  for (const m of ALL) {
    const p = PAYLOADS.get(m)!;
    if (p.length === payload.length && p.equals(payload)) return m;
  }
  return null;
}

/** The answer proxy-side code sends to a message, if any (INIT → GET_XEN_INIT). */
export function notifyReply(msg: NotifyMessage): NotifyMessage | null {
  return msg === PROXY_INIT ? XEN_INIT_REPLY : null;
}

export interface NotifyDecoderOptions {
  /** Our end of the channel. Default "proxy" (accepts INIT and COLO_CHECKPOINT). */
  role?: NotifyRole;
  /** Called for every valid message, in order. */
  onMessage: (msg: NotifyMessage) => void;
  /** Called for every frame that is not a valid message for our role (already counted). */
  onUnknown?: (err: FramingError) => void;
  /** Largest frame accepted before the stream is declared broken. Default 4096. */
  maxFrameLength?: number;
  /** Compatibility only: expect QEMU's V word on notify input (QEMU with vnet_hdr_support=on). */
  vnetHdr?: boolean;
}

/**
 * Notify message decoder. Use `push(chunk)` on a raw stream, or `handleFrame` as the frame handler
 * of a ChardevEndpoint (whose own decoder then does the framing). Framing faults (bad lengths)
 * throw FramingError from push(), exactly as FrameDecoder does.
 */
export class NotifyDecoder {
  readonly role: NotifyRole;
  /** Valid messages and ignored (unknown or wrong-direction) frames seen. */
  messages = 0;
  unknown = 0;

  readonly #accept: readonly NotifyMessage[];
  readonly #onMessage: (msg: NotifyMessage) => void;
  readonly #onUnknown: ((err: FramingError) => void) | undefined;
  readonly #decoder: FrameDecoder;

  /** Bound frame handler, so it can be passed around without a closure per call. */
  readonly handleFrame: FrameHandler = (frame, vnetLen) => {
    const payload = vnetLen === 0 ? frame : frame.subarray(vnetLen);
    const msg = parseNotify(payload);
    if (msg !== null && this.#accept.includes(msg)) {
      this.messages++;
      this.#onMessage(msg);
      return;
    }
    this.unknown++;
    this.#onUnknown?.(
      new FramingError(
        "COLO_ERR_NOTIFY_UNKNOWN",
        `unsupported notify_dev message ${JSON.stringify(payload.subarray(0, 64).toString("latin1"))}${
          msg !== null ? ` (not valid input for the ${this.role} side)` : ""
        }`,
        { length: payload.length, role: this.role },
      ),
    );
  };

  constructor(options: NotifyDecoderOptions) {
    this.role = options.role ?? "proxy";
    this.#accept = INPUT[this.role];
    this.#onMessage = options.onMessage;
    this.#onUnknown = options.onUnknown;
    this.#decoder = new FrameDecoder({
      vnetHdr: options.vnetHdr ?? false,
      maxFrameLength: options.maxFrameLength ?? DEFAULT_NOTIFY_MAX_FRAME,
    });
  }

  /** Feed raw stream bytes. Throws FramingError on a bad length; then reset() before reuse. */
  push(chunk: Buffer): void {
    this.#decoder.push(chunk, this.handleFrame);
  }

  reset(): void {
    this.#decoder.reset();
  }
}
