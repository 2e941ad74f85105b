/**
 * @module `colo-proxy compare`: QEMU's colo-compare as a standalone daemon. Accepts QEMU's own
 * `-chardev socket,...` / `-object colo-compare,...` lines unchanged, friendly flags, or a JSON
 * config file (all with one meaning); runs until SIGINT/SIGTERM.
 */
import type { ControlArgValues } from "../../control/index.ts";
import { ConfigError } from "../../errors.ts";
import { createLogger, isLogLevel, LOG_LEVELS } from "../../log.ts";
import type { CompareDaemonOptions } from "../../node/compare-daemon.ts";
import {
  emptyRawOptions,
  loadConfigFile,
  mergeConfigFile,
  type RawCompareOptions,
  resolveCompareConfig,
} from "../../node/config.ts";
import { parsePositiveU32 } from "../../node/config-qemu.ts";
import { HEAP_HELP, parseDaemonArgs, waitForSignal } from "../daemon-command.ts";

export const summary = "colo-compare replacement: compare primary and secondary output, release matches";

export const help = `Usage: colo-proxy compare [options]

Drop-in replacement for QEMU's '-object colo-compare'. Move your QEMU lines over unchanged
(one or two leading dashes both work):

  colo-proxy compare \\
    -chardev socket,id=compare0-0,host=127.0.0.1,port=9001,server=on,wait=off \\
    -chardev socket,id=compare1,host=0.0.0.0,port=9004,server=on,wait=on \\
    -chardev socket,id=compare_out0,host=127.0.0.1,port=9005 \\
    -object iothread,id=iothread1 \\
    -object colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,outdev=compare_out0,iothread=iothread1

QEMU syntax:
  --chardev socket,id=ID,host=H,port=P[,server=on|off][,wait=on|off][,reconnect=S]
  --chardev socket,id=ID,path=/unix/socket[,server=on|off]
      Socket chardevs only. server=on listens (one client at a time, like QEMU); without it
      colo-proxy connects and reconnects every reconnect= seconds (default 1). A server with
      no host= listens on 127.0.0.1 (QEMU: all interfaces) — give host=0.0.0.0 to listen on all.
  --object colo-compare,id=ID,primary_in=ID,secondary_in=ID,outdev=ID[,notify_dev=ID]
          [,compare_timeout=MS][,expired_scan_cycle=MS][,max_queue_size=N][,vnet_hdr_support=on]
          [,iothread=ID]
      compare_timeout (default 3000 ms): a packet waiting this long for its twin requests a
      checkpoint. expired_scan_cycle (default 1000 ms): how often that is checked.
      max_queue_size (default 1024): frames per connection and side; on reaching it the input
      is paused and a checkpoint requested (QEMU drops the frame). vnet_hdr_support=on: frames
      carry the vnet-header length word on primary_in, secondary_in and outdev.
      iothread= is accepted and ignored; '--object iothread,...' is accepted and ignored.
      colo-proxy extensions (not in QEMU): max_connections=N (connection table size, default
      65536: a new flow in a full table evicts the least recently active connection that holds
      no packets; if every one holds packets, a checkpoint is requested and input paused — QEMU
      instead wipes its table at 16384, losing what it held), idle_timeout=MS (default 120000)
      and closed_timeout=MS (default 10000): how long idle and closed (FIN/RST) connections
      are kept.
  notify_dev (Xen COLO): COLO_USERSPACE_PROXY_INIT is answered with COLO_COMPARE_GET_XEN_INIT,
      every checkpoint request is sent as DO_CHECKPOINT, COLO_CHECKPOINT completes a checkpoint.

Friendly flags (same meaning; override the QEMU strings):
  --primary-in ADDR   --secondary-in ADDR   --outdev ADDR   --notify-dev ADDR
      ADDR is HOST:PORT or unix:PATH (listen), or connect:HOST:PORT / connect:unix:PATH (dial).
      A chardev id defined with --chardev also works.
  --compare-timeout MS  --expired-scan-cycle MS  --max-queue-size N  --vnet-hdr-support
  --max-connections N  --idle-timeout MS  --closed-timeout MS
  --compat-passthrough   pass IPv6, VLAN-tagged and ARP frames through uncompared, as QEMU does
  --passthrough RULE     release flows matching RULE uncompared from the start (repeatable), e.g.
                         --passthrough "tcp 10.0.0.0/24:3389"; grammar in docs/compare.md.
                         Rules can also be changed at run time: colo-proxy ctl passthrough add|del|list
  --capture DIR          on each miscompare (payload/size/seq), write DIR/<time>-<flow>.pcapng with
                         the connection's last frames from both sides (interfaces pvm and svm,
                         a comment per packet); 'colo-proxy replay FILE' explains it again
  --capture-frames N     frames kept per connection and side for --capture (default 64)
  --capture-max-per-minute N   capture files written per rolling minute at most (default 10)
  --capture-max-mib N    capture bytes written per process at most, in MiB (default 256); past
                         either cap miscompares are counted and logged, not captured
  --config FILE          JSON file: { "chardev": ["socket,..."], "object": ["colo-compare,..."] }
                         or { "primary_in": "127.0.0.1:9001" | {"host","port","path","server","reconnect"},
                         "secondary_in", "outdev", "notify_dev", "compare_timeout",
                         "expired_scan_cycle", "max_queue_size", "max_connections",
                         "idle_timeout", "closed_timeout", "vnet_hdr_support",
                         "compat_passthrough", "control", "log_level", "passthrough": [RULE...],
                         "capture": DIR, "capture_frames": N, "capture_max_per_minute": N,
                         "capture_max_mib": N }. Command-line flags win
                         (passthrough rules from both are used).

Checkpoints without notify_dev (QEMU COLO with colo-proxy outside QEMU):
  --control PATH         control socket (default $RUNDIR/colo-proxy-compare.sock, 'none' disables).
                         Checkpoint requests are CHECKPOINT_REQUEST events there; answer with the
                         'checkpoint-done' command (colo-proxy ctl checkpoint-done) after each
                         checkpoint, and 'failover' on failover.
  --control-tcp HOST:PORT   also accept control connections on TCP
  --metrics HOST:PORT    Prometheus /metrics endpoint (host defaults to 127.0.0.1)
  --dashboard HOST:PORT  live web dashboard (host defaults to 127.0.0.1)
  --on-checkpoint CMD    run CMD (/bin/sh) on each checkpoint request, details in COLO_* variables
  --on-checkpoint-interval MS   minimum ms between two runs of the hook (default 1000)
  --log-level LEVEL      ${LOG_LEVELS.join("|")} (default info); logs are JSON lines on stderr

Bad input (zero or oversized lengths, garbage) on any socket is logged with its code, counted,
and only that connection is reset; everything held stays held.
Exit status: 0 on SIGINT/SIGTERM, 2 on bad configuration (message names a COLO_ERR_CONFIG_* code).
${HEAP_HELP}
`;

