"""Cloud secrets and names: environment first, then the credentials file; never a value in an
error message."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagekit.errors import UsageError
from imagekit.providers.cloud.common import NAME_LIMIT, read_secret, resource_name


def test_environment_wins_over_the_credentials_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds.ini"
    creds.write_text("[azure]\nAZURE_CLIENT_SECRET = from-file\n")
    env = {"IMAGEKIT_CREDENTIALS_FILE": str(creds), "AZURE_CLIENT_SECRET": "from-env"}
    assert read_secret("azure", "AZURE_CLIENT_SECRET", env) == "from-env"
    del env["AZURE_CLIENT_SECRET"]
    assert read_secret("azure", "AZURE_CLIENT_SECRET", env) == "from-file"  # INI keys any case


def test_toml_file_section_is_named_after_the_provider(tmp_path: Path) -> None:
    creds = tmp_path / "creds.toml"
    creds.write_text('[gcp]\nGOOGLE_APPLICATION_CREDENTIALS = "/keys/sa.json"\n')
    env = {"IMAGEKIT_CREDENTIALS_FILE": str(creds)}
    assert read_secret("gcp", "GOOGLE_APPLICATION_CREDENTIALS", env) == "/keys/sa.json"
    assert read_secret("azure", "AZURE_CLIENT_SECRET", env, required=False) is None


def test_missing_secret_names_the_variable_and_the_file_section() -> None:
    with pytest.raises(UsageError, match="OS_PASSWORD is not set") as info:
        read_secret("openstack", "OS_PASSWORD", {})
    assert info.value.hint and "[openstack]" in info.value.hint


def test_resource_names_are_clean_and_bounded() -> None:
    assert resource_name("gcp-20260101-000000-ab12", "image") == "gcp-20260101-000000-ab12-image"
    assert resource_name("Azure_Run", "X Y") == "azure-run-x-y"
    long = resource_name("openstack-" + "a" * 80, "sg")
    assert len(long) <= NAME_LIMIT and not long.endswith("-")
