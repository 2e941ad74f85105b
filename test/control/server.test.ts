import assert from "node:assert/strict";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { createConnection, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { z } from "zod";
import { ControlClient, ControlCommandError } from "../../src/control/client.ts";
import { type Control, startControl } from "../../src/control/index.ts";
import type { EventMessage } from "../../src/control/protocol.ts";
import { ControlServer } from "../../src/control/server.ts";
import type { ControlEvent } from "../../src/control/target.ts";
import { FakeTarget } from "./fake-target.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "colo-ctl-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function start(
  target = new FakeTarget(),
  server?: { maxLineBytes?: number; maxClientOutputBytes?: number; maxClients?: number },
): Promise<{ control: Control; target: FakeTarget; path: string }> {
  const path = join(dir, `c${n++}.sock`);
  const control = await startControl(target, {
    role: "compare",
    socket: path,
    now: () => target.nowMs,
    ...(server === undefined ? {} : { server }),
  });
  target.emit = control.emit;
  return { control, target, path };
}

/** Reads raw lines from a plain socket (to see exactly what the server sends). */
function rawLines(sock: Socket): { next(): Promise<Record<string, unknown>> } {
  let buf = "";
  const queue: Record<string, unknown>[] = [];
  const waiters: ((v: Record<string, unknown>) => void)[] = [];
  sock.on("data", (d: Buffer) => {
    buf += d.toString();
    let i = buf.indexOf("\n");
    while (i >= 0) {
      const msg = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(msg);
      else queue.push(msg);
      i = buf.indexOf("\n");
    }
  });
  return {
    next: () => {
      const m = queue.shift();
      return m ? Promise.resolve(m) : new Promise((resolve) => waiters.push(resolve));
    },
  };
}

async function rawConnect(path: string): Promise<{ sock: Socket; next(): Promise<Record<string, unknown>> }> {
  const sock = createConnection(path);
  await new Promise((r) => sock.once("connect", r));
  const r = rawLines(sock);
  return { sock, next: r.next };
}

test("greeting is QMP-shaped and the socket is mode 0600", async () => {
  const { control, path } = await start();
  try {
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const { sock, next } = await rawConnect(path);
    const g = (await next()) as { QMP: { version: { package: string }; capabilities: unknown[] } };
    assert.match(g.QMP.version.package, /^colo-proxy \d+\.\d+\.\d+/);
    assert.deepEqual(g.QMP.capabilities, []);
    sock.write('{"execute":"qmp_capabilities"}\n{"execute":"query-status","id":"s1"}\n');
    assert.deepEqual(await next(), { return: {} });
    const st = (await next()) as { return: Record<string, unknown>; id: string };
    assert.equal(st.id, "s1");
    assert.equal(st.return.role, "compare");
    assert.equal(st.return.mode, "colo");
    assert.equal(st.return.checkpointEpoch, 0);
    assert.equal(typeof st.return.uptime, "number");
    sock.destroy();
  } finally {
    await control.close();
  }
  await assert.rejects(stat(path), /ENOENT/);
});

test("bad input gets error replies with stable codes, is counted, and the connection stays usable", async () => {
  const { control, path } = await start();
  try {
    const { sock, next } = await rawConnect(path);
    await next();
    const cases: [string, string, string][] = [
      ["{bad json", "GenericError", "COLO_ERR_CTL_BAD_JSON"],
      ['{"execute":"no-such","id":1}', "CommandNotFound", "COLO_ERR_CTL_UNKNOWN_COMMAND"],
      ['{"execute":"query-status","arguments":{"x":1},"id":2}', "GenericError", "COLO_ERR_CTL_BAD_ARGS"],
      // Shape errors are caught by the zod schema; value errors come from the daemon with its own code.
      [
        '{"execute":"set-param","arguments":{"name":"compare_timeout","value":{"x":1}},"id":3}',
        "GenericError",
        "COLO_ERR_CTL_BAD_ARGS",
      ],
      [
        '{"execute":"set-param","arguments":{"name":"compare_timeout","value":0},"id":4}',
        "GenericError",
        "COLO_ERR_COMPARE_PARAM",
      ],
      [
        '{"execute":"set-param","arguments":{"name":"nope","value":5},"id":5}',
        "GenericError",
        "COLO_ERR_COMPARE_PARAM",
      ],
      ['{"arguments":{}}', "GenericError", "COLO_ERR_CTL_BAD_REQUEST"],
      [
        '{"execute":"passthrough-add","arguments":{"rule":"tcp 10.0.0.0/33"},"id":6}',
        "GenericError",
        "COLO_ERR_COMPARE_RULE",
      ],
      ['{"execute":"passthrough-del","arguments":{},"id":7}', "GenericError", "COLO_ERR_CTL_BAD_ARGS"],
      [
        '{"execute":"passthrough-del","arguments":{"id":1,"rule":"tcp"},"id":8}',
        "GenericError",
        "COLO_ERR_CTL_BAD_ARGS",
      ],
    ];
    for (const [line, cls, code] of cases) {
      sock.write(`${line}\n`);
      const r = (await next()) as { error: { class: string; code: string; desc: string } };
      assert.equal(r.error.class, cls, line);
      assert.equal(r.error.code, code, line);
      assert.ok(r.error.desc.length > 0);
    }
    sock.write('{"execute":"query-stats","id":"last"}\n');
    const stats = (await next()) as { return: { control: { errors: Record<string, number> } }; id: string };
    assert.equal(stats.id, "last");
    assert.deepEqual(stats.return.control.errors, {
      COLO_ERR_CTL_BAD_JSON: 1,
      COLO_ERR_CTL_UNKNOWN_COMMAND: 1,
      COLO_ERR_CTL_BAD_ARGS: 4,
      COLO_ERR_CTL_BAD_REQUEST: 1,
      COLO_ERR_COMPARE_PARAM: 2,
      COLO_ERR_COMPARE_RULE: 1,
    });
    sock.destroy();
  } finally {
    await control.close();
  }
});

test("an oversized line gets COLO_ERR_CTL_LINE_TOO_LONG and the next request still works", async () => {
  const { control, path } = await start(undefined, { maxLineBytes: 1024 });
  try {
    const { sock, next } = await rawConnect(path);
    await next();
    sock.write(`{"execute":"query-status","arguments":{"pad":"${"x".repeat(5000)}"}}\n`);
    const r = (await next()) as { error: { code: string } };
    assert.equal(r.error.code, "COLO_ERR_CTL_LINE_TOO_LONG");
    sock.write('{"execute":"query-status","id":9}\n');
    const ok = (await next()) as { return: { role: string }; id: number };
    assert.equal(ok.id, 9);
    assert.equal(ok.return.role, "compare");
    sock.destroy();
  } finally {
    await control.close();
  }
});

test("events reach every client and in-process subscribers, with QMP timestamps", async () => {
  const { control, target, path } = await start();
  try {
    const a = await ControlClient.connect({ path });
    const b = await ControlClient.connect({ path });
    const got: EventMessage[][] = [[], []];
    a.onEvent((e) => got[0]?.push(e));
    b.onEvent((e) => got[1]?.push(e));
    const local: ControlEvent[] = [];
    control.server.subscribe((e) => local.push(e));
    target.nowMs = 1_700_000_000_250;
    const flow = target.open("tcp 10.0.0.1:40000 > 10.0.0.2:80");
    target.miscompare(flow, 100, Buffer.from("HTTP/1.1 200 OK"), Buffer.from("HTTP/1.1 500 No"));
    // A command round-trip after the emit guarantees the event line arrived first (same stream).
    await a.execute("query-status");
    await b.execute("query-status");
    for (const evs of got) {
      assert.equal(evs.length, 1);
      const e = evs[0] as EventMessage;
      assert.equal(e.event, "CHECKPOINT_REQUEST");
      assert.deepEqual(e.timestamp, { seconds: 1_700_000_000, microseconds: 250000 });
      assert.equal(e.data.offset, 109);
      assert.equal(e.data.reason, "payload-differs");
    }
    assert.equal(local.length, 1);
    assert.equal(local[0]?.timeMs, 1_700_000_000_250);
    a.close();
    b.close();
  } finally {
    await control.close();
  }
});

test("a client that stops reading is dropped; the others keep receiving", async () => {
  const { control, path } = await start(undefined, { maxClientOutputBytes: 64 * 1024 });
  try {
    const slow = createConnection(path);
    await new Promise((r) => slow.once("connect", r));
    slow.pause();
    const good = await ControlClient.connect({ path });
    let goodEvents = 0;
    good.onEvent(() => goodEvents++);
    const big = "x".repeat(8192);
    let sent = 0;
    // Bounded: far more than kernel buffers + 64 KiB, then stop.
    while (control.server.stats.clientsDropped === 0 && sent < 5000) {
      control.emit("BAD_INPUT", {
        code: "COLO_ERR_FRAME_TOO_LARGE",
        source: "primary_in",
        desc: big,
        count: sent,
      });
      sent++;
      if (sent % 4 === 0) await good.execute("query-status"); // let the good client drain (32 KiB < limit)
    }
    assert.equal(control.server.stats.clientsDropped, 1);
    assert.equal(control.server.stats.errors.COLO_ERR_CTL_SLOW_CLIENT, 1);
    await good.execute("query-status");
    assert.equal(goodEvents, sent);
    assert.equal(control.server.stats.clients, 1);
    slow.destroy();
    good.close();
  } finally {
    await control.close();
  }
});

test("standard commands drive the target: checkpoint-done, failover, passthrough, set-param", async () => {
  const { control, target, path } = await start();
  try {
    const c = await ControlClient.connect({ path });
    const events: string[] = [];
    c.onEvent((e) => events.push(e.event));
    const flow = target.open("tcp 10.0.0.1:40000 > 10.0.0.2:80");
    target.miscompare(flow, 0, Buffer.from("a"), Buffer.from("b"));
    assert.deepEqual(await c.execute("checkpoint-done"), { epoch: 1, released: 1, dropped: 1 });
    assert.equal(((await c.execute("query-status")) as { checkpointEpoch: number }).checkpointEpoch, 1);

    assert.deepEqual(await c.execute("passthrough-add", { rule: "tcp 10.0.0.0/24:3389" }), {
      id: 1,
      rule: "tcp 10.0.0.0/24:3389",
    });
    assert.deepEqual(await c.execute("passthrough-add", { rule: "tcp  10.0.0.0/24:3389" }), {
      id: 1,
      rule: "tcp 10.0.0.0/24:3389",
    });
    const v6 = (await c.execute("passthrough-add", { rule: "udp [2001:db8:0::/32]:53" })) as {
      id: number;
      rule: string;
    };
    assert.equal(v6.id, 2);
    assert.deepEqual(
      ((await c.execute("query-passthrough")) as { id: number }[]).map((r) => r.id),
      [1, 2],
    );
    assert.deepEqual(await c.execute("passthrough-del", { id: 2 }), { removed: v6.rule });
    assert.deepEqual(await c.execute("passthrough-del", { rule: "tcp 10.0.0.0/24:3389" }), {
      removed: "tcp 10.0.0.0/24:3389",
    });
    await assert.rejects(c.execute("passthrough-del", { id: 1 }), (e: unknown) => {
      assert.ok(e instanceof ControlCommandError);
      assert.equal(e.code, "COLO_ERR_COMPARE_RULE_NOT_FOUND");
      return true;
    });

    assert.deepEqual(await c.execute("set-param", { name: "compare_timeout", value: 2000 }), {
      compare_timeout: 2000,
      expired_scan_cycle: 1000,
      max_queue_size: 1024,
    });
    assert.equal(target.cfg.compareTimeout, 2000);

    assert.deepEqual(await c.execute("failover"), { mode: "failover" });
    await c.execute("query-status");
    assert.deepEqual(events, ["CHECKPOINT_REQUEST", "CHECKPOINT_DONE", "FAILOVER"]);
    const names = ((await c.execute("query-commands")) as { name: string }[]).map((x) => x.name).sort();
    assert.deepEqual(names, [
      "checkpoint-done",
      "failover",
      "passthrough-add",
      "passthrough-del",
      "qmp_capabilities",
      "query-commands",
      "query-connections",
      "query-params",
      "query-passthrough",
      "query-stats",
      "query-status",
      "query-version",
      "set-param",
    ]);
    c.close();
  } finally {
    await control.close();
  }
});

test("commands a target does not implement are absent (CommandNotFound)", async () => {
  const base = new FakeTarget();
  const minimal = { status: () => base.status(), stats: () => base.stats() };
  const path = join(dir, "minimal.sock");
  const control = await startControl(minimal, { role: "rewrite", socket: path });
  try {
    const c = await ControlClient.connect({ path });
    await assert.rejects(c.execute("failover"), (e: unknown) => {
      assert.ok(e instanceof ControlCommandError);
      assert.equal(e.errorClass, "CommandNotFound");
      assert.equal(e.code, "COLO_ERR_CTL_UNKNOWN_COMMAND");
      return true;
    });
    assert.equal(((await c.execute("query-status")) as { role: string }).role, "compare");
    c.close();
  } finally {
    await control.close();
  }
});

test("capabilities negotiation: optional, once, and no capabilities can be enabled", async () => {
  const { control, path } = await start();
  try {
    const c = await ControlClient.connect({ path });
    await assert.rejects(c.execute("qmp_capabilities", { enable: ["oob"] }), /no capabilities/);
    assert.deepEqual(await c.execute("qmp_capabilities", { enable: [] }), {});
    await assert.rejects(c.execute("qmp_capabilities"), (e: unknown) => {
      assert.equal((e as ControlCommandError).code, "COLO_ERR_CTL_NEGOTIATION");
      return true;
    });
    c.close();
  } finally {
    await control.close();
  }
});

test("a failing handler becomes COLO_ERR_CTL_COMMAND_FAILED; custom commands validate with zod", async () => {
  const { control, path } = await start();
  control.server.register("boom", {
    help: "throws",
    handler: () => {
      throw new Error("kaput");
    },
  });
  control.server.register("add", {
    help: "adds",
    args: z.object({ a: z.number(), b: z.number() }).strict(),
    handler: async ({ a, b }) => a + b,
  });
  assert.throws(() => control.server.register("add", { help: "dup", handler: () => 0 }), /registered twice/);
  try {
    const c = await ControlClient.connect({ path });
    await assert.rejects(c.execute("boom"), (e: unknown) => {
      assert.equal((e as ControlCommandError).code, "COLO_ERR_CTL_COMMAND_FAILED");
      assert.match((e as Error).message, /kaput/);
      return true;
    });
    assert.equal(await c.execute("add", { a: 2, b: 3 }), 5);
    await assert.rejects(c.execute("add", { a: 2 }), /b:/);
    assert.deepEqual(await control.server.execute("add", { a: 1, b: 1 }), { return: 2 });
    c.close();
  } finally {
    await control.close();
  }
});

test("UNIX path handling: stale socket replaced, live socket refused, regular file refused", async () => {
  const stale = join(dir, "stale.sock");
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(stale, r));
  // Leave the file behind as a crashed daemon would: close the fd without unlinking.
  // biome-ignore lint/suspicious/noExplicitAny: reach into the handle to simulate a crash
  (srv as any)._handle.close();
  const a = new ControlServer();
  await a.listenUnix(stale);
  const b = new ControlServer();
  await assert.rejects(b.listenUnix(stale), (e: unknown) => {
    assert.equal((e as { code: string }).code, "COLO_ERR_CTL_SOCKET_IN_USE");
    return true;
  });
  await a.close();
  const file = join(dir, "regular");
  await writeFile(file, "x");
  await assert.rejects(b.listenUnix(file), /not a socket/);
  assert.equal((await stat(file)).isFile(), true);
});

