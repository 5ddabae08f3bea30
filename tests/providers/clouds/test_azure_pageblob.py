"""The Azure page-blob upload of a fixed VHD, for real against Azurite (blob API 2018-11-09).

The test disk is converted to the ``vhd-azure`` target (N MiB + 512 bytes), uploaded as a page
blob through libcloud's signed connection, and read back; Azurite enforces the 512-byte alignment
and the 4 MiB Put Page limit as Azure does. Each Put Page is counted at the HTTP layer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from libcloud.storage.drivers.azure_blobs import AzureBlobsStorageDriver

from imagekit.convert import convert_image
from imagekit.errors import ProviderError, UsageError
from imagekit.providers.azure import pageblob
from testbed.azurite import ACCOUNT, ACCOUNT_KEY, Azurite

pytestmark = pytest.mark.slow

MiB = 1 << 20


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    if not Azurite.available():
        pytest.fail("Azurite is missing: run `make azurite` (make test does it for you)")
    with Azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server  # type: ignore[misc]


class Counting:
    """A driver factory whose drivers record every request (method, params, headers, length)."""

    def __init__(self, server: Azurite):
        self.server = server
        self.calls: list[tuple[str, dict[str, str], dict[str, str], int]] = []

    def __call__(self) -> Any:
        driver = AzureBlobsStorageDriver(
            ACCOUNT, ACCOUNT_KEY, host="127.0.0.1", port=self.server.port, secure=False
        )
        original = driver.connection.request
        calls = self.calls

        def request(action: str, **kwargs: Any) -> Any:
            data = kwargs.get("data") or b""
            calls.append(
                (
                    kwargs.get("method", "GET"),
                    dict(kwargs.get("params") or {}),
                    dict(kwargs.get("headers") or {}),
                    len(data),
                )
            )
            return original(action, **kwargs)

        driver.connection.request = request
        return driver


def _read_blob(server: Azurite, container: str, name: str) -> bytes:
    driver = AzureBlobsStorageDriver(
        ACCOUNT, ACCOUNT_KEY, host="127.0.0.1", port=server.port, secure=False
    )
    obj = driver.get_object(container, name)
    assert obj.extra["blob_type"] == "PageBlob"
    return b"".join(driver.download_object_as_stream(obj))


def _container(server: Azurite, name: str) -> str:
    driver = AzureBlobsStorageDriver(
        ACCOUNT, ACCOUNT_KEY, host="127.0.0.1", port=server.port, secure=False
    )
    driver.create_container(name)
    return name


def test_fixed_vhd_uploads_byte_identical_skipping_holes(
    azurite: Azurite, test_disk: Path, tmp_path: Path
) -> None:
    vhd = convert_image(test_disk, tmp_path / "disk.vhd", "vhd-azure").output
    size = vhd.stat().st_size
    assert size % MiB == 512
    factory = Counting(azurite)
    result = pageblob.upload_page_blob(factory, _container(azurite, "vhds"), "disk.vhd", vhd)

    assert _read_blob(azurite, "vhds", "disk.vhd") == vhd.read_bytes()
    puts = [c for c in factory.calls if c[1].get("comp") == "page"]
    create = [c for c in factory.calls if not c[1]]
    assert len(create) == 1
    assert create[0][2]["x-ms-blob-type"] == "PageBlob"
    assert create[0][2]["x-ms-blob-content-length"] == str(size)
    assert "Content-Length" not in create[0][2]
    assert len(puts) == result.page_writes
    for _, _, headers, length in puts:
        first, last = map(int, headers["x-ms-range"].removeprefix("bytes=").split("-"))
        assert first % 512 == 0 and (last + 1) % 512 == 0
        assert last - first + 1 == length <= pageblob.MAX_PAGE_WRITE
    # The 64 MiB test disk holds ~17 MiB of data: the rest is never sent.
    assert result.bytes_written < size // 2
    assert result.bytes_written == sum(c[3] for c in puts)


def test_zero_ranges_inside_data_are_skipped(azurite: Azurite, tmp_path: Path) -> None:
    # 9 MiB + 512 written densely (no holes): data at 0, 5 MiB and the footer, zeros elsewhere.
    path = tmp_path / "dense.vhd"
    data = bytearray(9 * MiB + 512)
    data[0:512] = b"\x01" * 512
    data[5 * MiB + 4096 : 5 * MiB + 8192] = b"\x02" * 4096
    data[-512:] = b"conectix".ljust(512, b"\x03")
    path.write_bytes(bytes(data))
    factory = Counting(azurite)
    result = pageblob.upload_page_blob(factory, _container(azurite, "dense"), "d.vhd", path)

    ranges = [c[2]["x-ms-range"] for c in factory.calls if c[1].get("comp") == "page"]
    granule = pageblob.ZERO_GRANULE
    assert sorted(ranges) == sorted(
        [
            f"bytes=0-{granule - 1}",
            f"bytes={5 * MiB}-{5 * MiB + granule - 1}",
            f"bytes={9 * MiB}-{9 * MiB + 511}",
        ]
    )
    assert result.page_writes == 3
    assert _read_blob(azurite, "dense", "d.vhd") == bytes(data)


def test_sparse_holes_are_never_read(tmp_path: Path) -> None:
    path = tmp_path / "sparse.vhd"
    with path.open("wb") as handle:
        handle.truncate(64 * MiB + 512)
        handle.seek(32 * MiB)
        handle.write(b"x" * 4096)
    extents = pageblob.data_extents(path, path.stat().st_size)
    if extents == [(0, path.stat().st_size)]:
        pytest.skip("this filesystem reports no holes")
    plan = pageblob.windows(extents, path.stat().st_size)
    assert sum(w.length for w in plan) <= 2 * MiB  # one filesystem block rounded, not 64 MiB
    assert all(w.offset % 512 == 0 and w.length % 512 == 0 for w in plan)


def test_windows_split_at_4_mib_and_align_to_pages() -> None:
    plan = pageblob.windows([(100, 9 * MiB + 3)], 10 * MiB)
    assert [(w.offset, w.length) for w in plan] == [
        (0, 4 * MiB),
        (4 * MiB, 4 * MiB),
        (8 * MiB, MiB + 512),
    ]


def test_unaligned_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.vhd"
    path.write_bytes(b"x" * 1000)
    with pytest.raises(UsageError, match="512-byte pages"):
        pageblob.upload_page_blob(lambda: None, "c", "b", path)


def test_missing_container_is_a_clear_error(azurite: Azurite, tmp_path: Path) -> None:
    path = tmp_path / "small.vhd"
    path.write_bytes(os.urandom(1024))
    with pytest.raises(ProviderError, match="404") as info:
        pageblob.upload_page_blob(Counting(azurite), "no-such-container", "b.vhd", path)
    assert info.value.hint == "does the container exist?"


def test_wrong_key_is_an_auth_error(azurite: Azurite, tmp_path: Path) -> None:
    path = tmp_path / "small.vhd"
    path.write_bytes(os.urandom(1024))
    wrong = "A" * 86 + "=="

    def factory() -> Any:
        return AzureBlobsStorageDriver(
            ACCOUNT, wrong, host="127.0.0.1", port=azurite.port, secure=False
        )

    with pytest.raises(ProviderError, match="refused the account key"):
        pageblob.upload_page_blob(factory, _container(azurite, "auth"), "b.vhd", path)
