/**
 * @module What every daemon command (`compare`, `primary`, `secondary`, `rewrite`) does around its
 * daemon: parse arguments (a ConfigError is a usage error, exit 2; `--help` prints and exits 0),
 * tune V8 (heap, inlining) for a long-running packet mover, and run until SIGINT/SIGTERM.
 */
import v8 from "node:v8";
import { ConfigError } from "../errors.ts";

/** What every daemon's --help says about the environment it reads at start-up. */
export const HEAP_HELP = `Environment: COLO_PROXY_HEAP_GROWTH=PERCENT  V8 old-generation growing factor (0-1000, default
300: the heap may grow to 4x what the last full GC kept before the next one; 0 = V8's own).
COLO_PROXY_INLINE_BUDGET=BYTES  bytecode V8's optimizing compiler may inline into one function
(0-100000, default 3000; 0 = V8's own, 920).`;

/** Default of COLO_PROXY_HEAP_GROWTH: the old generation may grow to 4× what the last full GC kept. */
export const DEFAULT_HEAP_GROWTH_PERCENT = 300;

/**
 * Sets V8's old-generation growing factor for a daemon (COLO_PROXY_HEAP_GROWTH percent, default
 * 300; 0 keeps V8's own heuristic) and returns the percent applied. Why: a daemon keeps little
 * (~12 MB) but reads hundreds of MB/s into short-lived buffers. V8 then grows the young generation
 * to 16 MB and sizes the old generation at ~1.1× the live heap, and as soon as the headroom is below
 * the young generation's size it starts the next full mark-compact: one every ~50 ms at 1000-byte
 * frames, a third of the compare daemon's CPU (measured: docs/benchmarks.md, compare daemon,
 * session 4). A factor of 4 leaves room for them to stop. It changes when V8 collects, not how much
 * memory is allowed (--max-old-space-size still applies); the cost is up to ~4× the live heap.
 * Read by V8 at each full GC, so setting it at start-up takes effect.
 */
export function tuneDaemonHeap(env: NodeJS.ProcessEnv = process.env): number {
  const percent = wholeFromEnv(
    env,
    "COLO_PROXY_HEAP_GROWTH",
    DEFAULT_HEAP_GROWTH_PERCENT,
    1000,
    "a whole percent",
  );
  if (percent > 0) v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
  return percent;
}

/** Environment variable `name` as a whole number in [0, max] (`dflt` when unset or blank). */
function wholeFromEnv(env: NodeJS.ProcessEnv, name: string, dflt: number, max: number, what: string): number {
  const raw = env[name];
  const v = raw === undefined || raw.trim() === "" ? dflt : Number(raw);
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new ConfigError(
      `${name} must be ${what} from 0 to ${max}, got "${raw}"`,
      { value: raw },
      "COLO_ERR_CONFIG_VALUE",
    );
  }
  return v;
}

/** Default of COLO_PROXY_INLINE_BUDGET: bytes of bytecode inlined into one optimized function. */
export const DEFAULT_INLINE_BUDGET = 3000;

/**
 * Sets the optimizing compiler's cumulative inlining budget for a daemon (COLO_PROXY_INLINE_BUDGET
 * bytes of bytecode, default 3000; 0 keeps V8's own 920) and returns the budget applied. Why: the
 * per-frame path (socket read, decoder, compare engine, frame writer) is a deep chain of small
 * functions, and with V8's budget TurboFan stops inlining partway down it; the calls left cost
 * the compare engine 15–20 % per frame while its connections are in cache (docs/benchmarks.md,
 * compare engine, "Session 9"). Read by TurboFan at each optimization, so setting it at start-up,
 * before the hot code is optimized, takes effect. The cost is larger optimized code and longer
 * compile jobs (on V8's background thread).
 */
export function tuneDaemonJit(env: NodeJS.ProcessEnv = process.env): number {
  const bytes = wholeFromEnv(
    env,
    "COLO_PROXY_INLINE_BUDGET",
    DEFAULT_INLINE_BUDGET,
    100_000,
    "a whole number of bytes",
  );
  if (bytes > 0) v8.setFlagsFromString(`--max-inlined-bytecode-size-cumulative=${bytes}`);
  return bytes;
}

/** tuneDaemonHeap and tuneDaemonJit: what every daemon command does before it starts. */
export function tuneDaemonV8(env: NodeJS.ProcessEnv = process.env): void {
  tuneDaemonHeap(env);
  tuneDaemonJit(env);
}

/**
 * `parse(argv)` (and V8 tuned for a daemon: tuneDaemonV8), or the exit code when there is nothing
 * to run: 2 after printing a configuration error (its stable code included), 0 after printing
 * `help` for `--help`.
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
    if (!parsed.help) tuneDaemonV8();
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
