/**
 * @module `colo-proxy ctl`: talk to a running daemon's control socket. Human-readable by
 * default, `--json` for scripts. Exit codes: 0 ok, 1 the daemon answered with an error,
 * 2 bad usage, 3 cannot reach the daemon (connect, timeout, protocol, connection lost).
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type ControlAddress, ControlClient, ControlCommandError } from "../../control/client.ts";
import type { StatsReply, StatusReply } from "../../control/commands.ts";
import {
  formatConnections,
  formatEvent,
  formatParams,
  formatRules,
  formatStats,
  formatStatus,
} from "../../control/format.ts";
import { parseHostPort, runtimeDir } from "../../control/index.ts";
import type { EventMessage } from "../../control/protocol.ts";
import type { ConnectionInfo, ControlParams, PassthroughEntry } from "../../control/target.ts";
import { ColoError, isColoError } from "../../errors.ts";

export const summary = "query and steer a running daemon through its control socket";

export const usage = `Usage: colo-proxy ctl [--socket PATH | --tcp HOST:PORT] [--json] [--timeout MS] <command>

Commands:
  status                          role, mode, peers, uptime, checkpoint epoch
  connections                     tracked flows: state, queues, oldest held frame, bytes compared
  stats                           counters (the same numbers /metrics exports)
  watch [--count N]               stream events (checkpoint requests with explanation and hexdump)
  checkpoint-done                 tell the daemon the checkpoint completed (flush queues)
  failover                        stop comparing, pass everything through
  passthrough add RULE...         e.g. passthrough add tcp 10.0.0.0/24:3389 (see docs/compare.md)
  passthrough del ID|RULE...
  passthrough list
  params                          run-time parameters
  set NAME VALUE                  e.g. set compare_timeout 2000 (the daemon validates)
  commands                        commands the daemon accepts
  raw COMMAND [JSON-ARGUMENTS]    send any command, print the JSON reply

Options:
  --socket PATH    control socket (default: $COLO_PROXY_CONTROL, else the only
                   colo-proxy-*.sock in ${runtimeDir()})
  --tcp HOST:PORT  connect over TCP instead
  --json           print JSON (events as JSON lines for watch)
  --timeout MS     connect/reply timeout (default 5000)

Exit codes: 0 ok, 1 the daemon returned an error, 2 usage, 3 daemon unreachable.`;

const EXIT_OK = 0;
const EXIT_DAEMON_ERROR = 1;
const EXIT_USAGE = 2;
const EXIT_UNREACHABLE = 3;

class UsageError extends ColoError {
  constructor(msg: string) {
    super("COLO_ERR_USAGE", msg);
  }
}

/** Finds the socket when none is given: $COLO_PROXY_CONTROL, else the single colo-proxy-*.sock. */
export function findSocket(dir = runtimeDir()): string {
  const env = process.env.COLO_PROXY_CONTROL;
  if (env) return env;
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => /^colo-proxy-.*\.sock$/.test(n));
  } catch {
    // Unreadable directory: same as none found.
  }
  const socks = names
    .map((n) => join(dir, n))
    .filter((p) => statSync(p, { throwIfNoEntry: false })?.isSocket());
  if (socks.length === 1) return socks[0] as string;
  if (socks.length === 0) {
    throw new ColoError("COLO_ERR_CTL_CONNECT", `no colo-proxy control socket in ${dir}; pass --socket PATH`);
  }
  throw new UsageError(`several control sockets in ${dir} (${socks.join(", ")}); pick one with --socket`);
}

interface Io {
  out(s: string): void;
  err(s: string): void;
  color: boolean;
}

const stdio: Io = {
  out: (s) => process.stdout.write(`${s}\n`),
  err: (s) => process.stderr.write(`${s}\n`),
  color: process.stdout.isTTY === true,
};

