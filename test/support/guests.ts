/** @module Re-export: the guest lab lives in src/node/lab/guests.ts (shared with `colo-proxy demo`). */
export * from "../../src/node/lab/guests.ts";
