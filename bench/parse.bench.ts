/**
 * @module parseFrame benchmarks: parse + flow key (and + Map lookup) in frames/s and MB/s for
 * 64- and 1500-byte TCP frames over IPv4, IPv6, 802.1Q and QinQ, against a baseline that only
 * reads the EtherType and ports with readUInt16BE, measured in the same run. Then flow-key
 * construction alternatives side by side. Prints ratios; asserts nothing.
 */
import { buildTcp, type TcpBuild } from "../src/packet/build.ts";
import { type FrameMeta, newFrameMeta } from "../src/packet/meta.ts";
import { parseFrame } from "../src/packet/parse.ts";

/** Distinct frames per set (different ports, so keys differ like real traffic). */
const SET = 1024;
/** Passes over the set per timed sample. */
const INNER = 200;
const ROUNDS = 25;
const WARMUP_ROUNDS = 3;

let sinkN = 0;

/** Runs every task once per round, interleaved, and keeps each task's best time per frame (ns). */
async function interleavedBest(tasks: Record<string, () => void>): Promise<Map<string, number>> {
  const best = new Map<string, number>();
  const entries = Object.entries(tasks);
  for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
    for (const [name, fn] of entries) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < INNER; i++) fn();
      const ns = Number(process.hrtime.bigint() - t0) / (INNER * SET);
      if (round >= WARMUP_ROUNDS) best.set(name, Math.min(best.get(name) ?? Number.POSITIVE_INFINITY, ns));
    }
    await new Promise<void>((r) => setImmediate(r));
  }
  return best;
}

function frameSet(len: number, o: Partial<TcpBuild>, v6: boolean): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < SET; i++) {
    const base: TcpBuild = {
      src: v6 ? "2001:db8::1" : "10.0.0.1",
      dst: v6 ? "2001:db8::2" : "10.0.0.2",
      sport: 10000 + i,
      dport: 80,
      seq: i * 1000,
      ack: 1,
      flags: "PA",
      ...o,
    };
    const hdr = buildTcp(base).length;
    out.push(buildTcp({ ...base, payload: new Uint8Array(Math.max(0, len - hdr)) }));
  }
  return out;
}

function fmt(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(0)} k`;
}

async function parseBench(): Promise<void> {
  console.log(`\n### parseFrame + flow key (${SET} distinct frames, best of ${ROUNDS} rounds)\n`);
  console.log(
    "| frames | baseline: ethertype+ports | parseFrame+key | + Map.get(key) | parse / baseline | parse+get / baseline |",
  );
  console.log("|---|---|---|---|---|---|");
  const cases: Array<[string, number, Partial<TcpBuild>, boolean, number]> = [
    ["IPv4 TCP 64 B", 64, {}, false, 14],
    ["IPv4 TCP 1500 B", 1500, {}, false, 14],
    ["IPv4 TCP 802.1Q 64 B", 64, { vlan: 10 }, false, 18],
    ["IPv4 TCP QinQ 64 B", 64, { vlan: 10, outerVlan: 100 }, false, 22],
    ["IPv6 TCP 78 B", 78, {}, true, 14],
    ["IPv6 TCP 1500 B", 1500, {}, true, 14],
    [
      "IPv6 TCP hbh+dstopts 1500 B",
      1500,
      { extHeaders: [{ type: "hopByHop" }, { type: "destOpts" }] },
      true,
      14,
    ],
  ];
  for (const [name, len, o, v6, l2] of cases) {
    const frames = frameSet(len, o, v6);
    const m: FrameMeta = newFrameMeta();
    const map = new Map<string, number>();
    for (const f of frames) {
      parseFrame(f, 0, m);
      map.set(m.key, 1);
    }
    const l4 = l2 + (v6 ? 40 + ((o.extHeaders?.length ?? 0) > 0 ? 16 : 0) : 20);
    const best = await interleavedBest({
      baseline: () => {
        let s = 0;
        for (let i = 0; i < SET; i++) {
          const f = frames[i]!;
          s += f.readUInt16BE(l2 - 2) + f.readUInt16BE(l4) + f.readUInt16BE(l4 + 2);
        }
        sinkN += s;
      },
      parse: () => {
        let s = 0;
        for (let i = 0; i < SET; i++) {
          parseFrame(frames[i]!, 0, m);
          s += m.key.length;
        }
        sinkN += s;
      },
      lookup: () => {
        let s = 0;
        for (let i = 0; i < SET; i++) {
          parseFrame(frames[i]!, 0, m);
          s += map.get(m.key) ?? 0;
        }
        sinkN += s;
      },
    });
    const fps = (k: string) => 1e9 / best.get(k)!;
    const cell = (k: string) => `${fmt(fps(k))}frames/s, ${((fps(k) * len) / 1e6).toFixed(0)} MB/s`;
    console.log(
      `| ${name} | ${cell("baseline")} | ${cell("parse")} | ${cell("lookup")} | ${(fps("parse") / fps("baseline")).toFixed(2)} | ${(fps("lookup") / fps("baseline")).toFixed(2)} |`,
    );
  }
}

