/**
 * @module One real guest (PVM) behind the primary's COLO filters, reached from a client netns
 * through a tap: every frame in and out of the guest crosses the filter sockets, wired here by a
 * frame relay (p-in → p-in-inj, p-out → p-out-inj) standing in for colo-proxy.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { filterSockets, type QemuVm } from "../../src/node/guest/qemu.ts";
import {
  bootPrimary,
  CONSOLE_MS,
  detectAccel,
  deterministicBody,
  GUEST,
  guestSkipReason,
  makeRunDir,
  runClient,
  Teardown,
} from "../support/guests.ts";
import { type ClientNetns, createClientNetns } from "../support/netns.ts";
import type { ClientResult } from "../support/netns-client.ts";
import { FrameRelay } from "../support/relay.ts";

const skip = guestSkipReason({ netns: true });
if (skip) console.log(`# guest-boot: skipped: ${skip}`);

describe("a guest behind the primary's filters", { skip, timeout: 240_000 }, () => {
  const td = new Teardown();
  const relay = new FrameRelay();
  let ns: ClientNetns;
  let pvm: QemuVm;
  let results: ClientResult[] = [];

  before(async () => {
    const runDir = makeRunDir();
    td.add(() => rmSync(runDir, { recursive: true, force: true }));
    const s = filterSockets(runDir);
    td.add(() => relay.close());
    await relay.listen("p-in", s.pIn, ["p-in-inj"]);
    await relay.listen("p-in-inj", s.pInInj);
    await relay.listen("p-out", s.pOut, ["p-out-inj"]);
    await relay.listen("p-out-inj", s.pOutInj);
    ns = await createClientNetns();
    td.add(() => ns.destroy());
    const accel = await detectAccel();
    pvm = await bootPrimary({ runDir, accel, netns: ns, inbound: "redirect" });
    td.add(() => pvm.kill());
    results = await runClient(ns, [
      { op: "http", host: GUEST.ip4, port: 80, path: "/" },
      { op: "http", host: GUEST.ip6, port: 80, path: "/" },
      { op: "http", host: GUEST.ip4, port: 80, path: "/big" },
      { op: "tcp-echo", host: GUEST.ip4, port: 7, data: "hello over tcp4\n" },
      { op: "tcp-echo", host: GUEST.ip6, port: 7, data: "hello over tcp6\n" },
      { op: "udp-echo", host: GUEST.ip4, port: 7, data: "hello over udp4" },
      { op: "udp-echo", host: GUEST.ip6, port: 7, data: "hello over udp6" },
      { op: "ping", host: GUEST.ip4 },
      { op: "ping", host: GUEST.ip6 },
      { op: "http", host: GUEST.ip4, port: 8080, path: "/" },
      { op: "http", host: GUEST.ip4, port: 8080, path: "/" },
      { op: "http", host: GUEST.ip6, port: 8081, path: "/" },
    ]);
  });
  after(() => td.run());

  const ok = (i: number) => {
    const r = results[i];
    assert.ok(r?.ok, `operation ${i} failed: ${JSON.stringify(r)}`);
    return r as Extract<ClientResult, { ok: true }>;
  };

  test("HTTP GET over IPv4 and IPv6 returns the deterministic body", () => {
    for (const i of [0, 1]) {
      assert.equal(ok(i).status, 200);
      assert.equal(ok(i).body, deterministicBody(8));
    }
  });

  test("a 64 KiB response (many segments) arrives intact", () => {
    assert.equal(ok(2).body, deterministicBody(1600));
  });

  test("TCP echo on port 7 over IPv4 and IPv6", () => {
    assert.equal(ok(3).data, "hello over tcp4\n");
    assert.equal(ok(4).data, "hello over tcp6\n");
  });

  test("UDP echo on port 7 over IPv4 and IPv6", () => {
    assert.equal(ok(5).data, "hello over udp4");
    assert.equal(ok(6).data, "hello over udp6");
  });

  test("ICMP echo over IPv4 and ICMPv6 echo", () => {
    assert.match(ok(7).data ?? "", /1 packets received/);
    assert.match(ok(8).data ?? "", /1 packets received/);
  });

  test("port 8080 answers fresh random bytes each time; 8081 serves the guest's state", () => {
    const a = ok(9).body ?? "";
    const b = ok(10).body ?? "";
    assert.match(a, /^[0-9a-f]{32}\n$/);
    assert.match(b, /^[0-9a-f]{32}\n$/);
    assert.notEqual(a, b);
    assert.equal(ok(11).body, "state=0\n");
  });

  test("every frame crossed the filter sockets in both directions", () => {
    const c = relay.counters();
    assert.ok((c["p-in"]?.rx ?? 0) > 20, JSON.stringify(c));
    assert.ok((c["p-out"]?.rx ?? 0) > 20, JSON.stringify(c));
    assert.equal(c["p-in-inj"]?.tx, c["p-in"]?.rx);
    assert.equal(c["p-out-inj"]?.tx, c["p-out"]?.rx);
    assert.equal(c["p-in-inj"]?.dropped, 0);
    assert.equal(c["p-out-inj"]?.dropped, 0);
  });

  test("the guest's shell on the console sees its own state", async () => {
    const con = await pvm.console();
    assert.equal((await con.run("cat /run/colo/state", CONSOLE_MS)).trim(), "state=0");
  });
});
