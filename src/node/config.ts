/**
 * @module Configuration of `colo-proxy compare`, from any mix of three sources with one meaning:
 * QEMU's own `-chardev socket,...` / `-object colo-compare,...` strings, friendly flags
 * (`--primary-in 127.0.0.1:9001`), and a JSON file (validated with zod). Everything resolves to
 * one CompareDaemonConfig; every problem is a ConfigError with a stable code.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { DEFAULT_COMPARE_CONFIG } from "../compare/config.ts";
import { parsePassthroughRule } from "../compare/passthrough.ts";
import { ConfigError } from "../errors.ts";
import { type ChardevSocketSpec, parseChardevSpec } from "../wire/chardev-spec.ts";
import { parsePositiveU32, parseQemuBool, parseQemuOpts, type QemuOpts } from "./config-qemu.ts";

/** One socket endpoint: a parsed QEMU socket chardev (src/wire/chardev-spec.ts). */
export type EndpointConfig = ChardevSocketSpec;

export interface CompareDaemonConfig {
  id: string;
  primaryIn: EndpointConfig;
  /** undefined only for the primary daemon, whose secondary frames arrive over its link. */
  secondaryIn: EndpointConfig | undefined;
  outdev: EndpointConfig;
  notifyDev: EndpointConfig | undefined;
  /** ms (QEMU default 3000). */
  compareTimeout: number;
  /** ms (QEMU default 1000). */
  expiredScanCycle: number;
  /** packets per connection per side (QEMU default 1024). */
  maxQueueSize: number;
  /** Connection table size (colo-proxy extension; default 65536; QEMU wipes its table at 16,384). */
  maxConnections: number;
  /** ms without traffic before an idle connection is forgotten (colo-proxy extension; default 120000). */
  idleTimeout: number;
  /** ms before a closed (FIN/RST) connection is forgotten (colo-proxy extension; default 10000). */
  closedTimeout: number;
  vnetHdr: boolean;
  /** Pass IPv6/VLAN/ARP through uncompared like QEMU (default off: we compare them). */
  compatPassthrough: boolean;
  /** Control socket path (checkpoint requests when there is no notify_dev). */
  control: string | undefined;
  logLevel: string;
  /** Passthrough rules installed at start (--passthrough, repeatable), already validated. */
  passthrough?: string[];
  /** Miscompare captures (--capture DIR); absent = off. */
  capture?: CaptureConfig;
}

/** Where and how much `--capture` writes (see src/node/capture.ts). */
export interface CaptureConfig {
  dir: string;
  /** Frames kept per connection and side, default 64. */
  frames: number;
  /** Files written per rolling minute at most (--capture-max-per-minute), default 10. */
  maxFilesPerMinute: number;
  /** Bytes written per process at most (--capture-max-mib, in MiB), default 256 MiB. */
  maxTotalBytes: number;
}

export const DEFAULT_CAPTURE_FRAMES = 64;
/** Ring memory is frames × frame size × connections: keep the per-connection part sane. */
export const MAX_CAPTURE_FRAMES = 4096;
export const DEFAULT_CAPTURE_PER_MINUTE = 10;
export const DEFAULT_CAPTURE_MIB = 256;
/** 1 TiB: a cap, not a disk size check; past this a typo is more likely than intent. */
const MAX_CAPTURE_MIB = 1024 * 1024;

export const DEFAULTS = {
  compareTimeout: DEFAULT_COMPARE_CONFIG.compareTimeout,
  expiredScanCycle: DEFAULT_COMPARE_CONFIG.expiredScanCycle,
  maxQueueSize: DEFAULT_COMPARE_CONFIG.maxQueueSize,
  maxConnections: DEFAULT_COMPARE_CONFIG.maxConnections,
  idleTimeout: DEFAULT_COMPARE_CONFIG.idleTimeout,
  closedTimeout: DEFAULT_COMPARE_CONFIG.closedTimeout,
} as const;

