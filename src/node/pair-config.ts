/**
 * @module Configuration shared by `colo-proxy primary` and `colo-proxy secondary`: the link
 * (address, shared secret, TLS, heartbeats), endpoint references (a `--chardev` id or a friendly
 * address), and the `colo-primary` / `colo-secondary` objects in QEMU option syntax.
 */
import { readFileSync } from "node:fs";
import { ConfigError, type ErrorCode } from "../errors.ts";
import { type EndpointConfig, parseAddress, parseChardev } from "./config.ts";
import { parsePositiveU32, parseQemuBool, parseQemuOpts } from "./config-qemu.ts";
import type { LinkAddress } from "./link.ts";
import type { LinkConfig } from "./primary.ts";

const err = (code: ErrorCode, message: string, details?: Record<string, unknown>) =>
  new ConfigError(message, details, code);

/** `HOST:PORT`, `[V6]:PORT`, `PORT` or `unix:PATH`. */
export function parseLinkAddr(text: string): LinkAddress {
  if (text.startsWith("unix:")) {
    const path = text.slice(5);
    if (path === "") throw err("COLO_ERR_CONFIG_VALUE", `--addr '${text}': empty UNIX socket path`);
    return { path };
  }
  const m = /^(?:\[([^\]]+)\]:|([^:[\]]*):)?(\d+)$/.exec(text);
  const port = m ? Number(m[3]) : Number.NaN;
  if (m === null || !(port >= 1 && port <= 65535)) {
    throw err("COLO_ERR_CONFIG_VALUE", `--addr '${text}': expected HOST:PORT, [IPV6]:PORT or unix:PATH`, {
      addr: text,
    });
  }
  return { host: m[1] ?? (m[2] || "127.0.0.1"), port };
}

export const MIN_SECRET_BYTES = 8;

