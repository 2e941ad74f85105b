/**
 * @module Messages of the primary↔secondary link (our own protocol, not QEMU's).
 *
 * The link is one TCP (optionally TLS) connection carrying both directions. On the wire each
 * message is a QEMU-style frame — u32 big-endian length, then the body — so the same framing
 * decoder reads it; the body's first byte is the message type. Integers are big-endian.
 *
 *   HELLO      type u8=1 | magic "COLOLINK" | version u16 | role u8 | flags u8 | maxFrame u32 |
 *              epoch u32 | nonce[32]
 *   AUTH       type u8=2 | hmac[32]           HMAC-SHA256(secret, peer nonce | own role | "COLOLINK")
 *   FRAME      type u8=3 | channel u8 | vnetLen u16 | epoch u32 | frame bytes
 *   HEARTBEAT  type u8=4 | seq u32
 *   CHECKPOINT type u8=5 | epoch u32        primary → secondary: a checkpoint finished, new epoch
 *   FAILOVER   type u8=6 | reason (utf-8)   either side: the sender is going away on purpose
 *   ERROR      type u8=7 | code len u8 | code | message (utf-8)   then the sender closes
 */
import { ColoError } from "../errors.ts";

export const LINK_MAGIC = Buffer.from("COLOLINK", "latin1");
export const LINK_VERSION = 1;
export const NONCE_LEN = 32;
export const MAC_LEN = 32;
/** Bytes of FRAME header in front of the Ethernet frame. */
export const FRAME_HDR_LEN = 8;

export const enum MsgType {
  Hello = 1,
  Auth = 2,
  Frame = 3,
  Heartbeat = 4,
  Checkpoint = 5,
  Failover = 6,
  Error = 7,
}

export const enum Role {
  Primary = 1,
  Secondary = 2,
}

export const enum Channel {
  /** Primary → secondary: a client frame mirrored for the SVM. */
  ClientToGuest = 0,
  /** Secondary → primary: a frame the SVM sent (already rewritten). */
  GuestOutput = 1,
}

export const FLAG_VNET_HDR = 0x01;

export interface Hello {
  version: number;
  role: Role;
  flags: number;
  maxFrame: number;
  epoch: number;
  nonce: Buffer;
}

export type LinkMessage =
  | ({ type: MsgType.Hello } & Hello)
  | { type: MsgType.Auth; mac: Buffer }
  | { type: MsgType.Frame; channel: Channel; vnetLen: number; epoch: number; frame: Buffer }
  | { type: MsgType.Heartbeat; seq: number }
  | { type: MsgType.Checkpoint; epoch: number }
  | { type: MsgType.Failover; reason: string }
  | { type: MsgType.Error; code: string; message: string };

export function roleName(role: number): string {
  return role === Role.Primary ? "primary" : role === Role.Secondary ? "secondary" : `unknown(${role})`;
}

function protocolError(message: string): ColoError {
  return new ColoError("COLO_ERR_LINK_PROTOCOL", message);
}