/** The object's numeric properties: QEMU's three, then colo-proxy's extensions (not in QEMU). */
export const NUMERIC_KEYS = [
  "compare_timeout",
  "expired_scan_cycle",
  "max_queue_size",
  "max_connections",
  "idle_timeout",
  "closed_timeout",
] as const;
export type NumericKey = (typeof NUMERIC_KEYS)[number];

const cfgErr = (
  code:
    | "COLO_ERR_CONFIG_SYNTAX"
    | "COLO_ERR_CONFIG_VALUE"
    | "COLO_ERR_CONFIG_MISSING"
    | "COLO_ERR_CONFIG_REF"
    | "COLO_ERR_CONFIG_FILE"
    | "COLO_ERR_CONFIG_UNSUPPORTED",
  message: string,
  details?: Record<string, unknown>,
) => new ConfigError(message, details, code);

// ---------------------------------------------------------------------------------------------
// chardevs

/** `-chardev socket,id=pri,host=127.0.0.1,port=9001,server=on,wait=off` (or path=...). */
export function parseChardev(text: string): EndpointConfig {
  return parseChardevSpec(text);
}

/**
 * Friendly endpoint address: `HOST:PORT` or `unix:PATH` (or a path containing '/'), listening;
 * prefix `connect:` to dial out instead.
 */
export function parseAddress(id: string, addr: string): EndpointConfig {
  let server = true;
  let a = addr.trim();
  if (a.startsWith("connect:")) {
    server = false;
    a = a.slice("connect:".length);
  }
  const role = server ? ",server=on,wait=off" : "";
  if (a.startsWith("unix:") || a.includes("/")) {
    const path = a.startsWith("unix:") ? a.slice(5) : a;
    if (path === "") throw cfgErr("COLO_ERR_CONFIG_VALUE", `${id}: empty UNIX socket path in '${addr}'`);
    return parseChardevSpec(`socket,id=${id},path=${path.replaceAll(",", ",,")}${role}`);
  }
  const m = /^(?:\[([^\]]+)\]|([^:,]*)):(\d+)$/.exec(a);
  if (m === null) {
    throw cfgErr(
      "COLO_ERR_CONFIG_VALUE",
      `${id}: '${addr}' is not HOST:PORT, unix:PATH or connect:HOST:PORT`,
      { address: addr },
    );
  }
  return parseChardevSpec(`socket,id=${id},host=${m[1] ?? (m[2] || "127.0.0.1")},port=${m[3]}${role}`);
}

// ---------------------------------------------------------------------------------------------
// the colo-compare object

const OBJECT_KEYS = new Set<string>([
  "id",
  "primary_in",
  "secondary_in",
  "outdev",
  "notify_dev",
  "iothread",
  ...NUMERIC_KEYS,
  "vnet_hdr_support",
]);

interface CompareObject {
  id: string;
  primary_in: string;
  secondary_in: string;
  outdev: string;
  notify_dev?: string;
  compare_timeout?: number;
  expired_scan_cycle?: number;
  max_queue_size?: number;
  max_connections?: number;
  idle_timeout?: number;
  closed_timeout?: number;
  vnet_hdr_support?: boolean;
}

