import assert from "node:assert/strict";
import { test } from "node:test";
import {
  emitIcmpRepr,
  IcmpPacket,
  type IcmpRepr,
  isIcmpError,
  parseIcmpRepr,
} from "../../src/packet/icmp.ts";
import { ParseStatus } from "../../src/packet/meta.ts";
import { PING } from "./fixtures.ts";

const REPR: IcmpRepr = { type: 8, code: 0, rest: 0x12340001, payloadLen: 16 };

test("deconstruct", () => {
  const p = new IcmpPacket(PING, 34);
  assert.equal(p.check(), ParseStatus.Ok);
  assert.equal(p.type, 8);
  assert.equal(p.code, 0);
  assert.equal(p.checksum, 0xad8a);
  assert.ok(p.isEcho);
  assert.equal(p.echoIdent, 0x1234);
  assert.equal(p.echoSeq, 1);
  assert.equal(p.payloadOffset, 42);
  assert.equal(p.payloadLen, 16);
  assert.ok(p.verifyChecksum());
  assert.equal(isIcmpError(p.type), false);
  assert.equal(isIcmpError(3), true);
});

test("construct: turn the request into a reply", () => {
  const b = Buffer.from(PING);
  const p = new IcmpPacket(b, 34);
  p.type = 0;
  p.rest = 0x12340002;
  p.fillChecksum();
  assert.ok(p.verifyChecksum());
  assert.equal(b.subarray(34, 42).toString("hex"), `0000${p.checksum.toString(16).padStart(4, "0")}12340002`);
});

test("parse and emit", () => {
  assert.deepEqual(parseIcmpRepr(new IcmpPacket(PING, 34), true), REPR);
  const b = Buffer.from(PING);
  b.fill(0, 34, 42);
  emitIcmpRepr(REPR, b, 34);
  assert.deepEqual(b, PING);
});

test("check() and a bad checksum", () => {
  for (let n = 34; n < 42; n++) assert.equal(new IcmpPacket(PING, 34, n).check(), ParseStatus.Truncated);
  const b = Buffer.from(PING);
  b[50] = b[50]! ^ 1;
  assert.equal(parseIcmpRepr(new IcmpPacket(b, 34), true), ParseStatus.BadHeader);
  assert.equal(typeof parseIcmpRepr(new IcmpPacket(b, 34)), "object");
});
