/**
 * @module Rewriter scenarios as data: sequences of client→guest (tx) and guest→client (rx)
 * segments and checkpoint events, run against QEMU's filter-rewriter and against our engine.
 * Each TCP step names only what it varies; addresses and ports come from the scenario's flow.
 */
import { Rewriter, type RewriterOptions } from "../../src/rewrite/engine.ts";
import { type TcpSpec, tcpFrame } from "./tcp-frames.ts";

export type SegSpec = Omit<TcpSpec, "sport" | "dport" | "src" | "dst" | "family"> & { sport?: number };

export type Step = { dir: "tx" | "rx"; seg: SegSpec } | { checkpoint: true };

export interface Flow {
  family?: 4 | 6;
  client?: string;
  guest?: string;
  clientPort?: number;
  guestPort?: number;
}

export interface Scenario {
  name: string;
  flow?: Flow;
  steps: Step[];
  /** Bytes of virtio-net header on every frame (QEMU side: vnet_hdr_support=on). */
  vnetLen?: number;
}

export const tx = (seg: SegSpec): Step => ({ dir: "tx", seg });
export const rx = (seg: SegSpec): Step => ({ dir: "rx", seg });
export const checkpoint: Step = { checkpoint: true };

/** The frame a step sends (client→guest for tx, guest→client for rx). */
export function stepFrame(flow: Flow, step: { dir: "tx" | "rx"; seg: SegSpec }, vnetLen = 0): Uint8Array {
  const family = flow.family ?? 4;
  const client = flow.client ?? (family === 4 ? "10.0.0.1" : "fd00::1");
  const guest = flow.guest ?? (family === 4 ? "10.0.0.2" : "fd00::2");
  const cp = step.seg.sport ?? flow.clientPort ?? 40000;
  const gp = flow.guestPort ?? 80;
  const { sport: _s, ...seg } = step.seg;
  return step.dir === "tx"
    ? tcpFrame({ ...seg, family, vnetLen, src: client, dst: guest, sport: cp, dport: gp })
    : tcpFrame({ ...seg, family, vnetLen, src: guest, dst: client, sport: gp, dport: cp });
}

export interface Output {
  dir: "tx" | "rx";
  hex: string;
}

/** Runs a scenario through our engine (fresh instance); returns the frames it forwards. */
export function runEngine(s: Scenario, opts: RewriterOptions = {}): Output[] {
  const vnetLen = s.vnetLen ?? 0;
  const r = new Rewriter(opts);
  const out: Output[] = [];
  let now = 1000;
  for (const step of s.steps) {
    now += 1;
    if ("checkpoint" in step) {
      r.checkpoint(now);
      continue;
    }
    const f = stepFrame(s.flow ?? {}, step, vnetLen);
    if (step.dir === "tx") r.tx(f, vnetLen, now);
    else r.rx(f, vnetLen, now);
    out.push({ dir: step.dir, hex: Buffer.from(f).toString("hex") });
  }
  return out;
}

// Client ISN 1000, PVM ISN 3000 (seen only through client acks), SVM ISN 5000.
const handshake: Step[] = [
  tx({ seq: 1000, flags: "S", mss: 1460 }),
  rx({ seq: 5000, ack: 1001, flags: "SA", mss: 1460 }),
  tx({ seq: 1001, ack: 3001, flags: "A" }),
];

