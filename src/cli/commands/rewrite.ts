/**
 * @module `colo-proxy rewrite`: QEMU's filter-rewriter as a standalone process placed between
 * filter-redirectors, configured in QEMU syntax (`--chardev socket,...`, `--object filter-rewriter,...`).
 */
import { parseArgs } from "node:util";
import { controlOptionsFromArgs, parseHostPort, startControl } from "../../control/index.ts";
import { ColoError, ConfigError } from "../../errors.ts";
import { createLogger, isLogLevel, LOG_LEVELS } from "../../log.ts";
import { RewriteDaemon } from "../../node/rewrite-daemon.ts";
import { parseRewriteObject } from "../../node/rewrite-daemon-config.ts";
import { HEAP_HELP, tuneDaemonV8, waitForSignal } from "../daemon-command.ts";

export const summary = "TCP seq/ack rewriter for the secondary (drop-in for QEMU's filter-rewriter)";

const HELP = `Usage: colo-proxy rewrite --chardev SPEC... --object filter-rewriter,...

Rewrites TCP sequence numbers between the secondary guest (SVM) and the client, like QEMU's
filter-rewriter, as a process between redirectors. Frames from tx_in (client→guest) are rewritten
and sent to tx_out; frames from rx_in (guest output) are rewritten and sent to rx_out.

  --chardev socket,id=ID,(host=H,port=P|path=P)[,server=on][,wait=off][,reconnect=S]
                            a socket endpoint in QEMU -chardev syntax (repeat; four are needed)
  --object filter-rewriter,id=ID,tx_in=ID,tx_out=ID,rx_in=ID,rx_out=ID[,vnet_hdr_support=on]
                            [,timestamps=on][,max_connections=N][,idle_timeout=MS]
                            [,handshake_timeout=MS][,closed_timeout=MS]
  --control PATH            control socket ('none' disables; default in the runtime dir):
                            checkpoint-done (CHECKPOINT), failover, query-stats, query-connections
  --control-tcp HOST:PORT   also accept control connections on TCP (loopback by default)
  --metrics HOST:PORT       Prometheus /metrics endpoint (host defaults to 127.0.0.1)
  --dashboard HOST:PORT     live web dashboard (host defaults to 127.0.0.1)
  --on-checkpoint CMD       run CMD (/bin/sh) on each CHECKPOINT_REQUEST event (the rewriter
                            raises none itself; accepted so one flag set fits every daemon)
  --on-checkpoint-interval MS  minimum ms between two runs of the hook (default 1000)
  --log-level LEVEL         ${LOG_LEVELS.join("|")} (default info)

Example (secondary, between QEMU redirectors f1/f2 and the guest-side redirectors):
  colo-proxy rewrite \\
    --chardev socket,id=tx_in,path=/run/colo/tx_in.sock,server=on,wait=off \\
    --chardev socket,id=tx_out,path=/run/colo/tx_out.sock,server=on,wait=off \\
    --chardev socket,id=rx_in,path=/run/colo/rx_in.sock,server=on,wait=off \\
    --chardev socket,id=rx_out,path=/run/colo/rx_out.sock,server=on,wait=off \\
    --object filter-rewriter,id=rew0,tx_in=tx_in,tx_out=tx_out,rx_in=rx_in,rx_out=rx_out

${HEAP_HELP}
`;

export async function run(argv: string[]): Promise<number> {
  let values: ReturnType<typeof parse>["values"];
  try {
    values = parse(argv).values;
  } catch (e) {
    throw new ConfigError((e as Error).message, undefined, "COLO_ERR_USAGE");
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const objects = values.object ?? [];
  if (objects.length !== 1)
    throw new ConfigError(
      "exactly one --object filter-rewriter,... is required",
      undefined,
      "COLO_ERR_USAGE",
    );
  const level = values["log-level"] ?? "info";
  if (!isLogLevel(level)) throw new ConfigError(`--log-level must be one of ${LOG_LEVELS.join(", ")}`);
  tuneDaemonV8();
  const log = createLogger({ level, name: "rewrite" });
  const daemon = new RewriteDaemon({
    chardevs: values.chardev ?? [],
    object: parseRewriteObject(objects[0]!),
    logger: log,
    onEvent: (event, data) => control?.emit(event, data),
  });
  let control: Awaited<ReturnType<typeof startControl>> | undefined;
  const extra = controlOptionsFromArgs(values);
  control = await startControl(daemon, {
    role: "rewrite",
    socket: values.control === "none" ? null : values.control,
    tcp: values["control-tcp"] === undefined ? null : parseHostPort(values["control-tcp"], "--control-tcp"),
    metrics: extra.metrics,
    dashboard: extra.dashboard,
    onCheckpoint: extra.onCheckpoint,
    logger: log,
  });
  try {
    await daemon.start();
  } catch (e) {
    await control.close();
    await daemon.close();
    if (e instanceof ColoError) throw e;
    throw new ColoError("COLO_ERR_CONFIG", `cannot start: ${(e as Error).message}`);
  }
  await waitForSignal(log);
  await daemon.close();
  await control.close();
  return 0;
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      chardev: { type: "string", multiple: true },
      object: { type: "string", multiple: true },
      control: { type: "string" },
      "control-tcp": { type: "string" },
      metrics: { type: "string" },
      dashboard: { type: "string" },
      "on-checkpoint": { type: "string" },
      "on-checkpoint-interval": { type: "string" },
      "log-level": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
}
