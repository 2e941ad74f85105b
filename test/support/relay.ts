/**
 * @module Harness wiring, not a proxy: listens on the filter sockets QEMU connects to and copies
 * whole frames from one socket to others, counting them. Enough to prove that a guest is reachable
 * only through its filter chardevs until the real colo-proxy daemons exist. No parsing beyond the
 * 4-byte big-endian length (vnet headers are off on every filter in the harness).
 */
import { rmSync } from "node:fs";
import net from "node:net";

interface Endpoint {
  server: net.Server;
  conn: net.Socket | undefined;
  rxFrames: number;
  txFrames: number;
  dropped: number;
  /** Frames received here are written to these endpoints. */
  targets: string[];
  /** Optional tap on every frame received here (for assertions). */
  onFrame: ((frame: Buffer) => void) | undefined;
}

/** Frame counters per socket, e.g. `{ "p-in": { rx: 12, tx: 0, dropped: 0 } }`. */
export type RelayCounters = Record<string, { rx: number; tx: number; dropped: number }>;

const MAX_FRAME = 69_632; // QEMU's NET_BUFSIZE: nothing larger can come from a filter

export class FrameRelay {
  #eps = new Map<string, Endpoint>();

  /** Listens on `path` under the name `name`; frames arriving there go to `targets`. */
  async listen(
    name: string,
    path: string,
    targets: string[] = [],
    onFrame?: (f: Buffer) => void,
  ): Promise<void> {
    rmSync(path, { force: true });
    const ep: Endpoint = {
      server: net.createServer(),
      conn: undefined,
      rxFrames: 0,
      txFrames: 0,
      dropped: 0,
      targets,
      onFrame,
    };
    ep.server.on("connection", (c) => {
      ep.conn?.destroy(); // a newer QEMU (e.g. a new SVM after a checkpoint) replaces the old one
      ep.conn = c;
      let buf: Buffer = Buffer.alloc(0);
      c.on("data", (chunk: Buffer) => {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        while (buf.length >= 4) {
          const n = buf.readUInt32BE(0);
          if (n === 0 || n > MAX_FRAME) {
            c.destroy(); // a corrupt stream cannot be resynchronised
            return;
          }
          if (buf.length < 4 + n) break;
          const framed = buf.subarray(0, 4 + n);
          buf = buf.subarray(4 + n);
          ep.rxFrames++;
          ep.onFrame?.(framed.subarray(4));
          for (const t of ep.targets) this.#send(t, framed);
        }
      });
      c.on("error", () => {});
      c.on("close", () => {
        if (ep.conn === c) ep.conn = undefined;
      });
    });
    await new Promise<void>((resolve, reject) => {
      ep.server.once("error", reject);
      ep.server.listen(path, resolve);
    });
    this.#eps.set(name, ep);
  }

  #send(name: string, framed: Buffer): void {
    const ep = this.#eps.get(name);
    if (!ep?.conn || ep.conn.destroyed) {
      if (ep) ep.dropped++;
      return;
    }
    ep.txFrames++;
    ep.conn.write(framed);
  }

  counters(): RelayCounters {
    const out: RelayCounters = {};
    for (const [k, e] of this.#eps) out[k] = { rx: e.rxFrames, tx: e.txFrames, dropped: e.dropped };
    return out;
  }

  /** True once QEMU has connected to every named socket. */
  connected(...names: string[]): boolean {
    return names.every((n) => this.#eps.get(n)?.conn !== undefined);
  }

  async close(): Promise<void> {
    for (const e of this.#eps.values()) {
      e.conn?.destroy();
      await new Promise<void>((r) => e.server.close(() => r()));
    }
    this.#eps.clear();
  }
}
