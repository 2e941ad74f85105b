import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import type { ColoError } from "../../src/errors.ts";
import {
  Channel,
  decodeMessage,
  encodeFrameHeader,
  encodeMessage,
  type LinkMessage,
  MsgType,
  Role,
} from "../../src/node/link-protocol.ts";
import { LinkSession, type LinkSessionConfig, LinkState } from "../../src/node/link-session.ts";

interface Side {
  session: LinkSession;
  outbox: Buffer[];
  frames: { channel: Channel; frame: Buffer; vnetLen: number; epoch: number }[];
  checkpoints: number[];
  closed: ColoError[];
  established: number;
  failovers: string[];
}

function side(cfg: Partial<LinkSessionConfig> & { role: Role }, seed: number): Side {
  const s: Side = {
    session: undefined as unknown as LinkSession,
    outbox: [],
    frames: [],
    checkpoints: [],
    closed: [],
    established: 0,
    failovers: [],
  };
  s.session = new LinkSession(
    {
      secret: Buffer.from("s3cret"),
      vnetHdr: false,
      maxFrame: 69632,
      heartbeatIntervalMs: 100,
      heartbeatTimeoutMs: 1000,
      handshakeTimeoutMs: 500,
      randomBytes: (n) => Buffer.alloc(n, seed),
      ...cfg,
    },
    {
      write: (chunks) => s.outbox.push(Buffer.concat(chunks)),
      established: () => s.established++,
      frame: (channel, frame, vnetLen, epoch) =>
        s.frames.push({ channel, frame: Buffer.from(frame), vnetLen, epoch }),
      checkpoint: (e) => s.checkpoints.push(e),
      peerFailover: (r) => s.failovers.push(r),
      closed: (e) => s.closed.push(e),
    },
  );
  return s;
}

/** Delivers everything queued in a's outbox to b (splitting length-prefixed messages). */
function deliver(a: Side, b: Side, now: number): void {
  const data = Buffer.concat(a.outbox.splice(0));
  let off = 0;
  while (off < data.length) {
    const n = data.readUInt32BE(off);
    b.session.receive(data.subarray(off + 4, off + 4 + n), now);
    off += 4 + n;
  }
}

function pump(a: Side, b: Side, now = 0): void {
  for (let i = 0; i < 10 && (a.outbox.length > 0 || b.outbox.length > 0); i++) {
    deliver(a, b, now);
    deliver(b, a, now);
  }
}

function connected(pcfg: Partial<LinkSessionConfig> = {}, scfg: Partial<LinkSessionConfig> = {}) {
  const p = side({ role: Role.Primary, epoch: 7, ...pcfg }, 1);
  const s = side({ role: Role.Secondary, ...scfg }, 2);
  p.session.start(0);
  s.session.start(0);
  pump(p, s);
  return { p, s };
}

describe("link session handshake", () => {
  test("same secret and settings: both ends established, secondary adopts the primary's epoch", () => {
    const { p, s } = connected();
    assert.equal(p.session.state, LinkState.Established);
    assert.equal(s.session.state, LinkState.Established);
    assert.equal(p.established, 1);
    assert.equal(s.established, 1);
    assert.equal(s.session.epoch, 7);
    assert.deepEqual(p.closed, []);
  });

  test("a wrong secret is refused on both ends with COLO_ERR_LINK_AUTH, no frame passes", () => {
    const { p, s } = connected({}, { secret: Buffer.from("wrong") });
    assert.equal(p.session.state, LinkState.Closed);
    assert.equal(s.session.state, LinkState.Closed);
    const codes = [...p.closed, ...s.closed].map((e) => e.code);
    assert.ok(codes.includes("COLO_ERR_LINK_AUTH"), codes.join());
    assert.equal(p.session.sendFrame(Channel.ClientToGuest, Buffer.alloc(60), 0, 1), false);
  });

  test("two primaries refuse each other with COLO_ERR_LINK_ROLE", () => {
    const { p, s } = connected({}, { role: Role.Primary });
    assert.equal(p.closed[0]?.code, "COLO_ERR_LINK_ROLE");
    assert.equal(s.closed[0]?.code, "COLO_ERR_LINK_ROLE");
  });

  test("vnet_hdr_support mismatch is refused with COLO_ERR_LINK_SETTINGS and a clear message", () => {
    const { p, s } = connected({ vnetHdr: true }, {});
    assert.equal(p.closed[0]?.code, "COLO_ERR_LINK_SETTINGS");
    assert.match(p.closed[0]?.message ?? "", /vnet_hdr_support mismatch/);
    assert.equal(s.closed[0]?.code, "COLO_ERR_LINK_SETTINGS");
  });

  test("max frame mismatch is refused", () => {
    const { p } = connected({ maxFrame: 9000 }, {});
    assert.equal(p.closed[0]?.code, "COLO_ERR_LINK_SETTINGS");
  });

  test("a peer that says nothing hits the handshake timeout", () => {
    const p = side({ role: Role.Primary }, 1);
    p.session.start(0);
    p.session.tick(400);
    assert.equal(p.session.state, LinkState.AwaitHello);
    p.session.tick(501);
    assert.equal(p.closed[0]?.code, "COLO_ERR_LINK_TIMEOUT");
  });

  test("frames before authentication are a protocol error", () => {
    const p = side({ role: Role.Primary }, 1);
    p.session.start(0);
    const hdr = encodeFrameHeader(Channel.GuestOutput, 0, 0, 60);
    p.session.receive(Buffer.concat([hdr, Buffer.alloc(60)]).subarray(4), 1);
    assert.equal(p.closed[0]?.code, "COLO_ERR_LINK_PROTOCOL");
    assert.equal(p.frames.length, 0);
  });

  test("garbage bodies never throw; they close the session with a protocol error", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const p = side({ role: Role.Primary }, 1);
        p.session.start(0);
        p.session.receive(Buffer.from(bytes), 1);
        assert.ok(p.closed.length <= 1);
        if (p.closed.length === 1) assert.match(p.closed[0]!.code, /^COLO_ERR_LINK_/);
      }),
    );
  });
});

