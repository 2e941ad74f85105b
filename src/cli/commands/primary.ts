/**
 * @module `colo-proxy primary`: compare daemon + client mirroring + link to the secondary.
 * Accepts everything `colo-proxy compare` accepts, plus the link and client-side endpoints.
 */
import { CONTROL_ARG_HELP, type ControlArgValues, controlOptionsFromArgs } from "../../control/index.ts";
import { ConfigError } from "../../errors.ts";
import { createLogger } from "../../log.ts";
import { NUMERIC_KEYS, type RawCompareOptions, resolveCompareConfig } from "../../node/config.ts";
import { parsePositiveU32 } from "../../node/config-qemu.ts";
import {
  boolOpt,
  chardevMap,
  LINK_HELP,
  LINK_VALUE_FLAGS,
  type LinkFlags,
  parsePairObject,
  resolveEndpoint,
  resolveLink,
  setLinkFlag,
} from "../../node/pair-config.ts";
import type { PrimaryConfig } from "../../node/primary.ts";
import { HEAP_HELP, parseDaemonArgs, waitForSignal } from "../daemon-command.ts";
import { parseCompareArgs } from "./compare.ts";

export const summary = "primary host: mirror client frames to the secondary, compare, release";

export const help = `Usage: colo-proxy primary --addr HOST:PORT --mirror-in ADDR --primary-in ADDR --outdev ADDR [options]

The primary host's half of colo-proxy. It receives the client frames QEMU's filter-mirror copies
(mirror_in) and sends them to the secondary over the link; it compares the PVM's output
(primary_in) with the SVM's output coming back over the link, and releases matching frames to
outdev (a filter-redirector indev that puts them on the wire). On a difference or timeout it asks
for a checkpoint (notify_dev, control socket events, --on-checkpoint); 'checkpoint-done' releases.
If the link is lost after it was up, it fails over: everything held is released and traffic
passes straight through.

PVM QEMU, for example:
  -chardev socket,id=mirror0,path=/run/colo/p-mirror.sock
  -chardev socket,id=pout,path=/run/colo/p-out.sock
  -chardev socket,id=pinj,path=/run/colo/p-inj.sock
  -object filter-mirror,id=m0,netdev=hn0,queue=tx,outdev=mirror0
  -object filter-redirector,id=r0,netdev=hn0,queue=rx,indev=pinj
  -object filter-redirector,id=r1,netdev=hn0,queue=rx,outdev=pout
colo-proxy:
  colo-proxy primary --addr 10.0.0.2:9100 --secret-file /etc/colo/secret \\
    --mirror-in unix:/run/colo/p-mirror.sock --primary-in unix:/run/colo/p-out.sock \\
    --outdev unix:/run/colo/p-inj.sock

Client side:
  --mirror-in ADDR       client→guest frames (filter-mirror outdev; or a redirector's outdev, then
                         also give --guest-in)
  --guest-in ADDR        inject the client frames into the PVM (redirector indev, queue=tx) when
                         mirror_in consumed them instead of copying
  QEMU syntax: --object colo-primary,id=ID,mirror_in=ID,primary_in=ID,outdev=ID[,guest_in=ID]
               [,notify_dev=ID][,addr=HOST:PORT][,compare_timeout=MS][,expired_scan_cycle=MS]
               [,max_queue_size=N][,max_connections=N][,idle_timeout=MS][,closed_timeout=MS]
               [,vnet_hdr_support=on][,secondary_in=ID,secondary_out=ID]

QEMU's canonical COLO-FT secondary instead of a colo-proxy secondary (no --addr):
  --secondary-out ADDR   client frames for the QEMU secondary's filter-redirector indev (red0, :9003)
  --secondary-in ADDR    the QEMU secondary's rewritten output (red1, :9004)

${LINK_HELP}

Comparison (as for 'colo-proxy compare'): --primary-in --outdev --notify-dev --compare-timeout
--expired-scan-cycle --max-queue-size --max-connections --idle-timeout --closed-timeout
--vnet-hdr-support --compat-passthrough --chardev --config
--passthrough RULE --capture DIR --capture-frames N --capture-max-per-minute N --capture-max-mib N
(see 'colo-proxy compare --help').

${CONTROL_ARG_HELP}

${HEAP_HELP}
`;

const PRIMARY_KEYS = [
  "mirror_in",
  "guest_in",
  "secondary_out",
  "secondary_in",
  "primary_in",
  "outdev",
  "notify_dev",
  "addr",
  ...NUMERIC_KEYS,
  "vnet_hdr_support",
] as const;

export interface ParsedPrimary {
  config: PrimaryConfig;
  help: boolean;
  control: ReturnType<typeof controlOptionsFromArgs>;
  controlTcp: string | undefined;
  controlPath: string | undefined;
}

