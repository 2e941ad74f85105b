import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { type Control, startControl } from "../../src/control/index.ts";
import { FakeTarget } from "./fake-target.ts";

const CHROMIUM = "/usr/bin/chromium";
const artifacts = new URL("../../out/test-artifacts/", import.meta.url).pathname;

/** Ticks are driven by the test (`dashboard.tick()`), so the periodic timer is set out of the way. */
async function withDashboard(
  fn: (control: Control, target: FakeTarget, base: string) => Promise<void>,
): Promise<void> {
  const target = new FakeTarget();
  target.nowMs = Date.now();
  const control = await startControl(target, {
    role: "compare",
    socket: null,
    dashboard: { host: "127.0.0.1", port: 0 },
    dashboardTickMs: 3_600_000,
    now: () => target.nowMs,
  });
  target.emit = control.emit;
  try {
    await fn(control, target, control.dashboard?.url ?? "");
  } finally {
    await control.close();
  }
}

test("dashboard serves the page, uPlot from the daemon itself, and a JSON state", async () => {
  await withDashboard(async (_control, target, base) => {
    const html = await (await fetch(base)).text();
    assert.match(html, /src="\/uplot\/uPlot\.iife\.min\.js"/);
    assert.doesNotMatch(html, /https?:\/\//, "no CDN or external URL");
    const js = await fetch(`${base}uplot/uPlot.iife.min.js`);
    assert.equal(js.status, 200);
    assert.match(await js.text(), /uPlot/);
    assert.equal((await fetch(`${base}uplot/uPlot.min.css`)).status, 200);
    assert.equal((await fetch(`${base}app.js`)).status, 200);
    assert.equal((await fetch(`${base}nope`)).status, 404);
    target.open("tcp 10.0.0.1:40000 > 10.0.0.2:80");
    const state = (await (await fetch(`${base}api/state`)).json()) as {
      tick: { connections: { flow: string }[]; status: { role: string } };
    };
    assert.equal(state.tick.status.role, "compare");
    assert.deepEqual(
      state.tick.connections.map((c) => c.flow),
      ["tcp 10.0.0.1:40000 > 10.0.0.2:80"],
    );
  });
});

test("dashboard tick: rates and interval hold-time percentiles from consecutive snapshots", async () => {
  await withDashboard(async (control, target) => {
    const d = control.dashboard;
    assert.ok(d);
    assert.equal(d.tick().releasedPerSec, null, "no rate without a previous tick");
    target.nowMs += 2000;
    target.matched(100, 1000, 3); // 100 frames held 3 ms each
    const flow = target.open("udp 10.0.0.1:5000 > 10.0.0.2:53", "udp");
    target.miscompare(flow, 0, Buffer.from("a"), Buffer.from("b"));
    target.miscompare(flow, 0, Buffer.from("a"), Buffer.from("c"));
    const t = d.tick();
    assert.equal(t.releasedPerSec, 50);
    assert.deepEqual(t.requestsPerSec, { "payload-differs": 1 });
    const p50 = t.holdMs.p50 as number;
    assert.ok(p50 > 2.5 && p50 <= 5, `p50 ${p50} within the 2.5..5 ms bucket`);
    target.nowMs += 1000;
    const idle = d.tick();
    assert.equal(idle.releasedPerSec, 0);
    assert.deepEqual(idle.requestsPerSec, { "payload-differs": 0 });
    assert.deepEqual(idle.holdMs, { p50: null, p90: null, p99: null }, "no releases in the interval");
    assert.equal(idle.totals.released, 100);
    assert.equal(idle.totals.miscompares, 2);
  });
});

test("dashboard in a real browser: a provoked miscompare shows up and the charts update", async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`chromium not found at ${CHROMIUM} (scripts/setup.sh installs it as root)`);
    return;
  }
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  try {
    await withDashboard(async (control, target, base) => {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(m.text());
      });
      await page.goto(base);
      // Page-side code as strings: the test tsconfig has no DOM types.
      await page.waitForFunction("window.__colo.ticks > 0");

      // Scripted traffic: steady matched releases each tick, two flows, then one miscompare.
      const web = target.open("tcp 10.0.0.1:40000 > 10.0.0.2:80");
      target.open("udp [2001:db8::1]:5353 > [2001:db8::2]:53", "udp");
      const d = control.dashboard;
      assert.ok(d);
      for (let i = 0; i < 8; i++) {
        target.nowMs += 1000;
        target.matched(200 + 50 * i, 1400, 0.2 + i * 0.3);
        d.tick();
      }
      const primary = Buffer.from(
        "HTTP/1.1 200 OK\r\nDate: Wed, 25 Nov 2026 23:50:01 GMT\r\nServer: demo\r\n",
      );
      const secondary = Buffer.from(
        "HTTP/1.1 200 OK\r\nDate: Wed, 25 Nov 2026 23:50:02 GMT\r\nServer: demo\r\n",
      );
      target.miscompare(web, 4096, primary, secondary);
      for (let i = 0; i < 4; i++) {
        target.nowMs += 1000;
        target.matched(300, 1400, 1);
        d.tick();
      }

      await page.waitForSelector(".miscompare");
      const card = await page.textContent(".miscompare");
      assert.match(card ?? "", /payload differs at stream offset 4143/);
      assert.match(card ?? "", /tcp 10\.0\.0\.1:40000 > 10\.0\.0\.2:80/);
      const diffBytes = await page.$$eval(".hexpair .d", (els) => els.map((e) => e.textContent));
      assert.deepEqual(diffBytes, ["31", "32"], "the differing byte is highlighted on both sides");

      await page.waitForFunction('document.querySelectorAll("#connections tbody tr").length === 2');
      const rows = await page.$$eval("#connections tbody tr td:first-child", (els) =>
        els.map((e) => e.textContent),
      );
      assert.ok(rows.includes("tcp 10.0.0.1:40000 > 10.0.0.2:80"));

      // Charts got the ticks: released/s series has points and a "payload" series appeared.
      await page.waitForFunction(
        'window.__colo.charts.released.data[0].length >= 12 && window.__colo.charts.requests.series.some((s) => s.label === "payload-differs")',
      );
      const released = (await page.evaluate("window.__colo.charts.released.data[1]")) as (number | null)[];
      assert.ok(
        released.some((v) => v !== null && v >= 200),
        `released/s values plotted: ${released.join(",")}`,
      );

      await mkdir(artifacts, { recursive: true });
      const shot = join(artifacts, "dashboard.png");
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok(existsSync(shot));
      assert.deepEqual(errors, [], "no errors in the page");
      await page.close();
    });
  } finally {
    await browser.close();
  }
});
