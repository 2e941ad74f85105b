/**
 * @module A test peer with the I/O behaviour of a QEMU main loop serving two filter chardevs
 * (blocking writes to one, reads from the other only while no write waits).
 */
import net from "node:net";

/**
 * A peer that behaves like a QEMU main loop serving two filter chardevs: it writes one socket
 * with blocking writes (QEMU's filter-mirror/-redirector use qemu_chr_fe_write_all) and, while
 * such a write is pending, reads nothing else — in particular not the other socket, which QEMU's
 * own redirector reads in the same loop (docs/e2e.md: the failover deadlock). The frames read
 * back are counted (fixed-size frames, no vnet header).
 */
export class MainLoopPeer {
  readonly #pri: net.Socket;
  readonly #out: net.Socket;
  received = 0;
  #outBytes = 0;
  #sent = 0;

  constructor(
    pri: net.Socket,
    out: net.Socket,
    readonly frameLen: number,
  ) {
    this.#pri = pri;
    this.#out = out;
    out.on("data", (d: Buffer) => {
      this.#outBytes += d.length;
      this.received = Math.floor(this.#outBytes / (4 + frameLen));
    });
  }

  /** Connects to `write` (e.g. primary_in) and `read` (e.g. outdev). */
  static async connect(write: string, read: string, frameLen: number): Promise<MainLoopPeer> {
    const c = (p: string) =>
      new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(p, () => resolve(s));
        s.once("error", reject);
      });
    return new MainLoopPeer(await c(write), await c(read), frameLen);
  }

  /** Writes `n` copies of `frame`; the other socket is not read while a write waits for 'drain'. */
  async send(frame: Buffer, n: number): Promise<void> {
    const hdr = Buffer.alloc(4);
    hdr.writeUInt32BE(frame.length);
    const one = Buffer.concat([hdr, frame]);
    while (this.#sent < n) {
      this.#sent++;
      if (!this.#pri.write(one)) {
        this.#out.pause();
        await new Promise((r) => this.#pri.once("drain", r));
        this.#out.resume();
      }
    }
  }

  close(): void {
    this.#pri.destroy();
    this.#out.destroy();
  }
}
