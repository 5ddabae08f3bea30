"""Where store credentials come from: explicit, credentials file (TOML/INI), environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagekit.errors import UsageError
from imagekit.store.backends.credentials import Credentials, resolve
from imagekit.store.backends.registry import open_backend


def test_environment_prefers_imagekit_names_over_the_standard_ones() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "aws-id",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "IMAGEKIT_S3_ACCESS_KEY_ID": "ik-id",
        "AWS_SESSION_TOKEN": "aws-token",
    }
    creds = resolve("s3", "s3://b/p", "b", env)
    assert (creds.key, creds.secret, creds.token) == ("ik-id", "aws-secret", "aws-token")


def test_swift_environment_carries_non_secret_extras() -> None:
    env = {
        "OS_USERNAME": "u",
        "OS_PASSWORD": "pw",
        "OS_AUTH_URL": "https://keystone.example:5000",
        "OS_PROJECT_NAME": "proj",
        "OS_REGION_NAME": "R1",
    }
    creds = resolve("swift", "swift://c", "c", env)
    assert creds.extra == {
        "auth_url": "https://keystone.example:5000",
        "tenant": "proj",
        "region": "R1",
    }


def test_toml_file_sections_by_url_then_container_then_family(tmp_path: Path) -> None:
    path = tmp_path / "creds.toml"
    path.write_text(
        '["s3://bucket/prefix"]\naccess_key_id = "exact"\nsecret_access_key = "s1"\n'
        '["s3://bucket"]\naccess_key_id = "container"\nsecret_access_key = "s2"\n'
        '[s3]\naccess_key_id = "family"\nsecret_access_key = "s3"\n'
    )
    env = {"IMAGEKIT_CREDENTIALS_FILE": str(path), "AWS_ACCESS_KEY_ID": "env"}
    assert resolve("s3", "s3://bucket/prefix", "bucket", env).key == "exact"
    assert resolve("s3", "s3://bucket/elsewhere", "bucket", env).key == "container"
    assert resolve("s3", "s3://other/p", "other", env).key == "family"


def test_ini_file_and_fallback_to_environment(tmp_path: Path) -> None:
    path = tmp_path / "creds.ini"
    path.write_text("[azure]\naccount = acct\naccount_key = a2V5\n")
    env = {"IMAGEKIT_CREDENTIALS_FILE": str(path), "OS_USERNAME": "from-env", "OS_PASSWORD": "p"}
    assert resolve("azure", "azure://c/p", "c", env).key == "acct"
    assert resolve("swift", "swift://c/p", "c", env).key == "from-env"


def test_unknown_field_in_file_names_the_field_not_its_value(tmp_path: Path) -> None:
    path = tmp_path / "creds.toml"
    path.write_text('[s3]\naccess_key_id = "id"\nsecret_acces_key = "typo-secret-value"\n')
    with pytest.raises(UsageError) as caught:
        resolve("s3", "s3://b", "b", {"IMAGEKIT_CREDENTIALS_FILE": str(path)})
    assert "secret_acces_key" in str(caught.value)
    assert "typo-secret-value" not in str(caught.value)


def test_unreadable_or_malformed_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        resolve("s3", "s3://b", "b", {"IMAGEKIT_CREDENTIALS_FILE": str(tmp_path / "none.toml")})
    bad = tmp_path / "bad.toml"
    bad.write_text("[s3\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        resolve("s3", "s3://b", "b", {"IMAGEKIT_CREDENTIALS_FILE": str(bad)})


def test_repr_hides_values() -> None:
    creds = Credentials("key-id-value", "secret-value", "token-value")
    assert repr(creds) == "Credentials(key=<set>, secret=<set>, token=<set>)"


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("s3://bucket/p", "IMAGEKIT_S3_ACCESS_KEY_ID"),
        ("azure://ctr/p", "IMAGEKIT_AZURE_ACCOUNT"),
        ("gs://bucket/p", "GOOGLE_APPLICATION_CREDENTIALS"),
        ("swift://ctr/p?auth_url=https://k.example", "OS_USERNAME"),
    ],
)
def test_missing_credentials_say_which_variables_to_set(
    url: str, hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "IMAGEKIT_CREDENTIALS_FILE",
        "IMAGEKIT_S3_ACCESS_KEY_ID",
        "AWS_ACCESS_KEY_ID",
        "IMAGEKIT_AZURE_ACCOUNT",
        "AZURE_STORAGE_ACCOUNT",
        "IMAGEKIT_GCS_ACCESS_KEY_ID",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "IMAGEKIT_GCS_SERVICE_ACCOUNT_FILE",
        "OS_USERNAME",
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UsageError) as caught:
        open_backend(url)
    assert hint in str(caught.value)


def test_environment_credentials_open_a_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGEKIT_CREDENTIALS_FILE", raising=False)
    monkeypatch.setenv("IMAGEKIT_AZURE_ACCOUNT", "acct")
    monkeypatch.setenv("IMAGEKIT_AZURE_KEY", "bm90LWEtcmVhbC1rZXk=")
    backend = open_backend("azure://ctr/prefix?endpoint=http://127.0.0.1:1")
    assert backend.url == "azure://ctr/prefix?endpoint=http://127.0.0.1:1"
