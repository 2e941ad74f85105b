/**
 * @module `colo-proxy pcap-inspect FILE`: one line per frame of a pcap or pcapng capture, as
 * colo-proxy's own parser sees it (flow key, TCP flags/seq/ack, payload length), or the
 * malformed-frame reason code. `--json` prints one JSON object per line instead.
 */
import { parseArgs } from "node:util";
import { ConfigError, isColoError } from "../../errors.ts";
import { newFrameMeta, ParseStatus } from "../../packet/meta.ts";
import { decodeFlowKey, formatFlowKey, parseFrame, parseStatusCode } from "../../packet/parse.ts";
import type { CapturePacket } from "../../wire/pcap-format.ts";
import type { CaptureDecoder } from "../../wire/pcap-reader.ts";
import { readCapture, readCaptureStream } from "../../wire/pcap-reader.ts";
import { LineOutput } from "../line-output.ts";

export const summary = "print each frame of a pcap/pcapng capture as colo-proxy parses it";

const HELP = `Usage: colo-proxy pcap-inspect [options] FILE

FILE may be - for standard input (e.g. tcpdump -U -w - | colo-proxy pcap-inspect -).

Prints one line per frame of a pcap or pcapng (Ethernet) capture: index, timestamp, flow key,
TCP flags/seq/ack, payload length, or the code of the reason the frame is malformed.

Options:
  --json        one JSON object per frame, one per line
  --relative    timestamps as seconds since the first frame instead of UTC
  -h, --help    show this help

Exit status: 0 when the whole file was read (malformed frames included), 1 when the capture
file itself is bad or truncated (after printing the frames before the damage), 2 on usage errors.
`;

const FLAG_LETTERS = "FSRPAUEC";

/** TCP flags as letters in bit order (FIN first), e.g. "SA" for SYN+ACK; "-" when none. */
export function tcpFlagLetters(flags: number): string {
  let s = "";
  for (let i = 0; i < 8; i++) if (flags & (1 << i)) s += FLAG_LETTERS[i];
  return s === "" ? "-" : s;
}

/** A capture timestamp as ISO-8601 UTC with nanoseconds. */
export function formatTimestamp(ns: bigint): string {
  const sec = ns / 1_000_000_000n;
  const frac = (ns % 1_000_000_000n).toString().padStart(9, "0");
  const iso = new Date(Number(sec) * 1000).toISOString();
  return `${iso.slice(0, 19)}.${frac}Z`;
}

function formatRelative(ns: bigint, first: bigint): string {
  const d = ns - first;
  const sign = d < 0n ? "-" : "";
  const a = d < 0n ? -d : d;
  return `${sign}${a / 1_000_000_000n}.${(a % 1_000_000_000n).toString().padStart(9, "0")}`;
}

