"""Reading a plan file: YAML → ``Plan``, with every problem pointed at ``file:line``.

PyYAML's composer keeps each node's position; the loader walks the node tree once, building the
plain data and a map from each key path (``("stores", "replicas", 0, "url")``) to the line where
it is written. Pydantic's error locations and ``check_plan``'s paths are key paths too, so each
problem is reported at the deepest line the map knows for it. All problems are collected and
reported together (a plan is fixed in one edit, not one error per run).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from imagekit.errors import InputError, PlanInvalid
from imagekit.plans.model import Plan, Problem, check_plan

Key = str | int
KeyPath = tuple[Key, ...]

#: Keys that would hold a secret: a plan names where secrets are, never what they are.
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "secret_key",
        "secret_access_key",
        "access_key",
        "access_key_id",
        "aws_secret_access_key",
        "api_key",
        "apikey",
        "account_key",
        "client_secret",
        "token",
        "session_token",
        "private_key",
        "sas_token",
        "connection_string",
    }
)
#: Values that are secrets whatever key holds them: private keys, AWS and GCP key ids, Azure
#: connection strings with an account key.
_SECRET_VALUES = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"AccountKey=", re.IGNORECASE),
    re.compile(r"\bGOOG[0-9A-Z]{20,}\b"),
)


@dataclass(frozen=True)
class Located:
    """A problem with its place in the file."""

    file: str
    line: int  # 1-based; 0 when the problem has no better place than the file
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )


@dataclass(frozen=True)
class Loaded:
    plan: Plan | None  # None when there are problems
    problems: tuple[Located, ...]


class _Positions:
    """Key path → line, built while converting the YAML node tree to plain data."""

    def __init__(self) -> None:
        self.lines: dict[KeyPath, int] = {}
        self.duplicates: list[tuple[int, str]] = []
        self.nodes = 0

    def line_of(self, path: Sequence[Any]) -> int:
        """The line of the deepest prefix of ``path`` that the file spells out."""
        keys = tuple(path)
        while keys:
            if keys in self.lines:
                return self.lines[keys]
            keys = keys[:-1]
        return self.lines.get((), 1)


#: A plan is a few dozen keys a few levels deep. The bounds stop YAML's aliases from making
#: a small file large (``&a [*a, *a]`` nested ten deep is 2^10 copies; an alias inside itself
#: never ends) and deep nesting from exhausting the stack, each with a line to fix.
MAX_DEPTH = 64
MAX_NODES = 100_000


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node, message: str):
        super().__init__(message)
        self.line = node.start_mark.line + 1


def _to_data(node: yaml.Node, path: KeyPath, pos: _Positions, loader: yaml.SafeLoader) -> Any:
    pos.nodes += 1
    if len(path) > MAX_DEPTH:
        raise _TooLarge(node, f"nested more than {MAX_DEPTH} levels (or an alias inside itself)")
    if pos.nodes > MAX_NODES:
        raise _TooLarge(node, f"more than {MAX_NODES} values once aliases are expanded")
    pos.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # merge keys (<<) become plain entries
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            key = key if isinstance(key, str | int) else str(key)
            if key in out:
                pos.duplicates.append((key_node.start_mark.line + 1, f"duplicate key {key!r}"))
            pos.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _to_data(value_node, (*path, key), pos, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(item, (*path, i), pos, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _compose(text: str, name: str) -> tuple[Any, _Positions]:
    pos = _Positions()
    try:
        # The reader checks the text when it is made: a control character fails here.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        # One line: PyYAML's message carries the position on a line of its own.
        raise PlanInvalid(f"{name}: not valid YAML: {' '.join(str(exc).split())}") from exc
    try:
        root = loader.get_single_node()
        if root is None:
            return None, pos
        return _to_data(root, (), pos, loader), pos
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = f"{exc.problem or exc}" + (f" ({exc.context})" if exc.context else "")
        raise PlanInvalid(str(Located(name, line, f"not valid YAML: {problem}"))) from exc
    except yaml.YAMLError as exc:
        raise PlanInvalid(f"{name}: not valid YAML: {exc}") from exc
    except _TooLarge as exc:
        raise PlanInvalid(str(Located(name, exc.line, f"not a plan: {exc}"))) from exc
    except RecursionError as exc:  # PyYAML's composer and constructor recurse per level
        raise PlanInvalid(f"{name}: not a plan: nested too deep") from exc
    finally:
        loader.dispose()


def find_secrets(data: Any, path: KeyPath = ()) -> Iterator[Problem]:
    """Inline secrets anywhere in the plain data: secret-named keys, secret-shaped values."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            here = (*path, key)
            # Under ``env`` the keys name credential fields and the values are variable names.
            named = path[-1:] == ("env",)
            if isinstance(key, str) and key.lower() in SECRET_KEYS and not named:
                yield Problem(
                    here,
                    f"{_dotted(here)}: secrets are never written in a plan; reference them (an "
                    "environment variable name under credentials.env or passphrase_env, or a "
                    "credentials file)",
                )
            else:
                yield from find_secrets(value, here)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from find_secrets(item, (*path, i))
    elif isinstance(data, str) and any(p.search(data) for p in _SECRET_VALUES):
        yield Problem(
            path,
            f"{_dotted(path)}: this value looks like a secret (a key or credential); reference it",
        )


