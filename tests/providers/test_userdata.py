"""Run keys and cloud-init user-data from the Jinja2 templates."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from imagekit.errors import InputError, UsageError
from imagekit.providers.local.seed import ssh_cloud_config
from imagekit.providers.userdata import RunKeys, generate_keys, load_keys, render_user_data


@pytest.fixture
def keys(tmp_path: Path) -> RunKeys:
    return generate_keys(tmp_path / "ssh", "imagekit-test")


def test_keys_are_private_and_reloadable(keys: RunKeys, tmp_path: Path) -> None:
    for name in ("id_ed25519", "host_ed25519"):
        assert stat.S_IMODE((tmp_path / "ssh" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ssh").stat().st_mode) == 0o700
    assert keys.public_key.startswith("ssh-ed25519 ") and keys.public_key.endswith("imagekit-test")
    assert load_keys(tmp_path / "ssh") == keys
    with pytest.raises(FileExistsError):
        generate_keys(tmp_path / "ssh", "again")  # never overwrites a run's keys


def test_default_template_says_what_the_seed_helper_says(keys: RunKeys) -> None:
    text = render_user_data(keys, hostname="run-1")
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    expected = yaml.safe_load(ssh_cloud_config([keys.public_key], {"ed25519": keys.host_private}))
    assert doc["ssh_authorized_keys"] == expected["ssh_authorized_keys"]
    assert doc["ssh_keys"] == expected["ssh_keys"]
    assert doc["disable_root"] is False
    # A role without a template of its own gets the default one.
    assert render_user_data(keys, hostname="run-1", role="db") == text


def test_user_files(keys: RunKeys, tmp_path: Path) -> None:
    plain = tmp_path / "user-data"
    plain.write_text("#!/bin/sh\necho {{ not a template }}\n")
    assert render_user_data(keys, hostname="h", path=plain) == plain.read_text()
    template = tmp_path / "user-data.j2"
    template.write_text("#cloud-config\nfqdn: {{ hostname }}.{{ role }}\n")
    assert render_user_data(keys, hostname="h", role="web", path=template).endswith("h.web\n")
    template.write_text("{{ nosuchvariable }}")
    with pytest.raises(InputError, match="template error"):
        render_user_data(keys, hostname="h", path=template)
    with pytest.raises(InputError, match="cannot read"):
        render_user_data(keys, hostname="h", path=tmp_path / "missing")
    with pytest.raises(UsageError, match="invalid role"):
        render_user_data(keys, hostname="h", role="../x")