export async function run(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}\n${HELP}`, undefined, "COLO_ERR_USAGE");
  }
  if (args.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (args.positionals.length !== 1) {
    throw new ConfigError(`expected exactly one capture file\n${HELP}`, undefined, "COLO_ERR_USAGE");
  }
  const path = args.positionals[0]!;
  const json = args.values.json === true;
  const relative = args.values.relative === true;

  const out = new LineOutput(process.stdout);
  const m = newFrameMeta();
  let index = 0;
  let malformed = 0;
  let first: bigint | undefined;
  let dec: CaptureDecoder | undefined;
  try {
    const onHeader = (d: CaptureDecoder) => {
      dec = d;
    };
    const packets =
      path === "-" ? readCaptureStream(process.stdin, { onHeader }) : readCapture(path, { onHeader });
    for await (const p of packets) {
      index++;
      first ??= p.timestampNs;
      const status = parseFrame(p.frame, 0, m);
      const ts = relative ? formatRelative(p.timestampNs, first) : formatTimestamp(p.timestampNs);
      // Several interfaces (e.g. client/PVM/SVM in a miscompare capture): say which one.
      const ifaces = dec?.interfaces ?? [];
      const ifName = ifaces.length > 1 ? (ifaces[p.interfaceId]?.name ?? `if${p.interfaceId}`) : undefined;
      if (status !== ParseStatus.Ok) malformed++;
      const line = json
        ? jsonLine(index, ts, p, status, m, ifName)
        : textLine(index, ts, p, status, m, ifName);
      if (!(await out.write(line))) return 0; // reader went away (e.g. `| head`): not an error
    }
  } catch (e) {
    // A missing or unreadable file is the user's to fix: say so without a stack trace.
    if (!isColoError(e) && typeof (e as NodeJS.ErrnoException).code === "string") {
      throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`, { path }, "COLO_ERR_USAGE");
    }
    throw e;
  } finally {
    // Frames before a damaged part of the file are still worth seeing.
    await out.flush();
  }
  if (!json) await out.write(`${index} frames, ${malformed} malformed (${dec?.format ?? "empty"} capture)`);
  await out.end();
  return 0;

  function textLine(
    i: number,
    ts: string,
    p: CapturePacket,
    status: ParseStatus,
    meta: typeof m,
    ifName: string | undefined,
  ): string {
    let s = `${String(i).padStart(6)} ${ts} `;
    if (ifName !== undefined) s += `${ifName} `;
    if (status !== ParseStatus.Ok) {
      s += `malformed ${parseStatusCode(status)} (${p.frame.length} bytes)`;
    } else {
      s += formatFlowKey(meta);
      if (meta.proto === 6 && !meta.fragment) {
        s += ` [${tcpFlagLetters(meta.tcpFlags)}] seq ${meta.tcpSeq} ack ${meta.tcpAck}`;
      }
      if (meta.fragment) s += " frag";
      s += ` len ${meta.payloadLen}`;
    }
    if (p.origLen !== p.frame.length) s += ` (snapped ${p.frame.length}/${p.origLen})`;
    if (p.comment !== undefined) s += ` # ${p.comment.replaceAll("\n", " / ")}`;
    return s;
  }

  function jsonLine(
    i: number,
    ts: string,
    p: {
      frame: Buffer;
      origLen: number;
      interfaceId: number;
      comment?: string | undefined;
      timestampNs: bigint;
    },
    status: ParseStatus,
    meta: typeof m,
    ifName: string | undefined,
  ): string {
    const o: Record<string, unknown> = {
      index: i,
      time: ts,
      timestampNs: p.timestampNs.toString(),
      interface: p.interfaceId,
      ...(ifName !== undefined ? { interfaceName: ifName } : {}),
      capLen: p.frame.length,
      origLen: p.origLen,
    };
    if (status !== ParseStatus.Ok) {
      o.malformed = parseStatusCode(status);
    } else {
      const k = decodeFlowKey(meta.key);
      o.flow = formatFlowKey(meta);
      if (meta.vlanOuter >= 0)
        o.vlan = meta.vlanInner >= 0 ? [meta.vlanOuter, meta.vlanInner] : [meta.vlanOuter];
      o.etherType = meta.etherType;
      if (meta.ipVersion !== 0) {
        o.ipVersion = meta.ipVersion;
        o.proto = meta.proto;
      }
      if (k.src !== "") {
        o.src = k.src;
        o.dst = k.dst;
      }
      if (meta.proto === 6 || meta.proto === 17) {
        o.srcPort = meta.srcPort;
        o.dstPort = meta.dstPort;
      }
      if (meta.fragment) o.fragment = true;
      if (meta.proto === 6 && !meta.fragment) {
        o.tcp = { flags: tcpFlagLetters(meta.tcpFlags), seq: meta.tcpSeq, ack: meta.tcpAck };
      }
      o.payloadLen = meta.payloadLen;
    }
    if (p.comment !== undefined) o.comment = p.comment;
    return JSON.stringify(o);
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      json: { type: "boolean" },
      relative: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
}
