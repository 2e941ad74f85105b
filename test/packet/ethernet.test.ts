import assert from "node:assert/strict";
import { test } from "node:test";
import { buildEthernet } from "../../src/packet/build.ts";
import {
  EthernetFrame,
  type EthernetRepr,
  emitEthernetRepr,
  ethernetHeaderLen,
  parseEthernetRepr,
} from "../../src/packet/ethernet.ts";
import { ParseStatus } from "../../src/packet/meta.ts";
import { SYN } from "./fixtures.ts";

const QINQ = buildEthernet({
  dstMac: "01:80:c2:00:00:0e",
  srcMac: "52:54:00:aa:bb:cc",
  outerVlan: { id: 300, pcp: 3 },
  vlan: { id: 42, dei: true },
  etherType: 0x88cc,
  payload: "lldp",
});
const REPR: EthernetRepr = {
  dst: "01:80:c2:00:00:0e",
  src: "52:54:00:aa:bb:cc",
  vlans: [
    { tpid: 0x88a8, id: 300, pcp: 3, dei: false },
    { tpid: 0x8100, id: 42, pcp: 0, dei: true },
  ],
  etherType: 0x88cc,
};

test("deconstruct: untagged and QinQ headers", () => {
  const e = new EthernetFrame(SYN);
  assert.equal(e.check(), ParseStatus.Ok);
  assert.equal(Buffer.from(e.dst).toString("hex"), "525400654321");
  assert.equal(Buffer.from(e.src).toString("hex"), "525400123456");
  assert.equal(e.tagCount, 0);
  assert.equal(e.etherType, 0x0800);
  assert.equal(e.payloadOffset, 14);
  const q = new EthernetFrame(QINQ);
  assert.equal(q.check(), ParseStatus.Ok);
  assert.equal(q.tagCount, 2);
  assert.equal(q.tpid(0), 0x88a8);
  assert.equal(q.vlanId(0), 300);
  assert.equal(q.pcp(0), 3);
  assert.equal(q.dei(0), false);
  assert.equal(q.vlanId(1), 42);
  assert.equal(q.dei(1), true);
  assert.equal(q.etherType, 0x88cc);
  assert.equal(q.headerLen, 22);
});

test("construct: setters change only their bits", () => {
  const b = Buffer.from(QINQ);
  const q = new EthernetFrame(b);
  q.setVlanId(1, 4095);
  q.setVlanId(0, 1);
  q.etherType = 0x0800;
  assert.equal(b.readUInt16BE(14), (3 << 13) | 1);
  assert.equal(b.readUInt16BE(18), 0x1000 | 4095);
  assert.equal(b.readUInt16BE(20), 0x0800);
});

test("parse and emit the Repr", () => {
  assert.deepEqual(parseEthernetRepr(new EthernetFrame(QINQ)), REPR);
  const out = new Uint8Array(ethernetHeaderLen(REPR));
  assert.equal(emitEthernetRepr(REPR, out), 22);
  assert.deepEqual(Buffer.from(out), QINQ.subarray(0, 22));
});

test("check() reports truncation at every cut of a tagged header", () => {
  for (let n = 0; n < 22; n++) {
    assert.equal(new EthernetFrame(QINQ, 0, n).check(), ParseStatus.Truncated, `cut at ${n}`);
  }
  assert.equal(new EthernetFrame(QINQ, 0, 22).check(), ParseStatus.Ok);
  assert.equal(new EthernetFrame(QINQ, -1).check(), ParseStatus.Truncated);
});
