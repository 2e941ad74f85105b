/**
 * @module QEMU's filter-rewriter running with no guest (reference §8), on UNIX sockets only, for
 * differential tests. A dgram netdev on a hub with a second dgram netdev (a hub needs a second
 * port or tx frames stall), four filter-redirectors around one filter-rewriter; tx filters are
 * walked in creation order, rx in reverse. Frames written to `inTx` (client→guest) come out on
 * `outTx`; frames written to `inRx` (guest output) come out on `outRx`.
 */
import path from "node:path";
import { FramedPeer, type Qemu, startQemu, type TestCtx, tempDir } from "./qemu.ts";

export interface QemuRewriter {
  qemu: Qemu;
  inTx: FramedPeer;
  inRx: FramedPeer;
  outTx: FramedPeer;
  outRx: FramedPeer;
  /** Delivers COLO's CHECKPOINT event to the filters (QMP `xen-colo-do-checkpoint`). */
  checkpoint(): Promise<void>;
}

/**
 * `-netdev` arguments for a guestless filter host: dgram netdev n0 (the filters' netdev) on hub 0
 * with a second dgram netdev n1, UNIX sockets in `dir` (without a second port tx frames stall).
 */
export function hubNetdevArgs(dir: string): string[] {
  const dgram = (id: string) =>
    `dgram,id=${id},local.type=unix,local.path=${path.join(dir, `${id}l.sock`)},` +
    `remote.type=unix,remote.path=${path.join(dir, `${id}r.sock`)}`;
  return [
    "-netdev",
    dgram("n0"),
    "-netdev",
    "hubport,id=hp0,hubid=0,netdev=n0",
    "-netdev",
    dgram("n1"),
    "-netdev",
    "hubport,id=hp1,hubid=0,netdev=n1",
  ];
}

export async function startQemuRewriter(t: TestCtx, opts: { vnet?: boolean } = {}): Promise<QemuRewriter> {
  const dir = tempDir(t, "colo-qrw-");
  const vh = opts.vnet ? ",vnet_hdr_support=on" : "";
  const qemu = await startQemu(
    {
      dir,
      chardevs: ["rin_tx", "rin_rx", "rout_tx", "rout_rx"],
      args: hubNetdevArgs(dir),
      objects: [
        `filter-redirector,id=f_in_tx,netdev=n0,queue=tx,indev=rin_tx${vh}`,
        `filter-redirector,id=f_out_rx,netdev=n0,queue=rx,outdev=rout_rx${vh}`,
        `filter-rewriter,id=rew0,netdev=n0,queue=all${vh}`,
        `filter-redirector,id=f_out_tx,netdev=n0,queue=tx,outdev=rout_tx${vh}`,
        `filter-redirector,id=f_in_rx,netdev=n0,queue=rx,indev=rin_rx${vh}`,
      ],
    },
    t,
  );
  const vnetHdr = opts.vnet === true;
  const peer = (id: string) => FramedPeer.connect(qemu.sock(id), { vnetHdr }, t);
  // Outputs first: a frame redirected while its outdev has no client is lost.
  const outTx = await peer("rout_tx");
  const outRx = await peer("rout_rx");
  const inTx = await peer("rin_tx");
  const inRx = await peer("rin_rx");
  await qemu.waitConnected(["rout_tx", "rout_rx", "rin_tx", "rin_rx"]);
  return {
    qemu,
    inTx,
    inRx,
    outTx,
    outRx,
    checkpoint: async () => {
      await qemu.qmp.execute("xen-colo-do-checkpoint");
    },
  };
}
