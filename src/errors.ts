/**
 * @module Every error colo-proxy reports, in one place, each with a stable `code`.
 *
 * Codes are part of the public interface: they appear in logs, control-socket events
 * (`BAD_INPUT`), metrics labels and CLI exit messages, so they never change meaning once
 * released. Add new codes; do not rename old ones. Each area of the code keeps its codes
 * in its own section below so that parallel work merges cleanly.
 */

export const codes = {
  // --- general ---------------------------------------------------------------------------
  COLO_ERR_INTERNAL: "internal error",
  COLO_ERR_NOT_IMPLEMENTED: "not implemented",

  // --- config / CLI ----------------------------------------------------------------------
  COLO_ERR_CONFIG: "invalid configuration",
  COLO_ERR_USAGE: "invalid command-line usage",

  // --- wire/framing (QEMU chardev stream) ------------------------------------------------
  COLO_ERR_FRAME_EMPTY: "frame length is zero",
  COLO_ERR_FRAME_TOO_LARGE: "frame length exceeds the configured maximum",
  COLO_ERR_VNET_HDR_TOO_LARGE: "vnet header length exceeds the frame length",
  COLO_ERR_CHARDEV_QUEUE_FULL: "chardev output queue is full; frame dropped",
  COLO_ERR_CHARDEV_SPEC: "invalid -chardev socket specification",
  COLO_ERR_CHARDEV_IO: "chardev socket I/O error",

  // --- wire/notify (Xen notify_dev) -------------------------------------------------------
  COLO_ERR_NOTIFY_UNKNOWN: "unsupported notify_dev message",

  // --- wire/pcap -------------------------------------------------------------------------
  COLO_ERR_PCAP_BAD_MAGIC: "not a pcap or pcapng file",
  COLO_ERR_PCAP_TRUNCATED: "capture file is truncated",
  COLO_ERR_PCAP_BAD_RECORD: "malformed capture record",
  COLO_ERR_PCAP_LINKTYPE: "unsupported capture link type",
  COLO_ERR_PCAP_VERSION: "unsupported capture file version",
  COLO_ERR_PCAP_UNWRITABLE: "packet cannot be represented in the capture format",

  // --- packet (malformed-frame reasons; returned as codes, never thrown on the hot path) --
  COLO_ERR_PKT_TRUNCATED: "frame is shorter than its headers",
  COLO_ERR_PKT_BAD_LENGTH: "a length field disagrees with the frame",
  COLO_ERR_PKT_BAD_HEADER: "a header field has an impossible value",
  COLO_ERR_PKT_EXT_CHAIN: "IPv6 extension header chain loops or overruns",

  // --- compare / conntrack ---------------------------------------------------------------
  COLO_ERR_COMPARE_RULE: "invalid passthrough rule",
  COLO_ERR_COMPARE_RULE_NOT_FOUND: "no such passthrough rule",
  COLO_ERR_COMPARE_PARAM: "invalid compare parameter",
  COLO_ERR_COMPARE_INVARIANT: "compare engine accounting invariant violated",

  // --- rewrite ---------------------------------------------------------------------------
  COLO_ERR_REWRITE_OBJECT: "invalid filter-rewriter object specification",
  COLO_ERR_REWRITE_UNEXPECTED_FRAME: "frame received on a rewriter output chardev (ignored)",

  // --- node (primary/secondary link) ------------------------------------------------------
  COLO_ERR_LINK_PROTOCOL: "malformed or unexpected message on the primary/secondary link",
  COLO_ERR_LINK_VERSION: "link protocol version mismatch",
  COLO_ERR_LINK_ROLE: "link peer has the wrong role",
  COLO_ERR_LINK_SETTINGS: "link peer's settings differ from ours",
  COLO_ERR_LINK_AUTH: "link peer failed authentication",
  COLO_ERR_LINK_TIMEOUT: "link peer lost (no heartbeat)",
  COLO_ERR_LINK_PEER_ERROR: "link peer reported an error and closed",
  COLO_ERR_LINK_CLOSED: "link closed",
  COLO_ERR_LINK_LISTEN: "cannot listen on the link address",

  // --- node/compare daemon (colo-proxy compare) --------------------------------------------
  COLO_ERR_CONFIG_SYNTAX: "malformed QEMU-style option string",
  COLO_ERR_CONFIG_VALUE: "invalid configuration value",
  COLO_ERR_CONFIG_MISSING: "required configuration missing",
  COLO_ERR_CONFIG_REF: "reference to an undefined chardev",
  COLO_ERR_CONFIG_FILE: "unreadable or invalid config file",
  COLO_ERR_CONFIG_UNSUPPORTED: "unsupported chardev, object or option",

  // --- node/guest (QEMU control, checkpoint executor) --------------------------------------
  COLO_ERR_QMP: "QMP command failed or QMP connection lost",
  COLO_ERR_QEMU_EXITED: "a QEMU process exited unexpectedly",
  COLO_ERR_GUEST_TIMEOUT: "a guest did not reach the expected state in time",
  COLO_ERR_CHECKPOINT_FAILED: "checkpoint (migration of the primary's state to a new secondary) failed",

  // --- control (control socket, metrics, dashboard) ---------------------------------------
  COLO_ERR_CTL_BAD_JSON: "control request is not valid JSON",
  COLO_ERR_CTL_BAD_REQUEST: "control request is not an object with a string 'execute'",
  COLO_ERR_CTL_LINE_TOO_LONG: "control request line exceeds the maximum length",
  COLO_ERR_CTL_UNKNOWN_COMMAND: "unknown control command",
  COLO_ERR_CTL_BAD_ARGS: "invalid arguments for control command",
  COLO_ERR_CTL_COMMAND_FAILED: "control command failed",
  COLO_ERR_CTL_NEGOTIATION: "capabilities negotiation error",
  COLO_ERR_CTL_SLOW_CLIENT: "control client output buffer overflow; client dropped",
  COLO_ERR_CTL_TOO_MANY_CLIENTS: "too many control clients",
  COLO_ERR_CTL_SOCKET_IN_USE: "control socket is in use by a running daemon",
  COLO_ERR_CTL_CONNECT: "cannot connect to the control socket",
  COLO_ERR_CTL_PROTOCOL: "unexpected message from the control socket",
  COLO_ERR_CTL_TIMEOUT: "no reply from the control socket in time",
  COLO_ERR_CTL_ON_CHECKPOINT: "on-checkpoint command failed",
  COLO_ERR_CTL_HTTP: "bad HTTP request to the metrics or dashboard endpoint",
} as const;

export type ErrorCode = keyof typeof codes;

/** Base class of every error colo-proxy raises; `code` is stable, `message` is for humans. */
export class ColoError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: ErrorCode, message?: string, details?: Record<string, unknown>, options?: ErrorOptions) {
    super(message ?? codes[code], options);
    this.name = "ColoError";
    this.code = code;
    this.details = details;
  }
}

/** Bad bytes on a chardev/link stream: the caller decides whether to reset or drop the peer. */
export class FramingError extends ColoError {
  constructor(code: ErrorCode, message?: string, details?: Record<string, unknown>) {
    super(code, message, details);
    this.name = "FramingError";
  }
}

/** Invalid configuration or command line. */
export class ConfigError extends ColoError {
  constructor(message: string, details?: Record<string, unknown>, code: ErrorCode = "COLO_ERR_CONFIG") {
    super(code, message, details);
    this.name = "ConfigError";
  }
}

/** Malformed capture file. */
export class PcapError extends ColoError {
  constructor(code: ErrorCode, message?: string, details?: Record<string, unknown>) {
    super(code, message, details);
    this.name = "PcapError";
  }
}

export function isColoError(e: unknown): e is ColoError {
  return e instanceof ColoError;
}
