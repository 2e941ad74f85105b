/**
 * @module Line-oriented command output: batches lines into large writes, waits for 'drain'
 * so a slow reader bounds memory, and notices a reader that went away (EPIPE from `| head`)
 * so commands can stop quietly instead of crashing.
 */
import type { Writable } from "node:stream";

export class LineOutput {
  readonly #stream: Writable;
  #pending: string[] = [];
  #size = 0;
  #closed = false;

  constructor(stream: Writable) {
    this.#stream = stream;
    stream.on("error", () => {
      this.#closed = true;
    });
  }

  /** Queues one line (newline added). False once the stream is closed: the caller should stop. */
  async write(line: string): Promise<boolean> {
    if (this.#closed) return false;
    this.#pending.push(line);
    this.#size += line.length + 1;
    if (this.#size >= 65_536) await this.flush();
    return !this.#closed;
  }

  async flush(): Promise<void> {
    if (this.#pending.length === 0 || this.#closed) return;
    const text = `${this.#pending.join("\n")}\n`;
    this.#pending = [];
    this.#size = 0;
    if (!this.#stream.write(text)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.#stream.off("drain", done);
          this.#stream.off("error", done);
          this.#stream.off("close", done);
          resolve();
        };
        this.#stream.on("drain", done);
        this.#stream.on("error", done);
        this.#stream.on("close", done);
      });
    }
  }

  async end(): Promise<void> {
    await this.flush();
  }
}
