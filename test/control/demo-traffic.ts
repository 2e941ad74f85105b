/**
 * @module Feeds a running `colo-proxy compare` with scripted COLO traffic, acting as QEMU's
 * filter-mirror/redirector on primary_in and secondary_in and reading outdev: a TCP handshake,
 * matching segments, then one HTTP response whose Date header differs by one second. Used to
 * produce the real outputs in docs/operating.md and to try the dashboard by hand:
 *
 *   node --import tsx test/control/demo-traffic.ts DIR [ROUNDS]
 *
 * where DIR holds pri.sock, sec.sock and out.sock of a daemon started with
 * `--primary-in unix:DIR/pri.sock --secondary-in unix:DIR/sec.sock --outdev unix:DIR/out.sock`.
 */
import { createConnection, type Socket } from "node:net";
import { join } from "node:path";
import { buildTcp } from "../../src/packet/build.ts";
import { encodeFrame } from "../../src/wire/framing.ts";

const [dir = ".", roundsArg = "20"] = process.argv.slice(2);
const rounds = Number(roundsArg);

function connect(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

const pri = await connect(join(dir, "pri.sock"));
const sec = await connect(join(dir, "sec.sock"));
const out = await connect(join(dir, "out.sock"));
let released = 0;
out.on("data", (d: Buffer) => {
  released += d.length;
});

const ISN = 7_000_000;
const seg = (side: "p" | "s", seq: number, payload: string, flags = "PA") =>
  encodeFrame(
    buildTcp({
      src: "10.0.0.1",
      dst: "10.0.0.2",
      sport: 80,
      dport: 40000,
      srcMac: side === "p" ? "52:54:00:00:00:01" : "52:54:00:00:00:02",
      seq,
      ack: 5000,
      flags,
      window: 64240,
      payload,
    }),
  );
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

pri.write(seg("p", ISN, "", "SA"));
sec.write(seg("s", ISN, "", "SA"));
let seq = ISN + 1;
for (let i = 0; i < rounds; i++) {
  const body = `chunk ${i} ${"x".repeat(100)}\n`;
  pri.write(seg("p", seq, body));
  sec.write(seg("s", seq, body));
  seq += body.length;
  await sleep(50);
}
const head = (sec: number) =>
  `HTTP/1.1 200 OK\r\nDate: Wed, 25 Nov 2026 23:50:0${sec} GMT\r\nServer: demo\r\n\r\n`;
pri.write(seg("p", seq, head(1)));
sec.write(seg("s", seq, head(2)));
await sleep(200);
console.log(`sent ${rounds + 2} segments per side; ${released} bytes released on outdev`);
for (const s of [pri, sec, out]) s.destroy();
