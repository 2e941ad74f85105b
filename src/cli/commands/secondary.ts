/**
 * @module `colo-proxy secondary`: feeds the SVM the client frames the primary mirrors, rewrites
 * TCP sequence numbers both ways, returns the SVM's output to the primary, and takes over the
 * clients on failover.
 */
import { CONTROL_ARG_HELP, type ControlArgValues, controlOptionsFromArgs } from "../../control/index.ts";
import { ConfigError } from "../../errors.ts";
import { createLogger } from "../../log.ts";
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
import type { SecondaryConfig } from "../../node/secondary.ts";
import { HEAP_HELP, parseDaemonArgs, waitForSignal } from "../daemon-command.ts";

export const summary =
  "secondary host: feed the SVM, rewrite TCP seq/ack, return its output, take over on failover";

export const help = `Usage: colo-proxy secondary --addr HOST:PORT --guest-in ADDR --guest-out ADDR [options]

The secondary host's half of colo-proxy. It listens for the primary on --addr, injects the client
frames it receives into the SVM (guest_in: a filter-redirector indev, queue=tx), and sends the
SVM's output (guest_out: a filter-redirector outdev, queue=rx) back to the primary for
comparison. TCP sequence numbers are rewritten like QEMU's filter-rewriter (plus guest-initiated
connections, SACK, IPv6, VLAN), so the SVM's connections stay valid for clients that only see the
PVM's numbers. After each checkpoint the offsets reset.

On failover (the primary lost, or 'colo-proxy ctl failover') the SVM serves the clients itself:
frames from its own netdev (net_in: redirector outdev, queue=tx) are rewritten and injected, and
its output goes to the wire (net_out: redirector indev, queue=rx). While COLO runs, net_in frames
are dropped and counted: the clients talk to the PVM.

SVM QEMU, for example:
  -chardev socket,id=gin,path=/run/colo/s-in.sock   -chardev socket,id=gout,path=/run/colo/s-out.sock
  -chardev socket,id=nin,path=/run/colo/s-net-in.sock -chardev socket,id=nout,path=/run/colo/s-net-out.sock
  -object filter-redirector,id=f0,netdev=hn0,queue=tx,outdev=nin
  -object filter-redirector,id=f1,netdev=hn0,queue=tx,indev=gin
  -object filter-redirector,id=f2,netdev=hn0,queue=rx,indev=nout
  -object filter-redirector,id=f3,netdev=hn0,queue=rx,outdev=gout
colo-proxy:
  colo-proxy secondary --addr 0.0.0.0:9100 --secret-file /etc/colo/secret \\
    --guest-in unix:/run/colo/s-in.sock --guest-out unix:/run/colo/s-out.sock \\
    --net-in unix:/run/colo/s-net-in.sock --net-out unix:/run/colo/s-net-out.sock

Endpoints (ADDR = HOST:PORT or unix:PATH to listen, connect:... to dial, or a --chardev id):
  --guest-in ADDR  --guest-out ADDR  --net-in ADDR  --net-out ADDR
  --chardev socket,...     QEMU chardev syntax, referenced by id
  --object colo-secondary,id=ID,guest_in=ID,guest_out=ID[,net_in=ID,net_out=ID][,addr=HOST:PORT]
           [,vnet_hdr_support=on][,timestamps=on]
  --vnet-hdr-support       frames carry the vnet-header length word on every chardev and the link
  --timestamps             also translate TCP timestamps per connection (TSval/TSecr)

QEMU's canonical COLO-FT primary instead of a colo-proxy primary (no --addr):
  --primary-mirror ADDR    the QEMU primary's filter-mirror outdev socket (mirror0, :9003)
  --primary-compare ADDR   the QEMU primary's colo-compare secondary_in socket (compare1, :9004)
  Both usually connect:HOST:PORT. 'ctl checkpoint-done' resets the rewriter after a checkpoint.

${LINK_HELP}

${CONTROL_ARG_HELP}

${HEAP_HELP}
`;

const SECONDARY_KEYS = [
  "guest_in",
  "guest_out",
  "net_in",
  "net_out",
  "primary_mirror",
  "primary_compare",
  "addr",
  "vnet_hdr_support",
  "timestamps",
] as const;
type EndKey = "guest_in" | "guest_out" | "net_in" | "net_out" | "primary_mirror" | "primary_compare";
const END_FLAGS: Record<string, EndKey> = {
  "guest-in": "guest_in",
  "guest-out": "guest_out",
  "net-in": "net_in",
  "net-out": "net_out",
  "primary-mirror": "primary_mirror",
  "primary-compare": "primary_compare",
};
const CTL_FLAGS = [
  "control",
  "control-tcp",
  "metrics",
  "dashboard",
  "on-checkpoint",
  "on-checkpoint-interval",
  "log-level",
];

export interface ParsedSecondary {
  help: false;
  config: SecondaryConfig;
  control: ReturnType<typeof controlOptionsFromArgs>;
}

