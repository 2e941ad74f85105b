/**
 * @module QEMU's canonical COLO-FT filter layout (docs/COLO-FT.txt) with real guests and one half
 * of QEMU's proxy replaced by the real `colo-proxy` CLI (src/node/lab/canonical-lab.ts):
 * A — `colo-proxy compare` in place of colo-compare, fed QEMU's own -chardev/-object lines, QEMU's
 * filter-rewriter on the SVM; B — QEMU's colo-compare in the PVM, `colo-proxy rewrite` in place
 * of the SVM's filter-rewriter. A client in a netns on the PVM's tap gets every deterministic
 * response right in both; the comparison demonstrably ran (stats, checkpoint requests, held output).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { ConnectionInfo } from "../../src/control/target.ts";
import { CanonicalLab } from "../../src/node/lab/canonical-lab.ts";
import type { ClientOp, ClientResult } from "../../src/node/lab/client-script.ts";
import { ClientSession, deterministicBody, GUEST, guestSkipReason, runClient } from "../support/guests.ts";

const skip = guestSkipReason({ netns: true });
if (skip) console.log(`# colo-canonical: skipped: ${skip}`);

const HTTP_BODY = deterministicBody(8);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 60_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Deterministic operations and the answer each must get. */
function deterministicOps(httpV4: number, ipv6Tcp: boolean): { op: ClientOp; want: string }[] {
  const ops: { op: ClientOp; want: string }[] = [];
  for (let i = 0; i < httpV4; i++)
    ops.push({ op: { op: "http", host: GUEST.ip4, port: 80, path: "/" }, want: HTTP_BODY });
  ops.push({
    op: { op: "tcp-echo", host: GUEST.ip4, port: 7, data: "canonical tcp4" },
    want: "canonical tcp4",
  });
  ops.push({
    op: { op: "udp-echo", host: GUEST.ip4, port: 7, data: "canonical udp4" },
    want: "canonical udp4",
  });
  ops.push({
    op: { op: "udp-echo", host: GUEST.ip6, port: 7, data: "canonical udp6" },
    want: "canonical udp6",
  });
  ops.push({ op: { op: "ping", host: GUEST.ip4 }, want: `from ${GUEST.ip4}` });
  ops.push({ op: { op: "ping", host: GUEST.ip6 }, want: `from ${GUEST.ip6}` });
  if (ipv6Tcp) {
    for (let i = 0; i < 2; i++)
      ops.push({ op: { op: "http", host: GUEST.ip6, port: 80, path: "/" }, want: HTTP_BODY });
    ops.push({
      op: { op: "tcp-echo", host: GUEST.ip6, port: 7, data: "canonical tcp6" },
      want: "canonical tcp6",
    });
  }
  return ops;
}

/** Runs the ops one by one; asserts every answer (body, echo, ping reply). */
async function runAndCheck(session: ClientSession, ops: { op: ClientOp; want: string }[]): Promise<void> {
  for (const { op, want } of ops) {
    const r = await session.request(op);
    assert.ok(r.ok, `${JSON.stringify(op)}: ${JSON.stringify(r)}`);
    if (op.op === "http") {
      assert.equal(r.status, 200, JSON.stringify(op));
      assert.equal(r.body, want, JSON.stringify(op));
    } else if (op.op === "ping") assert.match(r.data ?? "", new RegExp(`bytes ${want}`), JSON.stringify(op));
    else assert.equal(r.data, want, JSON.stringify(op));
  }
}