describe("link session traffic", () => {
  test("frames flow both ways byte-identical with channel and vnet length", () => {
    const { p, s } = connected();
    const f1 = Buffer.from("client frame bytes....................................................");
    const f2 = Buffer.from("guest output bytes....................................................");
    assert.ok(p.session.sendFrame(Channel.ClientToGuest, f1, 0, 1));
    assert.ok(s.session.sendFrame(Channel.GuestOutput, f2, 0, 1));
    pump(p, s, 1);
    assert.deepEqual(s.frames, [{ channel: Channel.ClientToGuest, frame: f1, vnetLen: 0, epoch: 7 }]);
    assert.deepEqual(p.frames, [{ channel: Channel.GuestOutput, frame: f2, vnetLen: 0, epoch: 7 }]);
  });

  test("after a checkpoint the primary discards guest output from the old epoch", () => {
    const { p, s } = connected();
    s.session.sendFrame(Channel.GuestOutput, Buffer.alloc(60, 1), 0, 1); // in flight, old epoch
    const e = p.session.checkpoint(2);
    assert.equal(e, 8);
    pump(p, s, 2);
    assert.deepEqual(s.checkpoints, [8]);
    assert.equal(p.frames.length, 0);
    assert.equal(p.session.stats.staleFrames, 1);
    s.session.sendFrame(Channel.GuestOutput, Buffer.alloc(60, 2), 0, 3);
    pump(p, s, 3);
    assert.equal(p.frames.length, 1);
    assert.equal(p.frames[0]?.epoch, 8);
  });

  test("heartbeats keep an idle link alive; silence past the timeout declares the peer lost", () => {
    const { p, s } = connected();
    for (let t = 100; t <= 3000; t += 100) {
      p.session.tick(t);
      s.session.tick(t);
      pump(p, s, t);
    }
    assert.equal(p.session.state, LinkState.Established);
    assert.ok(p.session.stats.heartbeatsIn > 10);
    // the secondary goes silent
    for (let t = 3100; t <= 4200; t += 100) p.session.tick(t);
    assert.equal(p.closed[0]?.code, "COLO_ERR_LINK_TIMEOUT");
  });

  test("operator failover tells the peer and closes", () => {
    const { p, s } = connected();
    s.session.failover("operator", 5);
    pump(p, s, 5);
    assert.deepEqual(p.failovers, ["operator"]);
    assert.equal(s.session.state, LinkState.Closed);
  });
});

describe("link protocol codec", () => {
  test("every message type round-trips", () => {
    const msgs: Exclude<LinkMessage, { type: MsgType.Frame }>[] = [
      {
        type: MsgType.Hello,
        version: 1,
        role: Role.Secondary,
        flags: 1,
        maxFrame: 69632,
        epoch: 3,
        nonce: Buffer.alloc(32, 9),
      },
      { type: MsgType.Auth, mac: Buffer.alloc(32, 4) },
      { type: MsgType.Heartbeat, seq: 0xffffffff },
      { type: MsgType.Checkpoint, epoch: 12 },
      { type: MsgType.Failover, reason: "heartbeat lost" },
      { type: MsgType.Error, code: "COLO_ERR_LINK_AUTH", message: "nope ✓" },
    ];
    for (const m of msgs) {
      const wire = encodeMessage(m);
      assert.equal(wire.readUInt32BE(0), wire.length - 4);
      assert.deepEqual(decodeMessage(wire.subarray(4)), m);
    }
  });

  test("frame header + frame decodes to a view of the same bytes", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (f, epoch) => {
          const frame = Buffer.from(f);
          const wire = Buffer.concat([encodeFrameHeader(Channel.GuestOutput, 0, epoch, frame.length), frame]);
          const m = decodeMessage(wire.subarray(4));
          assert.equal(m.type, MsgType.Frame);
          if (m.type === MsgType.Frame) {
            assert.ok(m.frame.equals(frame));
            assert.equal(m.epoch, epoch);
          }
        },
      ),
    );
  });
});
