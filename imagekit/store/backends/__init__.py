"""Store backends: one contract, implemented on Apache Libcloud storage drivers, chosen by URL.

The repository layer needs only ``open_backend(url)`` and the ``Backend`` contract; the URL
grammar, options and credential sources are in ``registry.py``, ``credentials.py`` and
docs/stores.md.
"""

from imagekit.store.backends.base import Backend, ObjectInfo
from imagekit.store.backends.credentials import Credentials
from imagekit.store.backends.registry import SCHEMES, StoreURL, open_backend, parse_store_url

__all__ = [
    "SCHEMES",
    "Backend",
    "Credentials",
    "ObjectInfo",
    "StoreURL",
    "open_backend",
    "parse_store_url",
]
