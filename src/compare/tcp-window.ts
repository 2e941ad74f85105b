/**
 * @module TCP receive-window helpers for the compare engine's window clamp: the window-scale
 * option of a SYN, and lowering a released segment's window in place with an RFC 1624
 * checksum update. Pure functions over a frame and the offsets parseFrame() found.
 */
import { checksumUpdate16 } from "../packet/checksum.ts";

/** virtio_net_hdr flags bit: the L4 checksum is partial (the host completes it). */
const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
/** RFC 7323: shifts above 14 are treated as 14. */
const MAX_WSCALE = 14;

/**
 * Window-scale shift offered in the options of the TCP header at `tcp` (a SYN or SYN-ACK), or 0
 * when absent (no scaling). A malformed option list stops the walk.
 */
export function synWindowScale(b: Uint8Array, tcp: number, hdrLen: number): number {
  const end = tcp + hdrLen;
  let i = tcp + 20;
  while (i < end) {
    const kind = b[i]!;
    if (kind === 0) return 0;
    if (kind === 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) return 0;
    const len = b[i + 1]!;
    if (len < 2 || i + len > end) return 0;
    if (kind === 3 && len === 3) return Math.min(b[i + 2]!, MAX_WSCALE);
    i += len;
  }
  return 0;
}

/** The 16-bit window field of the TCP header at `tcp`. */
export function tcpWindow(b: Uint8Array, tcp: number): number {
  return (b[tcp + 14]! << 8) | b[tcp + 15]!;
}

/**
 * Writes `win` into the window field and patches the TCP checksum, unless the frame's vnet header
 * says the checksum is partial (then the host sums the header itself and the field must stay).
 */
export function setTcpWindow(b: Uint8Array, vnetLen: number, tcp: number, win: number): void {
  const old = tcpWindow(b, tcp);
  if (old === win) return;
  b[tcp + 14] = win >>> 8;
  b[tcp + 15] = win;
  if (vnetLen > 0 && (b[0]! & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) return;
  const c = tcp + 16;
  const upd = checksumUpdate16((b[c]! << 8) | b[c + 1]!, old, win);
  b[c] = upd >>> 8;
  b[c + 1] = upd;
}
