/** @module Re-export: the guest lab lives in src/node/lab/guests.ts (shared with `colo-proxy demo`). */
export * from "../../src/node/lab/guests.ts";

/** Deadline for a guest console command: a niced guest on a loaded 2-core CI machine can stall for many seconds. */
export const CONSOLE_MS = 60_000;

/** Sum of a counter map's values (zero-valued keys and absent maps count 0). */
export const sum = (r: Record<string, number> | undefined): number =>
  Object.values(r ?? {}).reduce((a, b) => a + b, 0);

/** Polls `cond` every 50 ms; false if it still fails after `ms` (never a fixed wait for quiet). */
export async function waitFor(cond: () => boolean, ms = 30_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}
