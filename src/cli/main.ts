/**
 * @module The `colo-proxy` command dispatcher. Each subcommand lives in src/cli/commands/<name>.ts
 * and exports `run(argv): Promise<number>` (the exit code) plus a one-line `summary`.
 */
import { isColoError } from "../errors.ts";

interface Command {
  summary: string;
  run(argv: string[]): Promise<number>;
}

/** Subcommands, loaded lazily so that `colo-proxy pcap-inspect` does not load the daemon code. */
const commands: Record<string, () => Promise<Command>> = {
  // One line per command; keep sorted.
  compare: () => import("./commands/compare.ts"),
  ctl: () => import("./commands/ctl.ts"),
  demo: () => import("./commands/demo.ts"),
  "pcap-inspect": () => import("./commands/pcap-inspect.ts"),
  primary: () => import("./commands/primary.ts"),
  replay: () => import("./commands/replay.ts"),
  rewrite: () => import("./commands/rewrite.ts"),
  secondary: () => import("./commands/secondary.ts"),
};

function usage(): string {
  const lines = ["Usage: colo-proxy <command> [options]", "", "Commands:"];
  for (const name of Object.keys(commands).sort()) lines.push(`  ${name}`);
  lines.push("", "Run `colo-proxy <command> --help` for a command's options.");
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === "--version") {
    const pkg = (await import("../../package.json", { with: { type: "json" } })).default;
    process.stdout.write(`colo-proxy ${pkg.version}\n`);
    return 0;
  }
  const load = commands[name];
  if (load === undefined) {
    process.stderr.write(`colo-proxy: unknown command '${name}' (code COLO_ERR_USAGE)\n${usage()}\n`);
    return 2;
  }
  try {
    return await (await load()).run(rest);
  } catch (e) {
    if (isColoError(e)) {
      process.stderr.write(`colo-proxy ${name}: ${e.message} (code ${e.code})\n`);
      return e.code === "COLO_ERR_USAGE" || e.code === "COLO_ERR_CONFIG" ? 2 : 1;
    }
    throw e;
  }
}