/** `-object colo-compare,...`; returns undefined for objects we accept and ignore (iothread). */
export function parseObject(text: string): CompareObject | undefined {
  const what = "--object";
  const q: QemuOpts = parseQemuOpts(text, what);
  if (q.type === "iothread") return undefined; // compare work has no iothread here
  if (q.type !== "colo-compare") {
    throw cfgErr(
      "COLO_ERR_CONFIG_UNSUPPORTED",
      `${what} '${text}': 'colo-proxy compare' runs colo-compare only (got '${q.type}')`,
      { type: q.type },
    );
  }
  for (const k of q.opts.keys()) {
    if (!OBJECT_KEYS.has(k))
      throw cfgErr("COLO_ERR_CONFIG_UNSUPPORTED", `${what} colo-compare: unknown property '${k}'`, {
        key: k,
      });
  }
  const need = (k: string) => {
    const v = q.opts.get(k);
    if (v === undefined || v === "")
      throw cfgErr("COLO_ERR_CONFIG_MISSING", `${what} colo-compare: '${k}=' is required`, { key: k });
    return v;
  };
  const o: CompareObject = {
    id: need("id"),
    primary_in: need("primary_in"),
    secondary_in: need("secondary_in"),
    outdev: need("outdev"),
  };
  const w = `${what} colo-compare ${o.id}`;
  const n = q.opts.get("notify_dev");
  if (n !== undefined) o.notify_dev = n;
  for (const k of NUMERIC_KEYS) {
    const v = q.opts.get(k);
    if (v !== undefined) o[k] = parsePositiveU32(v, k, w);
  }
  const vh = q.opts.get("vnet_hdr_support");
  if (vh !== undefined) o.vnet_hdr_support = parseQemuBool(vh, "vnet_hdr_support", w);
  return o;
}

// ---------------------------------------------------------------------------------------------
// JSON config file

const endpointJson = z.union([
  z.string().min(1),
  z
    .object({
      host: z.string().optional(),
      port: z.number().int().min(0).max(65535).optional(),
      path: z.string().min(1).optional(),
      server: z.boolean().optional(),
      reconnect: z.number().int().positive().optional(),
    })
    .strict(),
]);
const positive = z.number().int().positive().max(0xffffffff);

/** Schema of `--config FILE` (JSON). Keys mirror QEMU's property names. */
export const configFileSchema = z
  .object({
    /** QEMU `-chardev` strings (`socket,id=...`), referenced by id below. */
    chardev: z.array(z.string()).optional(),
    /** QEMU `-object` strings; an alternative to the keys below. */
    object: z.array(z.string()).optional(),
    id: z.string().min(1).optional(),
    primary_in: endpointJson.optional(),
    secondary_in: endpointJson.optional(),
    outdev: endpointJson.optional(),
    notify_dev: endpointJson.optional(),
    compare_timeout: positive.optional(),
    expired_scan_cycle: positive.optional(),
    max_queue_size: positive.optional(),
    max_connections: positive.optional(),
    idle_timeout: positive.optional(),
    closed_timeout: positive.optional(),
    vnet_hdr_support: z.boolean().optional(),
    compat_passthrough: z.boolean().optional(),
    control: z.string().min(1).optional(),
    log_level: z.string().optional(),
    passthrough: z.array(z.string()).optional(),
    capture: z.string().min(1).optional(),
    capture_frames: positive.optional(),
    capture_max_per_minute: positive.optional(),
    capture_max_mib: positive.optional(),
  })
  .strict();
export type ConfigFile = z.infer<typeof configFileSchema>;

export function loadConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw cfgErr("COLO_ERR_CONFIG_FILE", `cannot read config file ${path}: ${(e as Error).message}`, {
      path,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw cfgErr("COLO_ERR_CONFIG_FILE", `config file ${path} is not valid JSON: ${(e as Error).message}`, {
      path,
    });
  }
  const r = configFileSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const at = issue.path.length > 0 ? issue.path.join(".") : "(top level)";
    throw cfgErr("COLO_ERR_CONFIG_VALUE", `config file ${path}: ${at}: ${issue.message}`, {
      path,
      at,
      issues: r.error.issues.length,
    });
  }
  return r.data;
}

// ---------------------------------------------------------------------------------------------
// putting it together

/** Everything gathered from the sources, before resolution. Later sources override earlier. */
export interface RawCompareOptions {
  chardevs: string[];
  objects: string[];
  /** Friendly/JSON endpoint values: chardev id, address, or JSON endpoint object. */
  endpoints: Partial<
    Record<"primary_in" | "secondary_in" | "outdev" | "notify_dev", z.infer<typeof endpointJson>>
  >;
  id?: string;
  compare_timeout?: number;
  expired_scan_cycle?: number;
  max_queue_size?: number;
  max_connections?: number;
  idle_timeout?: number;
  closed_timeout?: number;
  vnet_hdr_support?: boolean;
  compat_passthrough?: boolean;
  control?: string;
  log_level?: string;
  passthrough?: string[];
  capture_dir?: string;
  capture_frames?: number;
  capture_max_per_minute?: number;
  capture_max_mib?: number;
}

