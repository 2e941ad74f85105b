/**
 * @module QEMU option-string syntax (`type,key=value,key=value`, `,,` escapes a comma, bare
 * `server`/`nowait` style flags), as used by `-chardev` and `-object`, so users can move their
 * QEMU command lines to `colo-proxy compare` unchanged.
 */
import { ConfigError } from "../errors.ts";

export interface QemuOpts {
  /** The first, key-less element: `socket`, `colo-compare`, `iothread`, ... */
  type: string;
  /** key → value in order of appearance; bare flags map to "on" (`nowait` → wait=off). */
  opts: Map<string, string>;
  /** The original text, for messages. */
  text: string;
}

/** Splits on single commas; `,,` is a literal comma (QEMU's escape). */
function splitOpts(text: string): string[] {
  const parts: string[] = [];
  let cur = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === ",") {
      if (text[i + 1] === ",") {
        cur += ",";
        i++;
      } else {
        parts.push(cur);
        cur = "";
      }
    } else cur += c;
  }
  parts.push(cur);
  return parts;
}

/**
 * Parses `socket,id=pri,host=127.0.0.1,port=9001,server=on,wait=off`. `what` names the option
 * (`--chardev`, `--object`) in error messages.
 */
export function parseQemuOpts(text: string, what: string): QemuOpts {
  const parts = splitOpts(text.trim());
  const first = parts.shift() ?? "";
  if (first === "" || first.includes("=")) {
    throw new ConfigError(
      `${what} '${text}': must start with a type (e.g. 'socket,...' or 'colo-compare,...')`,
      { option: what, text },
      "COLO_ERR_CONFIG_SYNTAX",
    );
  }
  const opts = new Map<string, string>();
  for (const p of parts) {
    if (p === "") {
      throw new ConfigError(
        `${what} '${text}': empty option`,
        { option: what, text },
        "COLO_ERR_CONFIG_SYNTAX",
      );
    }
    const eq = p.indexOf("=");
    let key: string;
    let value: string;
    if (eq < 0) {
      // QEMU's legacy bare flags: `server`, `nowait`, `nodelay`, `noserver`...
      if (p.startsWith("no") && p.length > 2) {
        key = p.slice(2);
        value = "off";
      } else {
        key = p;
        value = "on";
      }
    } else {
      key = p.slice(0, eq);
      value = p.slice(eq + 1);
    }
    if (opts.has(key)) {
      throw new ConfigError(
        `${what} '${text}': '${key}' given twice`,
        { option: what, key },
        "COLO_ERR_CONFIG_SYNTAX",
      );
    }
    opts.set(key, value);
  }
  return { type: first, opts, text };
}

/** QEMU boolean spellings. */
export function parseQemuBool(value: string, key: string, what: string): boolean {
  switch (value) {
    case "on":
    case "yes":
    case "true":
      return true;
    case "off":
    case "no":
    case "false":
      return false;
    default:
      throw new ConfigError(
        `${what}: '${key}=${value}' is not a boolean (use on or off)`,
        { key, value },
        "COLO_ERR_CONFIG_VALUE",
      );
  }
}

/** A positive u32 (QEMU's compare_timeout, expired_scan_cycle, max_queue_size must be > 0). */
export function parsePositiveU32(value: string, key: string, what: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n <= 0 || n > 0xffffffff) {
    throw new ConfigError(
      `${what}: '${key}=${value}' must be an integer between 1 and 4294967295`,
      { key, value },
      "COLO_ERR_CONFIG_VALUE",
    );
  }
  return n;
}
