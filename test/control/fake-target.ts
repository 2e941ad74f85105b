/**
 * @module A scripted ControlTarget for the control layer's tests: a small in-memory model of a
 * compare daemon (queues, flows, passthrough rules, parameters) whose behaviour is driven by the
 * test, with the same ColoStats a real daemon keeps.
 */
import { checkParam, resolveConfig } from "../../src/compare/config.ts";
import { PassthroughRules } from "../../src/compare/passthrough.ts";
import { ColoStats, type StatsSnapshot } from "../../src/control/stats.ts";
import type {
  CheckpointDoneResult,
  CheckpointRequestData,
  ConnectionInfo,
  ControlEventMap,
  ControlEventName,
  ControlParams,
  ControlTarget,
  DaemonMode,
  DaemonStatus,
  PassthroughEntry,
} from "../../src/control/target.ts";

type Emit = <K extends ControlEventName>(event: K, data: ControlEventMap[K]) => void;

export class FakeTarget implements ControlTarget {
  readonly st = new ColoStats();
  mode: DaemonMode = "colo";
  epoch = 0;
  flows: ConnectionInfo[] = [];
  /** The compare engine's own rule set and parameter validation, so the fake answers as it will. */
  readonly rules = new PassthroughRules();
  readonly cfg = resolveConfig({});
  /** Set by the test after startControl() so the fake can emit like a daemon. */
  emit: Emit = () => undefined;
  nowMs = 1_700_000_000_000;

  status(): DaemonStatus {
    return {
      role: "compare",
      mode: this.mode,
      peers: [
        { name: "primary_in", state: "up", address: "/tmp/pri.sock" },
        { name: "secondary_in", state: this.st.links.secondary_in === false ? "down" : "up" },
      ],
      checkpointEpoch: this.epoch,
    };
  }

  stats(): StatsSnapshot {
    return this.st.snapshot();
  }

  connections(): ConnectionInfo[] {
    return this.flows.map((f) => ({ ...f }));
  }

  checkpointDone(): CheckpointDoneResult {
    const released = this.st.queues.primary;
    const dropped = this.st.queues.secondary;
    this.st.release("flush", released);
    this.st.discard("flush", dropped);
    this.st.queues.primary = 0;
    this.st.queues.secondary = 0;
    for (const f of this.flows) {
      f.primaryQueued = 0;
      f.secondaryQueued = 0;
      f.oldestHeldMs = 0;
      if (f.state === "miscompared") f.state = "open";
    }
    this.epoch++;
    this.st.checkpointDone(this.nowMs);
    const r = { epoch: this.epoch, released, dropped };
    this.emit("CHECKPOINT_DONE", { ...r });
    return r;
  }

  failover(): void {
    this.mode = "failover";
    this.emit("FAILOVER", { reason: "operator" });
  }

  passthroughAdd(rule: string): PassthroughEntry {
    const r = this.rules.add(rule);
    return { id: r.id, rule: r.rule.text };
  }

  passthroughDel(idOrRule: number | string): string {
    return this.rules.remove(idOrRule).text;
  }

  passthroughList(): PassthroughEntry[] {
    return this.rules.list();
  }

  params(): ControlParams {
    return {
      compare_timeout: this.cfg.compareTimeout,
      expired_scan_cycle: this.cfg.expiredScanCycle,
      max_queue_size: this.cfg.maxQueueSize,
    };
  }

  setParam(name: string, value: number | boolean | string): number | boolean {
    const { field, value: v } = checkParam(name, value);
    (this.cfg as unknown as Record<string, number | boolean>)[field] = v;
    return v;
  }

  // --- scripted traffic -------------------------------------------------------------------

  /** `n` matched frames of `bytes` each, held `holdMs` each, on endpoint primary_in/secondary_in. */
  matched(n: number, bytes: number, holdMs: number): void {
    const pin = this.st.endpoint("primary_in");
    const sin = this.st.endpoint("secondary_in");
    const out = this.st.endpoint("outdev");
    for (let i = 0; i < n; i++) {
      pin.framesIn++;
      pin.bytesIn += bytes;
      sin.framesIn++;
      sin.bytesIn += bytes;
      out.framesOut++;
      out.bytesOut += bytes;
      this.st.release("matched");
      this.st.discard("matched");
      this.st.observeHold(holdMs);
    }
    const f = this.flows[0];
    if (f !== undefined) f.bytesCompared += n * bytes;
  }

  /** Opens a flow. */
  open(flow: string, protocol = "tcp"): ConnectionInfo {
    const f: ConnectionInfo = {
      flow,
      protocol,
      state: "open",
      primaryQueued: 0,
      secondaryQueued: 0,
      oldestHeldMs: 0,
      bytesCompared: 0,
    };
    this.flows.push(f);
    this.st.connections.active++;
    this.st.connections.opened++;
    return f;
  }

  /** A payload miscompare at `offset`: counts it, queues frames, emits CHECKPOINT_REQUEST. */
  miscompare(
    flow: ConnectionInfo,
    offset: number,
    primary: Buffer,
    secondary: Buffer,
  ): CheckpointRequestData {
    flow.primaryQueued++;
    flow.secondaryQueued++;
    flow.oldestHeldMs = 5;
    flow.state = "miscompared";
    this.st.queues.primary++;
    this.st.queues.secondary++;
    this.st.miscompare("payload-differs", flow.protocol);
    this.st.checkpointRequest("payload-differs");
    let d = 0;
    while (d < primary.length && primary[d] === secondary[d]) d++;
    const data: CheckpointRequestData = {
      reason: "payload-differs",
      explanation: `${flow.flow}: payload differs at stream offset ${offset + d}`,
      flow: flow.flow,
      protocol: flow.protocol,
      offset: offset + d,
      primary: { offset, hex: primary.toString("hex") },
      secondary: { offset, hex: secondary.toString("hex") },
      epoch: this.epoch,
    };
    this.emit("CHECKPOINT_REQUEST", data);
    return data;
  }
}