export function parsePrimaryArgs(argv: string[]): ParsedPrimary | { help: true } {
  const link: LinkFlags = {};
  const ends: { mirror_in?: string; guest_in?: string; secondary_out?: string } = {};
  const ctl: ControlArgValues = {};
  let autoFailover = true;
  const objects: Map<string, string>[] = [];
  const parsed = parseCompareArgs(argv, {
    value: new Set([
      ...LINK_VALUE_FLAGS,
      "mirror-in",
      "guest-in",
      "secondary-out",
      "metrics",
      "dashboard",
      "on-checkpoint",
      "on-checkpoint-interval",
    ]),
    bool: new Set(["no-auto-failover"]),
    onValue(name, value) {
      if (setLinkFlag(link, name, value)) return;
      if (name === "mirror-in" || name === "guest-in" || name === "secondary-out") {
        ends[name.replace("-", "_") as "mirror_in"] = value;
      } else ctl[name as "metrics"] = value;
    },
    onBool() {
      autoFailover = false;
    },
    object(text) {
      const o = parsePairObject(text, "colo-primary", PRIMARY_KEYS);
      if (o === undefined) return false;
      objects.push(o);
      return true;
    },
  });
  if (parsed.help) return { help: true };
  if (objects.length > 1) {
    throw new ConfigError(
      "only one colo-primary object per process",
      undefined,
      "COLO_ERR_CONFIG_UNSUPPORTED",
    );
  }
  // Object values fill in what the flags left unset (flags win, as for compare).
  if (objects[0] !== undefined) applyPrimaryObject(objects[0], parsed.raw, ends, link);
  const chardevs = chardevMap(parsed.raw.chardevs);
  const linkCfg = resolveLink(link, "primary");
  const secondaryOut = resolveEndpoint("secondary_out", ends.secondary_out, chardevs);
  const compare = resolveCompareConfig(parsed.raw, { secondaryOptional: true });
  if (linkCfg === undefined && (secondaryOut === undefined || compare.secondaryIn === undefined)) {
    throw new ConfigError(
      "the primary needs its secondary: --addr HOST:PORT (a colo-proxy secondary), or --secondary-out and --secondary-in (a QEMU secondary's redirectors)",
      undefined,
      "COLO_ERR_CONFIG_MISSING",
    );
  }
  if (linkCfg !== undefined && (secondaryOut !== undefined || compare.secondaryIn !== undefined)) {
    throw new ConfigError(
      "--addr (colo-proxy secondary) and --secondary-in/--secondary-out (QEMU secondary) exclude each other",
      undefined,
      "COLO_ERR_CONFIG_VALUE",
    );
  }
  const mirrorIn = resolveEndpoint("mirror_in", ends.mirror_in, chardevs);
  if (mirrorIn === undefined) {
    throw new ConfigError(
      "--mirror-in ADDR (or colo-primary,mirror_in=ID) is required",
      undefined,
      "COLO_ERR_CONFIG_MISSING",
    );
  }
  if (parsed.raw.log_level !== undefined) ctl["log-level"] = parsed.raw.log_level;
  return {
    help: false,
    config: {
      compare,
      mirrorIn,
      guestIn: resolveEndpoint("guest_in", ends.guest_in, chardevs),
      secondaryOut,
      link: linkCfg,
      autoFailover,
    },
    control: controlOptionsFromArgs(ctl),
    controlTcp: parsed.controlTcp,
    controlPath: parsed.control,
  };
}

function applyPrimaryObject(
  o: Map<string, string>,
  raw: RawCompareOptions,
  ends: { mirror_in?: string; guest_in?: string; secondary_out?: string },
  link: LinkFlags,
): void {
  const what = "--object colo-primary";
  for (const k of ["mirror_in", "guest_in", "secondary_out"] as const) {
    const v = o.get(k);
    if (v !== undefined) ends[k] ??= v;
  }
  const addr = o.get("addr");
  if (addr !== undefined) link.addr ??= addr;
  const id = o.get("id");
  if (id !== undefined) raw.id ??= id;
  for (const k of ["primary_in", "outdev", "notify_dev", "secondary_in"] as const) {
    const v = o.get(k);
    if (v !== undefined) raw.endpoints[k] ??= v;
  }
  for (const k of NUMERIC_KEYS) {
    const v = o.get(k);
    if (v !== undefined) raw[k] ??= parsePositiveU32(v, k, what);
  }
  const vh = boolOpt(o.get("vnet_hdr_support"), "vnet_hdr_support", what);
  if (vh !== undefined) raw.vnet_hdr_support ??= vh;
}

export async function run(argv: string[]): Promise<number> {
  const p = parseDaemonArgs("primary", argv, parsePrimaryArgs, help);
  if (typeof p === "number") return p;
  const { PrimaryDaemon } = await import("../../node/primary.ts");
  const { parseHostPort } = await import("../../control/index.ts");
  const logger = createLogger({ level: p.control.logLevel, name: "primary" });
  const daemon = await PrimaryDaemon.start(p.config, {
    logger,
    controlSocket: p.controlPath === "none" ? null : p.controlPath,
    controlTcp: p.controlTcp === undefined ? null : parseHostPort(p.controlTcp, "--control-tcp"),
    controlExtra: {
      metrics: p.control.metrics,
      dashboard: p.control.dashboard,
      onCheckpoint: p.control.onCheckpoint,
    },
  });
  await waitForSignal(logger);
  await daemon.close();
  return 0;
}
