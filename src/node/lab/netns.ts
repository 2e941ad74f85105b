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
  /**
   * With `secondaryTap`: the SVM's tap (`tap-s`). Both taps are then ports of bridge `br-c`, which
   * holds the client's addresses, so the client reaches whichever replica serves its MAC.
   */
  secondaryTap?: string;
  /** The client's own interface: `tap` alone, or `br-c` with `secondaryTap`. */
  clientIf: string;
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
 * `secondaryTap`: the client sits on bridge `br-c` instead (same MAC and addresses) with `tap-p`
 * and `tap-s` as its ports, for an SVM that takes over the client after failover.
 */
let seq = 0;
export async function createClientNetns(
  prefix = "colo-e2e",
  opts: { secondaryTap?: boolean } = {},
): Promise<ClientNetns> {
  hookExit();
  const name = `${prefix}-${process.pid}-${seq++}`;
  const tap = "tap-p";
  const stap = "tap-s";
  const br = "br-c";
  const clientIf = opts.secondaryTap ? br : tap;
  const ip = (...a: string[]) => run("ip", a);
  await ip("netns", "add", name);
  live.add(name);
  const nsx = (cmd: string, args: string[], timeoutMs = 30_000) =>
    run("ip", ["netns", "exec", name, cmd, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 });
  const quietV6 = (dev: string) => [
    `net.ipv6.conf.${dev}.addr_gen_mode=1`,
    `net.ipv6.conf.${dev}.accept_dad=0`,
    `net.ipv6.conf.${dev}.router_solicitations=0`,
    `net.ipv6.conf.${dev}.accept_ra=0`,
  ];
  try {
    await ip("-n", name, "link", "set", "lo", "up");
    await ip("-n", name, "tuntap", "add", "dev", tap, "mode", "tap");
    if (opts.secondaryTap) {
      // Bridge ports carry no addresses (and no IPv6 of their own). No STP and no forward delay:
      // a port forwards as soon as its QEMU opens the tap. When the PVM's QEMU dies its tap loses
      // carrier, the kernel disables the port and forgets the MACs learnt on it, so the client's
      // frames for the guest MAC flood to tap-s, the SVM's netdev, until the SVM answers.
      await ip("-n", name, "tuntap", "add", "dev", stap, "mode", "tap");
      await ip("-n", name, "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0");
      await ip("-n", name, "link", "set", br, "address", GUEST.peerMac);
      await nsx("sysctl", [
        "-qw",
        ...quietV6(br),
        `net.ipv6.conf.${tap}.disable_ipv6=1`,
        `net.ipv6.conf.${stap}.disable_ipv6=1`,
      ]);
      for (const port of [tap, stap]) {
        await ip("-n", name, "link", "set", port, "master", br);
        await ip("-n", name, "link", "set", port, "up");
      }
    } else {
      await ip("-n", name, "link", "set", tap, "address", GUEST.peerMac);
      await nsx("sysctl", ["-qw", ...quietV6(tap)]);
    }
    await ip("-n", name, "addr", "add", `${GUEST.peerIp4}/24`, "dev", clientIf);
    await ip("-n", name, "addr", "add", `${GUEST.peerIp6}/64`, "dev", clientIf, "nodad");
    await ip("-n", name, "link", "set", clientIf, "up");
    await ip(
      "-n",
      name,
      "neigh",
      "replace",
      GUEST.ip4,
      "lladdr",
      GUEST.mac,
      "dev",
      clientIf,
      "nud",
      "permanent",
    );
  } catch (e) {
    killAndDelete(name);
    throw e;
  }
  return {
    name,
    tap,
    ...(opts.secondaryTap ? { secondaryTap: stap } : {}),
    clientIf,
    exec: nsx,
    destroy: async () => killAndDelete(name),
  };
}
