/**
 * Interop with real QEMU (7.2, no guest): our encoder's frames are read by QEMU's chardev reader,
 * and frames QEMU writes are read by our decoder, through colo-compare (unsupported frames such as
 * ARP pass from primary_in to outdev unchanged) and its Xen notify_dev channel. Skips with a
 * printed reason when qemu-system-x86_64 is missing.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { describe, type TestContext, test } from "node:test";
import { ChardevEndpoint } from "../../src/wire/chardev.ts";
import { NET_BUFSIZE } from "../../src/wire/framing.ts";
import {
  CHECKPOINT,
  DO_CHECKPOINT,
  NotifyDecoder,
  type NotifyMessage,
  notifyPayload,
  PROXY_INIT,
  XEN_INIT_REPLY,
} from "../../src/wire/notify.ts";
import { arp, udp, withVnet } from "../support/frames.ts";
import { type Qemu, skipWithoutQemu, startQemu, tempDir, waitUntil } from "../support/qemu.ts";
import { hubNetdevArgs } from "../support/qemu-rewriter.ts";

const WAIT = 10_000;

interface Got {
  data: Buffer;
  vnetLen: number;
}

function collector(): { got: Got[]; onFrame: (d: Buffer, v: number) => void } {
  const got: Got[] = [];
  return { got, onFrame: (data, vnetLen) => got.push({ data: Buffer.from(data), vnetLen }) };
}

async function until(what: string, check: () => boolean): Promise<void> {
  assert.ok(await waitUntil(check, WAIT), `timed out waiting for ${what}`);
}

/** An Ethernet frame QEMU's parser calls unsupported (not IPv4), so colo-compare passes it on. */
function nonIp(i: number, len: number): Buffer {
  const f = Buffer.alloc(len, i & 0xff);
  Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 1, 0x88, 0xb5]).copy(f);
  f.writeUInt32BE(i, 14);
  return f;
}

async function compareQemu(t: TestContext, vnet: boolean): Promise<Qemu> {
  return startQemu(
    {
      chardevs: ["pri", "sec", "out", "notify"],
      objects: [
        "iothread,id=iot",
        `colo-compare,id=cmp,primary_in=pri,secondary_in=sec,outdev=out,iothread=iot,notify_dev=notify${
          vnet ? ",vnet_hdr_support=on" : ""
        }`,
      ],
    },
    t,
  );
}

function client(
  t: TestContext,
  q: Qemu,
  id: string,
  onFrame: (d: Buffer, v: number) => void,
  vnetHdr = false,
) {
  const ep = new ChardevEndpoint({
    spec: `socket,id=${id},path=${q.sock(id)},reconnect=1`,
    onFrame,
    vnetHdr,
  });
  t.after(() => ep.close());
  return ep;
}

