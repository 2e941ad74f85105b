/**
 * @module Control-layer views of a Rewriter (stats snapshot, connection rows), shared by the
 * rewrite daemon and the secondary daemon so both report the same fields the same way.
 */
import type { StatsSnapshot } from "../control/stats.ts";
import type { ConnectionInfo } from "../control/target.ts";
import type { Rewriter } from "../rewrite/engine.ts";

const emptyHistogram = () => ({ bounds: [], counts: [0], sum: 0, count: 0 });

/** What the snapshot needs of an endpoint (ChardevEndpoint fits; so does a link adapter). */
export interface EndpointView {
  counters: { framesIn: number; bytesIn: number; framesOut: number; bytesOut: number; framesDropped: number };
  connected: boolean;
}

export function rewriterStats(
  engine: Rewriter,
  endpoints: Record<string, EndpointView>,
  badInput: Record<string, number>,
  extraDropped: Record<string, number> = {},
): StatsSnapshot {
  const s = engine.stats;
  const eps: StatsSnapshot["endpoints"] = {};
  const links: Record<string, boolean> = {};
  let dropped = 0;
  for (const [name, ep] of Object.entries(endpoints)) {
    const c = ep.counters;
    eps[name] = { framesIn: c.framesIn, bytesIn: c.bytesIn, framesOut: c.framesOut, bytesOut: c.bytesOut };
    links[name] = ep.connected;
    dropped += c.framesDropped;
  }
  const drops: Record<string, number> = { ...extraDropped };
  if (dropped > 0) drops["queue-full"] = dropped;
  return {
    endpoints: eps,
    released: {
      "rewritten-tx": s.rewrittenTx,
      "rewritten-rx": s.rewrittenRx,
      "unchanged-tx": s.framesTx - s.rewrittenTx,
      "unchanged-rx": s.framesRx - s.rewrittenRx,
    },
    dropped: drops,
    miscompares: {},
    checkpointRequests: {},
    checkpoints: s.checkpoints,
    checkpointInterval: emptyHistogram(),
    holdTime: emptyHistogram(),
    queues: { primary: 0, secondary: 0 },
    connections: { active: engine.size, opened: s.connectionsOpened },
    badInput: { ...s.malformedByCode, ...badInput },
    links,
  };
}

export function rewriterConnections(engine: Rewriter): ConnectionInfo[] {
  return engine.connections().map((c) => ({
    flow: c.flow,
    protocol: "tcp",
    state: c.phase,
    primaryQueued: 0,
    secondaryQueued: 0,
    oldestHeldMs: null,
    bytesCompared: 0,
    origin: c.origin,
    offsetKnown: c.offsetKnown,
    offset: c.offset,
    tsOffset: c.tsOffset,
    packetsTx: c.packetsTx,
    packetsRx: c.packetsRx,
    rewrittenTx: c.rewrittenTx,
    rewrittenRx: c.rewrittenRx,
  }));
}