export function parseSecondaryArgs(argv: string[]): ParsedSecondary | { help: true } {
  const usage = (m: string) => new ConfigError(m, undefined, "COLO_ERR_USAGE");
  const link: LinkFlags = {};
  const ends: Partial<Record<EndKey, string>> = {};
  const ctl: ControlArgValues = {};
  const chardevs: string[] = [];
  const objects: Map<string, string>[] = [];
  let vnetHdr: boolean | undefined;
  let timestamps: boolean | undefined;
  let autoFailover = true;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--?([a-z][a-z0-9_-]*)(?:=(.*))?$/s.exec(arg);
    if (m === null) throw usage(`unexpected argument '${arg}' (see --help)`);
    const name = m[1]!.replaceAll("_", "-");
    if (name === "help" || name === "h") return { help: true };
    if (name === "vnet-hdr-support" || name === "timestamps" || name === "no-auto-failover") {
      if (m[2] !== undefined) throw usage(`--${name} takes no value`);
      if (name === "timestamps") timestamps = true;
      else if (name === "no-auto-failover") autoFailover = false;
      else vnetHdr = true;
      continue;
    }
    const known =
      name === "chardev" ||
      name === "object" ||
      name in END_FLAGS ||
      CTL_FLAGS.includes(name) ||
      (LINK_VALUE_FLAGS as readonly string[]).includes(name);
    if (!known) throw usage(`unknown option '${arg}' (see --help)`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw usage(`--${name} needs a value`);
    if (name === "chardev") chardevs.push(value);
    else if (name === "object") {
      const o = parsePairObject(value, "colo-secondary", SECONDARY_KEYS);
      if (o === undefined) {
        throw new ConfigError(
          `--object '${value}': 'colo-proxy secondary' takes colo-secondary objects only`,
          undefined,
          "COLO_ERR_CONFIG_UNSUPPORTED",
        );
      }
      objects.push(o);
    } else if (name in END_FLAGS) ends[END_FLAGS[name]!] = value;
    else if (CTL_FLAGS.includes(name)) ctl[name as keyof ControlArgValues] = value;
    else setLinkFlag(link, name, value);
  }
  if (objects.length > 1)
    throw new ConfigError(
      "only one colo-secondary object per process",
      undefined,
      "COLO_ERR_CONFIG_UNSUPPORTED",
    );
  const o = objects[0];
  if (o !== undefined) {
    const what = "--object colo-secondary";
    for (const k of Object.values(END_FLAGS)) {
      const v = o.get(k);
      if (v !== undefined) ends[k] ??= v;
    }
    const addr = o.get("addr");
    if (addr !== undefined) link.addr ??= addr;
    vnetHdr ??= boolOpt(o.get("vnet_hdr_support"), "vnet_hdr_support", what);
    timestamps ??= boolOpt(o.get("timestamps"), "timestamps", what);
  }
  const cds = chardevMap(chardevs);
  const ep = (k: EndKey) => resolveEndpoint(k, ends[k], cds);
  const need = (k: EndKey) => {
    const e = ep(k);
    if (e === undefined) {
      throw new ConfigError(
        `--${k.replace("_", "-")} ADDR (or colo-secondary,${k}=ID) is required`,
        undefined,
        "COLO_ERR_CONFIG_MISSING",
      );
    }
    return e;
  };
  const linkCfg = resolveLink(link, "secondary");
  const primaryMirror = ep("primary_mirror");
  const primaryCompare = ep("primary_compare");
  if (linkCfg === undefined && (primaryMirror === undefined || primaryCompare === undefined)) {
    throw new ConfigError(
      "the secondary needs its primary: --addr HOST:PORT (a colo-proxy primary), or --primary-mirror and --primary-compare (a QEMU primary)",
      undefined,
      "COLO_ERR_CONFIG_MISSING",
    );
  }
  if (linkCfg !== undefined && (primaryMirror !== undefined || primaryCompare !== undefined)) {
    throw new ConfigError(
      "--addr and --primary-mirror/--primary-compare exclude each other",
      undefined,
      "COLO_ERR_CONFIG_VALUE",
    );
  }
  const netIn = ep("net_in");
  const netOut = ep("net_out");
  if ((netIn === undefined) !== (netOut === undefined)) {
    throw new ConfigError(
      "--net-in and --net-out go together (the SVM's own path after failover)",
      undefined,
      "COLO_ERR_CONFIG_MISSING",
    );
  }
  return {
    help: false,
    config: {
      guestIn: need("guest_in"),
      guestOut: need("guest_out"),
      netIn,
      netOut,
      link: linkCfg,
      primaryMirror,
      primaryCompare,
      vnetHdr: vnetHdr ?? false,
      rewriter: { timestamps: timestamps ?? false },
      autoFailover,
    },
    control: controlOptionsFromArgs(ctl),
  };
}

export async function run(argv: string[]): Promise<number> {
  const p = parseDaemonArgs("secondary", argv, parseSecondaryArgs, help);
  if (typeof p === "number") return p;
  const { SecondaryDaemon } = await import("../../node/secondary.ts");
  const logger = createLogger({ level: p.control.logLevel, name: "secondary" });
  const daemon = await SecondaryDaemon.start(p.config, {
    logger,
    controlSocket: p.control.socket,
    controlTcp: p.control.tcp,
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
