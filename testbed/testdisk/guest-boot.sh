#!/bin/sh
# The test disk's one boot job (busybox init "sysinit"): network by DHCP, the NoCloud seed if
# one is attached, SSH if the seed asks for it, the HTTP health endpoint, then the ready marker.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# Seconds since boot on every line, to see where boot time goes.
say() { echo "imagekit: [$(cut -d " " -f 1 /proc/uptime)] $*" > /dev/console; }

hostname=imagekit-testdisk
instance_id=none
ip link set lo up
# DHCP in the background while the seed is read; slirp answers within milliseconds.
udhcpc -i eth0 -s /etc/imagekit/udhcpc.sh -f -q -n -t 10 -T 1 > /run/udhcpc.log 2>&1 &
dhcp=$!

# NoCloud: a filesystem labelled cidata (the seed ISO on a CD drive, or any block device).
mkdir -p /run/seed /run/seed-keys
# The ISO 9660 primary volume descriptor is sector 16 (2 KiB sectors): "CD001" at byte 1, the
# volume label at byte 40, space-padded. (busybox findfs does not recognise ISO 9660 here.)
iso_label() {
    pvd=$(dd if="$1" bs=2048 skip=16 count=1 2> /dev/null | head -c 72 | tr '\0' ' ')
    [ "$(echo "$pvd" | cut -c 2-6)" = CD001 ] && echo "$pvd" | cut -c 41-72 | tr -d ' '
}
seed_device=""
for name in $(awk 'NR > 2 {print $4}' /proc/partitions); do
    if [ "$(iso_label "/dev/$name")" = cidata ]; then
        seed_device=/dev/$name
        break
    fi
done
if [ -n "$seed_device" ] && mount -t iso9660 -o ro "$seed_device" /run/seed; then
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
    say "no seed (block devices: $(awk 'NR > 2 {printf "%s ", $4}' /proc/partitions))"
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
# A data volume (a further virtio disk) whose first line is "imagekit-data: VALUE": served at
# /data, so a rehearsal shows which state of the production data came up.
for name in $(awk 'NR > 2 && $4 ~ /^vd[b-z]$/ {print $4}' /proc/partitions); do
    value=$(head -c 256 "/dev/$name" | tr -d '\000' | sed -n 's/^imagekit-data: //p' | head -n 1)
    if [ -n "$value" ]; then
        printf '%s\n' "$value" > /www/data
        say "data volume /dev/$name: $value"
        break
    fi
done
httpd -p 80 -h /www

wait "$dhcp" || say "DHCP failed: $(tail -n 1 /run/udhcpc.log)"
address=$(ip -4 -o addr show dev eth0 | awk '{print $4}')
say "network eth0 ${address:-none}"
echo "IMAGEKIT-READY hostname=$hostname instance-id=$instance_id" > /dev/console
