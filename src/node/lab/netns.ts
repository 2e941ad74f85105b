/**
 * @module A throw-away network namespace for the demo and end-to-end tests: a tap device that a guest's QEMU
 * opens, addressed as the guest's peer (the "client"), with the real Linux TCP/IP stack. Only
 * namespaces created here are ever touched; host interfaces never are.
 */
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { GUEST } from "../guest/qemu.ts";

const run = promisify(execFile);

/** Every namespace created by this process, deleted synchronously if it exits abruptly. */
const live = new Set<string>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", () => {
    for (const ns of live) killAndDelete(ns);
  });
}

function killAndDelete(name: string): void {
  try {
    const pids = execFileSync("ip", ["netns", "pids", name], { encoding: "utf8" })
      .split(/\s+/)
      .filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {}
    }
  } catch {}
  try {
    execFileSync("ip", ["netns", "del", name], { stdio: "ignore" });
  } catch {}
  live.delete(name);
}

export interface ClientNetns {
  name: string;
  /** The tap device a guest's QEMU attaches to (`-netdev tap,ifname=...`). */
  tap: string;
  /** Runs a command inside the namespace; rejects on non-zero exit. */
  exec(cmd: string, args: string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string }>;
  /** Kills every process left in the namespace, then deletes it. Idempotent. */
  destroy(): Promise<void>;
}

/**
 * Creates `<prefix>-<pid>-<n>` with lo up and tap `tap-p` as the client: 10.0.2.2/24 and
 * fd00:c010::2/64, the MAC the guest expects for its peer, a permanent ARP entry for the guest,
 * and its own IPv6 chatter off (no link-local, no DAD, no router solicitation).
 * IPv6 neighbour discovery is deliberately left to the client: its NS reaches both replicas
 * (mirrored), each learns the client's MAC from it and answers with identical NAs. Were the
 * guests to resolve the client themselves, a lagging SVM would miss the NA answering the PVM's
 * NS (NAs for addresses a host is not resolving are ignored) and never reply over IPv6.
 */
let seq = 0;
export async function createClientNetns(prefix = "colo-e2e"): Promise<ClientNetns> {
  hookExit();
  const name = `${prefix}-${process.pid}-${seq++}`;
  const tap = "tap-p";
  const ip = (...a: string[]) => run("ip", a);
  await ip("netns", "add", name);
  live.add(name);
  const nsx = (cmd: string, args: string[], timeoutMs = 30_000) =>
    run("ip", ["netns", "exec", name, cmd, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 });
  try {
    await ip("-n", name, "link", "set", "lo", "up");
    await ip("-n", name, "tuntap", "add", "dev", tap, "mode", "tap");
    await ip("-n", name, "link", "set", tap, "address", GUEST.peerMac);
    await nsx("sysctl", [
      "-qw",
      `net.ipv6.conf.${tap}.addr_gen_mode=1`,
      `net.ipv6.conf.${tap}.accept_dad=0`,
      `net.ipv6.conf.${tap}.router_solicitations=0`,
      `net.ipv6.conf.${tap}.accept_ra=0`,
    ]);
    await ip("-n", name, "addr", "add", `${GUEST.peerIp4}/24`, "dev", tap);
    await ip("-n", name, "addr", "add", `${GUEST.peerIp6}/64`, "dev", tap, "nodad");
    await ip("-n", name, "link", "set", tap, "up");
    await ip("-n", name, "neigh", "replace", GUEST.ip4, "lladdr", GUEST.mac, "dev", tap, "nud", "permanent");
  } catch (e) {
    killAndDelete(name);
    throw e;
  }
  return {
    name,
    tap,
    exec: nsx,
    destroy: async () => killAndDelete(name),
  };
}
