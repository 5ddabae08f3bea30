#!/bin/sh
# /init of the test disk's initramfs, the first process the kernel starts.
# Kernel filesystems and drivers first, then busybox init (which runs guest-boot.sh once and
# turns `poweroff` into a clean ACPI power-off). Every line it prints lands on ttyS0.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /run /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
# load-order was computed at build time from each module's .modinfo: dependencies first.
while read -r module; do
    insmod "/lib/modules/$module.ko" || echo "imagekit: insmod $module failed"
done < /lib/modules/load-order
echo "imagekit: [$(cut -d ' ' -f 1 /proc/uptime)] modules loaded"
exec /bin/busybox init
