"""Boot failure causes read from real serial console lines (pure)."""

from __future__ import annotations

from imagekit.providers.console import cause, diagnose

# Lines as Debian 12 guests printed them on this bench (escape codes included).
FALLBACK = (
    "[   97.966589] cloud-init[379]: Cloud-init v. 22.4.2 finished at Wed, 02 Dec 2026 06:17:36"
    " +0000. Datasource DataSourceNone.  Up 97.87 seconds\n"
    "[   97.982728] cloud-init[379]: 2026-12-02 06:17:36,710 - cc_final_message.py[WARNING]: "
    "Used fallback datasource\n"
)
GAVE_UP = (
    "[  195.303211] cloud-init[302]: 2026-12-02 06:24:31,342 - DataSourceEc2.py[CRITICAL]: "
    "Giving up on md from ['http://169.254.169.254/2009-04-04/meta-data/instance-id'] after 120"
    " seconds\n"
)
PANIC = "[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n"
NO_ROOT = "\x1b[0;1;31mALERT!  UUID=0f3a does not exist.  Dropping to a shell!\x1b[0m\n"


def codes(text: str) -> list[str]:
    return [f.code for f in diagnose(text)]


def test_fallback_datasource_is_settled_not_fatal():
    (finding,) = diagnose(FALLBACK)
    assert finding.code == "fallback-datasource" and finding.settled and not finding.fatal
    assert "Datasource DataSourceNone" in finding.line


def test_panic_and_missing_root_are_fatal():
    assert codes(PANIC) == ["kernel-panic", "root-not-found"]
    assert all(f.fatal for f in diagnose(PANIC))
    assert codes(NO_ROOT) == ["root-not-found"]


def test_cause_prefers_fatal_then_settled():
    assert "panicked" in cause(diagnose(GAVE_UP + PANIC))
    assert "fell back to none" in cause(diagnose(GAVE_UP + FALLBACK))
    assert "metadata service" in cause(diagnose(GAVE_UP))


def test_a_healthy_boot_shows_nothing():
    healthy = (
        "[   95.3] cloud-init[379]: Cloud-init v. 22.4.2 finished at Wed. Datasource "
        "DataSourceGCELocal.  Up 95 seconds\n-----BEGIN SSH HOST KEY KEYS-----\n"
    )
    assert diagnose(healthy) == [] and diagnose(None) == [] and cause([]) is None


def test_signs_on_the_way_do_not_count_once_cloud_init_found_its_datasource():
    # Seen on a healthy GCE boot: the local stage cannot resolve the metadata name yet.
    local_stage = (
        "[ 48.8] cloud-init[247]: 2026-12-02 06:32:18,633 - DataSourceGCE.py[WARNING]: address "
        '"http://metadata.google.internal/computeMetadata/v1/" is not resolvable\n'
    )
    assert codes(local_stage) == ["metadata-unreachable"]
    done = "cloud-init[379]: Cloud-init v. 22.4.2 finished. Datasource DataSourceGCE.  Up 95 s\n"
    assert diagnose(local_stage + done) == []
    assert diagnose(local_stage, passed=True) == []  # an SSH login already proved it was read
    assert codes(local_stage + FALLBACK) == ["fallback-datasource", "metadata-unreachable"]


def test_silence_after_the_firmware_hand_over_is_a_stalled_boot():
    # SeaBIOS on a GPT disk with no BIOS boot code (a UEFI-only image), as seen on this bench.
    seabios = "SeaBIOS (version 1.16.2-debian-1.16.2-1)\nBooting from Hard Disk...\n"
    assert diagnose(seabios, idle=5) == []
    (stalled,) = diagnose(seabios, idle=120)
    assert stalled.code == "boot-stalled" and stalled.fatal and "UEFI-only" in stalled.message
    assert diagnose(seabios + "GRUB loading.\n", idle=120) == []


# The customer AMIs of testbed/debian/build.py, as they printed on this bench (systemd 252 and
# initramfs-tools of Debian 12; systemd shortens status lines with "…", escapes included).
FSTAB_EMERGENCY = (
    "\x1b[K[\x1b[0;1;31m TIME \x1b[0m] Timed out waiting for device \x1b[0;1;…nvme1n1.device - "
    "/dev/nvme1n1.\r\n"
    "[\x1b[0;1;33mDEPEND\x1b[0m] Dependency failed for \x1b[0;1;39mdata.mount\x1b[0m - /data.\r\n"
    "[\x1b[0;1;33mDEPEND\x1b[0m] Dependency failed for \x1b[0;1;39mloca…s.target\x1b[0m - Local "
    "File Systems.\r\n"
    "[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39memergency.service\x1b[0m - Emergency Shell.\r\n"
    "[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39memergency.target\x1b[0m - Emergency "
    "Mode.\r\n"
)
HOST_ONLY_INITRAMFS = (
    "Begin: Running /scripts/local-block ... done.\r\ndone.\r\n"
    "Gave up waiting for root file system device.  Common problems:\r\n"
    " - Boot args (cat /proc/cmdline)\r\n"
    "   - Check rootdelay= (did the system wait long enough?)\r\n"
    " - Missing modules (cat /proc/modules; ls /dev)\r\n"
    "ALERT!  UUID=f79671ba-01bb-544c-a975-f465e3132ffa does not exist.  Dropping to a shell!\r\n"
    "(initramfs) "
)
NET_TABLE = (
    "[   31.420513] cloud-init[275]: ci-info: +++++++++++++++++++++++++++Net device info+++++++"
    "+++++++++++++++++++++\n"
    "[   31.422371] cloud-init[275]: ci-info: +--------+-------+-----------+-----------+-------+"
    "-------------------+\n"
    "[   31.425175] cloud-init[275]: ci-info: | Device |   Up  |  Address  |    Mask   | Scope |"
    "     Hw-Address    |\n"
    "[   31.429911] cloud-init[275]: ci-info: +--------+-------+-----------+-----------+-------+"
    "-------------------+\n"
    "[   31.433076] cloud-init[275]: ci-info: |  eth0  | {up} | {address} | {mask} | {scope} |"
    " fa:16:3e:16:f9:2b |\n"
    "[   31.437441] cloud-init[275]: ci-info: |   lo   |  True | 127.0.0.1 | 255.0.0.0 |  host |"
    "         .         |\n"
    "[   31.442369] cloud-init[275]: ci-info: +--------+-------+-----------+-----------+-------+"
    "-------------------+\n"
)
NETWORKING_FAILED = (
    "         Starting networking.service - Raise network interfaces...\n"
    "\x1bM[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39mnetworking…ce\x1b[0m - Raise "
    "network interfaces.\n"
)
UNREACHABLE = (
    "[   31.553417] cloud-init[275]: 2026-12-02 13:58:28,302 - url_helper.py[WARNING]: Calling "
    "'None' failed [0/120s]: request error [HTTPConnectionPool(host='169.254.169.254', port=80):"
    " ... [Errno 101] Network is unreachable'))]\n"
)


