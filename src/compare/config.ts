/**
 * @module Compare engine configuration: defaults (QEMU's where QEMU has one), validation and the
 * run-time parameters settable by name (QEMU property names and our camelCase names).
 */
import { ColoError } from "../errors.ts";
import type { CompareConfig } from "./types.ts";

export const DEFAULT_COMPARE_CONFIG: Readonly<CompareConfig> = Object.freeze({
  compareTimeout: 3000,
  expiredScanCycle: 1000,
  maxQueueSize: 1024,
  maxConnections: 65536,
  idleTimeout: 120_000,
  closedTimeout: 10_000,
  compatPassthrough: false,
  renotify: false,
  checkpointRetry: 10_000,
});

/** Parameters that `setParam` accepts, by every accepted name. */
const PARAM_NAMES: Record<string, keyof CompareConfig> = {
  compare_timeout: "compareTimeout",
  compareTimeout: "compareTimeout",
  expired_scan_cycle: "expiredScanCycle",
  expiredScanCycle: "expiredScanCycle",
  max_queue_size: "maxQueueSize",
  maxQueueSize: "maxQueueSize",
  max_connections: "maxConnections",
  maxConnections: "maxConnections",
  idle_timeout: "idleTimeout",
  idleTimeout: "idleTimeout",
  closed_timeout: "closedTimeout",
  closedTimeout: "closedTimeout",
  checkpoint_retry: "checkpointRetry",
  checkpointRetry: "checkpointRetry",
  compat_passthrough: "compatPassthrough",
  compatPassthrough: "compatPassthrough",
  renotify: "renotify",
};

const BOOLEAN_PARAMS = new Set<keyof CompareConfig>(["compatPassthrough", "renotify"]);
/** Parameters that may be 0 (others must be > 0, as QEMU requires). */
const ZERO_OK = new Set<keyof CompareConfig>(["checkpointRetry"]);
/** QEMU stores these as u32. */
const U32_MAX = 0xffffffff;

export function paramNames(): string[] {
  return Object.keys(PARAM_NAMES);
}

function bad(name: string, value: unknown, why: string): ColoError {
  return new ColoError("COLO_ERR_COMPARE_PARAM", `${name}: ${why} (got ${JSON.stringify(value)})`, {
    name,
    value,
  });
}

/** Validates one value; returns the canonical field and the normalised value. */
export function checkParam(
  name: string,
  value: unknown,
): { field: keyof CompareConfig; value: number | boolean } {
  const field = PARAM_NAMES[name];
  if (field === undefined) {
    throw new ColoError("COLO_ERR_COMPARE_PARAM", `unknown compare parameter '${name}'`, { name });
  }
  if (BOOLEAN_PARAMS.has(field)) {
    if (typeof value === "boolean") return { field, value };
    if (value === "on" || value === "true" || value === 1 || value === "1") return { field, value: true };
    if (value === "off" || value === "false" || value === 0 || value === "0") return { field, value: false };
    throw bad(name, value, "expected a boolean (on/off)");
  }
  const n = typeof value === "string" && /^\d+$/.test(value.trim()) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n)) throw bad(name, value, "expected an integer");
  if (n < 0 || (n === 0 && !ZERO_OK.has(field))) throw bad(name, value, "must be greater than 0");
  if (n > U32_MAX) throw bad(name, value, `must be at most ${U32_MAX}`);
  return { field, value: n };
}

/** Full config from a partial one; throws COLO_ERR_COMPARE_PARAM on a bad value. */
export function resolveConfig(partial: Partial<CompareConfig> = {}): CompareConfig {
  const cfg: CompareConfig = { ...DEFAULT_COMPARE_CONFIG };
  for (const [name, value] of Object.entries(partial)) {
    if (value === undefined) continue;
    const { field, value: v } = checkParam(name, value);
    (cfg as unknown as Record<string, number | boolean>)[field] = v;
  }
  return cfg;
}
