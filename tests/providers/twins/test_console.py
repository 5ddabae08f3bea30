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
