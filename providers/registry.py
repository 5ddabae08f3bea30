"""One registry of provider names → classes, imported only when used.

A cloud provider's module pulls in its libcloud driver and settings; listing providers or
booting locally must not import them all, so entries are ``"module:Class"`` strings.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imagekit.errors import UsageError
from imagekit.providers.base import Provider

PROVIDERS: dict[str, str] = {
    "local": "imagekit.providers.local.provider:LocalProvider",
    "null": "imagekit.providers.null:NullProvider",
    "gcp": "imagekit.providers.gcp.provider:GcpProvider",
    "azure": "imagekit.providers.azure.provider:AzureProvider",
    "openstack": "imagekit.providers.openstack.provider:OpenStackProvider",
    "rackspace": "imagekit.providers.openstack.provider:RackspaceProvider",
    "gcp-twin": "imagekit.providers.twins.provider:GcpTwinProvider",
    "azure-twin": "imagekit.providers.twins.provider:AzureTwinProvider",
    "openstack-twin": "imagekit.providers.twins.provider:OpenStackTwinProvider",
}


def provider_class(name: str) -> type[Provider]:
    try:
        target = PROVIDERS[name]
    except KeyError:
        raise UsageError(
            f"unknown provider {name!r}", hint=f"one of: {', '.join(PROVIDERS)}"
        ) from None
    module, _, attribute = target.partition(":")
    cls = getattr(importlib.import_module(module), attribute)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise TypeError(f"{target} is not a Provider")
    return cls


def create_provider(
    name: str, *, state_dir: Path, settings: Mapping[str, str] | None = None
) -> Provider:
    """A provider ready to use; ``UsageError`` when a required setting is missing."""
    return provider_class(name)(state_dir=state_dir, settings=settings)


def describe_providers() -> list[dict[str, Any]]:
    """Every provider with what it needs configured (for ``imagekit providers``)."""
    return [provider_class(name).describe() for name in PROVIDERS]


__all__ = ["PROVIDERS", "create_provider", "describe_providers", "provider_class"]
