/**
 * @module Miscompare captures (`--capture DIR`): while on, the last N frames of every connection
 * of each side are kept in per-connection rings, fed by the compare engine's `observe` hook (the
 * engine already parsed the frame and knows its connection key, so nothing is parsed twice).
 * When the engine asks for a checkpoint because the two sides differ (payload, size or sequence),
 * that connection's ring is written as a pcapng: interfaces `pvm` and `svm`, one comment per
 * packet saying which side it came from and whether it was held, released or discarded when the
 * file was written. `colo-proxy replay FILE.pcapng` re-runs the comparison on it.
 *
 * Bounded: rings hold at most N frames per connection and `maxRingBytes` in total (the oldest
 * connections' rings are dropped first); files are capped per minute and in total bytes, and
 * what is skipped is counted and logged. With --capture off none of this exists.
 */
import { mkdirSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { CheckpointRequest, DiscardReason, ReleaseReason, Side } from "../compare/types.ts";
import { ConfigError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import type { WritablePacket } from "../wire/pcap-format.ts";
import { encodePcapng } from "../wire/pcapng-writer.ts";

export interface MiscaptureOptions {
  dir: string;
  /** Frames kept per connection and side. */
  frames: number;
  /** Files written per rolling minute; more are skipped and counted (default 10). */
  maxFilesPerMinute?: number;
  /** Bytes of capture files this process writes in total; more are skipped (default 256 MiB). */
  maxTotalBytes?: number;
  /** Bytes all rings may hold together (default 64 MiB). */
  maxRingBytes?: number;
  /** Connections with a ring (default 4096); the oldest ring goes first. */
  maxConnections?: number;
  logger?: Logger;
  /** Wall clock in ns (packet timestamps, file names). */
  wallNs?: () => bigint;
}

export interface CaptureStats {
  written: number;
  bytesWritten: number;
  /** Miscompares not captured because of the per-minute cap. */
  skippedRate: number;
  /** Miscompares not captured because the total-bytes cap was reached. */
  skippedBytes: number;
  /** Files that could not be written (I/O error). */
  errors: number;
  /** Rings dropped to stay within maxRingBytes / maxConnections. */
  ringsEvicted: number;
  lastFile: string | null;
}

interface Entry {
  side: Side;
  /** Copy of the frame (without vnet header) in buf[0, len); buf is reused when the slot is. */
  buf: Buffer;
  len: number;
  timeNs: bigint;
  state: string;
}

interface SideRing {
  entries: Entry[];
  /** Next slot to overwrite once full. */
  next: number;
}

/** One connection: a ring per side, so a chatty side cannot push the other out. */
interface Ring {
  primary: SideRing;
  secondary: SideRing;
  bytes: number;
}

const MISCOMPARES = new Set(["payload-differs", "size-differs", "seq-mismatch"]);
const MINUTE_MS = 60_000;

const defaultWallNs = (): bigint =>
  BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;

export class MiscompareCapture {
  readonly dir: string;
  readonly stats: CaptureStats = {
    written: 0,
    bytesWritten: 0,
    skippedRate: 0,
    skippedBytes: 0,
    errors: 0,
    ringsEvicted: 0,
    lastFile: null,
  };
  readonly #frames: number;
  readonly #maxPerMinute: number;
  readonly #maxTotal: number;
  readonly #maxRingBytes: number;
  readonly #maxConns: number;
  readonly #log: Logger;
  readonly #wallNs: () => bigint;
  /** Insertion order = age: the first key is the oldest ring. */
  readonly #rings = new Map<string, Ring>();
  /**
   * Frames still in the engine → their ring entry, to record how each one ended. Bounded by
   * what the engine holds: every observed frame is released or discarded exactly once.
   */
  readonly #open = new Map<Buffer, Entry>();
  #ringBytes = 0;
  #lastReleased: Entry | undefined;
  /** Wall ms of recent writes (the per-minute cap). */
  #recent: number[] = [];
  #lastSkipLogMs = -Infinity;

  constructor(opts: MiscaptureOptions) {
    this.dir = opts.dir;
    this.#frames = opts.frames;
    this.#maxPerMinute = opts.maxFilesPerMinute ?? 10;
    this.#maxTotal = opts.maxTotalBytes ?? 256 * 1024 * 1024;
    this.#maxRingBytes = opts.maxRingBytes ?? 64 * 1024 * 1024;
    this.#maxConns = opts.maxConnections ?? 4096;
    this.#log = opts.logger ?? silentLogger();
    this.#wallNs = opts.wallNs ?? defaultWallNs;
    try {
      mkdirSync(this.dir, { recursive: true });
    } catch (e) {
      throw new ConfigError(
        `--capture ${this.dir}: cannot create directory: ${(e as Error).message}`,
        { dir: this.dir },
        "COLO_ERR_CONFIG_VALUE",
      );
    }
  }

  /** Connections currently with a ring. */
  get connections(): number {
    return this.#rings.size;
  }

  /** The engine's observe hook: remember a copy (the input buffer is reused by the reader). */
  observe(side: Side, key: string, frame: Buffer, vnetLen: number): void {
    let ring = this.#rings.get(key);
    if (ring === undefined) {
      if (this.#rings.size >= this.#maxConns) this.#evictOldest();
      ring = { primary: { entries: [], next: 0 }, secondary: { entries: [], next: 0 }, bytes: 0 };
      this.#rings.set(key, ring);
    }
    const len = frame.length - vnetLen;
    const r = ring[side];
    let buf: Buffer;
    if (r.entries.length < this.#frames) {
      buf = Buffer.allocUnsafe(len);
    } else {
      // Reuse the evicted slot's bytes when they fit: no allocation once the ring is warm.
      const old = r.entries[r.next]!;
      ring.bytes -= old.buf.length;
      this.#ringBytes -= old.buf.length;
      buf = old.buf.length >= len ? old.buf : Buffer.allocUnsafe(len);
    }
    frame.copy(buf, 0, vnetLen);
    const e: Entry = { side, buf, len, timeNs: this.#wallNs(), state: "held" };
    if (r.entries.length < this.#frames) r.entries.push(e);
    else {
      r.entries[r.next] = e;
      r.next = (r.next + 1) % this.#frames;
    }
    ring.bytes += buf.length;
    this.#ringBytes += buf.length;
    this.#open.set(frame, e);
    while (this.#ringBytes > this.#maxRingBytes && this.#rings.size > 1) this.#evictOldest();
  }

  /** The sink released this primary frame (reason follows through `releaseReason`). */
  released(frame: Buffer): void {
    const e = this.#open.get(frame);
    this.#lastReleased = e;
    if (e === undefined) return;
    this.#open.delete(frame);
    e.state = "released";
  }

  /** The sink's holdTime call that follows each release: it carries the reason. */
  releaseReason(reason: ReleaseReason): void {
    if (this.#lastReleased !== undefined) this.#lastReleased.state = `released (${reason})`;
    this.#lastReleased = undefined;
  }

  discarded(frame: Buffer, reason: DiscardReason): void {
    const e = this.#open.get(frame);
    if (e === undefined) return;
    this.#open.delete(frame);
    e.state = `discarded (${reason})`;
  }

  /**
   * A checkpoint request: on a miscompare, write the connection's ring (asynchronously; the
   * returned promise settles when the file is written or skipped, for tests and shutdown).
   */
  request(req: CheckpointRequest): Promise<string | null> {
    if (req.repeat || !MISCOMPARES.has(req.reason) || req.key === undefined) return Promise.resolve(null);
    const ring = this.#rings.get(req.key);
    if (ring === undefined) return Promise.resolve(null);
    const nowNs = this.#wallNs();
    const nowMs = Number(nowNs / 1_000_000n);
    this.#recent = this.#recent.filter((t) => nowMs - t < MINUTE_MS);
    if (this.#recent.length >= this.#maxPerMinute) {
      this.stats.skippedRate++;
      this.#skipped(nowMs, "per-minute cap reached", req);
      return Promise.resolve(null);
    }
    const entries = [...inOrder(ring.primary), ...inOrder(ring.secondary)];
    // Stable: each side keeps its own order; the two are interleaved by time as they arrived.
    entries.sort((a, b) => (a.timeNs < b.timeNs ? -1 : a.timeNs > b.timeNs ? 1 : 0));
    const n = entries.length;
    const packets: WritablePacket[] = [];
    for (const e of entries) {
      const pvm = e.side === "primary";
      packets.push({
        timestampNs: e.timeNs,
        frame: e.buf.subarray(0, e.len),
        interfaceId: pvm ? 0 : 1,
        comment: `${pvm ? "pvm" : "svm"}: ${e.state}`,
      });
    }
    const file = encodePcapng(packets, {
      interfaces: [
        { name: "pvm", description: "primary VM output (primary_in)" },
        { name: "svm", description: "secondary VM output (secondary_in)" },
      ],
      comment: `colo-proxy miscompare capture: ${req.message}`,
    });
    if (this.stats.bytesWritten + file.length > this.#maxTotal) {
      this.stats.skippedBytes++;
      this.#skipped(nowMs, "total capture bytes cap reached", req);
      return Promise.resolve(null);
    }
    this.#recent.push(nowMs);
    // Reserve the bytes now so concurrent writes cannot overshoot the cap.
    this.stats.bytesWritten += file.length;
    const path = join(this.dir, captureFileName(nowNs, req.flow ?? req.key));
    return writeFile(path, file, { flag: "wx" }).then(
      () => {
        this.stats.written++;
        this.stats.lastFile = path;
        this.#log.info(
          { file: path, flow: req.flow, reason: req.reason, frames: n },
          `miscompare capture written: ${path}`,
        );
        return path;
      },
      (err: Error) => {
        this.stats.bytesWritten -= file.length;
        this.stats.errors++;
        this.#log.warn({ file: path, err: err.message }, "cannot write miscompare capture");
        return null;
      },
    );
  }

  #skipped(nowMs: number, why: string, req: CheckpointRequest): void {
    if (nowMs - this.#lastSkipLogMs < MINUTE_MS) return;
    this.#lastSkipLogMs = nowMs;
    this.#log.warn(
      {
        flow: req.flow,
        reason: req.reason,
        skippedRate: this.stats.skippedRate,
        skippedBytes: this.stats.skippedBytes,
      },
      `miscompare capture skipped: ${why}`,
    );
  }

  #evictOldest(): void {
    for (const [key, ring] of this.#rings) {
      this.#rings.delete(key);
      this.#ringBytes -= ring.bytes;
      this.stats.ringsEvicted++;
      return;
    }
  }
}

function inOrder(r: SideRing): Entry[] {
  const n = r.entries.length;
  const out: Entry[] = [];
  for (let i = 0; i < n; i++) out.push(r.entries[(r.next + i) % n]!);
  return out;
}

/** `20261126T012530.123Z-tcp_10.0.0.1_80-10.0.0.2_5555.pcapng`: sortable, shell-safe. */
export function captureFileName(timeNs: bigint, flow: string): string {
  const iso = new Date(Number(timeNs / 1_000_000n)).toISOString().replaceAll("-", "").replaceAll(":", "");
  const f = flow
    .replace(/ > /g, "-")
    .replace(/[^A-Za-z0-9.-]+/g, "_")
    .slice(0, 120);
  return `${iso}-${f}.pcapng`;
}
