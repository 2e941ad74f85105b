/**
 * @module The control-socket wire protocol: QMP-shaped JSON lines (QEMU Machine Protocol), so
 * anyone who has driven QEMU with `socat - UNIX:/run/qmp.sock` already knows it.
 *
 * Server → client: one greeting `{"QMP": {"version": {...}, "capabilities": [...]}}`, then
 * replies `{"return": ..., "id": ...}` / `{"error": {"class", "desc", "code"}, "id": ...}` and
 * asynchronous events `{"event": NAME, "data": {...}, "timestamp": {"seconds", "microseconds"}}`.
 * Client → server: `{"execute": "cmd", "arguments": {...}, "id": ...}`, one per line.
 *
 * Pure code: the line splitter and the request decoder do no I/O, so they are tested over
 * arbitrary chunkings without sockets.
 */
import { codes, type ErrorCode } from "../errors.ts";

/**
 * QMP error classes. QMP itself only uses GenericError and CommandNotFound for what we report;
 * the stable, finer-grained reason is in `code` (a COLO_ERR_CTL_... from errors.ts).
 */
export type ErrorClass = "GenericError" | "CommandNotFound";

export interface ErrorBody {
  class: ErrorClass;
  desc: string;
  code: ErrorCode;
}

export type RequestId = string | number | boolean | null | Record<string, unknown> | unknown[];

export interface ReturnMessage {
  return: unknown;
  id?: RequestId;
}

export interface ErrorMessage {
  error: ErrorBody;
  id?: RequestId;
}

export interface Timestamp {
  seconds: number;
  microseconds: number;
}

export interface EventMessage {
  event: string;
  data: Record<string, unknown>;
  timestamp: Timestamp;
}

export interface Greeting {
  QMP: {
    version: { "colo-proxy": { major: number; minor: number; micro: number }; package: string };
    capabilities: string[];
  };
}

export type ServerMessage = Greeting | ReturnMessage | ErrorMessage | EventMessage;

export interface Request {
  execute: string;
  arguments: Record<string, unknown>;
  /** Present only when the client sent one; echoed verbatim in the reply. */
  id?: RequestId;
  hasId: boolean;
}

/** Error class for each control code: unknown commands are CommandNotFound, as in QMP. */
export function errorClassOf(code: ErrorCode): ErrorClass {
  return code === "COLO_ERR_CTL_UNKNOWN_COMMAND" ? "CommandNotFound" : "GenericError";
}

export function errorBody(code: ErrorCode, desc?: string): ErrorBody {
  return { class: errorClassOf(code), desc: desc ?? codes[code], code };
}

/** QMP timestamps: wall-clock seconds + microseconds, from a millisecond clock reading. */
export function timestampOf(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { seconds, microseconds: Math.round((ms - seconds * 1000) * 1000) };
}

export function greeting(version: string, capabilities: string[] = []): Greeting {
  const [major = 0, minor = 0, micro = 0] = version.split(".").map((p) => Number.parseInt(p, 10) || 0);
  return {
    QMP: {
      version: { "colo-proxy": { major, minor, micro }, package: `colo-proxy ${version}` },
      capabilities,
    },
  };
}

export type DecodeResult = { ok: true; request: Request } | { ok: false; error: ErrorBody; id?: RequestId };

/**
 * Decodes one request line. Never throws: bad JSON, a non-object, or a missing `execute` give
 * an error body (and the id when one could be recovered, so the client can match the reply).
 */
export function decodeRequest(line: string): DecodeResult {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    return {
      ok: false,
      error: errorBody("COLO_ERR_CTL_BAD_JSON", `JSON parse error: ${(e as Error).message}`),
    };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, error: errorBody("COLO_ERR_CTL_BAD_REQUEST", "request must be a JSON object") };
  }
  const obj = value as Record<string, unknown>;
  const hasId = Object.hasOwn(obj, "id");
  const id = obj.id as RequestId | undefined;
  const withId = (error: ErrorBody): DecodeResult =>
    hasId ? { ok: false, error, id } : { ok: false, error };
  if (typeof obj.execute !== "string" || obj.execute.length === 0) {
    return withId(errorBody("COLO_ERR_CTL_BAD_REQUEST", "request lacks a string member 'execute'"));
  }
  for (const k of Object.keys(obj)) {
    if (k !== "execute" && k !== "arguments" && k !== "id") {
      return withId(errorBody("COLO_ERR_CTL_BAD_REQUEST", `request has unexpected member '${k}'`));
    }
  }
  const args = obj.arguments ?? {};
  if (typeof args !== "object" || args === null || Array.isArray(args)) {
    return withId(errorBody("COLO_ERR_CTL_BAD_ARGS", "'arguments' must be a JSON object"));
  }
  const request: Request = { execute: obj.execute, arguments: args as Record<string, unknown>, hasId };
  if (hasId) request.id = id;
  return { ok: true, request };
}

/** One encoded protocol line. JSON.stringify never emits a raw newline, so lines stay lines. */
export function encode(message: ServerMessage | Record<string, unknown>): string {
  return `${JSON.stringify(message)}\n`;
}

export type LineItem = { line: string } | { overflow: number };

/**
 * Splits a byte stream into newline-terminated lines, holding at most `maxLine` bytes of an
 * unfinished line. A longer line is reported once as `{overflow}` (with the bytes seen) and the
 * rest of it is skipped up to its newline (reported as soon as the limit is crossed), so a flood costs bounded memory and the connection
 * stays usable. `\r\n` endings are accepted (telnet/nc users).
 */
export class LineSplitter {
  readonly #maxLine: number;
  #parts: Buffer[] = [];
  #held = 0;
  /** True while skipping the rest of an overlong line, up to its newline. */
  #skipping = false;

  constructor(maxLine: number) {
    this.#maxLine = maxLine;
  }

  /** Bytes currently held for an unfinished line (for tests and memory accounting). */
  get buffered(): number {
    return this.#held;
  }

  push(chunk: Buffer, out: LineItem[] = []): LineItem[] {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      const len = end - start;
      if (this.#skipping) {
        if (nl !== -1) this.#skipping = false;
      } else if (this.#held + len > this.#maxLine) {
        out.push({ overflow: this.#held + len });
        this.#parts = [];
        this.#held = 0;
        this.#skipping = nl === -1;
      } else if (nl === -1) {
        // Copy: the socket may reuse or we may keep the chunk alive too long otherwise.
        this.#parts.push(Buffer.from(chunk.subarray(start, end)));
        this.#held += len;
      } else {
        let line: Buffer;
        if (this.#parts.length === 0) line = chunk.subarray(start, end);
        else {
          this.#parts.push(chunk.subarray(start, end));
          line = Buffer.concat(this.#parts, this.#held + len);
          this.#parts = [];
          this.#held = 0;
        }
        let text = line.toString("utf8");
        if (text.endsWith("\r")) text = text.slice(0, -1);
        out.push({ line: text });
      }
      if (nl === -1) break;
      start = nl + 1;
    }
    return out;
  }
}
