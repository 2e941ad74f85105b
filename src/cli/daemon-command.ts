/**
 * @module What every daemon command (`compare`, `primary`, `secondary`, `rewrite`) does around its
 * daemon: parse arguments (a ConfigError is a usage error, exit 2; `--help` prints and exits 0) and
 * run until SIGINT/SIGTERM.
 */
import { ConfigError } from "../errors.ts";

/**
 * `parse(argv)`, or the exit code when there is nothing to run: 2 after printing a configuration
 * error (its stable code included), 0 after printing `help` for `--help`.
 */
export function parseDaemonArgs<T extends { help: boolean }>(
  command: string,
  argv: string[],
  parse: (argv: string[]) => T,
  help: string,
): Exclude<T, { help: true }> | number {
  let parsed: T;
  try {
    parsed = parse(argv);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`colo-proxy ${command}: ${e.message} (code ${e.code})\n`);
      return 2;
    }
    throw e;
  }
  if (parsed.help) {
    process.stdout.write(help);
    return 0;
  }
  return parsed as Exclude<T, { help: true }>;
}

/** Resolves on the first SIGINT or SIGTERM (logged), so the caller can close its daemon. */
export function waitForSignal(logger: { info(o: object, m: string): void }): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      logger.info({ signal: sig }, "stopping");
      resolve();
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
}