/** Flow-key construction alternatives for IPv4 TCP (after the header has been located), each + Map.get. */
async function keyBench(): Promise<void> {
  console.log(`\n### flow-key construction alternatives, IPv4 TCP 64 B, each followed by Map.get\n`);
  const frames = frameSet(64, {}, false);
  const fcc = String.fromCharCode;
  // Buffer#latin1Slice exists at runtime (toString's fast path) but is not in @types/node.
  const latin1 = (f: Buffer, s: number, e: number) =>
    (f as unknown as { latin1Slice(s: number, e: number): string }).latin1Slice(s, e);
  const builders: Record<string, (f: Buffer) => string> = {
    "fromCharCode, 16-bit units (used)": (f) =>
      fcc(
        0,
        0,
        1,
        f[23]!,
        (f[26]! << 8) | f[27]!,
        (f[28]! << 8) | f[29]!,
        (f[30]! << 8) | f[31]!,
        (f[32]! << 8) | f[33]!,
        (f[34]! << 8) | f[35]!,
        (f[36]! << 8) | f[37]!,
      ),
    "fromCharCode, one byte per char": (f) =>
      fcc(
        0,
        0,
        1,
        f[23]!,
        f[26]!,
        f[27]!,
        f[28]!,
        f[29]!,
        f[30]!,
        f[31]!,
        f[32]!,
        f[33]!,
        f[34]!,
        f[35]!,
        f[36]!,
        f[37]!,
      ),
    "latin1Slice concatenation": (f) => `\u0000\u0000\u0001${latin1(f, 23, 24)}${latin1(f, 26, 38)}`,
    "toString('latin1'), addrs+ports only (no VLAN/proto)": (f) => f.toString("latin1", 26, 38),
    "dotted quads + ports text": (f) =>
      `tcp ${f[26]}.${f[27]}.${f[28]}.${f[29]}:${f.readUInt16BE(34)}>${f[30]}.${f[31]}.${f[32]}.${f[33]}:${f.readUInt16BE(36)}`,
  };
  const maps = new Map<string, Map<string, number>>();
  for (const [name, fn] of Object.entries(builders)) {
    const mp = new Map<string, number>();
    for (const f of frames) mp.set(fn(f), 1);
    maps.set(name, mp);
  }
  const tasks: Record<string, () => void> = {};
  for (const [name, fn] of Object.entries(builders)) {
    const mp = maps.get(name)!;
    tasks[name] = () => {
      let s = 0;
      for (let i = 0; i < SET; i++) s += mp.get(fn(frames[i]!)) ?? 0;
      sinkN += s;
    };
  }
  const best = await interleavedBest(tasks);
  const used = best.get("fromCharCode, 16-bit units (used)")!;
  console.log("| key construction + Map.get | keys/s | relative to used |");
  console.log("|---|---|---|");
  for (const [name, ns] of best) console.log(`| ${name} | ${fmt(1e9 / ns)}/s | ${(used / ns).toFixed(2)} |`);
}

export async function run(): Promise<void> {
  await parseBench();
  await keyBench();
  if (sinkN === -1) console.log("unreachable");
}