def _table(up: str = "False", address: str = ".", mask: str = ".", scope: str = ".") -> str:
    return NET_TABLE.format(up=up, address=address, mask=mask, scope=scope)


def test_emergency_mode_from_fstab_is_fatal_and_names_the_mount_and_device():
    (finding,) = diagnose(FSTAB_EMERGENCY)
    assert finding.code == "emergency-mode" and finding.fatal
    assert "/data could not be mounted (timed out waiting for /dev/nvme1n1)" in finding.message
    assert "mount by UUID or add nofail" in finding.message and "--no-adapt" in finding.message
    assert finding.line == "[DEPEND] Dependency failed for data.mount - /data."
    assert "emergency mode: /data" in cause(diagnose(FALLBACK + FSTAB_EMERGENCY))


def test_emergency_mode_in_older_systemd_words_and_without_a_mount():
    older = (
        "[ TIME ] Timed out waiting for device dev-xvdf.device.\n"
        "[DEPEND] Dependency failed for /srv/data.\n"
        'You are in emergency mode. After logging in, type "journalctl -xb" to view\n'
    )
    (finding,) = diagnose(older)
    assert "/srv/data could not be mounted" in finding.message
    (other,) = diagnose("Cannot open access to console, the root account is locked.\n")
    assert other.code == "emergency-mode" and other.fatal and "fstab" not in other.message


def test_a_mount_waited_for_is_not_emergency_mode_yet():
    # The 90 s wait shows before systemd gives up; a healthy boot mounts its fstab silently.
    waiting = "[ ***  ] Job dev-nvme1n1.device/start running (1min 14s / 1min 30s)\n"
    healthy = (
        "[  OK  ] Mounted data.mount - /data.\n[  OK  ] Reached target local-fs.target - Local "
        "File Systems.\n[  OK  ] Reached target multi-user.target - Multi-User System.\n"
    )
    assert diagnose(waiting) == [] and diagnose(healthy) == []


def test_a_host_only_initramfs_on_virtio_is_root_not_found():
    findings = diagnose(HOST_ONLY_INITRAMFS)
    assert [f.code for f in findings] == ["root-not-found"] and findings[0].fatal
    assert findings[0].line.startswith("Gave up waiting for root file system device")


def test_no_address_on_any_nic_is_settled_and_explains_the_fallback():
    text = NETWORKING_FAILED + _table() + UNREACHABLE + FALLBACK
    findings = diagnose(text)
    assert [f.code for f in findings][:2] == ["no-address", "fallback-datasource"]
    assert findings[0].settled and not findings[0].fatal
    assert "none on eth0" in findings[0].message
    assert findings[0].line == "[FAILED] Failed to start networking…ce - Raise network interfaces."
    assert cause(findings).startswith("the guest has no network address")


def test_an_address_or_a_working_network_refutes_no_address():
    assert (
        diagnose(NETWORKING_FAILED + _table("True", "10.0.0.10", "255.255.255.0", "global")) == []
    )
    # Up with a link-local address only reaches nothing.
    assert codes(UNREACHABLE + _table("True", "fe80::f816:3eff/64", ".", "link")) == ["no-address"]
    assert diagnose(_table()) == []  # a NIC down, but nothing says the guest lacks a network
    done = "cloud-init[379]: Cloud-init v. 22.4.2 finished. Datasource DataSourceEc2.  Up 95 s\n"
    assert diagnose(NETWORKING_FAILED + _table() + done) == []


def test_ovmf_trying_the_provisioning_cd_first_is_not_a_boot_failure():
    # OVMF on the Azure and OpenStack twins (a CD attached) tries the CD, fails, then boots
    # the disk: the first failure is no verdict.
    console = (
        'BdsDxe: failed to load Boot0001 "UEFI QEMU DVD-ROM QM00001 " from PciRoot(0x0)/Pci'
        "(0x1,0x1)/Ata(Primary,Master,0x0): Not Found\n"
        'BdsDxe: loading Boot0002 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x4,0x0)\n'
        'BdsDxe: starting Boot0002 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x4,0x0)\n'
    )
    assert [f.code for f in diagnose(console)] == []
    shell = console.replace("starting Boot0002", "failed to load Boot0002") + (
        "UEFI Interactive Shell v2.2\n"
    )
    assert [f.code for f in diagnose(shell)] == ["no-boot-device"]
