/**
 * @module Harness wiring, not a proxy: serves the filter sockets QEMU connects to (one
 * src/wire/chardev.ts ChardevEndpoint each) and forwards every frame from one socket to others,
 * unchanged. Enough to prove that a guest is reachable only through its filter chardevs until the
 * real colo-proxy daemons exist.
 */
import { ChardevEndpoint } from "../../src/wire/chardev.ts";

/** Frame counters per socket, e.g. `{ "p-in": { rx: 12, tx: 0, dropped: 0 } }`. */
export type RelayCounters = Record<string, { rx: number; tx: number; dropped: number }>;

export class FrameRelay {
  #eps = new Map<string, ChardevEndpoint>();

  /**
   * Listens on `path` (a server chardev named `name`; a newer QEMU, e.g. a new SVM after a
   * checkpoint, replaces the old peer). Frames arriving there go to `targets` and to `onFrame`.
   */
  async listen(
    name: string,
    path: string,
    targets: string[] = [],
    onFrame?: (f: Buffer) => void,
  ): Promise<void> {
    const ep = new ChardevEndpoint({
      spec: `socket,id=${name},path=${path},server=on,wait=off`,
      newPeer: "replace",
      onFrame: (frame) => {
        onFrame?.(frame);
        for (const t of targets) this.#eps.get(t)?.send(frame);
      },
    });
    await ep.start();
    this.#eps.set(name, ep);
  }

  counters(): RelayCounters {
    const out: RelayCounters = {};
    for (const [k, e] of this.#eps) {
      const c = e.counters;
      out[k] = { rx: c.framesIn, tx: c.framesOut, dropped: c.framesDropped };
    }
    return out;
  }

  /** True while QEMU is connected to every named socket. */
  connected(...names: string[]): boolean {
    return names.every((n) => this.#eps.get(n)?.connected === true);
  }

  async close(): Promise<void> {
    for (const e of this.#eps.values()) await e.close();
    this.#eps.clear();
  }
}
