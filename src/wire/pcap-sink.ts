/**
 * @module Output side shared by the capture writers: a byte sink (a file, or memory) behind a
 * batch buffer, so that writing a capture costs one write() per 64 KiB instead of one per packet.
 */
import { open } from "node:fs/promises";

/** Where encoded capture bytes go. */
export interface ByteSink {
  write(chunk: Buffer): Promise<void>;
  close(): Promise<void>;
}

/** A sink that creates (or truncates) a file. */
export async function fileSink(path: string): Promise<ByteSink> {
  const fh = await open(path, "w");
  return {
    async write(chunk) {
      let done = 0;
      while (done < chunk.length) {
        const { bytesWritten } = await fh.write(chunk, done, chunk.length - done);
        done += bytesWritten;
      }
    },
    close: () => fh.close(),
  };
}

/** A sink that keeps everything in memory; `bytes()` returns what was written. */
export function memorySink(): ByteSink & { bytes(): Buffer } {
  const chunks: Buffer[] = [];
  return {
    async write(chunk) {
      chunks.push(Buffer.from(chunk));
    },
    async close() {},
    bytes: () => Buffer.concat(chunks),
  };
}

/** Batches small writes into one buffer; the encoders write straight into `buf` at `len`. */
export class BatchOutput {
  readonly #sink: ByteSink;
  buf: Buffer;
  len = 0;

  constructor(sink: ByteSink, size = 65_536) {
    this.#sink = sink;
    this.buf = Buffer.allocUnsafe(size);
  }

  /** True when n more bytes fit without flushing. */
  fits(n: number): boolean {
    return this.len + n <= this.buf.length;
  }

  /** Flushes, and grows the buffer if a single record needs more than it holds. */
  async makeRoom(n: number): Promise<void> {
    await this.flush();
    if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n);
  }

  async flush(): Promise<void> {
    if (this.len === 0) return;
    // The sink may hold on to what it is given (memorySink copies, files finish before returning).
    const out = this.buf.subarray(0, this.len);
    await this.#sink.write(out);
    this.len = 0;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.#sink.close();
  }
}
