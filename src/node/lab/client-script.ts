/**
 * @module The lab client (demo and end-to-end tests), run inside a client netns (`ip netns exec NS node --import tsx this.ts
 * '<json ops>'`): performs each network operation against the guest with the namespace's real
 * TCP/IP stack and prints one JSON array of results. Every operation is bounded in time.
 */
import { spawnSync } from "node:child_process";
import dgram from "node:dgram";
import http from "node:http";
import net from "node:net";

export type ClientOp =
  /** `timeoutMs`: idle timeout (default 15 s), e.g. shorter where no answer is the expected outcome. */
  | { op: "http"; host: string; port: number; path: string; timeoutMs?: number }
  /** Session mode only: open a TCP connection kept across requests (e.g. across a checkpoint). */
  | { op: "open"; conn: string; host: string; port: number }
  /** Session mode only: send `data` on an open connection, wait for as many bytes back. */
  | { op: "echo"; conn: string; data: string }
  | { op: "tcp-echo"; host: string; port: number; data: string }
  | { op: "udp-echo"; host: string; port: number; data: string }
  | { op: "ping"; host: string }
  /** Session mode only: open a binary TCP echo stream kept across requests (see `stream`). */
  | { op: "open-stream"; conn: string; host: string; port: number }
  /**
   * Session mode only: send the next `bytes` bytes of the bulk pattern on an open stream and wait
   * until exactly they came back; ok only if every byte matches, in order, and no more arrived.
   */
  | { op: "stream"; conn: string; bytes: number; timeoutMs?: number }
  /** TCP echo of `bytes` bytes of a fixed pattern; ok only if every byte came back unchanged. */
  | { op: "bulk"; host: string; port: number; bytes: number; timeoutMs?: number };

export type ClientResult =
  | { ok: true; status?: number; body?: string; data?: string; localPort?: number }
  | { ok: false; error: string };

const TIMEOUT_MS = 15_000;

function httpGet(host: string, port: number, path: string, timeout = TIMEOUT_MS): Promise<ClientResult> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path, timeout, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      const localPort = res.socket.localPort;
      res.on("end", () =>
        resolve({
          ok: true,
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString(),
          ...(localPort !== undefined ? { localPort } : {}),
        }),
      );
      res.on("error", (e) => resolve({ ok: false, error: String(e) }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (e) => resolve({ ok: false, error: String(e) }));
  });
}

function tcpEcho(host: string, port: number, data: string): Promise<ClientResult> {
  return new Promise((resolve) => {
    let got = "";
    const s = net.connect({ host, port });
    const t = setTimeout(() => s.destroy(new Error(`timeout, got ${JSON.stringify(got)}`)), TIMEOUT_MS);
    s.setEncoding("utf8");
    s.on("connect", () => s.write(data));
    s.on("data", (d: string) => {
      got += d;
      if (got.length >= data.length) s.end();
    });
    s.on("close", () => {
      clearTimeout(t);
      resolve({ ok: true, data: got });
    });
    s.on("error", (e) => {
      clearTimeout(t);
      resolve({ ok: false, error: String(e) });
    });
  });
}

function udpEcho(host: string, port: number, data: string): Promise<ClientResult> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket(net.isIPv6(host) ? "udp6" : "udp4");
    let tries = 0;
    // UDP may be lost: resend a bounded number of times.
    const send = () => {
      if (tries++ >= 5) {
        clearInterval(timer);
        sock.close();
        resolve({ ok: false, error: "no UDP echo after 5 tries" });
        return;
      }
      sock.send(data, port, host);
    };
    const timer = setInterval(send, TIMEOUT_MS / 5);
    sock.on("message", (m) => {
      clearInterval(timer);
      sock.close();
      resolve({ ok: true, data: m.toString() });
    });
    sock.on("error", (e) => {
      clearInterval(timer);
      sock.close();
      resolve({ ok: false, error: String(e) });
    });
    send();
  });
}

function ping(host: string): ClientResult {
  // busybox's ping (from busybox-static, which setup installs); -6 for IPv6 targets.
  const args = ["ping", ...(net.isIPv6(host) ? ["-6"] : []), "-c", "1", "-W", "10", host];
  const r = spawnSync("busybox", args, { encoding: "utf8", timeout: TIMEOUT_MS });
  return r.status === 0 ? { ok: true, data: r.stdout } : { ok: false, error: `${r.stdout}${r.stderr}` };
}

/** The bulk pattern: byte i is (i * 7 + (i >> 11)) & 0xff, so shifted or repeated runs show up. */
export function bulkPattern(n: number, from = 0): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let k = 0; k < n; k++) {
    const i = from + k;
    b[k] = (i * 7 + (i >> 11)) & 0xff;
  }
  return b;
}

function bulk(host: string, port: number, bytes: number, timeoutMs: number): Promise<ClientResult> {
  return new Promise((resolve) => {
    const want = bulkPattern(bytes);
    const got = Buffer.alloc(bytes);
    let n = 0;
    let done = false;
    const s = net.connect({ host, port });
    const finish = (r: ClientResult) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      resolve(r);
    };
    const t = setTimeout(() => finish({ ok: false, error: `timeout after ${n}/${bytes} bytes` }), timeoutMs);
    s.on("connect", () => s.write(want));
    s.on("data", (d: Buffer) => {
      if (n + d.length > bytes) return finish({ ok: false, error: `too many bytes (${n + d.length})` });
      d.copy(got, n);
      n += d.length;
      if (n === bytes) {
        const bad = got.findIndex((v, i) => v !== want[i]);
        finish(bad < 0 ? { ok: true, data: `${bytes} bytes` } : { ok: false, error: `byte ${bad} differs` });
      }
    });
    s.on("error", (e) => finish({ ok: false, error: `${e} after ${n}/${bytes} bytes` }));
    s.on("close", () => finish({ ok: false, error: `closed after ${n}/${bytes} bytes` }));
  });
}

