#!/bin/sh
# /init of the colo-proxy test guest (busybox, Debian cloud kernel). Identical on PVM and SVM:
# everything that could make the two replicas' network output differ is either fixed here or
# listed in docs/architecture.md ("guest noise").
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /run/colo /tmp

role=unknown ip4=10.0.2.15/24 ip6=fd00:c010::15/64 peer4=10.0.2.2 peermac=52:55:0a:00:02:02
for a in $(cat /proc/cmdline); do
  case "$a" in
    colo.role=*) role=${a#*=} ;;
    colo.ip=*) ip4=${a#*=} ;;
    colo.ip6=*) ip6=${a#*=} ;;
    colo.peer=*) peer4=${a#*=} ;;
    colo.peermac=*) peermac=${a#*=} ;;
  esac
done

# IPv6 on, its chatter off. Set on "default" before the NIC exists so eth0 inherits it:
# no link-local address (so no DAD/MLD for it), no DAD, no router solicitation, no RA.
for k in default all; do
  sysctl -qw net.ipv6.conf.$k.addr_gen_mode=1 net.ipv6.conf.$k.accept_dad=0 \
    net.ipv6.conf.$k.dad_transmits=0 net.ipv6.conf.$k.router_solicitations=0 \
    net.ipv6.conf.$k.accept_ra=0 net.ipv6.conf.$k.autoconf=0 \
    net.ipv6.conf.$k.mldv1_unsolicited_report_interval=1 \
    net.ipv6.conf.$k.mldv2_unsolicited_report_interval=1 2>/dev/null
done
# Neighbour entries learnt once stay valid for the guest's lifetime: no timer-driven
# re-probes, whose random timing would differ between the replicas.
sysctl -qw net.ipv6.neigh.default.base_reachable_time_ms=86400000 \
  net.ipv6.neigh.default.delay_first_probe_time=86400 net.ipv6.neigh.default.gc_stale_time=86400 \
  net.ipv4.neigh.default.base_reachable_time_ms=86400000 net.ipv4.neigh.default.gc_stale_time=86400

# The extracted kernel package has no modules.dep: load in dependency order.
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
  insmod /lib/modules/$m.ko 2>/dev/null
done
for k in eth0; do
  sysctl -qw net.ipv6.neigh.$k.base_reachable_time_ms=86400000 net.ipv6.neigh.$k.delay_first_probe_time=86400 \
    net.ipv4.neigh.$k.base_reachable_time_ms=86400000 2>/dev/null
done

ip link set lo up
ip link set eth0 up
# Packets sent before carrier are lost; and an IPv6 address added before the kernel has
# processed the carrier change (linkwatch, deferred; visible as operstate "up") gets its MLD join
# reported again then, a timing-dependent difference between the replicas. So wait for
# operstate up (bounded), then add the addresses.
n=0
while [ "$(cat /sys/class/net/eth0/operstate 2>/dev/null)" != up ] && [ $n -lt 500 ]; do
  usleep 10000; n=$((n + 1))
done
ip addr add "$ip4" dev eth0
ip -6 addr add "$ip6" dev eth0
# The peer's MAC is static, so the guest never ARPs (busybox `ip neigh` cannot add entries).
arp -s "$peer4" "$peermac"
echo "state=0" > /run/colo/state
nc -ll -p 80 -e /bin/http-det &
nc -ll -p 7 -e /bin/cat &
nc -ll -p 8080 -e /bin/http-rand &
nc -ll -p 8081 -e /bin/http-state &
inetd /etc/inetd.conf &
# READY only once every socket is bound (a loaded host can take well over a second here): the
# harness starts sending when it sees READY, and a replica still starting would answer with a
# port-unreachable where the other echoes.
want="tcp:::80 tcp:::7 tcp:::8080 tcp:::8081 udp0.0.0.0:7 udp:::7"
n=0
while [ $n -lt 1000 ]; do
  have=$(netstat -ln 2>/dev/null | awk '{ print $1 $4 }')
  missing=0
  for w in $want; do
    case " $(echo $have) " in *" $w "*) ;; *) missing=1 ;; esac
  done
  [ $missing = 0 ] && break
  usleep 10000; n=$((n + 1))
done

echo "COLO-GUEST-READY role=$role uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
# A shell on the console, for tests that read or change the guest's state. Respawned if it exits.
while :; do
  setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'
done
