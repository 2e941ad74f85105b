/** @module Re-export: the netns client lives in src/node/lab/client-script.ts (shared with the demo). */
export type { ClientOp, ClientResult } from "../../src/node/lab/client-script.ts";