const conns = new Map<string, { sock: net.Socket; buf: string; wake: (() => void) | undefined }>();

function open(conn: string, host: string, port: number): Promise<ClientResult> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const c = { sock, buf: "", wake: undefined as (() => void) | undefined };
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      c.buf += d;
      c.wake?.();
    });
    sock.once("connect", () => {
      conns.set(conn, c);
      resolve({ ok: true });
    });
    sock.on("error", (e) => resolve({ ok: false, error: String(e) }));
  });
}

async function echoOn(conn: string, data: string): Promise<ClientResult> {
  const c = conns.get(conn);
  if (!c || c.sock.destroyed) return { ok: false, error: `no open connection ${conn}` };
  c.buf = "";
  c.sock.write(data);
  const end = Date.now() + TIMEOUT_MS;
  while (c.buf.length < data.length && Date.now() < end) {
    await new Promise<void>((r) => {
      c.wake = r;
      setTimeout(r, 100);
    });
  }
  return c.buf.length >= data.length
    ? { ok: true, data: c.buf }
    : { ok: false, error: `got ${JSON.stringify(c.buf)}` };
}

/** A binary echo stream: what was sent and received so far, and why it ended (if it did). */
interface Stream {
  sock: net.Socket;
  sent: number;
  got: number;
  /** First mismatch or excess, kept until reported. */
  bad: string | undefined;
  ended: string | undefined;
  wake: (() => void) | undefined;
}
const streams = new Map<string, Stream>();

function openStream(conn: string, host: string, port: number): Promise<ClientResult> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const st: Stream = { sock, sent: 0, got: 0, bad: undefined, ended: undefined, wake: undefined };
    const t = setTimeout(() => sock.destroy(new Error("connect timeout")), TIMEOUT_MS);
    sock.on("data", (d: Buffer) => {
      // Every byte is checked against the pattern at its stream offset as it arrives.
      if (st.bad === undefined) {
        if (st.got + d.length > st.sent) st.bad = `${st.got + d.length - st.sent} bytes more than sent`;
        else {
          const want = bulkPattern(d.length, st.got);
          const i = d.findIndex((v, k) => v !== want[k]);
          if (i >= 0) st.bad = `byte ${st.got + i} differs`;
        }
      }
      st.got += d.length;
      st.wake?.();
    });
    sock.once("connect", () => {
      clearTimeout(t);
      streams.set(conn, st);
      resolve({ ok: true, ...(sock.localPort !== undefined ? { localPort: sock.localPort } : {}) });
    });
    sock.on("error", (e) => {
      st.ended = String(e);
      clearTimeout(t);
      resolve({ ok: false, error: String(e) });
      st.wake?.();
    });
    sock.on("close", () => {
      st.ended ??= "closed";
      st.wake?.();
    });
  });
}

async function streamChunk(conn: string, bytes: number, timeoutMs: number): Promise<ClientResult> {
  const st = streams.get(conn);
  if (st === undefined) return { ok: false, error: `no open stream ${conn}` };
  const from = st.sent;
  st.sent += bytes;
  st.sock.write(bulkPattern(bytes, from));
  const end = Date.now() + timeoutMs;
  while (st.got < st.sent && st.bad === undefined && st.ended === undefined && Date.now() < end) {
    await new Promise<void>((r) => {
      st.wake = r;
      setTimeout(r, 100);
    });
  }
  const where = `${st.got - from}/${bytes} bytes of this chunk (stream at ${st.got}/${st.sent})`;
  if (st.bad !== undefined) return { ok: false, error: `${st.bad}; ${where}` };
  if (st.got < st.sent) return { ok: false, error: `${st.ended ?? "timeout"} after ${where}` };
  return {
    ok: true,
    data: `${bytes} bytes`,
    ...(st.sock.localPort !== undefined ? { localPort: st.sock.localPort } : {}),
  };
}

async function runOp(o: ClientOp): Promise<ClientResult> {
  switch (o.op) {
    case "open-stream":
      return openStream(o.conn, o.host, o.port);
    case "stream":
      return streamChunk(o.conn, o.bytes, o.timeoutMs ?? TIMEOUT_MS);
    case "open":
      return open(o.conn, o.host, o.port);
    case "echo":
      return echoOn(o.conn, o.data);
    case "http":
      return httpGet(o.host, o.port, o.path, o.timeoutMs);
    case "tcp-echo":
      return tcpEcho(o.host, o.port, o.data);
    case "udp-echo":
      return udpEcho(o.host, o.port, o.data);
    case "ping":
      return ping(o.host);
    case "bulk":
      return bulk(o.host, o.port, o.bytes, o.timeoutMs ?? 120_000);
  }
}

if (process.argv[2] === "--session") {
  // One JSON op per stdin line, one JSON result per stdout line, in order; exits at EOF.
  let chain = Promise.resolve();
  let pending = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (d: string) => {
    pending += d;
    for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      chain = chain.then(async () => {
        process.stdout.write(`${JSON.stringify(await runOp(JSON.parse(line) as ClientOp))}\n`);
      });
    }
  });
  process.stdin.on("end", () => {
    void chain.then(() => process.exit(0));
  });
} else if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop() ?? "")) {
  const ops = JSON.parse(process.argv[2] ?? "[]") as ClientOp[];
  const results: ClientResult[] = [];
  for (const o of ops) results.push(await runOp(o));
  process.stdout.write(JSON.stringify(results));
}
