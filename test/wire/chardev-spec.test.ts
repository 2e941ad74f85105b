import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigError } from "../../src/errors.ts";
import { type ChardevSocketSpec, formatChardevSpec, parseChardevSpec } from "../../src/wire/chardev-spec.ts";

const tcpBase: ChardevSocketSpec = {
  id: "x",
  transport: "tcp",
  host: "127.0.0.1",
  port: 9001,
  path: "",
  server: false,
  wait: false,
  reconnectMs: 0,
  nodelay: true,
  family: 0,
};
const unixBase: ChardevSocketSpec = { ...tcpBase, transport: "unix", host: "", port: 0, nodelay: false };

describe("parseChardevSpec: accepted strings", () => {
  const cases: Array<[string, Partial<ChardevSocketSpec>]> = [
    ["socket,id=pri,host=127.0.0.1,port=9001,server=on,wait=off", { id: "pri", server: true, wait: false }],
    // QEMU's legacy flags, as in docs/COLO-FT.txt.
    [
      "socket,id=mirror0,host=0.0.0.0,port=9003,server,nowait",
      { id: "mirror0", host: "0.0.0.0", port: 9003, server: true },
    ],
    [
      "socket,id=compare1,host=0.0.0.0,port=9004,server,wait",
      { id: "compare1", host: "0.0.0.0", port: 9004, server: true, wait: true },
    ],
    ["socket,id=compare0-0,host=127.0.0.1,port=9001", { id: "compare0-0" }],
    [
      "socket,id=red0,host=3.3.3.3,port=9003,reconnect=1",
      { id: "red0", host: "3.3.3.3", port: 9003, reconnectMs: 1000 },
    ],
    [
      "socket,id=r,host=::1,port=9003,reconnect-ms=250",
      { id: "r", host: "::1", port: 9003, reconnectMs: 250 },
    ],
    ["socket,id=r,host=[::1],port=9003,ipv6=on", { id: "r", host: "::1", port: 9003, family: 6 }],
    ["socket,id=r,port=9003,ipv4", { id: "r", port: 9003, family: 4 }],
    // server defaults to wait=on, like QEMU.
    ["socket,id=s,port=0,server=yes", { id: "s", port: 0, server: true, wait: true }],
    [
      "socket,id=s,port=7,server=true,wait=false,nodelay=off",
      { id: "s", port: 7, server: true, nodelay: false },
    ],
    ["socket,id=s,port=7,server=no", { id: "s", port: 7 }],
    ["socket,id=s,port=7,noserver", { id: "s", port: 7 }],
    ["-chardev socket,id=s,port=7", { id: "s", port: 7 }],
    [
      "socket,id=x,path=/tmp/x.sock,server=on",
      { ...unixBase, path: "/tmp/x.sock", server: true, wait: true },
    ],
    ["socket,id=x,path=/tmp/a,,b.sock", { ...unixBase, path: "/tmp/a,b.sock" }],
    [
      "socket,id=x,path=colo-x,abstract=on,server=on,wait=off",
      { ...unixBase, path: "\0colo-x", server: true },
    ],
    ["socket,id=x,path=/tmp/x.sock,reconnect=2", { ...unixBase, path: "/tmp/x.sock", reconnectMs: 2000 }],
  ];
  for (const [s, want] of cases) {
    test(s, () => {
      const base = want.transport === "unix" ? unixBase : tcpBase;
      assert.deepEqual(parseChardevSpec(s), { ...base, ...want });
    });
  }
});

describe("parseChardevSpec: refused strings carry COLO_ERR_CHARDEV_SPEC and say why", () => {
  const cases: Array<[string, RegExp]> = [
    ["", /empty specification/],
    [
      "file,id=f,path=/tmp/f",
      /backend "file" is not supported; colo-proxy endpoints are socket chardevs only/,
    ],
    ["udp,id=u,host=127.0.0.1,port=1", /backend "udp" is not supported/],
    ["id=x,port=1", /missing backend/],
    ["socket,port=1", /missing id=/],
    ["socket,id=1x,port=1", /must start with a letter/],
    ["socket,id=x", /missing port= \(TCP\) or path= \(UNIX\)/],
    ["socket,id=x,host=127.0.0.1", /missing port=/],
    ["socket,id=x,port=70000", /port=70000: expected an integer 0\.\.65535/],
    ["socket,id=x,port=http", /port=http/],
    ["socket,id=x,port=0", /port=0 is only valid for server=on/],
    ["socket,id=x,port=1,path=/tmp/s", /either path=/],
    ["socket,id=x,port=1,server=maybe", /server=maybe: expected on\/off/],
    ["socket,id=x,port=1,wait=off", /wait= only applies to server=on/],
    ["socket,id=x,port=1,server,reconnect=1", /reconnect only applies to clients/],
    ["socket,id=x,port=1,reconnect=-1", /reconnect=-1/],
    ["socket,id=x,port=1,reconnect=1,reconnect-ms=5", /not both/],
    ["socket,id=x,port=1,telnet=on", /telnet framing would corrupt/],
    ["socket,id=x,port=1,tls-creds=t", /TLS is not supported/],
    ["socket,id=x,port=1,websocket", /websocket/],
    ["socket,id=x,port=1,mux=on", /multiplexed/],
    ["socket,id=x,port=1,bogus=1", /unknown option "bogus"/],
    ["socket,id=x,port=1,frobnicate", /unknown flag "frobnicate"/],
    ["socket,id=x,port=1,port=2", /given twice/],
    ["socket,id=x,port=1,,", /port=1,: expected an integer/],
    ["socket,id=x,port=1,", /empty option/],
    ["socket,id=x,port=1,ipv4,ipv6", /together/],
    ["socket,id=x,path=/tmp/s,ipv4", /apply to TCP sockets/],
    ["socket,id=x,port=1,abstract=on", /apply to path= sockets/],
    ["socket,id=x,path=n,abstract=on,tight=off", /tight=off/],
    ["socket,id=x,path=", /empty path=/],
  ];
  for (const [s, why] of cases) {
    test(JSON.stringify(s), () => {
      assert.throws(
        () => parseChardevSpec(s),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError);
          assert.equal(e.code, "COLO_ERR_CHARDEV_SPEC");
          assert.match(e.message, why);
          return true;
        },
      );
    });
  }
});

test("formatChardevSpec round-trips through the parser", () => {
  for (const s of [
    "socket,id=pri,host=127.0.0.1,port=9001,server=on,wait=off",
    "socket,id=red0,host=::1,port=9003,ipv6=on,reconnect=1",
    "socket,id=x,path=/tmp/a,,b.sock,server=on,wait=on",
    "socket,id=x,path=name,abstract=on,reconnect-ms=250",
  ]) {
    assert.equal(formatChardevSpec(parseChardevSpec(s)), s);
  }
});
