"""One registry of store URL schemes → backends, and ``open_backend``.

Grammar (docs/stores.md has examples)::

    store-url  = local-path | scheme "://" container [ "/" prefix ] [ "?" options ]
    local-path = a filesystem path (no options) | "file://" absolute-path [ "?" options ]
    scheme     = "s3" | "azure" | "gs" | "swift" | "file"
    options    = name "=" value *( "&" name "=" value )     ; non-secret settings only

Options every scheme takes: ``retries=N`` (attempts in all, 1 = no retry) and ``connections=N``
(concurrent operations). The rest are per scheme (``SCHEMES``). Credentials never ride in the
URL: ``user:pass@`` is refused; they come from ``credentials.py``.

Family modules are imported only when their scheme is used, so a local store needs none of the
cloud code paths.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from imagekit.errors import UsageError
from imagekit.store.backends.base import Backend
from imagekit.store.backends.credentials import Credentials, resolve
from imagekit.store.backends.limit import DEFAULT_CONNECTIONS, LimitBackend
from imagekit.store.backends.retry import RetryBackend, RetryPolicy


@dataclass(frozen=True)
class Scheme:
    """A URL scheme: its credentials family, its backend class ("module:Class") and options."""

    family: str
    factory: str
    options: Mapping[str, Callable[[str], Any]]


SCHEMES: dict[str, Scheme] = {
    "s3": Scheme(
        "s3",
        "imagekit.store.backends.s3:S3Backend",
        {"endpoint": str, "region": str, "multipart_threshold": int, "timeout": float},
    ),
    "azure": Scheme(
        "azure",
        "imagekit.store.backends.azure:AzureBackend",
        {"account": str, "endpoint": str, "multipart_threshold": int, "timeout": float},
    ),
    "gs": Scheme(
        "gs",
        "imagekit.store.backends.gcs:GCSBackend",
        {"project": str, "endpoint": str, "timeout": float},
    ),
    "swift": Scheme(
        "swift",
        "imagekit.store.backends.swift:SwiftBackend",
        {
            "auth_url": str,
            "auth_version": str,
            "tenant": str,
            "domain": str,
            "region": str,
            "service_name": str,
            "timeout": float,
        },
    ),
}

#: Options of the wrappers, valid for every scheme including file://.
COMMON_OPTIONS: Mapping[str, Callable[[str], Any]] = {"retries": int, "connections": int}


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``url`` is the text to show users (it never holds credentials)."""

    url: str
    scheme: str  # "file" for local paths
    container: str  # the directory for file://
    prefix: str
    options: Mapping[str, Any]


def parse_store_url(url: str) -> StoreURL:
    """Split and check a store URL; every mistake is a one-line ``UsageError``."""
    if "://" not in url:
        if not url:
            raise UsageError("empty store URL")
        return StoreURL(url, "file", str(Path(url)), "", {})
    scheme = url.split("://", 1)[0].lower()
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unbalanced "[" (IPv6 literal), or a port out of range
        raise UsageError(f"{scheme}:// store URL is malformed ({exc})") from exc
    if "@" in parts.netloc:
        # Do not echo the URL: the part before "@" is a secret.
        raise UsageError(
            f"{scheme}:// store URL carries credentials before '@'",
            hint="remove them from the URL; see docs/stores.md for the environment variables",
        )
    if parts.fragment:
        raise UsageError(f"{url}: a store URL has no '#fragment'")
    if scheme == "file":
        return _parse_file(url, parts.netloc, parts.path, parts.query)
    spec = SCHEMES.get(scheme)
    if spec is None:
        known = ", ".join(sorted([*SCHEMES, "file"]))
        raise UsageError(f"{url}: unknown store scheme {scheme!r} (known: {known})")
    container = unquote(parts.netloc)
    if not container or ":" in container:
        raise UsageError(f"{url}: expected {scheme}://CONTAINER[/PREFIX]")
    options = _parse_options(url, parts.query, {**spec.options, **COMMON_OPTIONS})
    return StoreURL(url, scheme, container, unquote(parts.path).strip("/"), options)


def _parse_file(url: str, host: str, path: str, query: str) -> StoreURL:
    if host not in ("", "localhost"):
        raise UsageError(f"{url}: a file:// URL names a local path (file:///path)")
    if not path:
        raise UsageError(f"{url}: expected file:///PATH")
    options = _parse_options(url, query, COMMON_OPTIONS)
    return StoreURL(url, "file", unquote(path), "", options)


def _parse_options(
    url: str, query: str, known: Mapping[str, Callable[[str], Any]]
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if name not in known:
            names = ", ".join(sorted(known))
            raise UsageError(f"{url}: unknown option {name!r} (known: {names})")
        if name in options:
            raise UsageError(f"{url}: option {name!r} given twice")
        try:
            options[name] = known[name](value)
        except ValueError as exc:
            raise UsageError(f"{url}: option {name}={value!r} is not a valid value") from exc
    return options


def open_backend(url: str, credentials: Credentials | None = None) -> Backend:
    """The backend for a store URL, wrapped in retry and a concurrency limit.

    ``credentials`` overrides the credentials file and the environment. Raises ``UsageError``
    for a malformed URL, an unknown scheme or option, or missing credentials; opening makes no
    request (the first operation does).
    """
    parsed = parse_store_url(url)
    options = dict(parsed.options)
    retries = options.pop("retries", RetryPolicy().attempts)
    connections = options.pop("connections", DEFAULT_CONNECTIONS)
    if retries < 1 or connections < 1:
        raise UsageError(f"{url}: retries and connections must be at least 1")
    inner = _open_inner(parsed, options, credentials)
    return RetryBackend(LimitBackend(inner, connections), RetryPolicy(attempts=retries))


def _open_inner(
    parsed: StoreURL, options: dict[str, Any], credentials: Credentials | None
) -> Backend:
    if parsed.scheme == "file":
        from imagekit.store.backends.local import LocalBackend

        return LocalBackend(Path(parsed.container), url=parsed.url)
    spec = SCHEMES[parsed.scheme]
    module_name, class_name = spec.factory.split(":")
    backend_cls = getattr(importlib.import_module(module_name), class_name)
    if credentials is None:
        credentials = resolve(spec.family, parsed.url.split("?", 1)[0], parsed.container)
    backend: Backend = backend_cls(
        parsed.url, parsed.container, parsed.prefix, credentials, **options
    )
    return backend