const VALUE_FLAGS = new Set([
  "chardev",
  "object",
  "config",
  "primary-in",
  "secondary-in",
  "outdev",
  "notify-dev",
  "compare-timeout",
  "expired-scan-cycle",
  "max-queue-size",
  "max-connections",
  "idle-timeout",
  "closed-timeout",
  "control",
  "control-tcp",
  "metrics",
  "dashboard",
  "on-checkpoint",
  "on-checkpoint-interval",
  "log-level",
  "passthrough",
  "capture",
  "capture-frames",
  "capture-max-per-minute",
  "capture-max-mib",
]);
const BOOL_FLAGS = new Set(["vnet-hdr-support", "vnet-hdr", "compat-passthrough", "help"]);

export interface ParsedCompareArgs {
  raw: RawCompareOptions;
  help: boolean;
  control: string | undefined;
  controlTcp: string | undefined;
  /** --metrics, --dashboard, --on-checkpoint, --on-checkpoint-interval as given. */
  controlArgs: ControlArgValues;
}

/** Flags of a daemon that extends compare's (the primary): checked after compare's own. */
export interface ExtraFlags {
  value: ReadonlySet<string>;
  bool: ReadonlySet<string>;
  onValue(name: string, value: string): void;
  onBool(name: string): void;
  /** Returns true when it consumed an `--object` string (e.g. `colo-primary,...`). */
  object?(text: string): boolean;
}