test("TCP on loopback and the client limit", async () => {
  const target = new FakeTarget();
  const control = await startControl(target, {
    role: "compare",
    socket: null,
    tcp: { host: "127.0.0.1", port: 0 },
    server: { maxClients: 2 },
  });
  try {
    assert.equal(control.socketPath, null);
    const addr = control.tcpAddress;
    assert.ok(addr !== null && addr.port > 0);
    const c1 = await ControlClient.connect({ host: addr.host, port: addr.port });
    const c2 = await ControlClient.connect({ host: addr.host, port: addr.port });
    await assert.rejects(ControlClient.connect({ host: addr.host, port: addr.port }), (e: unknown) => {
      assert.equal((e as { code: string }).code, "COLO_ERR_CTL_TOO_MANY_CLIENTS");
      return true;
    });
    assert.equal(((await c1.execute("query-status")) as { role: string }).role, "compare");
    c1.close();
    c2.close();
    assert.equal(control.server.stats.clientsRejected, 1);
  } finally {
    await control.close();
  }
});

test("fuzz: arbitrary request lines never break the server", async () => {
  const { control, path } = await start();
  try {
    const { sock, next } = await rawConnect(path);
    await next();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 200 }).map((s) => s.replace(/\n/g, " ")),
          fc.jsonValue().map((v) => JSON.stringify(v)),
          fc
            .record({
              execute: fc.constantFrom("set-param", "passthrough-add", "query-status", "x"),
              arguments: fc.object(),
            })
            .map((v) => JSON.stringify(v)),
        ),
        async (line) => {
          if (line.trim() === "") return;
          sock.write(`${line}\n`);
          const r = await next();
          assert.ok("return" in r || "error" in r);
        },
      ),
      { numRuns: 300 },
    );
    sock.write('{"execute":"query-status","id":"alive"}\n');
    const r = await next();
    assert.equal(r.id, "alive");
    sock.destroy();
  } finally {
    await control.close();
  }
});

test("client: an event arriving in the same chunk as the greeting reaches a listener added after connect", {
  timeout: 10_000,
}, async () => {
  const path = join(dir, "fake-daemon.sock");
  const srv = createServer((s) => {
    s.write(
      '{"QMP":{"version":{"colo-proxy":{"major":0,"minor":1,"micro":0},"package":"x"},"capabilities":[]}}\n' +
        '{"event":"PEER_UP","data":{"peer":"a"},"timestamp":{"seconds":1,"microseconds":0}}\n' +
        '{"event":"PEER_UP","data":{"peer":"b"},"timestamp":{"seconds":1,"microseconds":0}}\n',
    );
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => srv.listen(path, r));
  try {
    const c = await ControlClient.connect({ path });
    const peers: unknown[] = [];
    const got = new Promise<void>((resolve) =>
      c.onEvent((e) => {
        peers.push(e.data.peer);
        if (peers.length === 2) resolve();
      }),
    );
    await got;
    assert.deepEqual(peers, ["a", "b"]);
    c.close();
  } finally {
    await new Promise((r) => srv.close(r));
  }
});