describe("canonical COLO-FT layout, colo-proxy compare in place of colo-compare", {
  skip,
  timeout: 300_000,
}, () => {
  let lab: CanonicalLab;
  let session: ClientSession;
  let randRequest: Promise<ClientResult[]> | undefined;

  before(async () => {
    lab = await CanonicalLab.start({ variant: "proxy-compare" });
    session = ClientSession.start(lab.ns);
  });
  after(async () => {
    session?.close();
    // The :8080 client is still waiting for its held response: closing the lab kills it.
    randRequest?.catch(() => {});
    await lab?.close();
  });

  test("IPv4 HTTP ×10, TCP/UDP echo and ping, IPv6 UDP echo and ping: every answer right", async () => {
    await runAndCheck(session, deterministicOps(10, false));
  });

  test("colo-proxy compare matched and released them with no checkpoint request", async () => {
    const st = await lab.stats();
    assert.ok((st.released.matched ?? 0) >= 10, JSON.stringify(st.released));
    assert.ok((st.discarded?.matched ?? 0) >= 10, JSON.stringify(st.discarded));
    for (const [reason, n] of Object.entries(st.checkpointRequests)) assert.equal(n, 0, reason);
    assert.deepEqual(
      lab.events.filter((e) => e.event === "CHECKPOINT_REQUEST"),
      [],
    );
    // Both sides' IPv6 datagrams were compared too (QEMU's colo-compare passes IPv6 uncompared).
    assert.ok((st.endpoints.secondary_in?.framesIn ?? 0) > 0);
  });

  test("a nondeterministic response (:8080) raises a checkpoint request naming its connection", async () => {
    // Its response stays held (no checkpoint executor here): the client times out, unawaited.
    randRequest = runClient(lab.ns, [{ op: "http", host: GUEST.ip4, port: 8080, path: "/" }]);
    const req = await waitFor("a CHECKPOINT_REQUEST", () =>
      lab.events.find((e) => e.event === "CHECKPOINT_REQUEST"),
    );
    const flow = String(req.data.flow);
    assert.match(
      flow,
      new RegExp(
        `^tcp ${GUEST.ip4.replaceAll(".", "\\.")}:8080 > ${GUEST.peerIp4.replaceAll(".", "\\.")}:\\d+$`,
      ),
    );
    // Usually payload-differs; a SVM lagging past compare_timeout under load makes it a timeout.
    assert.match(String(req.data.reason), /payload-differs|size-differs|timeout/);
    const st = await lab.stats();
    const requests = Object.values(st.checkpointRequests).reduce((a, b) => a + b, 0);
    assert.equal(requests, 1, JSON.stringify(st.checkpointRequests));
  });

  test("IPv6 TCP: QEMU's filter-rewriter leaves it alone, so it is held; a passthrough rule releases it as QEMU would", async () => {
    const v6 = session.request({ op: "http", host: GUEST.ip6, port: 80, path: "/" });
    // The SVM answers in its own sequence space (QEMU's rewriter is IPv4-only), so the PVM's
    // response never matches and stays held (until the compare timeout, 20 s in this lab).
    const held = await waitFor("the IPv6 response held for more than 3 s", async () => {
      const conns = await lab.control.execute<ConnectionInfo[]>("query-connections");
      return conns.find(
        (c) =>
          c.flow.startsWith(`tcp [${GUEST.ip6}]:80 >`) && c.primaryQueued > 0 && (c.oldestHeldMs ?? 0) > 3000,
      );
    });
    assert.ok(held.primaryQueued > 0);
    // QEMU's colo-compare passes all IPv6 through uncompared; the same for IPv6 TCP here:
    await lab.control.execute("passthrough-add", { rule: `tcp ${GUEST.ip6}` });
    const r = await v6;
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.body, HTTP_BODY);
    const echo = await session.request({ op: "tcp-echo", host: GUEST.ip6, port: 7, data: "canonical tcp6" });
    assert.ok(echo.ok, JSON.stringify(echo));
    assert.equal(echo.data, "canonical tcp6");
    const st = await lab.stats();
    assert.ok((st.released.passthrough ?? 0) > 0, JSON.stringify(st.released));
  });
  test("colo-proxy compare crashes and restarts: with redire0 re-added over QMP (QEMU 7.2) traffic flows again", async () => {
    await lab.restartProxy();
    await lab.readdRedire0();
    await runAndCheck(session, deterministicOps(2, false));
    const st = await lab.stats();
    assert.ok((st.released.matched ?? 0) >= 2, JSON.stringify(st.released));
    for (const [reason, n] of Object.entries(st.checkpointRequests)) assert.equal(n, 0, reason);
  });
});

