/** @module Shared conntrack test fixtures: a flow tuple and a connection whose holding state tests set. */
import type { FlowTuple } from "../../src/conntrack/flow.ts";
import { TrackedConn } from "../../src/conntrack/table.ts";

export const tuple: FlowTuple = {
  vlanOuter: -1,
  vlanInner: -1,
  etherType: 0x800,
  family: 4,
  proto: 17,
  src: new Uint8Array(4),
  dst: new Uint8Array(4),
  srcPort: 1,
  dstPort: 2,
  fragment: false,
};

/** A connection whose "holding packets" state the test controls. */
export class Conn extends TrackedConn {
  held = false;
  override holding(): boolean {
    return this.held;
  }
}