describe("interop with QEMU colo-compare", () => {
  test("QEMU reads our frames and we read QEMU's (plain, incl. a 69,632-byte frame)", async (t) => {
    if (skipWithoutQemu(t)) return;
    const q = await compareQemu(t, false);
    const out = collector();
    const pri = client(t, q, "pri", () => {});
    const outEp = client(t, q, "out", out.onFrame);
    const notify = client(t, q, "notify", () => {});
    const sec = client(t, q, "sec", () => {});
    for (const ep of [pri, outEp, notify, sec]) await ep.start();
    await Promise.all([pri, outEp, notify, sec].map((ep) => ep.waitConnected(WAIT)));
    await q.waitConnected(["pri", "sec", "out", "notify"]);

    // Many frames in one batched write, then the largest frame QEMU accepts.
    const sent = [arp(), ...Array.from({ length: 200 }, (_, i) => nonIp(i, 60 + ((i * 37) % 1450)))];
    sent.push(nonIp(999, NET_BUFSIZE));
    for (const f of sent) pri.send(f);
    await until("frames on outdev", () => out.got.length === sent.length);
    // Compared by id, not position: under output back-pressure QEMU 7.2 drains its colo-compare
    // send queue newest-first (reference §2.7 quirk; seen here as runs of reversed frames).
    const byId = new Map(out.got.map((g) => [g.data.length > 18 ? g.data.readUInt32BE(14) : -1, g]));
    assert.equal(byId.size, sent.length, "every frame came out exactly once");
    for (const [i, f] of sent.entries()) {
      const g = byId.get(f.length > 18 ? f.readUInt32BE(14) : -1);
      assert.ok(g?.data.equals(f), `frame ${i} byte-identical after QEMU`);
      assert.equal(g?.vnetLen, 0);
    }
    assert.equal(outEp.counters.framesIn, sent.length);
    assert.deepEqual(outEp.counters.errors, {});
  });

  test("vnet_hdr_support=on: V goes in and comes back out", async (t) => {
    if (skipWithoutQemu(t)) return;
    const q = await compareQemu(t, true);
    const out = collector();
    const pri = client(t, q, "pri", () => {}, true);
    const outEp = client(t, q, "out", out.onFrame, true);
    const sec = client(t, q, "sec", () => {}, true);
    for (const ep of [pri, outEp, sec]) await ep.start();
    await Promise.all([pri, outEp, sec].map((ep) => ep.waitConnected(WAIT)));
    await q.waitConnected(["pri", "sec", "out"]);
    const frames = [withVnet(arp(), 12, 0xab), withVnet(arp(), 10), withVnet(nonIp(1, 100), 0)];
    const vlens = [12, 10, 0];
    for (const [i, f] of frames.entries()) pri.send(f, vlens[i]);
    await until("frames on outdev", () => out.got.length === 3);
    // Order-insensitive (QEMU may reverse its output queue, see the first test).
    for (const [i, f] of frames.entries()) {
      assert.ok(
        out.got.some((g) => g.data.equals(f) && g.vnetLen === vlens[i]),
        `frame ${i} with V=${vlens[i]}`,
      );
    }
  });

  test("notify_dev: INIT handshake, DO_CHECKPOINT on a miscompare, COLO_CHECKPOINT flushes", async (t) => {
    if (skipWithoutQemu(t)) return;
    const q = await compareQemu(t, false);
    const msgs: NotifyMessage[] = [];
    const xen = new NotifyDecoder({ role: "xen", onMessage: (m) => msgs.push(m) });
    const out = collector();
    const notify = client(t, q, "notify", xen.handleFrame);
    const pri = client(t, q, "pri", () => {});
    const sec = client(t, q, "sec", () => {});
    const outEp = client(t, q, "out", out.onFrame);
    for (const ep of [notify, pri, sec, outEp]) await ep.start();
    await Promise.all([notify, pri, sec, outEp].map((ep) => ep.waitConnected(WAIT)));
    await q.waitConnected(["pri", "sec", "out", "notify"]);

    notify.send(notifyPayload(PROXY_INIT));
    await until("INIT answer", () => msgs.length === 1);
    assert.deepEqual(msgs, [XEN_INIT_REPLY]);

    // Same UDP flow, different payload: a miscompare -> DO_CHECKPOINT, primary held.
    const p = udp({ payload: "primary says hello" });
    pri.send(p);
    sec.send(udp({ payload: "secondary differs!" }));
    await until("DO_CHECKPOINT", () => msgs.includes(DO_CHECKPOINT));
    assert.equal(out.got.length, 0);
    notify.send(notifyPayload(CHECKPOINT));
    await until("flush after COLO_CHECKPOINT", () => out.got.length === 1);
    assert.ok(out.got[0]!.data.equals(p));
    assert.equal(xen.unknown, 0);
  });

  test("QEMU as the client of our server endpoints", async (t) => {
    if (skipWithoutQemu(t)) return;
    const dir = tempDir(t, "colo-qemu-srv-");
    const out = collector();
    const eps = ["pri", "sec", "out"].map((id) => {
      const ep = new ChardevEndpoint({
        spec: `socket,id=${id},path=${path.join(dir, `${id}.sock`)},server=on,wait=off`,
        onFrame: id === "out" ? out.onFrame : () => {},
      });
      t.after(() => ep.close());
      return ep;
    });
    for (const ep of eps) await ep.start();
    const [pri, , outEp] = eps as [ChardevEndpoint, ChardevEndpoint, ChardevEndpoint];
    const q = await startQemu(
      {
        dir,
        args: [
          ...["pri", "sec", "out"].flatMap((id) => [
            "-chardev",
            `socket,id=${id},path=${path.join(dir, `${id}.sock`)},reconnect=1`,
          ]),
        ],
        objects: [
          "iothread,id=iot",
          "colo-compare,id=cmp,primary_in=pri,secondary_in=sec,outdev=out,iothread=iot",
        ],
      },
      t,
    );
    await Promise.all(eps.map((ep) => ep.waitConnected(WAIT)));
    await q.waitConnected(["pri", "sec", "out"]);
    const frames = Array.from({ length: 50 }, (_, i) => nonIp(i, 64 + i));
    for (const f of frames) pri.send(f);
    await until("frames through QEMU", () => out.got.length === frames.length);
    const ids = out.got.map((g) => g.data.readUInt32BE(14)).sort((a, b) => a - b);
    assert.deepEqual(
      ids,
      frames.map((_, i) => i),
    );
    for (const g of out.got) assert.ok(g.data.equals(frames[g.data.readUInt32BE(14)]!));
    assert.equal(outEp.counters.framesIn, 50);
  });
});

describe("interop with QEMU filter-redirector (guestless hub)", () => {
  for (const vnet of [false, true]) {
    test(`frames injected through one redirector come out of the next (vnet ${vnet ? "on" : "off"})`, async (t) => {
      if (skipWithoutQemu(t)) return;
      const dir = tempDir(t, "colo-qemu-red-");
      const vh = vnet ? ",vnet_hdr_support=on" : "";
      const q = await startQemu(
        {
          dir,
          chardevs: ["rin", "rout"],
          args: hubNetdevArgs(dir),
          objects: [
            `filter-redirector,id=f_in,netdev=n0,queue=tx,indev=rin${vh}`,
            `filter-redirector,id=f_out,netdev=n0,queue=tx,outdev=rout${vh}`,
          ],
        },
        t,
      );
      const out = collector();
      const rin = client(t, q, "rin", () => {}, vnet);
      const rout = client(t, q, "rout", out.onFrame, vnet);
      for (const ep of [rin, rout]) await ep.start();
      await Promise.all([rin, rout].map((ep) => ep.waitConnected(WAIT)));
      await q.waitConnected(["rin", "rout"]);
      const frames = [
        arp(),
        ...Array.from({ length: 100 }, (_, i) => nonIp(i, 60 + i * 13)),
        nonIp(500, 60000),
      ];
      // With vnet on we also send V = 12: QEMU reads V, ignores it and injects the bytes as-is.
      for (const [i, f] of frames.entries())
        rin.send(vnet && i % 2 === 1 ? withVnet(f, 12, 0xee) : f, vnet && i % 2 === 1 ? 12 : 0);
      await until("frames out of the second redirector", () => out.got.length === frames.length);
      // The redirector path is synchronous: order is kept. V is the netdev's vnet length (0 here).
      for (const [i, f] of frames.entries()) {
        const sent = vnet && i % 2 === 1 ? withVnet(f, 12, 0xee) : f;
        assert.ok(out.got[i]!.data.equals(sent), `frame ${i}`);
        assert.equal(out.got[i]!.vnetLen, 0);
      }
      assert.deepEqual(rout.counters.errors, {});
    });
  }
});
