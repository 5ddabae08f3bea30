#!/bin/sh
# udhcpc hook: apply the lease udhcpc passes in the environment (ip, mask, router, dns).
case "$1" in
deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for gateway in $router; do
        ip route add default via "$gateway" dev "$interface"
        break
    done
    : > /etc/resolv.conf
    for server in $dns; do
        echo "nameserver $server" >> /etc/resolv.conf
    done
    ;;
esac
exit 0
