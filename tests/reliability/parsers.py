"""Every parser of untrusted input, with the errors it documents: one table for the hypothesis
properties (``test_fuzz.py``) and the atheris target (``fuzz_targets.py``).

``check(name, data)`` parses and lets only the documented errors through as "refused"; any
other exception propagates, which is the finding.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagekit.errors import ImagekitError, InputError, UsageError, WrongKey
from imagekit.plans.load import load_text
from imagekit.store.backends.registry import parse_store_url
from imagekit.store.crypto import InvalidTag, MetaCipher, decode_recipient
from imagekit.store.format import KIND_PACK_HEADER
from imagekit.store.identity import decode_identity
from imagekit.store.index import Index, decode_index
from imagekit.store.keys import KeySlot, MasterKey
from imagekit.store.manifest import decode_manifest
from imagekit.store.pack import decode_pack_header, read_pack_header
from imagekit.store.repository import Config

ROOT = Path(__file__).resolve().parents[2]
_META = MetaCipher(MasterKey.generate(os.urandom(16)).keys()[1])


@dataclass(frozen=True)
class Parser:
    parse: Callable[[bytes], object]
    refuses_with: tuple[type[BaseException], ...]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _pack_tail(data: bytes) -> object:
    # Both the raw tail and one whose header authenticates (a writer's forgery).
    with contextlib.suppress(ValueError, InvalidTag):
        read_pack_header(_META, data)
    sealed = _META.encrypt(KIND_PACK_HEADER, data)
    return read_pack_header(_META, sealed + len(sealed).to_bytes(4, "little"))


def _index_table(data: bytes) -> object:
    Index().add_payload(data)
    return None


PARSERS: dict[str, Parser] = {
    "pack header": Parser(decode_pack_header, (ValueError,)),
    "pack tail": Parser(_pack_tail, (ValueError, InvalidTag)),
    "index": Parser(decode_index, (ValueError,)),
    "index table": Parser(_index_table, (ValueError,)),
    "manifest": Parser(decode_manifest, (ValueError,)),
    "key slot": Parser(KeySlot.decode, (ValueError,)),
    # Not an identity file: InputError; a wrong passphrase: WrongKey.
    "identity file": Parser(lambda d: decode_identity(d, "pw"), (InputError, WrongKey)),
    "recipient": Parser(lambda d: decode_recipient(_text(d)), (ValueError,)),
    "store URL": Parser(lambda d: parse_store_url(_text(d)), (UsageError,)),
    "config": Parser(lambda d: Config.decode(d, "fuzz://store"), (ImagekitError,)),
    "plan": Parser(lambda d: load_text(_text(d), "plan.yaml", ROOT), (ImagekitError,)),
}


def check(name: str, data: bytes) -> object | None:
    """The parsed value, or None when the parser refused ``data`` the documented way."""
    parser = PARSERS[name]
    try:
        return parser.parse(data)
    except parser.refuses_with:
        return None


__all__ = ["PARSERS", "Parser", "check"]