export async function run(argv: string[], io: Io = stdio): Promise<number> {
  let values: {
    socket?: string | undefined;
    tcp?: string | undefined;
    json?: boolean | undefined;
    timeout?: string | undefined;
    count?: string | undefined;
    help?: boolean | undefined;
  };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        socket: { type: "string" },
        tcp: { type: "string" },
        json: { type: "boolean" },
        timeout: { type: "string" },
        count: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    io.err(`colo-proxy ctl: ${(e as Error).message} (code COLO_ERR_USAGE)\n${usage}`);
    return EXIT_USAGE;
  }
  if (values.help) {
    io.out(usage);
    return EXIT_OK;
  }
  const [cmd, ...rest] = positionals;
  if (cmd === undefined) {
    io.err(usage);
    return EXIT_USAGE;
  }
  let client: ControlClient | undefined;
  try {
    const request = buildRequest(cmd, rest, values.count);
    const timeoutMs = values.timeout === undefined ? 5000 : Number(values.timeout);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0)
      throw new UsageError("--timeout must be a non-negative integer (ms)");
    if (values.socket !== undefined && values.tcp !== undefined)
      throw new UsageError("give --socket or --tcp, not both");
    const addr: ControlAddress =
      values.tcp !== undefined ? parseHostPort(values.tcp, "--tcp") : { path: values.socket ?? findSocket() };
    client = await ControlClient.connect(addr, { timeoutMs });
    if (request.kind === "watch") return await watch(client, request.count, values.json === true, io);
    const reply = await client.execute(request.command, request.args);
    io.out(values.json ? JSON.stringify(reply, null, 2) : request.render(reply));
    return EXIT_OK;
  } catch (e) {
    return report(e, io);
  } finally {
    client?.close();
  }
}

function report(e: unknown, io: Io): number {
  if (e instanceof ControlCommandError) {
    io.err(`colo-proxy ctl: ${e.message} (${e.errorClass}, code ${e.code})`);
    return EXIT_DAEMON_ERROR;
  }
  if (isColoError(e)) {
    const usageLike = e.code === "COLO_ERR_USAGE" || e.code === "COLO_ERR_CONFIG";
    io.err(`colo-proxy ctl: ${e.message} (code ${e.code})`);
    return usageLike ? EXIT_USAGE : EXIT_UNREACHABLE;
  }
  throw e;
}

type Request =
  | { kind: "watch"; count: number }
  | { kind: "exec"; command: string; args?: Record<string, unknown>; render(reply: unknown): string };

function exec(command: string, render: (reply: unknown) => string, args?: Record<string, unknown>): Request {
  return args === undefined ? { kind: "exec", command, render } : { kind: "exec", command, args, render };
}

function expectArgs(cmd: string, rest: string[], n: number, shape: string): void {
  if (rest.length !== n) throw new UsageError(`'${cmd}' expects ${shape}`);
}

