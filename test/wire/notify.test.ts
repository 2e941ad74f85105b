import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { FramingError } from "../../src/errors.ts";
import { encodeFrame, FrameDecoder } from "../../src/wire/framing.ts";
import {
  CHECKPOINT,
  DO_CHECKPOINT,
  encodeNotify,
  NotifyDecoder,
  type NotifyMessage,
  notifyPayload,
  notifyReply,
  PROXY_INIT,
  parseNotify,
  XEN_INIT_REPLY,
} from "../../src/wire/notify.ts";

describe("notify_dev messages", () => {
  test("exact strings and lengths as Xen/QEMU use them", () => {
    assert.equal(PROXY_INIT, "COLO_USERSPACE_PROXY_INIT");
    assert.equal(XEN_INIT_REPLY, "COLO_COMPARE_GET_XEN_INIT");
    assert.equal(CHECKPOINT, "COLO_CHECKPOINT");
    assert.equal(DO_CHECKPOINT, "DO_CHECKPOINT");
    const all: NotifyMessage[] = [PROXY_INIT, XEN_INIT_REPLY, CHECKPOINT, DO_CHECKPOINT];
    assert.deepEqual(
      all.map((m) => notifyPayload(m).length),
      [25, 25, 15, 13],
    );
  });

  test("encodeNotify is u32 BE length + ASCII, no NUL, no vnet word", () => {
    const b = encodeNotify(DO_CHECKPOINT);
    assert.deepEqual([...b.subarray(0, 4)], [0, 0, 0, 13]);
    assert.equal(b.subarray(4).toString("latin1"), "DO_CHECKPOINT");
    assert.equal(b.length, 17);
    assert.ok(!b.includes(0, 4));
    assert.ok(b.equals(encodeFrame(notifyPayload(DO_CHECKPOINT))));
  });

  test("parseNotify matches exact length and bytes only", () => {
    assert.equal(parseNotify(Buffer.from("COLO_CHECKPOINT")), CHECKPOINT);
    assert.equal(parseNotify(Buffer.from("COLO_CHECKPOINT\0")), null);
    assert.equal(parseNotify(Buffer.from("COLO_CHECKPOIN")), null);
    assert.equal(parseNotify(Buffer.from("colo_checkpoint")), null);
    assert.equal(parseNotify(Buffer.from("DO_CHECKPOINT ")), null);
  });

  test("notifyReply answers INIT only", () => {
    assert.equal(notifyReply(PROXY_INIT), XEN_INIT_REPLY);
    assert.equal(notifyReply(CHECKPOINT), null);
  });
});

describe("NotifyDecoder", () => {
  function collect(role: "proxy" | "xen") {
    const msgs: NotifyMessage[] = [];
    const errs: FramingError[] = [];
    const dec = new NotifyDecoder({ role, onMessage: (m) => msgs.push(m), onUnknown: (e) => errs.push(e) });
    return { dec, msgs, errs };
  }

  test("proxy side: INIT and COLO_CHECKPOINT, split at every offset", () => {
    const stream = Buffer.concat([
      encodeNotify(PROXY_INIT),
      encodeNotify(CHECKPOINT),
      encodeNotify(CHECKPOINT),
    ]);
    for (let split = 0; split <= stream.length; split++) {
      const { dec, msgs, errs } = collect("proxy");
      dec.push(stream.subarray(0, split));
      dec.push(stream.subarray(split));
      assert.deepEqual(msgs, [PROXY_INIT, CHECKPOINT, CHECKPOINT]);
      assert.equal(errs.length, 0);
      assert.equal(dec.messages, 3);
    }
  });

  test("unknown and wrong-direction messages are counted, reported with a code and ignored", () => {
    const { dec, msgs, errs } = collect("proxy");
    dec.push(
      Buffer.concat([
        encodeFrame(Buffer.from("HELLO")),
        encodeNotify(DO_CHECKPOINT), // valid text, but proxy→Xen only
        encodeFrame(Buffer.from("COLO_CHECKPOINT\0")), // NUL-terminated: not an exact match
        encodeNotify(CHECKPOINT),
      ]),
    );
    assert.deepEqual(msgs, [CHECKPOINT]);
    assert.equal(dec.unknown, 3);
    assert.deepEqual(
      errs.map((e) => e.code),
      ["COLO_ERR_NOTIFY_UNKNOWN", "COLO_ERR_NOTIFY_UNKNOWN", "COLO_ERR_NOTIFY_UNKNOWN"],
    );
    assert.match(errs[0]!.message, /HELLO/);
    assert.match(errs[1]!.message, /not valid input for the proxy side/);
  });

  test("xen side: DO_CHECKPOINT and the INIT answer", () => {
    const { dec, msgs } = collect("xen");
    dec.push(Buffer.concat([encodeNotify(XEN_INIT_REPLY), encodeNotify(DO_CHECKPOINT)]));
    assert.deepEqual(msgs, [XEN_INIT_REPLY, DO_CHECKPOINT]);
  });

  test("framing faults throw FramingError: zero length and lengths over the small notify limit", () => {
    const { dec, msgs } = collect("proxy");
    assert.throws(() => dec.push(Buffer.from([0, 0, 0, 0])), { code: "COLO_ERR_FRAME_EMPTY" });
    dec.reset();
    assert.throws(() => dec.push(Buffer.from([0, 0, 0x10, 0x01])), { code: "COLO_ERR_FRAME_TOO_LARGE" });
    dec.reset();
    dec.push(encodeNotify(CHECKPOINT));
    assert.deepEqual(msgs, [CHECKPOINT]);
  });

  test("handleFrame plugs into a FrameDecoder; the vnet compat option strips V", () => {
    const { dec, msgs } = collect("proxy");
    const framer = new FrameDecoder();
    framer.push(encodeNotify(CHECKPOINT), dec.handleFrame);
    assert.deepEqual(msgs, [CHECKPOINT]);

    const out: NotifyMessage[] = [];
    const compat = new NotifyDecoder({ vnetHdr: true, onMessage: (m) => out.push(m) });
    compat.push(encodeFrame(notifyPayload(CHECKPOINT), 0, true));
    assert.deepEqual(out, [CHECKPOINT]);
  });

  test("without onUnknown, unknown messages are still counted and never throw", () => {
    const dec = new NotifyDecoder({ onMessage: () => assert.fail("no message expected") });
    dec.push(encodeFrame(Buffer.from("X")));
    assert.equal(dec.unknown, 1);
  });
});
