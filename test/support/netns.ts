/** @module Re-export: the client netns lives in src/node/lab/netns.ts (shared with the demo). */
export { type ClientNetns, createClientNetns } from "../../src/node/lab/netns.ts";