def _dotted(path: Sequence[Key]) -> str:
    return ".".join(str(k) for k in path)


def _pydantic_problems(exc: ValidationError) -> Iterator[Problem]:
    for error in exc.errors(include_url=False):
        # Union members and validators add their type to the location (``str``,
        # ``function-after[...]``); they are not keys of the file.
        path = tuple(k for k in error["loc"] if not (isinstance(k, str) and _is_type_tag(k)))
        # The key itself is the last of pydantic's location, even when it looks like a type
        # tag to the filter above (a YAML key written as a list, ``? [a, b]``, arrives as the
        # text "['a', 'b']").
        key = error["loc"][-1] if error["loc"] else ""
        if error["type"] == "extra_forbidden":
            where, message = path[:-1], f"unknown key {key!r}"
        elif error["type"] == "missing":
            where, message = path[:-1], f"missing required key {key!r}"
        else:
            where, message = path, str(error["msg"]).removeprefix("Value error, ")
        prefix = _dotted(where)
        yield Problem(path, f"{prefix}: {message}" if prefix else message)


def _is_type_tag(key: str) -> bool:
    return "[" in key or key in _TYPES


_TYPES = frozenset({"str", "int", "float", "bool", "list", "dict", "function-after"})


def _validate(data: dict[str, Any]) -> tuple[Plan | None, list[Problem]]:
    """The plan and the problems pydantic found; when only unknown keys stand in the way, the
    plan without them (so whole-plan checks still run and report their problems too)."""
    try:
        return Plan.model_validate(data), []
    except ValidationError as exc:
        found = list(_pydantic_problems(exc))
        unknown = [tuple(e["loc"]) for e in exc.errors() if e["type"] == "extra_forbidden"]
    # Model-level checks of a section do not run while it has field errors: drop the unknown
    # keys and validate again, keeping only the problems that are new.
    pruned = copy.deepcopy(data)
    for loc in unknown:
        _drop(pruned, loc)
    try:
        plan: Plan | None = Plan.model_validate(pruned)
    except ValidationError as exc:
        plan = None
        seen = {p.message for p in found}
        found += [p for p in _pydantic_problems(exc) if p.message not in seen]
    return plan, found


def _drop(data: Any, loc: Sequence[Any]) -> None:
    if not loc:
        return
    # The last of an unknown key's location is the key itself, whatever it looks like.
    keys = [k for k in loc[:-1] if not (isinstance(k, str) and _is_type_tag(k))] + [loc[-1]]
    for key in keys[:-1]:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(data, dict):
        data.pop(keys[-1], None)


def load_text(text: str, name: str, base_dir: Path | None = None) -> Loaded:
    """Parse and check a plan's text; ``name`` is how problems name the file."""
    data, pos = _compose(text, name)
    problems: list[tuple[int, str]] = list(pos.duplicates)
    if not isinstance(data, dict):
        problems.append((1, "a plan is a mapping (version, name, sources, stores, objectives, …)"))
        return _loaded(name, None, problems)
    problems += [(pos.line_of(p.path), p.message) for p in find_secrets(data)]
    plan, found = _validate(data)
    problems += [(pos.line_of(p.path), p.message) for p in found]
    if plan is not None:
        problems += [(pos.line_of(p.path), p.message) for p in check_plan(plan, base_dir)]
    return _loaded(name, plan, problems)


def _loaded(name: str, plan: Plan | None, problems: list[tuple[int, str]]) -> Loaded:
    located = tuple(Located(name, line, msg) for line, msg in sorted(set(problems)))
    return Loaded(plan if not located else None, located)


def read_plan(path: Path) -> Loaded:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read plan ({exc})") from exc
    return load_text(text, str(path), path.parent)


def load_plan(path: Path) -> Plan:
    """The plan at ``path``, or ``PlanInvalid`` listing every problem (one per line)."""
    loaded = read_plan(path)
    if loaded.plan is None:
        count = len(loaded.problems)
        lines = "\n".join(str(p) for p in loaded.problems)
        raise PlanInvalid(f"{path}: {count} problem{'s' if count > 1 else ''}\n{lines}")
    return loaded.plan.resolve_paths(path.resolve().parent)


__all__ = [
    "SECRET_KEYS",
    "Loaded",
    "Located",
    "find_secrets",
    "load_plan",
    "load_text",
    "read_plan",
]
