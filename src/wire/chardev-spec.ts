/**
 * @module Parse QEMU `-chardev` option strings of the **socket** backend, so colo-proxy endpoints
 * are configured with exactly the strings QEMU users already write, e.g.
 * `socket,id=compare0,host=127.0.0.1,port=9001,server=on,wait=off` or
 * `socket,id=red0,path=/run/colo/red0.sock,reconnect=1`.
 *
 * Only socket backends are supported (TCP and UNIX, incl. Linux abstract sockets); anything else
 * (file, pty, udp, ringbuf, telnet, websocket, TLS, mux, fd=) is refused with a ConfigError
 * (code COLO_ERR_CHARDEV_SPEC) naming the offending option. QemuOpts syntax: `,,` is a literal
 * comma inside a value; a bare boolean key means `on` (`server`, `wait`, `nodelay`) and a
 * `no`-prefixed one means `off` (`nowait`, `noserver`); booleans take on/off/yes/no/true/false/y/n.
 *
 * Differences from QEMU, deliberately: an empty or missing `host` means 127.0.0.1, not every
 * interface; `nodelay` defaults to on (we batch writes ourselves, Nagle only adds latency); a
 * repeated option is an error instead of "last one wins".
 */
import { ConfigError } from "../errors.ts";

export interface ChardevSocketSpec {
  /** The chardev id (used in logs, metrics and control-socket names). */
  id: string;
  transport: "tcp" | "unix";
  /** TCP: host to bind (server) or connect to (client). "" for UNIX. */
  host: string;
  /** TCP: port; 0 with server=on picks an ephemeral port. 0 for UNIX. */
  port: number;
  /** UNIX: socket path; an abstract socket's name starts with "\0". "" for TCP. */
  path: string;
  /** Listen and accept (true) or connect (false). */
  server: boolean;
  /** Server only: QEMU blocks until the first client connects (`wait=on`, its default). */
  wait: boolean;
  /** Client only: retry interval cap in ms from `reconnect=N` (s) or `reconnect-ms=N`; 0 = unset. */
  reconnectMs: number;
  /** TCP_NODELAY on TCP sockets. */
  nodelay: boolean;
  /** Restrict a TCP socket to IPv4 (4) or IPv6 (6); 0 = either. */
  family: 0 | 4 | 6;
}

const BOOL_KEYS = new Set(["server", "wait", "nodelay", "ipv4", "ipv6", "abstract", "tight"]);
const VALUE_KEYS = new Set(["backend", "id", "host", "port", "path", "reconnect", "reconnect-ms"]);
/** Socket-chardev options QEMU has that we refuse, with the reason shown to the user. */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  telnet: "telnet framing would corrupt the frame stream",
  tn3270: "telnet framing would corrupt the frame stream",
  websocket: "websocket transport is not supported",
  "tls-creds": "TLS is not supported (use a tunnel)",
  "tls-authz": "TLS is not supported (use a tunnel)",
  mux: "multiplexed chardevs are not supported",
  fd: "passing a file descriptor is not supported",
  to: "port ranges (to=) are not supported",
  logfile: "chardev logfiles are not supported",
  logappend: "chardev logfiles are not supported",
};

function fail(spec: string, why: string): never {
  throw new ConfigError(`invalid -chardev "${spec}": ${why}`, { spec }, "COLO_ERR_CHARDEV_SPEC");
}

function parseBool(spec: string, key: string, value: string): boolean {
  switch (value) {
    case "on":
    case "yes":
    case "true":
    case "y":
      return true;
    case "off":
    case "no":
    case "false":
    case "n":
      return false;
    default:
      return fail(spec, `${key}=${value}: expected on/off (yes/no, true/false)`);
  }
}

/** Split on single commas; ",," is a literal comma (QemuOpts escaping). */
function splitOpts(s: string): string[] {
  const parts: string[] = [];
  let cur = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === ",") {
      if (s[i + 1] === ",") {
        cur += ",";
        i++;
        continue;
      }
      parts.push(cur);
      cur = "";
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  return parts;
}

function parseUint(spec: string, key: string, value: string, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) > max)
    fail(spec, `${key}=${value}: expected an integer 0..${max}`);
  return Number(value);
}

/**
 * Parse one QEMU `-chardev` socket option string (a leading `-chardev ` is tolerated).
 * Throws ConfigError (COLO_ERR_CHARDEV_SPEC) with a message naming the problem.
 */
