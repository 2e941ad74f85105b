import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { createLogger, isLogLevel, logMiscompare, reportRepeat, shortHex } from "../src/log.ts";

function capture(level = "info") {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _e, cb) {
      for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, log: createLogger({ level, name: "compare", destination }) };
}

test("shortHex brackets the first differing byte and starts a little before it", () => {
  const w = { offset: 1000, hex: Buffer.from("0123456789abcdefghijklmnop").toString("hex") };
  assert.equal(shortHex(w, 1010, 8), "@1006: 36 37 38 39 [61] 62 63 64 …");
  assert.equal(shortHex(w, 1001, 4), "@1000: 30 [31] 32 33 …");
  assert.equal(shortHex({ offset: 0, hex: "0102" }), "@0: 01 02");
});

test("logMiscompare writes one JSON line naming flow, reason, offset and both sides", () => {
  const { lines, log } = capture();
  logMiscompare(log, {
    reason: "payload",
    explanation: "tcp 10.0.0.1:1 > 10.0.0.2:80: payload differs at stream offset 5",
    flow: "tcp 10.0.0.1:1 > 10.0.0.2:80",
    offset: 5,
    primary: { offset: 0, hex: "000102030405" },
    secondary: { offset: 0, hex: "0001020304ff" },
    epoch: 2,
  });
  assert.equal(lines.length, 1);
  const l = lines[0] as Record<string, unknown>;
  assert.equal(l.level, 40);
  assert.equal(l.name, "compare");
  assert.equal(l.event, "miscompare");
  assert.equal(l.flow, "tcp 10.0.0.1:1 > 10.0.0.2:80");
  assert.equal(l.reason, "payload");
  assert.equal(l.offset, 5);
  assert.equal(l.primary, "@1: 01 02 03 04 [05]");
  assert.equal(l.secondary, "@1: 01 02 03 04 [ff]");
  assert.match(String(l.msg), /payload differs at stream offset 5/);
  assert.match(String(l.time), /^\d{4}-\d\d-\d\dT/);
});

test("log levels filter and are validated", () => {
  const { lines, log } = capture("warn");
  log.info("hidden");
  log.warn("shown");
  assert.deepEqual(
    lines.map((l) => l.msg),
    ["shown"],
  );
  assert.equal(isLogLevel("debug"), true);
  assert.equal(isLogLevel("loud"), false);
});

test("reportRepeat: a per-frame event is reported the first time and every 1000th, nothing in between", () => {
  const reported: number[] = [];
  for (let n = 1; n <= 5000; n++) if (reportRepeat(n)) reported.push(n);
  assert.deepEqual(reported, [1, 1000, 2000, 3000, 4000, 5000]);
});
