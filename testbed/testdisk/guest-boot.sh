#!/bin/sh
# The test disk's one boot job (busybox init "sysinit"): network by DHCP, the NoCloud seed if
# one is attached, SSH if the seed asks for it, the HTTP health endpoint, then the ready marker.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "imagekit: $*" > /dev/console; }

hostname=imagekit-testdisk
instance_id=none
ip link set lo up
# DHCP in the background while the seed is read; slirp answers within milliseconds.
udhcpc -i eth0 -s /etc/imagekit/udhcpc.sh -f -q -n -t 10 -T 1 > /run/udhcpc.log 2>&1 &
dhcp=$!

# NoCloud: a filesystem labelled cidata (the seed ISO on a CD drive, or any block device).
mkdir -p /run/seed /run/seed-keys
seed_device=$(findfs LABEL=cidata 2> /dev/null)
if [ -n "$seed_device" ] && mount -o ro "$seed_device" /run/seed; then
    say "seed found on $seed_device"
    field() { sed -n "s/^$1:[[:space:]]*//p" /run/seed/meta-data | head -n 1 | tr -d "\"'\r"; }
    [ -f /run/seed/meta-data ] && {
        value=$(field local-hostname) && [ -n "$value" ] && hostname=$value
        value=$(field instance-id) && [ -n "$value" ] && instance_id=$value
    }
    if [ -f /run/seed/user-data ] && head -n 1 /run/seed/user-data | grep -q '^#cloud-config'; then
        value=$(awk -v keys=/run/seed-keys/authorized_keys -v keydir=/run/seed-keys \
            -f /etc/imagekit/cloud-config.awk /run/seed/user-data | sed -n 's/^hostname //p')
        [ -n "$value" ] && hostname=$value
    fi
    umount /run/seed
else
    say "no seed"
fi
hostname "$hostname"
echo "$hostname" > /etc/hostname

if [ -s /run/seed-keys/authorized_keys ]; then
    mkdir -p /root/.ssh /etc/dropbear
    chmod 700 /root /root/.ssh
    cp /run/seed-keys/authorized_keys /root/.ssh/authorized_keys
    chmod 600 /root/.ssh/authorized_keys
    host_keys=""
    for type in ed25519 ecdsa rsa; do
        [ -s "/run/seed-keys/$type" ] || continue
        target=/etc/dropbear/dropbear_${type}_host_key
        if dropbearconvert openssh dropbear "/run/seed-keys/$type" "$target" > /dev/null 2>&1; then
            host_keys="$host_keys -r $target"
        else
            say "host key $type from the seed is not an OpenSSH private key: ignored"
        fi
    done
    # -s: keys only, no passwords; -R: without a seeded host key, make one on first use.
    # shellcheck disable=SC2086
    dropbear -s -p 22 ${host_keys:--R}
    say "ssh started"
fi

mkdir -p /www
printf 'ok %s\n' "$hostname" > /www/health
printf '%s\n' "$instance_id" > /www/instance-id
httpd -p 80 -h /www

wait "$dhcp" || say "DHCP failed: $(tail -n 1 /run/udhcpc.log)"
address=$(ip -4 -o addr show dev eth0 | awk '{print $4}')
say "network eth0 ${address:-none}"
echo "IMAGEKIT-READY hostname=$hostname instance-id=$instance_id" > /dev/console
