/**
 * @module Static frames for the per-protocol view tests (deconstruct / construct / parse / emit,
 * smoltcp style). Each decodes cleanly in tshark 4.x with checksum validation on (checked when
 * they were made; the IPv4 header of SYN is the textbook 0xb1e6 example).
 */
const hex = (s: string): Buffer => Buffer.from(s, "hex");

/** Linux-style SYN 172.16.10.99:42674 > 172.16.10.12:80, MSS 1460, SACK_PERM, TS, NOP, WS 7. */
export const SYN = hex(
  "52540065432152540012345608004500003c1c4640004006b1e6ac100a63ac100a0ca6b200508f4b2c1100000000a002faf0da540000020405b40402080a0017a3b40000000001030307",
);
/** ACK with NOP NOP TS NOP SACK (blocks at an odd offset from the TCP header), EOL pad. */
export const SACK = hex(
  "5254001234565254006543210800450000404d21400040068107ac100a0cac100a630050a6b2112233448f4b2c12b01001f5db0600000101080a000010000017a3b401050a8f4b30008f4b400000",
);
/** IPv6 UDP DNS query for www.example.com, flow label 0x9b3f1. */
export const UDP6 = hex(
  "52540065432152540012345686dd6009b3f10029114020010db800000000000000000000001020010db8000000000000000000000053cf0900350029de5eabcd0100000100000000000003777777076578616d706c6503636f6d0000010001",
);
/** ICMP echo request id 0x1234 seq 1 with 16 payload bytes. */
export const PING = hex(
  "52540065432152540012345608004500002c123400004001e541c0a8010ac0a801010800ad8a12340001000102030405060708090a0b0c0d0e0f",
);
/** ICMPv6 neighbour solicitation for fe80::1 with a source link-layer address option. */
export const NS = hex(
  "3333ff00000152540012345686dd6000000000203afffe80000000000000505400fffe123456ff0200000000000000000001ff0000018700722200000000fe8000000000000000000000000000010101525400123456",
);
/** ARP who-has 192.168.1.1 tell 192.168.1.10, padded to 60 bytes. */
export const ARP = hex(
  "ffffffffffff52540012345608060001080006040001525400123456c0a8010a000000000000c0a80101000000000000000000000000000000000000",
);