/** The shared secret from a file (trailing newline ignored) or the COLO_SECRET variable. */
export function loadSecret(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Buffer {
  let secret: Buffer;
  if (file !== undefined) {
    try {
      secret = readFileSync(file);
    } catch (e) {
      throw err("COLO_ERR_CONFIG_FILE", `cannot read --secret-file ${file}: ${(e as Error).message}`);
    }
    let end = secret.length;
    while (end > 0 && (secret[end - 1] === 0x0a || secret[end - 1] === 0x0d)) end--;
    secret = secret.subarray(0, end);
  } else if (env.COLO_SECRET !== undefined && env.COLO_SECRET !== "") {
    secret = Buffer.from(env.COLO_SECRET, "utf8");
  } else {
    throw err(
      "COLO_ERR_CONFIG_MISSING",
      "the link needs a shared secret: --secret-file FILE or the COLO_SECRET environment variable",
    );
  }
  if (secret.length < MIN_SECRET_BYTES) {
    throw err("COLO_ERR_CONFIG_VALUE", `the shared secret must be at least ${MIN_SECRET_BYTES} bytes`);
  }
  return secret;
}

/** Link flags as gathered from the command line or an object. */
export interface LinkFlags {
  addr?: string;
  secretFile?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
}

export const LINK_VALUE_FLAGS = [
  "addr",
  "secret-file",
  "tls-ca",
  "tls-cert",
  "tls-key",
  "tls-servername",
  "heartbeat-interval",
  "heartbeat-timeout",
] as const;

/** Stores one link flag; returns false when `name` is not a link flag. */
export function setLinkFlag(f: LinkFlags, name: string, value: string): boolean {
  switch (name) {
    case "addr":
      f.addr = value;
      return true;
    case "secret-file":
      f.secretFile = value;
      return true;
    case "tls-ca":
      f.tlsCa = value;
      return true;
    case "tls-cert":
      f.tlsCert = value;
      return true;
    case "tls-key":
      f.tlsKey = value;
      return true;
    case "tls-servername":
      f.tlsServerName = value;
      return true;
    case "heartbeat-interval":
      f.heartbeatIntervalMs = parsePositiveU32(value, "heartbeat-interval", "--heartbeat-interval");
      return true;
    case "heartbeat-timeout":
      f.heartbeatTimeoutMs = parsePositiveU32(value, "heartbeat-timeout", "--heartbeat-timeout");
      return true;
    default:
      return false;
  }
}

export const LINK_HELP = `Link between primary and secondary (one TCP connection, both directions):
  --addr HOST:PORT          the secondary listens here, the primary connects (also [V6]:PORT, unix:PATH)
  --secret-file FILE        shared secret (or env COLO_SECRET); both ends must hold the same bytes
                            (at least ${MIN_SECRET_BYTES}); the peer proves it with an HMAC challenge
  --tls-cert FILE --tls-key FILE   secondary: serve the link over TLS
  --tls-ca FILE             pin the CA (primary: verify the secondary; secondary: optional)
  --tls-servername NAME     primary: check the secondary certificate's name (default: CA only)
  --heartbeat-interval MS   default 200
  --heartbeat-timeout MS    peer declared lost after this long without a message (default 1500)
  --no-auto-failover        do not fail over when the link is lost; wait for 'ctl failover'
  Both ends refuse a peer with another protocol version, the same role, another vnet_hdr_support
  or max frame size, or the wrong secret, with a COLO_ERR_LINK_* code in the log.`;

export function resolveLink(f: LinkFlags, role: "primary" | "secondary"): LinkConfig | undefined {
  if (f.addr === undefined) {
    if (f.secretFile !== undefined || f.tlsCert !== undefined || f.tlsCa !== undefined) {
      throw err("COLO_ERR_CONFIG_MISSING", "link options given without --addr HOST:PORT");
    }
    return undefined;
  }
  const interval = f.heartbeatIntervalMs ?? 200;
  const timeout = f.heartbeatTimeoutMs ?? 1500;
  if (timeout <= interval) {
    throw err(
      "COLO_ERR_CONFIG_VALUE",
      `--heartbeat-timeout (${timeout}) must exceed --heartbeat-interval (${interval})`,
    );
  }
  const cfg: LinkConfig = {
    addr: parseLinkAddr(f.addr),
    secret: loadSecret(f.secretFile),
    heartbeatIntervalMs: interval,
    heartbeatTimeoutMs: timeout,
  };
  const anyTls = f.tlsCa ?? f.tlsCert ?? f.tlsKey ?? f.tlsServerName;
  if (anyTls !== undefined) {
    if (role === "secondary" && (f.tlsCert === undefined || f.tlsKey === undefined)) {
      throw err("COLO_ERR_CONFIG_MISSING", "a TLS secondary needs --tls-cert and --tls-key");
    }
    if (role === "primary" && f.tlsCa === undefined) {
      throw err("COLO_ERR_CONFIG_MISSING", "a TLS primary needs --tls-ca to verify the secondary");
    }
    cfg.tls = {
      ...(f.tlsCa ? { caFile: f.tlsCa } : {}),
      ...(f.tlsCert ? { certFile: f.tlsCert } : {}),
      ...(f.tlsKey ? { keyFile: f.tlsKey } : {}),
      ...(f.tlsServerName ? { serverName: f.tlsServerName } : {}),
    };
  }
  return cfg;
}

/** Resolves `--chardev` strings to a map by id (duplicate ids are an error). */
export function chardevMap(texts: readonly string[]): Map<string, EndpointConfig> {
  const m = new Map<string, EndpointConfig>();
  for (const t of texts) {
    const c = parseChardev(t);
    if (m.has(c.id))
      throw err("COLO_ERR_CONFIG_VALUE", `--chardev: id '${c.id}' defined twice`, { id: c.id });
    m.set(c.id, c);
  }
  return m;
}

/** A chardev id defined with --chardev, or a friendly address (HOST:PORT, unix:PATH, connect:...). */
export function resolveEndpoint(
  key: string,
  value: string | undefined,
  chardevs: ReadonlyMap<string, EndpointConfig>,
): EndpointConfig | undefined {
  if (value === undefined) return undefined;
  const c = chardevs.get(value);
  if (c !== undefined) return c;
  if (/[:/]/.test(value)) return parseAddress(key, value);
  throw err("COLO_ERR_CONFIG_REF", `${key}=${value}: no --chardev with id '${value}'`, { key, id: value });
}

/** `--object colo-primary,...` / `colo-secondary,...`: key → value, unknown keys refused. */
export function parsePairObject(
  text: string,
  type: "colo-primary" | "colo-secondary",
  keys: readonly string[],
): Map<string, string> | undefined {
  const q = parseQemuOpts(text, "--object");
  if (q.type !== type) return undefined;
  const allowed = new Set(["id", ...keys]);
  for (const k of q.opts.keys()) {
    if (!allowed.has(k))
      throw err("COLO_ERR_CONFIG_UNSUPPORTED", `--object ${type}: unknown property '${k}'`, { key: k });
  }
  return q.opts;
}

export function boolOpt(v: string | undefined, key: string, what: string): boolean | undefined {
  return v === undefined ? undefined : parseQemuBool(v, key, what);
}