/** Validates the command line before connecting, so usage errors never depend on the daemon. */
function buildRequest(cmd: string, rest: string[], count: string | undefined): Request {
  switch (cmd) {
    case "status":
      expectArgs(cmd, rest, 0, "no arguments");
      return exec("query-status", (r) => formatStatus(r as StatusReply));
    case "connections":
      expectArgs(cmd, rest, 0, "no arguments");
      return exec("query-connections", (r) => formatConnections(r as ConnectionInfo[]));
    case "stats":
      expectArgs(cmd, rest, 0, "no arguments");
      return exec("query-stats", (r) => formatStats(r as StatsReply));
    case "watch": {
      expectArgs(cmd, rest, 0, "no arguments (use --count N to stop after N events)");
      const n = count === undefined ? 0 : Number(count);
      if (!Number.isInteger(n) || n < 0) throw new UsageError("--count must be a non-negative integer");
      return { kind: "watch", count: n };
    }
    case "checkpoint-done":
      expectArgs(cmd, rest, 0, "no arguments");
      return exec("checkpoint-done", (r) => {
        const d = r as { epoch: number; released: number; dropped: number };
        return `checkpoint done: epoch ${d.epoch}, released ${d.released} primary frames, dropped ${d.dropped} secondary frames`;
      });
    case "failover":
      expectArgs(cmd, rest, 0, "no arguments");
      return exec("failover", (r) => `failover: mode is now ${(r as { mode: string }).mode}`);
    case "passthrough": {
      const [sub, ...more] = rest;
      if (sub === "list") {
        expectArgs("passthrough list", more, 0, "no arguments");
        return exec("query-passthrough", (r) => formatRules(r as PassthroughEntry[]));
      }
      if (sub === "add") {
        if (more.length === 0)
          throw new UsageError("'passthrough add' expects a RULE, e.g. tcp 10.0.0.0/24:3389");
        return exec(
          "passthrough-add",
          (r) => {
            const e = r as PassthroughEntry;
            return `rule ${e.id}: ${e.rule}`;
          },
          { rule: more.join(" ") },
        );
      }
      if (sub === "del") {
        if (more.length === 0) throw new UsageError("'passthrough del' expects an ID or a RULE");
        const one = more.length === 1 ? (more[0] as string) : undefined;
        const args = one !== undefined && /^\d+$/.test(one) ? { id: Number(one) } : { rule: more.join(" ") };
        return exec("passthrough-del", (r) => `removed: ${(r as { removed: string }).removed}`, args);
      }
      throw new UsageError("'passthrough' expects add, del or list");
    }
    case "params":
      expectArgs(cmd, rest, 0, "no arguments");
      return exec("query-params", (r) => formatParams(r as ControlParams));
    case "set": {
      expectArgs(cmd, rest, 2, "NAME VALUE, e.g. set compare_timeout 2000");
      const [name, raw] = rest as [string, string];
      return exec("set-param", (r) => formatParams(r as ControlParams), { name, value: parseValue(raw) });
    }
    case "commands":
      expectArgs(cmd, rest, 0, "no arguments");
      return exec("query-commands", (r) =>
        (r as { name: string; help: string }[])
          .map((c) => `${c.name.padEnd(18)}  ${c.help}`)
          .sort()
          .join("\n"),
      );
    case "raw": {
      if (rest.length < 1 || rest.length > 2) throw new UsageError("'raw' expects COMMAND [JSON-ARGUMENTS]");
      let args: Record<string, unknown> | undefined;
      if (rest[1] !== undefined) {
        try {
          args = JSON.parse(rest[1]) as Record<string, unknown>;
        } catch (e) {
          throw new UsageError(`JSON-ARGUMENTS is not valid JSON: ${(e as Error).message}`);
        }
      }
      return exec(rest[0] as string, (r) => JSON.stringify(r, null, 2), args);
    }
    default:
      throw new UsageError(`unknown ctl command '${cmd}'`);
  }
}

/** Command-line value → JSON: integers and on/off/true/false become numbers/booleans. */
function parseValue(raw: string): number | boolean | string {
  if (/^-?\d+$/.test(raw)) return Number(raw);
  if (raw === "on" || raw === "true") return true;
  if (raw === "off" || raw === "false") return false;
  return raw;
}

/** Prints events until `count` were seen (0 = forever), SIGINT, or the daemon goes away. */
function watch(client: ControlClient, count: number, json: boolean, io: Io): Promise<number> {
  return new Promise((resolve) => {
    let seen = 0;
    const onSigint = (): void => finish(EXIT_OK);
    const finish = (code: number): void => {
      process.off("SIGINT", onSigint);
      resolve(code);
    };
    process.on("SIGINT", onSigint);
    client.onEvent((e: EventMessage) => {
      io.out(json ? JSON.stringify(e) : formatEvent(e, io.color));
      seen++;
      if (count > 0 && seen >= count) finish(EXIT_OK);
    });
    client.onClose((err) => {
      if (err !== undefined)
        io.err(`colo-proxy ctl: ${err.message} (code ${(err as ColoError).code ?? "?"})`);
      finish(EXIT_UNREACHABLE);
    });
    if (!json) io.err("watching events (Ctrl-C to stop)…");
  });
}