/** Cases the reference supports: our output must be byte-identical to QEMU's. */
export const referenceScenarios: Scenario[] = [
  { name: "client handshake", steps: handshake },
  {
    name: "data both ways",
    steps: [
      ...handshake,
      tx({ seq: 1001, ack: 3001, flags: "PA", payload: "GET / HTTP/1.0\r\n\r\n" }),
      rx({ seq: 5001, ack: 1019, flags: "A" }),
      rx({ seq: 5001, ack: 1019, flags: "PA", payload: "HTTP/1.0 200 OK\r\n\r\nhello" }),
      tx({ seq: 1019, ack: 3025, flags: "A" }),
      rx({ seq: 5025, ack: 1019, flags: "PA", payload: "more" }),
      tx({ seq: 1019, ack: 3029, flags: "PA", payload: "x" }),
    ],
  },
  {
    name: "checkpoint resets the offset",
    steps: [
      ...handshake,
      tx({ seq: 1001, ack: 3001, flags: "PA", payload: "abc" }),
      rx({ seq: 5001, ack: 1004, flags: "PA", payload: "def" }),
      checkpoint,
      // After the checkpoint the SVM is a copy of the PVM: both use the PVM's numbers.
      tx({ seq: 1004, ack: 3004, flags: "PA", payload: "ghi" }),
      rx({ seq: 3004, ack: 1007, flags: "PA", payload: "jkl" }),
    ],
  },
  {
    name: "sequence wraparound (SVM ISN near 2^32, offset wraps)",
    steps: [
      tx({ seq: 0xfffffff0, flags: "S" }),
      rx({ seq: 0xfffffffa, ack: 0xfffffff1, flags: "SA" }),
      tx({ seq: 0xfffffff1, ack: 0x10, flags: "A" }),
      tx({ seq: 0xfffffff1, ack: 0x10, flags: "PA", payload: "0123456789abcdef0123" }),
      rx({ seq: 0xfffffffb, ack: 5, flags: "PA", payload: "0123456789" }),
      rx({ seq: 5, ack: 5, flags: "PA", payload: "z" }),
      tx({ seq: 5, ack: 0x1b, flags: "A" }),
    ],
  },
  {
    name: "negative offset (PVM ISN above SVM ISN)",
    steps: [
      tx({ seq: 77, flags: "S" }),
      rx({ seq: 10, ack: 78, flags: "SA" }),
      tx({ seq: 78, ack: 0x80000001, flags: "A" }),
      rx({ seq: 11, ack: 78, flags: "PA", payload: "hi" }),
      tx({ seq: 78, ack: 0x80000003, flags: "A" }),
    ],
  },
  {
    name: "close then reuse of the same 4-tuple",
    steps: [
      ...handshake,
      tx({ seq: 1001, ack: 3001, flags: "PA", payload: "q" }),
      rx({ seq: 5001, ack: 1002, flags: "PA", payload: "r" }),
      tx({ seq: 1002, ack: 3002, flags: "FA" }),
      rx({ seq: 5002, ack: 1003, flags: "FA" }),
      tx({ seq: 1003, ack: 3003, flags: "A" }),
      // New connection, same ports, new ISNs: client 9000, PVM 7000, SVM 20000.
      tx({ seq: 9000, flags: "S" }),
      rx({ seq: 20000, ack: 9001, flags: "SA" }),
      tx({ seq: 9001, ack: 7001, flags: "A" }),
      tx({ seq: 9001, ack: 7001, flags: "PA", payload: "again" }),
      rx({ seq: 20001, ack: 9006, flags: "PA", payload: "ok" }),
    ],
  },
  {
    name: "RST+ACK from either side is rewritten like an ACK",
    steps: [
      ...handshake,
      rx({ seq: 5001, ack: 1001, flags: "PA", payload: "x" }),
      tx({ seq: 1001, ack: 3002, flags: "RA" }),
      rx({ seq: 5002, ack: 1001, flags: "RA" }),
    ],
  },
  {
    name: "minimum-size frames with Ethernet padding",
    steps: [
      tx({ seq: 1000, flags: "S", padTo: 60 }),
      rx({ seq: 5000, ack: 1001, flags: "SA", padTo: 60 }),
      tx({ seq: 1001, ack: 3001, flags: "A", padTo: 60 }),
      rx({ seq: 5001, ack: 1001, flags: "PA", payload: "a", padTo: 60 }),
      tx({ seq: 1001, ack: 3002, flags: "A", padTo: 60 }),
    ],
  },
  {
    name: "untracked and non-SYN traffic passes unchanged",
    steps: [
      tx({ seq: 1, ack: 2, flags: "PA", payload: "mid-stream", sport: 41000 }),
      rx({ seq: 3, ack: 11, flags: "A", sport: 41000 }),
    ],
  },
];