export function parseChardevSpec(input: string): ChardevSocketSpec {
  const spec = input.trim().replace(/^--?chardev\s+/, "");
  if (spec === "") fail(input, "empty specification");
  const opts = new Map<string, string>();
  const parts = splitOpts(spec);
  for (const [i, part] of parts.entries()) {
    if (part === "") fail(spec, "empty option (stray comma?)");
    const eq = part.indexOf("=");
    let key: string;
    let value: string;
    if (eq < 0) {
      if (i === 0) {
        key = "backend";
        value = part;
      } else if (BOOL_KEYS.has(part)) {
        key = part;
        value = "on";
      } else if (part.startsWith("no") && BOOL_KEYS.has(part.slice(2))) {
        key = part.slice(2);
        value = "off";
      } else {
        fail(spec, `unknown flag "${part}"`);
      }
    } else {
      key = part.slice(0, eq);
      value = part.slice(eq + 1);
    }
    if (key in UNSUPPORTED) fail(spec, `option "${key}": ${UNSUPPORTED[key]}`);
    if (!BOOL_KEYS.has(key) && !VALUE_KEYS.has(key)) fail(spec, `unknown option "${key}"`);
    if (opts.has(key)) fail(spec, `option "${key}" given twice`);
    opts.set(key, value);
  }

  const backend = opts.get("backend");
  if (backend === undefined) fail(spec, 'missing backend (start with "socket,")');
  if (backend !== "socket") {
    fail(spec, `backend "${backend}" is not supported; colo-proxy endpoints are socket chardevs only`);
  }
  const id = opts.get("id");
  if (id === undefined || id === "") fail(spec, "missing id=");
  // QEMU's id rule: a letter, then letters, digits, '-', '.', '_'.
  if (!/^[A-Za-z][A-Za-z0-9._-]*$/.test(id))
    fail(spec, `id "${id}" must start with a letter (then [A-Za-z0-9._-])`);

  const bool = (key: string, dflt: boolean): boolean => {
    const v = opts.get(key);
    return v === undefined ? dflt : parseBool(spec, key, v);
  };
  const server = bool("server", false);
  const nodelay = bool("nodelay", true);
  const hasPath = opts.has("path");
  const hasTcp = opts.has("host") || opts.has("port");
  if (hasPath && hasTcp) fail(spec, "give either path= (UNIX) or host=/port= (TCP), not both");
  if (!hasPath && !opts.has("port")) fail(spec, "missing port= (TCP) or path= (UNIX)");

  if (opts.has("wait") && !server) fail(spec, "wait= only applies to server=on");
  const wait = bool("wait", true);
  let reconnectMs = 0;
  if (opts.has("reconnect") && opts.has("reconnect-ms"))
    fail(spec, "give reconnect= or reconnect-ms=, not both");
  const rs = opts.get("reconnect");
  if (rs !== undefined) reconnectMs = parseUint(spec, "reconnect", rs, 86_400) * 1000;
  const rms = opts.get("reconnect-ms");
  if (rms !== undefined) reconnectMs = parseUint(spec, "reconnect-ms", rms, 86_400_000);
  if (server && (rs !== undefined || rms !== undefined))
    fail(spec, "reconnect only applies to clients (server=off)");

  if (hasPath) {
    const p = opts.get("path")!;
    if (p === "") fail(spec, "empty path=");
    if (opts.has("ipv4") || opts.has("ipv6")) fail(spec, "ipv4/ipv6 apply to TCP sockets, not path=");
    const abstract = bool("abstract", false);
    if (!bool("tight", true)) fail(spec, "tight=off (padded abstract names) is not supported");
    if (opts.has("tight") && !abstract) fail(spec, "tight= only applies to abstract=on");
    return {
      id,
      transport: "unix",
      host: "",
      port: 0,
      path: abstract ? `\0${p}` : p,
      server,
      wait: server && wait,
      reconnectMs,
      nodelay: false,
      family: 0,
    };
  }

  if (opts.has("abstract") || opts.has("tight")) fail(spec, "abstract/tight apply to path= sockets");
  let host = opts.get("host") ?? "";
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host === "") host = "127.0.0.1";
  const port = parseUint(spec, "port", opts.get("port")!, 65535);
  if (port === 0 && !server) fail(spec, "port=0 is only valid for server=on (ephemeral port)");
  const v4 = bool("ipv4", false);
  const v6 = bool("ipv6", false);
  if (v4 && v6) fail(spec, "ipv4=on and ipv6=on together");
  return {
    id,
    transport: "tcp",
    host,
    port,
    path: "",
    server,
    wait: server && wait,
    reconnectMs,
    nodelay,
    family: v4 ? 4 : v6 ? 6 : 0,
  };
}

/** Render a spec back as a QEMU `-chardev` string (commas in values escaped as ",,"). */
export function formatChardevSpec(spec: ChardevSocketSpec): string {
  const esc = (v: string) => v.replaceAll(",", ",,");
  const parts = ["socket", `id=${esc(spec.id)}`];
  if (spec.transport === "unix") {
    if (spec.path.startsWith("\0")) parts.push(`path=${esc(spec.path.slice(1))}`, "abstract=on");
    else parts.push(`path=${esc(spec.path)}`);
  } else {
    parts.push(`host=${esc(spec.host)}`, `port=${spec.port}`);
    if (spec.family !== 0) parts.push(`ipv${spec.family}=on`);
  }
  if (spec.server) parts.push("server=on", `wait=${spec.wait ? "on" : "off"}`);
  else if (spec.reconnectMs > 0) {
    parts.push(
      spec.reconnectMs % 1000 === 0
        ? `reconnect=${spec.reconnectMs / 1000}`
        : `reconnect-ms=${spec.reconnectMs}`,
    );
  }
  return parts.join(",");
}