describe("canonical COLO-FT layout, colo-proxy rewrite in place of filter-rewriter", {
  skip,
  timeout: 300_000,
}, () => {
  let lab: CanonicalLab;
  let session: ClientSession;
  const ops = deterministicOps(10, true);
  const tcpConnections = ops.filter((o) => o.op.op === "http" || o.op.op === "tcp-echo").length;

  before(async () => {
    lab = await CanonicalLab.start({ variant: "proxy-rewrite" });
    session = ClientSession.start(lab.ns);
  });
  after(async () => {
    session?.close();
    await lab?.close();
  });

  test("HTTP ×12, TCP/UDP echo and ping over IPv4 and IPv6: every answer right (QEMU's colo-compare released them)", async () => {
    await runAndCheck(session, ops);
  });

  test("colo-proxy rewrite rewrote every TCP connection, IPv4 and IPv6, both ways", async () => {
    type Row = ConnectionInfo & { offsetKnown?: boolean; rewrittenRx?: number };
    const families = [`tcp ${GUEST.ip4}:`, `tcp [${GUEST.ip6}]:`];
    const query = () => lab.control.execute<Row[]>("query-connections");
    const complete = (rows: Row[]) =>
      families.every((fam) => {
        const c = rows.filter((x) => x.flow.startsWith(fam));
        return c.length > 0 && c.every((x) => x.offsetKnown === true && (x.rewrittenRx ?? 0) > 0);
      });
    // QEMU's colo-compare passes IPv6 through uncompared, so the client's IPv6 answers do not wait
    // for the SVM's: on a loaded machine (CI runs test files in parallel) the SVM's SYN-ACK and
    // answers for the last IPv6 connections can reach the rewriter seconds after the client is
    // done (seen once in CI: two IPv6 connections without their SVM side yet). Wait for them
    // (bounded), then check.
    await waitFor("the SVM's side of every TCP connection", async () =>
      complete(await query()) ? true : undefined,
    ).catch(() => undefined);
    const st = await lab.stats();
    assert.equal(st.connections.opened, tcpConnections, JSON.stringify(st.connections));
    assert.ok((st.released["rewritten-tx"] ?? 0) >= tcpConnections, JSON.stringify(st.released));
    assert.ok((st.released["rewritten-rx"] ?? 0) >= tcpConnections, JSON.stringify(st.released));
    for (const [code, n] of Object.entries(st.badInput)) assert.equal(n, 0, code);
    const conns = await query();
    for (const fam of families) {
      const c = conns.filter((x) => x.flow.startsWith(fam));
      assert.ok(c.length > 0, `${fam} in ${JSON.stringify(conns.map((x) => x.flow))}`);
      assert.ok(
        c.every((x) => x.offsetKnown === true && (x.rewrittenRx ?? 0) > 0),
        JSON.stringify(c),
      );
    }
  });

  test("QEMU's colo-compare holds a nondeterministic (:8080) response: it never reaches the client", async () => {
    // Debian's QEMU has COLO migration compiled out: the miscompare wakes no checkpoint and has no
    // external event, so the PVM's differing response stays held and the client times out.
    const before = (await lab.stats()).connections.opened;
    // Held for good (no checkpoint can ever release it), so any bound on the wait shows it.
    const [r] = await runClient(lab.ns, [
      { op: "http", host: GUEST.ip4, port: 8080, path: "/", timeoutMs: 6000 },
    ]);
    assert.ok(r && !r.ok, JSON.stringify(r));
    assert.match(r.error, /timeout/);
    // The connection itself was set up (the rewriter saw it), only the response was held.
    const conns = await lab.control.execute<ConnectionInfo[]>("query-connections");
    assert.ok(
      conns.some((c) => c.flow.startsWith(`tcp ${GUEST.ip4}:8080 >`)),
      JSON.stringify(conns),
    );
    assert.equal((await lab.stats()).connections.opened, before + 1);
  });
});
