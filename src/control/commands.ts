/**
 * @module The standard commands every daemon gets from its ControlTarget: query-status,
 * query-connections, query-stats, checkpoint-done, failover, passthrough-add/-del,
 * query-passthrough, query-params and set-param. A command whose target method is missing is
 * not registered (so it answers CommandNotFound and is absent from query-commands).
 */
import { z } from "zod";
import type { OnCheckpointStats } from "./on-checkpoint.ts";
import type { ControlServer, ControlServerStats } from "./server.ts";
import type { StatsSnapshot } from "./stats.ts";
import type { ControlTarget, DaemonStatus } from "./target.ts";

export interface StatusReply extends DaemonStatus {
  version: string;
  pid: number;
  /** Seconds since the daemon started. */
  uptime: number;
}

export interface StatsReply extends StatsSnapshot {
  /** The operator interface's own counters. */
  control: ControlServerStats & { onCheckpoint?: OnCheckpointStats };
}

const addArgs = z.object({ rule: z.string().min(1).max(1024) }).strict();
const delArgs = z
  .object({ rule: z.string().min(1).max(1024).optional(), id: z.number().int().min(0).optional() })
  .strict()
  .refine((a) => (a.rule === undefined) !== (a.id === undefined), {
    message: "give exactly one of 'rule' or 'id'",
  });
const setParamArgs = z
  .object({
    name: z.string().min(1).max(64),
    value: z.union([z.number(), z.boolean(), z.string().max(64)], {
      error: "expected a number, a boolean or a string",
    }),
  })
  .strict();

export interface StandardCommandOptions {
  version: string;
  /** Monotonic-ish ms clock and the start time on it, for `uptime`. */
  now: () => number;
  startMs: number;
  /** The full stats reply; defaults to the target's stats plus the server's own counters. */
  stats?: () => StatsReply;
}

export function registerStandardCommands(
  server: ControlServer,
  target: ControlTarget,
  opts: StandardCommandOptions,
): void {
  const stats = opts.stats ?? ((): StatsReply => ({ ...target.stats(), control: server.stats }));
  server.register("query-status", {
    help: "Role, mode, peers, uptime and checkpoint epoch.",
    handler: (): StatusReply => ({
      ...target.status(),
      version: opts.version,
      pid: process.pid,
      uptime: Math.max(0, Math.floor((opts.now() - opts.startMs) / 1000)),
    }),
  });
  server.register("query-stats", {
    help: "Counters: frames/bytes per endpoint, releases, miscompares, checkpoints, hold times, bad input.",
    handler: stats,
  });
  const t = target;
  if (t.connections !== undefined) {
    const connections = t.connections.bind(t);
    server.register("query-connections", {
      help: "Tracked flows: state, queue depths, oldest held frame age, bytes compared.",
      handler: () => connections(),
    });
  }
  if (t.checkpointDone !== undefined) {
    const done = t.checkpointDone.bind(t);
    server.register("checkpoint-done", {
      help: "The checkpoint completed: release held primary frames, drop the secondary's, new epoch.",
      handler: () => done(),
    });
  }
  if (t.failover !== undefined) {
    const failover = t.failover.bind(t);
    server.register("failover", {
      help: "Fail over: stop comparing and pass all traffic through.",
      handler: async () => {
        await failover();
        return { mode: target.status().mode };
      },
    });
  }
  if (t.passthroughAdd !== undefined && t.passthroughDel !== undefined && t.passthroughList !== undefined) {
    const add = t.passthroughAdd.bind(t);
    const del = t.passthroughDel.bind(t);
    const list = t.passthroughList.bind(t);
    server.register("passthrough-add", {
      help: "Release matching flows without comparing: {rule: 'tcp 10.0.0.0/24:3389'}.",
      args: addArgs,
      handler: (a) => add(a.rule),
    });
    server.register("passthrough-del", {
      help: "Remove a passthrough rule: {id} or {rule}.",
      args: delArgs,
      handler: (a) => ({ removed: del((a.id ?? a.rule) as number | string) }),
    });
    server.register("query-passthrough", {
      help: "List passthrough rules with their ids.",
      handler: () => list(),
    });
  }
  if (t.setParam !== undefined && t.params !== undefined) {
    const set = t.setParam.bind(t);
    const params = t.params.bind(t);
    server.register("query-params", {
      help: "Run-time parameters (compare_timeout, expired_scan_cycle, max_queue_size, ...).",
      handler: () => params(),
    });
    server.register("set-param", {
      help: "Set a run-time parameter: {name, value}; the daemon validates it.",
      args: setParamArgs,
      handler: (a) => {
        set(a.name, a.value);
        return params();
      },
    });
  }
}
