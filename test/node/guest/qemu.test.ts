/**
 * @module QEMU control against a real guest-less QEMU (`-M none`): QMP negotiation, commands,
 * errors and events, and that the COLO filter layouts are accepted by QEMU and connect every
 * chardev to the proxy's sockets. Needs qemu-system-x86_64 but no guest image and no root.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import {
  attachSecondaryFilters,
  attachSecondaryNetFilters,
  filterSockets,
  type Inbound,
  primaryFilterArgs,
  QemuVm,
  secondaryFilterArgs,
  secondaryNetFilterArgs,
  sinkNetdev,
} from "../../../src/node/guest/qemu.ts";
import { FrameRelay } from "../../support/relay.ts";

function qemuMissing(): string | undefined {
  try {
    execFileSync("sh", ["-c", "command -v qemu-system-x86_64"], { stdio: "ignore" });
    return undefined;
  } catch {
    return "qemu-system-x86_64 not installed";
  }
}
const skip = qemuMissing();
if (skip) console.log(`# qemu: skipped: ${skip}`);

const bare = (qmpDir: string, name: string) => [
  ...["-M", "none", "-nodefaults", "-no-user-config", "-display", "none"],
  ...["-qmp", `unix:${path.join(qmpDir, `${name}.qmp`)},server=on,wait=off`],
];

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("QEMU control", { skip }, () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "colo-qemu-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("QMP: commands return values, errors carry COLO_ERR_QMP, events arrive", async () => {
    const vm = await QemuVm.start({ name: "q1", runDir: dir, args: bare(dir, "q1") });
    try {
      const status = await vm.qmp.execute<{ status: string }>("query-status");
      assert.equal(typeof status.status, "string");
      await assert.rejects(vm.qmp.execute("no-such-command"), (e: { code: string; message: string }) => {
        assert.equal(e.code, "COLO_ERR_QMP");
        assert.match(e.message, /CommandNotFound/);
        return true;
      });
      const ev = vm.qmp.waitEvent("SHUTDOWN");
      await vm.qmp.execute("quit");
      assert.equal((await ev).event, "SHUTDOWN");
      await vm.exited;
      assert.equal(vm.running, false);
    } finally {
      await vm.kill();
    }
  });

  test("a QEMU that cannot start fails with COLO_ERR_QEMU_EXITED and its stderr", async () => {
    await assert.rejects(
      QemuVm.start({ name: "bad", runDir: dir, args: [...bare(dir, "bad"), "-no-such-option"] }),
      (e: { code: string; details: { stderr: string } }) => {
        assert.equal(e.code, "COLO_ERR_QEMU_EXITED");
        assert.match(e.details.stderr, /no-such-option/);
        return true;
      },
    );
  });

  for (const inbound of ["redirect", "mirror"] as Inbound[]) {
    test(`primary filters (${inbound} form) are accepted and connect every chardev`, async () => {
      const run = mkdtempSync(path.join(dir, "p-"));
      const s = filterSockets(run);
      const relay = new FrameRelay();
      const names =
        inbound === "redirect" ? ["p-in", "p-in-inj", "p-out", "p-out-inj"] : ["p-in", "p-out", "p-out-inj"];
      const paths: Record<string, string> = {
        "p-in": s.pIn,
        "p-in-inj": s.pInInj,
        "p-out": s.pOut,
        "p-out-inj": s.pOutInj,
      };
      for (const n of names) await relay.listen(n, paths[n] as string);
      const vm = await QemuVm.start({
        name: "p",
        runDir: run,
        args: [...bare(run, "p"), ...sinkNetdev(), ...primaryFilterArgs(run, inbound)],
      });
      try {
        await until(() => relay.connected(...names));
        const filters = await vm.qmp.execute<{ name: string }[]>("qom-list", { path: "/objects" });
        const ids = filters.map((f) => f.name);
        const want =
          inbound === "redirect" ? ["f_in", "f_in_inj", "f_out_inj", "f_out"] : ["m0", "redire0", "redire1"];
        for (const id of want) assert.ok(ids.includes(id), `${id} in ${ids.join(",")}`);
      } finally {
        await vm.kill();
        await relay.close();
      }
    });
  }

  test("secondary filters on the command line, and hot-added over QMP, connect to the proxy", async () => {
    const run = mkdtempSync(path.join(dir, "s-"));
    const s = filterSockets(run);
    const relay = new FrameRelay();
    await relay.listen("s-in-inj", s.sInInj);
    await relay.listen("s-out", s.sOut);
    const a = await QemuVm.start({
      name: "s1",
      runDir: run,
      args: [...bare(run, "s1"), ...sinkNetdev(), ...secondaryFilterArgs(run)],
    });
    try {
      await until(() => relay.connected("s-in-inj", "s-out"));
    } finally {
      await a.kill();
    }
    await until(() => !relay.connected("s-in-inj") && !relay.connected("s-out"));
    const b = await QemuVm.start({ name: "s2", runDir: run, args: [...bare(run, "s2"), ...sinkNetdev()] });
    try {
      await attachSecondaryFilters(b.qmp, run);
      await until(() => relay.connected("s-in-inj", "s-out"));
      const ids = (await b.qmp.execute<{ name: string }[]>("qom-list", { path: "/objects" })).map(
        (f) => f.name,
      );
      assert.ok(ids.includes("f1") && ids.includes("f2"), ids.join(","));
    } finally {
      await b.kill();
      await relay.close();
    }
  });

  test("the wired secondary layout (net_in/net_out too), on the command line and hot-added, connects all four", async () => {
    const run = mkdtempSync(path.join(dir, "w-"));
    const s = filterSockets(run);
    const relay = new FrameRelay();
    const socks = { "s-net-in": s.sNetIn, "s-in-inj": s.sInInj, "s-net-out": s.sNetOut, "s-out": s.sOut };
    for (const [n, p] of Object.entries(socks)) await relay.listen(n, p);
    const names = Object.keys(socks);
    // Redirectors in the order the data paths need: f0 (tx outdev) before f1 (tx indev), f2 (rx
    // indev) before f3 (rx outdev): rx walks the list backwards, so f3 takes the SVM's output first.
    const args = secondaryNetFilterArgs(run).filter((a) => a.startsWith("filter-redirector"));
    assert.deepEqual(args, [
      "filter-redirector,id=f0,netdev=hn0,queue=tx,outdev=s_net_in",
      "filter-redirector,id=f1,netdev=hn0,queue=tx,indev=s_in_inj",
      "filter-redirector,id=f2,netdev=hn0,queue=rx,indev=s_net_out",
      "filter-redirector,id=f3,netdev=hn0,queue=rx,outdev=s_out",
    ]);
    const a = await QemuVm.start({
      name: "w1",
      runDir: run,
      args: [...bare(run, "w1"), ...sinkNetdev(), ...secondaryNetFilterArgs(run)],
    });
    try {
      await until(() => relay.connected(...names));
    } finally {
      await a.kill();
    }
    await until(() => names.every((n) => !relay.connected(n)));
    const b = await QemuVm.start({ name: "w2", runDir: run, args: [...bare(run, "w2"), ...sinkNetdev()] });
    try {
      await attachSecondaryNetFilters(b.qmp, run);
      await until(() => relay.connected(...names));
      const ids = (await b.qmp.execute<{ name: string }[]>("qom-list", { path: "/objects" })).map(
        (f) => f.name,
      );
      for (const id of ["f0", "f1", "f2", "f3"]) assert.ok(ids.includes(id), ids.join(","));
    } finally {
      await b.kill();
      await relay.close();
    }
  });
});
