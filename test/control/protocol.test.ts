import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  decodeRequest,
  encode,
  errorClassOf,
  greeting,
  type LineItem,
  LineSplitter,
  timestampOf,
} from "../../src/control/protocol.ts";

function feed(split: LineSplitter, chunks: Buffer[]): LineItem[] {
  const out: LineItem[] = [];
  for (const c of chunks) split.push(c, out);
  return out;
}

const stream = Buffer.from('{"execute":"a"}\n{"execute":"b","arguments":{"x":"é"}}\r\n\n{"execute":"c"}\n');
const expected: LineItem[] = [
  { line: '{"execute":"a"}' },
  { line: '{"execute":"b","arguments":{"x":"é"}}' },
  { line: "" },
  { line: '{"execute":"c"}' },
];

test("LineSplitter: the stream split at every offset gives the same lines", () => {
  for (let i = 0; i <= stream.length; i++) {
    const got = feed(new LineSplitter(1024), [stream.subarray(0, i), stream.subarray(i)]);
    assert.deepEqual(got, expected, `split at ${i}`);
  }
});

test("LineSplitter: fixed-size chunks of 1, 2, 3, 4, 5, 7, 13, 64 bytes", () => {
  for (const size of [1, 2, 3, 4, 5, 7, 13, 64]) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < stream.length; i += size) chunks.push(stream.subarray(i, i + size));
    assert.deepEqual(feed(new LineSplitter(1024), chunks), expected, `chunk size ${size}`);
  }
});

test("LineSplitter: an overlong line is reported once, skipped to its newline, then lines resume", () => {
  const s = new LineSplitter(10);
  const out = feed(s, [Buffer.from("0123456"), Buffer.from("789abcdef"), Buffer.from("xyz\nok\n")]);
  assert.deepEqual(out, [{ overflow: 16 }, { line: "ok" }]);
  assert.equal(s.buffered, 0);
});

test("LineSplitter: a newline-less flood holds at most maxLine bytes", () => {
  const s = new LineSplitter(100);
  const out: LineItem[] = [];
  for (let i = 0; i < 1000; i++) {
    s.push(Buffer.alloc(64, 0x41), out);
    assert.ok(s.buffered <= 100);
  }
  assert.equal(out.length, 1);
  assert.ok("overflow" in (out[0] as LineItem));
  s.push(Buffer.from("\nfine\n"), out);
  assert.deepEqual(out.slice(1), [{ line: "fine" }]);
});

test("LineSplitter: a line of exactly maxLine bytes is accepted", () => {
  assert.deepEqual(feed(new LineSplitter(4), [Buffer.from("abcd\nabcde\n")]), [
    { line: "abcd" },
    { overflow: 5 },
  ]);
});

test("LineSplitter: property — any chunking of newline-free lines yields the lines", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.string({ unit: "grapheme", maxLength: 30 }).map((s) => s.replace(/[\r\n]/g, "")),
        { maxLength: 20 },
      ),
      fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1, maxLength: 10 }),
      (lines, sizes) => {
        const buf = Buffer.from(lines.map((l) => `${l}\n`).join(""));
        const chunks: Buffer[] = [];
        let i = 0;
        let k = 0;
        while (i < buf.length) {
          const n = sizes[k++ % sizes.length] as number;
          chunks.push(buf.subarray(i, i + n));
          i += n;
        }
        const got = feed(new LineSplitter(1000), chunks);
        assert.deepEqual(
          got,
          lines.map((l) => ({ line: l })),
        );
      },
    ),
  );
});

test("decodeRequest: valid requests keep their id verbatim", () => {
  const r = decodeRequest('{"execute":"query-status","id":{"n":[1,2]}}');
  assert.deepEqual(r, {
    ok: true,
    request: { execute: "query-status", arguments: {}, id: { n: [1, 2] }, hasId: true },
  });
  const r2 = decodeRequest('{"execute":"x","arguments":{"a":1}}');
  assert.deepEqual(r2, { ok: true, request: { execute: "x", arguments: { a: 1 }, hasId: false } });
});

for (const [name, line, code, hasId] of [
  ["bad JSON", "{nope", "COLO_ERR_CTL_BAD_JSON", false],
  ["an array", "[1]", "COLO_ERR_CTL_BAD_REQUEST", false],
  ["a string", '"x"', "COLO_ERR_CTL_BAD_REQUEST", false],
  ["null", "null", "COLO_ERR_CTL_BAD_REQUEST", false],
  ["no execute", '{"id":7}', "COLO_ERR_CTL_BAD_REQUEST", true],
  ["empty execute", '{"execute":"","id":7}', "COLO_ERR_CTL_BAD_REQUEST", true],
  ["numeric execute", '{"execute":5}', "COLO_ERR_CTL_BAD_REQUEST", false],
  ["extra member", '{"execute":"x","foo":1,"id":"a"}', "COLO_ERR_CTL_BAD_REQUEST", true],
  ["array arguments", '{"execute":"x","arguments":[1]}', "COLO_ERR_CTL_BAD_ARGS", false],
] as const) {
  test(`decodeRequest: ${name} → ${code}`, () => {
    const r = decodeRequest(line);
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.equal(r.error.code, code);
    assert.equal(r.error.class, "GenericError");
    assert.equal("id" in r, hasId);
  });
}

test("decodeRequest never throws on arbitrary text", () => {
  fc.assert(
    fc.property(fc.string(), (s) => {
      decodeRequest(s);
    }),
  );
});

test("protocol helpers: greeting, timestamps, error classes, encoding", () => {
  assert.deepEqual(greeting("1.2.3").QMP.version["colo-proxy"], { major: 1, minor: 2, micro: 3 });
  assert.deepEqual(timestampOf(1_700_000_000_123.456), { seconds: 1_700_000_000, microseconds: 123456 });
  assert.equal(errorClassOf("COLO_ERR_CTL_UNKNOWN_COMMAND"), "CommandNotFound");
  assert.equal(errorClassOf("COLO_ERR_CTL_BAD_ARGS"), "GenericError");
  const line = encode({ return: { s: "a\nb" } });
  assert.equal(line.indexOf("\n"), line.length - 1);
});
