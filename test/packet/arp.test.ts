import assert from "node:assert/strict";
import { test } from "node:test";
import { ArpPacket, type ArpRepr, emitArpRepr, parseArpRepr } from "../../src/packet/arp.ts";
import { ParseStatus } from "../../src/packet/meta.ts";
import { ARP } from "./fixtures.ts";

const REPR: ArpRepr = {
  operation: 1,
  senderMac: "52:54:00:12:34:56",
  senderIp: "192.168.1.10",
  targetMac: "00:00:00:00:00:00",
  targetIp: "192.168.1.1",
};

test("deconstruct", () => {
  const a = new ArpPacket(ARP, 14);
  assert.equal(a.check(), ParseStatus.Ok);
  assert.equal(a.hardwareType, 1);
  assert.equal(a.protocolType, 0x0800);
  assert.equal(a.hardwareLen, 6);
  assert.equal(a.protocolLen, 4);
  assert.equal(a.operation, 1);
  assert.equal(a.packetLen, 28);
  assert.equal(a.senderProtoOffset, 14 + 14);
  assert.equal(a.targetProtoOffset, 14 + 24);
  assert.ok(a.isEthernetIpv4);
});

test("construct: operation setter", () => {
  const b = Buffer.from(ARP);
  new ArpPacket(b, 14).operation = 2;
  assert.equal(b.readUInt16BE(20), 2);
});

test("parse and emit", () => {
  assert.deepEqual(parseArpRepr(new ArpPacket(ARP, 14)), REPR);
  const out = new Uint8Array(28);
  emitArpRepr(REPR, out);
  assert.deepEqual(Buffer.from(out), ARP.subarray(14, 42));
});

test("truncated and non-Ethernet/IPv4 ARP", () => {
  for (let n = 14; n < 42; n++) assert.equal(new ArpPacket(ARP, 14, n).check(), ParseStatus.Truncated);
  const b = Buffer.from(ARP);
  b[14 + 5] = 16; // protocol address length 16: packet now needs 8 + 12 + 32 bytes
  assert.equal(new ArpPacket(b, 14, 60).check(), ParseStatus.Truncated);
  b[14 + 5] = 2;
  assert.equal(new ArpPacket(b, 14).check(), ParseStatus.Ok);
  assert.equal(parseArpRepr(new ArpPacket(b, 14)), ParseStatus.BadHeader);
});
