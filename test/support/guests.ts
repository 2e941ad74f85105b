/** @module Re-export: the guest lab lives in src/node/lab/guests.ts (shared with `colo-proxy demo`). */
export * from "../../src/node/lab/guests.ts";

/** Deadline for a guest console command: a niced guest on a loaded 2-core CI machine can stall for many seconds. */
export const CONSOLE_MS = 60_000;
