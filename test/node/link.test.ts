import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import type { ColoError } from "../../src/errors.ts";
import { Link, type LinkOptions } from "../../src/node/link.ts";
import { Channel } from "../../src/node/link-protocol.ts";

const secret = Buffer.from("correct horse battery staple");
const links: Link[] = [];
after(async () => {
  for (const l of links) await l.close();
});

function mk(opts: Partial<LinkOptions> & Pick<LinkOptions, "role" | "addr">): Link {
  const l = new Link({
    secret,
    heartbeatIntervalMs: 50,
    heartbeatTimeoutMs: 400,
    reconnectMaxMs: 100,
    ...opts,
  });
  links.push(l);
  return l;
}

async function secondaryOn0(opts: Partial<LinkOptions> = {}): Promise<{ s: Link; port: number }> {
  const s = mk({ role: "secondary", addr: { host: "127.0.0.1", port: 0 }, ...opts });
  await s.start();
  const a = s.address() as net.AddressInfo;
  return { s, port: a.port };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`timed out waiting for ${what}`)), ms).unref()),
  ]);
}

describe("link over loopback TCP", () => {
  test("primary and secondary authenticate and carry frames both ways in order", async () => {
    const { s, port } = await secondaryOn0();
    const p = mk({ role: "primary", addr: { host: "127.0.0.1", port } });
    const ups = Promise.all([once(s, "up"), once(p, "up")]);
    await p.start();
    await withTimeout(ups, 30_000, "link up");
    const gotS: Buffer[] = [];
    const gotP: Buffer[] = [];
    s.on("frame", (ch, f) => {
      assert.equal(ch, Channel.ClientToGuest);
      gotS.push(Buffer.from(f));
    });
    p.on("frame", (ch, f) => {
      assert.equal(ch, Channel.GuestOutput);
      gotP.push(Buffer.from(f));
    });
    const sent: Buffer[] = [];
    for (let i = 0; i < 500; i++) {
      const f = Buffer.alloc(60 + (i % 1400), i & 0xff);
      f.writeUInt32BE(i, 0);
      sent.push(f);
      assert.ok(p.sendFrame(Channel.ClientToGuest, f, 0));
      assert.ok(s.sendFrame(Channel.GuestOutput, f, 0));
    }
    await withTimeout(
      (async () => {
        while (gotS.length < 500 || gotP.length < 500) await new Promise((r) => setTimeout(r, 10));
      })(),
      30_000,
      "frames",
    );
    assert.deepEqual(gotS, sent);
    assert.deepEqual(gotP, sent);
    const bytes = sent.reduce((n, f) => n + f.length, 0);
    assert.equal(p.counters.bytesOut, bytes);
    assert.equal(s.counters.bytesIn, bytes);
  });

  test("a wrong secret never brings the link up and is reported as COLO_ERR_LINK_AUTH", async () => {
    const { s, port } = await secondaryOn0();
    const p = mk({ role: "primary", addr: { host: "127.0.0.1", port }, secret: Buffer.from("wrong") });
    let up = false;
    s.on("up", () => {
      up = true;
    });
    p.on("up", () => {
      up = true;
    });
    const errs: ColoError[] = [];
    s.on("link-error", (e) => errs.push(e));
    p.on("link-error", (e) => errs.push(e));
    await p.start();
    await withTimeout(
      (async () => {
        while (!errs.some((e) => e.code === "COLO_ERR_LINK_AUTH"))
          await new Promise((r) => setTimeout(r, 10));
      })(),
      30_000,
      "auth error",
    );
    assert.equal(up, false);
    assert.equal(p.sendFrame(Channel.ClientToGuest, Buffer.alloc(64), 0), false);
    assert.ok((s.errors.COLO_ERR_LINK_AUTH ?? 0) + (p.errors.COLO_ERR_LINK_AUTH ?? 0) >= 1);
  });

  test("garbage from a stranger is counted and does not disturb the established link", async () => {
    const { s, port } = await secondaryOn0();
    const p = mk({ role: "primary", addr: { host: "127.0.0.1", port } });
    const ups = Promise.all([once(s, "up"), once(p, "up")]);
    await p.start();
    await withTimeout(ups, 30_000, "link up");
    const errs: ColoError[] = [];
    s.on("link-error", (e) => errs.push(e));
    const stranger = net.connect(port, "127.0.0.1");
    await once(stranger, "connect");
    stranger.resume(); // consume our HELLO so 'close' can fire
    stranger.write(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    await withTimeout(once(stranger, "close"), 30_000, "stranger dropped");
    assert.ok(errs.length >= 1);
    assert.match(errs[0]!.code, /^COLO_ERR_LINK_/);
    assert.ok(s.up && p.up, "link still up");
    const got = once(s, "frame");
    p.sendFrame(Channel.ClientToGuest, Buffer.alloc(64, 7), 0);
    const [, f] = await withTimeout(got, 30_000, "frame after garbage");
    assert.ok((f as Buffer).equals(Buffer.alloc(64, 7)));
  });

  test("losing the secondary takes the link down; the primary reconnects when it comes back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "colo-link-"));
    try {
      const path = join(dir, "link.sock");
      const s1 = mk({ role: "secondary", addr: { path } });
      await s1.start();
      const p = mk({ role: "primary", addr: { path } });
      const up1 = once(p, "up");
      await p.start();
      await withTimeout(up1, 30_000, "first up");
      const down = once(p, "down");
      await s1.close();
      const [err] = (await withTimeout(down, 30_000, "down")) as [ColoError];
      assert.match(err.code, /COLO_ERR_LINK_(CLOSED|TIMEOUT)/);
      assert.equal(p.up, false);
      const s2 = mk({ role: "secondary", addr: { path } });
      const up2 = once(p, "up");
      await s2.start();
      await withTimeout(up2, 30_000, "reconnect");
      assert.equal(p.counters.ups, 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a silent peer is declared lost by heartbeat timeout", async () => {
    const { port } = await secondaryOn0();
    // A fake 'secondary' that accepts TCP but never speaks.
    const mute = net.createServer(() => {});
    await new Promise<void>((r) => mute.listen(0, "127.0.0.1", () => r()));
    const p = mk({
      role: "primary",
      addr: { host: "127.0.0.1", port: (mute.address() as net.AddressInfo).port },
      handshakeTimeoutMs: 200,
    });
    const errs: ColoError[] = [];
    p.on("link-error", (e) => errs.push(e));
    await p.start();
    await withTimeout(
      (async () => {
        while (!errs.some((e) => e.code === "COLO_ERR_LINK_TIMEOUT"))
          await new Promise((r) => setTimeout(r, 10));
      })(),
      30_000,
      "handshake timeout",
    );
    mute.close();
    void port;
  });

  test("checkpoint epochs reach the secondary and stale guest output is dropped", async () => {
    const { s, port } = await secondaryOn0();
    const p = mk({ role: "primary", addr: { host: "127.0.0.1", port } });
    const ups = Promise.all([once(s, "up"), once(p, "up")]);
    await p.start();
    await withTimeout(ups, 30_000, "link up");
    const cp = once(s, "checkpoint");
    const e = p.checkpoint();
    const [epoch] = await withTimeout(cp, 30_000, "checkpoint");
    assert.equal(epoch, e);
    assert.equal(s.epoch, e);
    const got = once(p, "frame");
    s.sendFrame(Channel.GuestOutput, Buffer.alloc(64, 1), 0);
    const [, , , fe] = await withTimeout(got, 30_000, "fresh frame");
    assert.equal(fe, e);
  });

  test("TLS: the link runs over node:tls with a pinned certificate", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "colo-tls-"));
    try {
      try {
        execFileSync(
          "openssl",
          [
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=colo-secondary",
            "-keyout",
            join(dir, "key.pem"),
            "-out",
            join(dir, "cert.pem"),
          ],
          { stdio: "ignore" },
        );
      } catch {
        t.skip("openssl not available to make a test certificate");
        return;
      }
      const tlsOpts = {
        keyFile: join(dir, "key.pem"),
        certFile: join(dir, "cert.pem"),
        caFile: join(dir, "cert.pem"),
      };
      const { s, port } = await secondaryOn0({ tls: tlsOpts });
      const p = mk({
        role: "primary",
        addr: { host: "127.0.0.1", port },
        tls: { caFile: tlsOpts.caFile, serverName: "colo-secondary" },
      });
      const ups = Promise.all([once(s, "up"), once(p, "up")]);
      await p.start();
      await withTimeout(ups, 30_000, "tls link up");
      const got = once(s, "frame");
      p.sendFrame(Channel.ClientToGuest, Buffer.alloc(100, 3), 0);
      const [, f] = await withTimeout(got, 30_000, "frame over tls");
      assert.ok((f as Buffer).equals(Buffer.alloc(100, 3)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
