/**
 * @module Parse the `colo-proxy rewrite` object option, written like QEMU's `-object`:
 * `filter-rewriter,id=r0,tx_in=ID,tx_out=ID,rx_in=ID,rx_out=ID[,vnet_hdr_support=on]`, plus
 * colo-proxy extensions `timestamps=on`, `max_connections=N`, `idle_timeout=MS`,
 * `handshake_timeout=MS`, `closed_timeout=MS`. Errors are ConfigError COLO_ERR_REWRITE_OBJECT.
 */
import { ConfigError } from "../errors.ts";

export interface RewriteObjectSpec {
  id: string;
  /** Chardev ids: client→guest frames in/out, guest→client frames in/out. */
  txIn: string;
  txOut: string;
  rxIn: string;
  rxOut: string;
  vnetHdr: boolean;
  timestamps: boolean;
  maxConnections: number | undefined;
  idleTimeoutMs: number | undefined;
  handshakeTimeoutMs: number | undefined;
  closedTimeoutMs: number | undefined;
}

function fail(spec: string, why: string): never {
  throw new ConfigError(`invalid --object "${spec}": ${why}`, { spec }, "COLO_ERR_REWRITE_OBJECT");
}

/** QemuOpts splitting: `,` separates, `,,` is a literal comma. */
function splitOpts(s: string): string[] {
  return s
    .replaceAll(",,", "\0")
    .split(",")
    .map((p) => p.replaceAll("\0", ","));
}

function bool(spec: string, key: string, v: string): boolean {
  if (["on", "yes", "true", "y"].includes(v)) return true;
  if (["off", "no", "false", "n"].includes(v)) return false;
  return fail(spec, `${key}=${v}: expected on/off`);
}

function uint(spec: string, key: string, v: string, min: number): number {
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > 2 ** 31)
    fail(spec, `${key}=${v}: expected an integer ≥ ${min}`);
  return Number(v);
}

const ALLOWED = new Set([
  "id",
  "tx_in",
  "tx_out",
  "rx_in",
  "rx_out",
  "vnet_hdr_support",
  "timestamps",
  "max_connections",
  "idle_timeout",
  "handshake_timeout",
  "closed_timeout",
]);

/** Parses one `--object filter-rewriter,...` string (a leading `-object ` is tolerated). */
export function parseRewriteObject(input: string): RewriteObjectSpec {
  const spec = input.trim().replace(/^--?object\s+/, "");
  const [type, ...rest] = splitOpts(spec);
  if (type !== "filter-rewriter") fail(spec, `expected type filter-rewriter, got "${type ?? ""}"`);
  const o = new Map<string, string>();
  for (const part of rest) {
    const eq = part.indexOf("=");
    if (eq <= 0) fail(spec, `expected key=value, got "${part}"`);
    const k = part.slice(0, eq);
    if (k === "netdev" || k === "queue" || k === "position" || k === "insert" || k === "status") {
      fail(
        spec,
        `${k}= belongs to QEMU's in-process filter; this rewriter sits between redirectors: use tx_in/tx_out/rx_in/rx_out chardevs`,
      );
    }
    if (!ALLOWED.has(k)) fail(spec, `unknown property "${k}"`);
    if (o.has(k)) fail(spec, `"${k}" given twice`);
    o.set(k, part.slice(eq + 1));
  }
  const need = (k: string): string => {
    const v = o.get(k);
    if (v === undefined || v === "") fail(spec, `missing ${k}=`);
    return v;
  };
  const r: RewriteObjectSpec = {
    id: need("id"),
    txIn: need("tx_in"),
    txOut: need("tx_out"),
    rxIn: need("rx_in"),
    rxOut: need("rx_out"),
    vnetHdr: o.has("vnet_hdr_support") ? bool(spec, "vnet_hdr_support", o.get("vnet_hdr_support")!) : false,
    timestamps: o.has("timestamps") ? bool(spec, "timestamps", o.get("timestamps")!) : false,
    maxConnections: o.has("max_connections")
      ? uint(spec, "max_connections", o.get("max_connections")!, 1)
      : undefined,
    idleTimeoutMs: o.has("idle_timeout") ? uint(spec, "idle_timeout", o.get("idle_timeout")!, 1) : undefined,
    handshakeTimeoutMs: o.has("handshake_timeout")
      ? uint(spec, "handshake_timeout", o.get("handshake_timeout")!, 1)
      : undefined,
    closedTimeoutMs: o.has("closed_timeout")
      ? uint(spec, "closed_timeout", o.get("closed_timeout")!, 1)
      : undefined,
  };
  const ids = [r.txIn, r.txOut, r.rxIn, r.rxOut];
  if (new Set(ids).size !== 4) fail(spec, "tx_in, tx_out, rx_in and rx_out must be four different chardevs");
  return r;
}
