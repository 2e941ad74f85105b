/**
 * @module A scripted ControlTarget for the control layer's tests: a small in-memory model of a
 * compare daemon (queues, flows, passthrough rules, parameters) whose behaviour is driven by the
 * test, with the same ColoStats a real daemon keeps.
 */
import type { PassthroughRule } from "../../src/control/passthrough.ts";
import { sameRule } from "../../src/control/passthrough.ts";
import { ColoStats, type StatsSnapshot } from "../../src/control/stats.ts";
import type {
  CheckpointDoneResult,
  CheckpointRequestData,
  ConnectionInfo,
  ControlEventMap,
  ControlEventName,
  ControlParamName,
  ControlParams,
  ControlTarget,
  DaemonMode,
  DaemonStatus,
} from "../../src/control/target.ts";

type Emit = <K extends ControlEventName>(event: K, data: ControlEventMap[K]) => void;

export class FakeTarget implements ControlTarget {
  readonly st = new ColoStats();
  mode: DaemonMode = "colo";
  epoch = 0;
  flows: ConnectionInfo[] = [];
  rules: PassthroughRule[] = [];
  p: ControlParams = { compare_timeout: 3000, expired_scan_cycle: 3000, max_queue_size: 1024 };
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
    this.st.release("checkpoint", released);
    this.st.drop("secondary-flushed", dropped);
    this.st.queues.primary = 0;
    this.st.queues.secondary = 0;
    for (const f of this.flows) {
      f.primaryQueue = 0;
      f.secondaryQueue = 0;
      f.oldestHeldMs = null;
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

  passthroughAdd(rule: PassthroughRule): boolean {
    if (this.rules.some((r) => sameRule(r, rule))) return false;
    this.rules.push(rule);
    return true;
  }

  passthroughDel(rule: PassthroughRule): boolean {
    const i = this.rules.findIndex((r) => sameRule(r, rule));
    if (i < 0) return false;
    this.rules.splice(i, 1);
    return true;
  }

  passthroughList(): PassthroughRule[] {
    return this.rules.map((r) => ({ ...r }));
  }

  params(): ControlParams {
    return { ...this.p };
  }

  setParam(name: ControlParamName, value: number): void {
    this.p[name] = value;
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
      this.st.release("match");
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
      state: protocol === "tcp" ? "established" : "active",
      primaryQueue: 0,
      secondaryQueue: 0,
      oldestHeldMs: null,
      bytesCompared: 0,
      passthrough: false,
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
    flow.primaryQueue++;
    flow.secondaryQueue++;
    flow.oldestHeldMs = 5;
    this.st.queues.primary++;
    this.st.queues.secondary++;
    this.st.miscompare("payload", flow.protocol);
    this.st.checkpointRequest("payload");
    let d = 0;
    while (d < primary.length && primary[d] === secondary[d]) d++;
    const data: CheckpointRequestData = {
      reason: "payload",
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
