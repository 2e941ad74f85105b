/**
 * @module A queue of received chunks for the capture decoders' carry-over across chunk
 * boundaries. Bytes are never overwritten once handed out: a record that fits in one chunk
 * comes back as a view of that chunk, and only a record that spans chunks is copied, into a
 * buffer of its own. So a frame a reader yields stays valid however long the caller keeps it.
 */

export class ByteQueue {
  #chunks: Buffer[] = [];
  /** Index of the first live chunk in #chunks (shifting arrays is O(n)). */
  #head = 0;
  /** Read offset inside the head chunk. */
  #off = 0;
  #available = 0;
  #scratch = Buffer.alloc(64);

  /** Where the bytes of the last successful peek() are: `buf[off .. off + n)`. */
  buf: Buffer = this.#scratch;
  off = 0;
  /** Bytes consumed so far: the input offset of the next unread byte (for error messages). */
  consumed = 0;

  /** Bytes buffered and not yet consumed. */
  get available(): number {
    return this.#available;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#available += chunk.length;
  }

  /**
   * Makes the next n (≤ 64) bytes readable at `this.buf[this.off]` without consuming them;
   * false when fewer than n bytes are buffered. Allocates nothing: small headers that span
   * chunks are gathered into a scratch buffer, valid until the next peek().
   */
  peek(n: number): boolean {
    if (this.#available < n) return false;
    if (n === 0) return true;
    const head = this.#chunks[this.#head]!;
    if (head.length - this.#off >= n) {
      this.buf = head;
      this.off = this.#off;
      return true;
    }
    this.#copyOut(this.#scratch, n);
    this.buf = this.#scratch;
    this.off = 0;
    return true;
  }

  /** Consumes and returns the next n bytes (a view when contiguous, else a fresh copy); null if short. */
  take(n: number): Buffer | null {
    if (this.#available < n) return null;
    if (n === 0) return Buffer.alloc(0);
    const head = this.#chunks[this.#head]!;
    let out: Buffer;
    if (head.length - this.#off >= n) {
      out = head.subarray(this.#off, this.#off + n);
    } else {
      out = Buffer.allocUnsafe(n);
      this.#copyOut(out, n);
    }
    this.skip(n);
    return out;
  }

  /** Consumes n bytes (the caller has checked they are available). */
  skip(n: number): void {
    this.#available -= n;
    this.consumed += n;
    while (n > 0) {
      const head = this.#chunks[this.#head]!;
      const left = head.length - this.#off;
      if (n < left) {
        this.#off += n;
        return;
      }
      n -= left;
      this.#dropHead();
    }
  }

  #dropHead(): void {
    this.#off = 0;
    this.#head++;
    if (this.#head === this.#chunks.length) {
      this.#chunks.length = 0;
      this.#head = 0;
    } else if (this.#head > 64) {
      this.#chunks.splice(0, this.#head);
      this.#head = 0;
    }
  }

  #copyOut(dst: Buffer, n: number): void {
    let copied = 0;
    let i = this.#head;
    let off = this.#off;
    while (copied < n) {
      const c = this.#chunks[i]!;
      const len = Math.min(c.length - off, n - copied);
      c.copy(dst, copied, off, off + len);
      copied += len;
      i++;
      off = 0;
    }
  }
}
