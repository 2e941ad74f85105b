import assert from "node:assert/strict";
import { test } from "node:test";
import {
  formatConnections,
  formatDuration,
  formatEvent,
  formatStats,
  table,
} from "../../src/control/format.ts";
import { hexdumpPair, hexWindow } from "../../src/control/hexdump.ts";
import { ColoStats } from "../../src/control/stats.ts";

test("hexWindow takes radius bytes either side of the difference, clamped to the buffer", () => {
  const buf = Buffer.from("0123456789abcdef");
  assert.deepEqual(hexWindow(buf, 1000, 1005, 2), { offset: 1003, hex: Buffer.from("3456").toString("hex") });
  assert.deepEqual(hexWindow(buf, 1000, 1001, 4), {
    offset: 1000,
    hex: Buffer.from("01234").toString("hex"),
  });
  assert.deepEqual(hexWindow(buf, 1000, 1015, 4), {
    offset: 1011,
    hex: Buffer.from("bcdef").toString("hex"),
  });
});

test("hexdumpPair: P and S rows with a marker under each differing byte, including length differences", () => {
  const lines = hexdumpPair(
    { offset: 16, hex: Buffer.from("abcdefghijklmnopQR").toString("hex") },
    { offset: 16, hex: Buffer.from("abcdefgXijklmnop").toString("hex") },
  );
  assert.deepEqual(lines, [
    "P 00000016  61 62 63 64 65 66 67 68 69 6a 6b 6c 6d 6e 6f 70  |abcdefghijklmnop|",
    "S 00000016  61 62 63 64 65 66 67 58 69 6a 6b 6c 6d 6e 6f 70  |abcdefgXijklmnop|",
    "                                 ^^",
    "P 00000032  51 52                                            |QR              |",
    "S 00000032                                                   |                |",
    "            ^^ ^^",
  ]);
  assert.deepEqual(hexdumpPair(undefined, undefined), []);
  const colored = hexdumpPair({ offset: 0, hex: "00" }, { offset: 0, hex: "01" }, true);
  assert.ok((colored[0] ?? "").includes("\u001b[31;1m00\u001b[0m"), "differing byte in red");
});

test("table aligns text left and numbers right", () => {
  assert.equal(
    table(
      ["A", "N"],
      [
        ["x", 5],
        ["long", 123],
      ],
      [false, true],
    ),
    "A       N\nx       5\nlong  123",
  );
});

test("formatDuration", () => {
  assert.equal(formatDuration(5), "5s");
  assert.equal(formatDuration(65), "1m 5s");
  assert.equal(formatDuration(3725), "1h 2m 5s");
  assert.equal(formatDuration(90061), "1d 1h 1m");
});

test("formatConnections and formatStats render every section", () => {
  assert.equal(formatConnections([]), "no connections");
  const st = new ColoStats();
  st.endpoint("primary_in").framesIn = 3;
  st.release("matched", 3);
  st.observeHold(2);
  const text = formatStats({
    ...st.snapshot(),
    control: {
      clients: 1,
      clientsTotal: 1,
      clientsDropped: 0,
      clientsRejected: 0,
      requests: 4,
      errors: {},
      events: 0,
    },
  });
  assert.match(text, /^primary_in +3 +0 +0 +0$/m);
  assert.match(text, /^released +3 \(matched 3\)$/m);
  assert.match(text, /^hold time +p50 \d\.\d\d ms/m);
  assert.match(text, /^control +1 clients, 4 requests, errors 0$/m);
});

test("formatEvent renders every standard event in one line (plus hexdump for requests)", () => {
  const ts = { seconds: 1_764_114_600, microseconds: 5000 };
  assert.equal(
    formatEvent({ event: "PEER_LOST", data: { peer: "secondary_in", reason: "EOF" }, timestamp: ts }),
    "2025-11-25T23:50:00.005Z PEER_LOST secondary_in: EOF",
  );
  assert.equal(
    formatEvent({
      event: "BAD_INPUT",
      data: { code: "COLO_ERR_FRAME_TOO_LARGE", source: "primary_in", desc: "len 99999", count: 3 },
      timestamp: ts,
    }),
    "2025-11-25T23:50:00.005Z BAD_INPUT COLO_ERR_FRAME_TOO_LARGE from primary_in (3 so far): len 99999",
  );
  const req = formatEvent({
    event: "CHECKPOINT_REQUEST",
    data: { reason: "timeout", explanation: "udp flow: no secondary packet within 3000 ms", epoch: 4 },
    timestamp: ts,
  });
  assert.equal(
    req,
    "2025-11-25T23:50:00.005Z CHECKPOINT_REQUEST timeout (epoch 4)\n  udp flow: no secondary packet within 3000 ms",
  );
});