export function emptyRawOptions(): RawCompareOptions {
  return { chardevs: [], objects: [], endpoints: {} };
}

/** Merges a JSON config file under the options gathered so far (command line wins). */
export function mergeConfigFile(raw: RawCompareOptions, file: ConfigFile): void {
  raw.chardevs.unshift(...(file.chardev ?? []));
  raw.objects.unshift(...(file.object ?? []));
  for (const k of ["primary_in", "secondary_in", "outdev", "notify_dev"] as const) {
    const v = file[k];
    if (v !== undefined && raw.endpoints[k] === undefined) raw.endpoints[k] = v;
  }
  raw.id ??= file.id;
  for (const k of NUMERIC_KEYS) raw[k] ??= file[k];
  raw.vnet_hdr_support ??= file.vnet_hdr_support;
  raw.compat_passthrough ??= file.compat_passthrough;
  raw.control ??= file.control;
  raw.log_level ??= file.log_level;
  // Rules add up: the file's first, then the command line's.
  if (file.passthrough !== undefined) raw.passthrough = [...file.passthrough, ...(raw.passthrough ?? [])];
  raw.capture_dir ??= file.capture;
  raw.capture_frames ??= file.capture_frames;
  raw.capture_max_per_minute ??= file.capture_max_per_minute;
  raw.capture_max_mib ??= file.capture_max_mib;
}