/** Parses argv (QEMU `-chardev`/`-object` single-dash forms included). */
export function parseCompareArgs(argv: string[], extra?: ExtraFlags): ParsedCompareArgs {
  const raw = emptyRawOptions();
  let help = false;
  let configFile: string | undefined;
  let control: string | undefined;
  let controlTcp: string | undefined;
  const controlArgs: ControlArgValues = {};
  const usage = (msg: string) => new ConfigError(msg, undefined, "COLO_ERR_USAGE");
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "-h") {
      help = true;
      continue;
    }
    const m = /^--?([a-z][a-z0-9_-]*)(?:=(.*))?$/s.exec(arg);
    if (m === null) throw usage(`unexpected argument '${arg}' (see --help)`);
    const name = m[1]!.replaceAll("_", "-");
    let value = m[2];
    if (extra?.bool.has(name)) {
      if (value !== undefined) throw usage(`--${name} takes no value`);
      extra.onBool(name);
      continue;
    }
    if (extra?.value.has(name)) {
      if (value === undefined) {
        value = argv[++i];
        if (value === undefined) throw usage(`--${name} needs a value`);
      }
      extra.onValue(name, value);
      continue;
    }
    if (BOOL_FLAGS.has(name)) {
      if (value !== undefined) throw usage(`--${name} takes no value`);
      if (name === "help") help = true;
      else if (name === "compat-passthrough") raw.compat_passthrough = true;
      else raw.vnet_hdr_support = true;
      continue;
    }
    if (!VALUE_FLAGS.has(name)) throw usage(`unknown option '${arg}' (see --help)`);
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw usage(`--${name} needs a value`);
    }
    switch (name) {
      case "chardev":
        raw.chardevs.push(value);
        break;
      case "object":
        if (extra?.object?.(value) !== true) raw.objects.push(value);
        break;
      case "config":
        configFile = value;
        break;
      case "primary-in":
      case "secondary-in":
      case "outdev":
      case "notify-dev":
        raw.endpoints[name.replace("-", "_") as "primary_in"] = value;
        break;
      case "compare-timeout":
      case "expired-scan-cycle":
      case "max-queue-size":
      case "max-connections":
      case "idle-timeout":
      case "closed-timeout": {
        const key = name.replaceAll("-", "_") as "compare_timeout";
        raw[key] = parsePositiveU32(value, key, `--${name}`);
        break;
      }
      case "passthrough":
        raw.passthrough = [...(raw.passthrough ?? []), value];
        break;
      case "capture":
        raw.capture_dir = value;
        break;
      case "capture-frames":
      case "capture-max-per-minute":
      case "capture-max-mib": {
        const key = name.replaceAll("-", "_") as "capture_frames";
        raw[key] = parsePositiveU32(value, key, `--${name}`);
        break;
      }
      case "control":
        control = value;
        break;
      case "control-tcp":
        controlTcp = value;
        break;
      case "metrics":
      case "dashboard":
      case "on-checkpoint":
      case "on-checkpoint-interval":
        controlArgs[name] = value;
        break;
      case "log-level":
        if (!isLogLevel(value))
          throw new ConfigError(
            `--log-level must be one of ${LOG_LEVELS.join(", ")}`,
            undefined,
            "COLO_ERR_CONFIG_VALUE",
          );
        raw.log_level = value;
        break;
    }
  }
  if (configFile !== undefined) {
    const file = loadConfigFile(configFile);
    mergeConfigFile(raw, file);
    control ??= file.control;
  }
  return { raw, help, control, controlTcp, controlArgs };
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseDaemonArgs("compare", argv, parseCompareArgs, help);
  if (typeof parsed === "number") return parsed;
  let config: ReturnType<typeof resolveCompareConfig>;
  let controlTcp: { host: string; port: number } | null = null;
  let controlExtra: CompareDaemonOptions["controlExtra"];
  try {
    config = resolveCompareConfig(parsed.raw);
    const { controlOptionsFromArgs } = await import("../../control/index.ts");
    const c = controlOptionsFromArgs(parsed.controlArgs);
    controlExtra = { metrics: c.metrics, dashboard: c.dashboard, onCheckpoint: c.onCheckpoint };
    if (parsed.controlTcp !== undefined) {
      const { parseHostPort } = await import("../../control/index.ts");
      controlTcp = parseHostPort(parsed.controlTcp, "--control-tcp");
    }
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`colo-proxy compare: ${e.message} (code ${e.code})\n`);
      return 2;
    }
    throw e;
  }
  const logger = createLogger({ level: config.logLevel, name: "compare" });
  const { CompareDaemon } = await import("../../node/compare-daemon.ts");
  const daemon = await CompareDaemon.start(config, {
    logger,
    controlSocket: parsed.control === "none" ? null : parsed.control,
    controlTcp,
    controlExtra,
  });
  await waitForSignal(logger);
  await daemon.close();
  return 0;
}
