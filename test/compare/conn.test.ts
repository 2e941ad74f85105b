import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { CompareConn } from "../../src/compare/conn.ts";
import { HeldStore } from "../../src/compare/held.ts";
import { extractFlow, isArpIpv4, protocolName } from "../../src/conntrack/flow.ts";
import { newFrameMeta, ParseStatus } from "../../src/packet/meta.ts";
import { parseFrame } from "../../src/packet/parse.ts";
import { mutatedFrame } from "../packet/arb.ts";

function connFor(
  frame: Buffer,
  vnetLen: number,
): { c: CompareConn; m: ReturnType<typeof newFrameMeta> } | null {
  const m = newFrameMeta();
  if (parseFrame(frame, vnetLen, m) !== ParseStatus.Ok) return null;
  const c = new CompareConn(new HeldStore(), m.key, 0, m, isArpIpv4(m, frame), 0, protocolName(m));
  return { c, m };
}

test("a connection's flow, rebuilt from its packed parse scalars, is extractFlow's (any frame, mutated)", () => {
  fc.assert(
    fc.property(mutatedFrame, ({ frame, vnetLen }) => {
      const r = connFor(frame, vnetLen);
      if (r === null) return;
      assert.deepEqual(r.c.flow, extractFlow(r.m, frame));
    }),
    { numRuns: 2000 },
  );
});

const COLD = [
  "queueFullRaised",
  "primaryIsnSet",
  "secondarySyn",
  "secondaryRst",
  "primaryFin",
  "secondaryFin",
  "primaryRst",
  "flushedEndSet",
] as const;

test("the cold booleans are independent bits; resetStream clears the stream's and keeps queueFullRaised", () => {
  const c = new CompareConn(new HeldStore(), "k", 0, newFrameMeta(), false, 0, "tcp");
  for (const name of COLD) assert.equal(c[name], false, `${name} starts false`);
  for (const name of COLD) {
    c[name] = true;
    for (const other of COLD) assert.equal(c[other], other === name, `${name} set: ${other}`);
    c[name] = false;
    for (const other of COLD) assert.equal(c[other], false, `${name} cleared: ${other}`);
  }
  for (const name of COLD) c[name] = true;
  c.resetStream();
  for (const name of COLD) assert.equal(c[name], name === "queueFullRaised", `after resetStream: ${name}`);
});