/** Resolves and validates everything into the daemon's config. */
export function resolveCompareConfig(
  raw: RawCompareOptions,
  opts: { secondaryOptional?: boolean } = {},
): CompareDaemonConfig {
  const chardevs = new Map<string, EndpointConfig>();
  for (const text of raw.chardevs) {
    const c = parseChardev(text);
    if (chardevs.has(c.id))
      throw cfgErr("COLO_ERR_CONFIG_VALUE", `--chardev: id '${c.id}' defined twice`, { id: c.id });
    chardevs.set(c.id, c);
  }
  const objs = raw.objects.map(parseObject).filter((o): o is CompareObject => o !== undefined);
  if (objs.length > 1) {
    throw cfgErr(
      "COLO_ERR_CONFIG_UNSUPPORTED",
      "only one colo-compare object per 'colo-proxy compare' process (run one process per compare)",
    );
  }
  const obj = objs[0];
  const resolve = (
    key: "primary_in" | "secondary_in" | "outdev" | "notify_dev",
  ): EndpointConfig | undefined => {
    const v = raw.endpoints[key] ?? obj?.[key];
    if (v === undefined) return undefined;
    if (typeof v === "string") {
      const c = chardevs.get(v);
      if (c !== undefined) return c;
      if (/[:/]/.test(v)) return parseAddress(key, v);
      throw cfgErr("COLO_ERR_CONFIG_REF", `${key}=${v}: no --chardev with id '${v}'`, { key, id: v });
    }
    if (v.path === undefined && v.port === undefined)
      throw cfgErr("COLO_ERR_CONFIG_MISSING", `${key}: 'port' or 'path' is required`, { key });
    const server = v.server ?? true;
    let text = `socket,id=${key}`;
    if (v.path !== undefined) text += `,path=${v.path.replaceAll(",", ",,")}`;
    if (v.host !== undefined) text += `,host=${v.host}`;
    if (v.port !== undefined) text += `,port=${v.port}`;
    if (server) text += ",server=on,wait=off";
    else if (v.reconnect !== undefined) text += `,reconnect=${v.reconnect}`;
    return parseChardevSpec(text);
  };
  const need = (key: "primary_in" | "secondary_in" | "outdev") => {
    const e = resolve(key);
    if (e === undefined) {
      throw cfgErr(
        "COLO_ERR_CONFIG_MISSING",
        `${key} is required (--object colo-compare,${key}=<chardev id> or --${key.replace("_", "-")} ADDRESS)`,
        { key },
      );
    }
    return e;
  };
  const primaryIn = need("primary_in");
  const secondaryIn = opts.secondaryOptional ? resolve("secondary_in") : need("secondary_in");
  const outdev = need("outdev");
  const notifyDev = resolve("notify_dev");
  const all = [primaryIn, ...(secondaryIn ? [secondaryIn] : []), outdev, ...(notifyDev ? [notifyDev] : [])];
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      if (sameEndpoint(all[i]!, all[j]!)) {
        throw cfgErr(
          "COLO_ERR_CONFIG_VALUE",
          `the compare's chardevs must be pairwise different ('${all[i]!.id}' and '${all[j]!.id}' are the same)`,
        );
      }
    }
  }
  const num = (k: NumericKey, dflt: number) => {
    const v = raw[k] ?? obj?.[k] ?? dflt;
    if (!Number.isSafeInteger(v) || v <= 0 || v > 0xffffffff)
      throw cfgErr("COLO_ERR_CONFIG_VALUE", `${k} must be an integer between 1 and 4294967295, got ${v}`);
    return v;
  };
  return {
    id: raw.id ?? obj?.id ?? "colo-compare",
    primaryIn,
    secondaryIn,
    outdev,
    notifyDev,
    compareTimeout: num("compare_timeout", DEFAULTS.compareTimeout),
    expiredScanCycle: num("expired_scan_cycle", DEFAULTS.expiredScanCycle),
    maxQueueSize: num("max_queue_size", DEFAULTS.maxQueueSize),
    maxConnections: num("max_connections", DEFAULTS.maxConnections),
    idleTimeout: num("idle_timeout", DEFAULTS.idleTimeout),
    closedTimeout: num("closed_timeout", DEFAULTS.closedTimeout),
    vnetHdr: raw.vnet_hdr_support ?? obj?.vnet_hdr_support ?? false,
    compatPassthrough: raw.compat_passthrough ?? false,
    control: raw.control,
    logLevel: raw.log_level ?? "info",
    passthrough: (raw.passthrough ?? []).map(checkRule),
    ...(raw.capture_dir === undefined
      ? {}
      : {
          capture: {
            dir: raw.capture_dir,
            frames: bounded(
              raw.capture_frames,
              DEFAULT_CAPTURE_FRAMES,
              MAX_CAPTURE_FRAMES,
              "--capture-frames",
            ),
            maxFilesPerMinute: bounded(
              raw.capture_max_per_minute,
              DEFAULT_CAPTURE_PER_MINUTE,
              60_000,
              "--capture-max-per-minute",
            ),
            maxTotalBytes:
              bounded(raw.capture_max_mib, DEFAULT_CAPTURE_MIB, MAX_CAPTURE_MIB, "--capture-max-mib") *
              1024 *
              1024,
          },
        }),
  };
}

/** A capture setting: `def` when absent, else an integer in 1..max. */
function bounded(n: number | undefined, def: number, max: number, flag: string): number {
  if (n === undefined) return def;
  if (!Number.isSafeInteger(n) || n < 1 || n > max)
    throw cfgErr("COLO_ERR_CONFIG_VALUE", `${flag} must be between 1 and ${max}, got ${n}`);
  return n;
}

/** A startup --passthrough rule, validated now so a typo is a configuration error (exit 2). */
function checkRule(rule: string): string {
  try {
    return parsePassthroughRule(rule).text;
  } catch (e) {
    throw cfgErr("COLO_ERR_CONFIG_VALUE", `--passthrough: ${(e as Error).message}`, { rule });
  }
}

function sameEndpoint(a: EndpointConfig, b: EndpointConfig): boolean {
  if (a.transport !== b.transport) return false;
  if (a.transport === "unix") return a.path === b.path;
  return a.host === b.host && a.port === b.port && a.port !== 0;
}