/** Decodes one message body. Frames are views into `body` (zero-copy). Throws COLO_ERR_LINK_PROTOCOL. */
export function decodeMessage(body: Buffer): LinkMessage {
  if (body.length < 1) throw protocolError("empty link message");
  const type = body[0]!;
  switch (type) {
    case MsgType.Hello: {
      if (body.length !== 1 + 8 + 2 + 1 + 1 + 4 + 4 + NONCE_LEN) throw protocolError("bad HELLO length");
      if (!body.subarray(1, 9).equals(LINK_MAGIC))
        throw protocolError("bad HELLO magic: peer is not colo-proxy");
      return {
        type,
        version: body.readUInt16BE(9),
        role: body[11]! as Role,
        flags: body[12]!,
        maxFrame: body.readUInt32BE(13),
        epoch: body.readUInt32BE(17),
        nonce: body.subarray(21, 21 + NONCE_LEN),
      };
    }
    case MsgType.Auth:
      if (body.length !== 1 + MAC_LEN) throw protocolError("bad AUTH length");
      return { type, mac: body.subarray(1) };
    case MsgType.Frame: {
      if (body.length < FRAME_HDR_LEN) throw protocolError("bad FRAME length");
      const channel = body[1]!;
      if (channel !== Channel.ClientToGuest && channel !== Channel.GuestOutput) {
        throw protocolError(`bad FRAME channel ${channel}`);
      }
      const vnetLen = body.readUInt16BE(2);
      const frame = body.subarray(FRAME_HDR_LEN);
      if (vnetLen > frame.length) throw protocolError("FRAME vnet header longer than the frame");
      return { type, channel, vnetLen, epoch: body.readUInt32BE(4), frame };
    }
    case MsgType.Heartbeat:
      if (body.length !== 5) throw protocolError("bad HEARTBEAT length");
      return { type, seq: body.readUInt32BE(1) };
    case MsgType.Checkpoint:
      if (body.length !== 5) throw protocolError("bad CHECKPOINT length");
      return { type, epoch: body.readUInt32BE(1) };
    case MsgType.Failover:
      return { type, reason: body.toString("utf8", 1) };
    case MsgType.Error: {
      if (body.length < 2 || body.length < 2 + body[1]!) throw protocolError("bad ERROR length");
      const n = body[1]!;
      return { type, code: body.toString("latin1", 2, 2 + n), message: body.toString("utf8", 2 + n) };
    }
    default:
      throw protocolError(`unknown link message type ${type}`);
  }
}

/** Encodes a message with its u32 length prefix, ready to write. */
export function encodeMessage(msg: Exclude<LinkMessage, { type: MsgType.Frame }>): Buffer {
  let body: Buffer;
  switch (msg.type) {
    case MsgType.Hello:
      body = Buffer.alloc(1 + 8 + 2 + 1 + 1 + 4 + 4 + NONCE_LEN);
      body[0] = msg.type;
      LINK_MAGIC.copy(body, 1);
      body.writeUInt16BE(msg.version, 9);
      body[11] = msg.role;
      body[12] = msg.flags;
      body.writeUInt32BE(msg.maxFrame, 13);
      body.writeUInt32BE(msg.epoch >>> 0, 17);
      msg.nonce.copy(body, 21, 0, NONCE_LEN);
      break;
    case MsgType.Auth:
      body = Buffer.concat([Buffer.of(msg.type), msg.mac]);
      break;
    case MsgType.Heartbeat:
    case MsgType.Checkpoint:
      body = Buffer.alloc(5);
      body[0] = msg.type;
      body.writeUInt32BE((msg.type === MsgType.Heartbeat ? msg.seq : msg.epoch) >>> 0, 1);
      break;
    case MsgType.Failover:
      body = Buffer.concat([Buffer.of(msg.type), Buffer.from(msg.reason, "utf8")]);
      break;
    case MsgType.Error: {
      const code = Buffer.from(msg.code.slice(0, 255), "latin1");
      body = Buffer.concat([Buffer.of(msg.type, code.length), code, Buffer.from(msg.message, "utf8")]);
      break;
    }
  }
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/**
 * Header (length prefix + FRAME header) for a frame; the frame bytes themselves are written
 * after it unchanged, so forwarding a frame never copies it.
 */
export function encodeFrameHeader(
  channel: Channel,
  vnetLen: number,
  epoch: number,
  frameLen: number,
): Buffer {
  const h = Buffer.allocUnsafe(4 + FRAME_HDR_LEN);
  h.writeUInt32BE(FRAME_HDR_LEN + frameLen, 0);
  h[4] = MsgType.Frame;
  h[5] = channel;
  h.writeUInt16BE(vnetLen, 6);
  h.writeUInt32BE(epoch >>> 0, 8);
  return h;
}
