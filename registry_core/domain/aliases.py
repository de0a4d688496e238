"""Aliases (pure): the alias name rule, and the decisions on setting and removing one.

An alias (`prod`, `champion`) names one version of a registry/space/name; moving it is a new
`AliasSet` fact, so where it pointed at any moment stays in the log. Alias names start with a
letter, so an alias can never be read as a version (`1.2.0`) or a version line (`1`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from registry_core.domain.cards import CardRecord
from registry_core.domain.errors import AliasInUse, AliasNotFound, InvalidName

MAX_ALIAS_LENGTH = 64
_ALIAS_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,62}[a-z0-9])?$")
DEFAULT_PROTECTED = ("prod", "production")


def validate_alias(value: object) -> str:
    """`value` if it is a valid alias name, else InvalidName saying how to fix it."""
    if not isinstance(value, str):
        raise InvalidName(f"alias must be a string, got {type(value).__name__}")
    if _ALIAS_RE.fullmatch(value):
        return value
    shown = value if len(value) <= 80 else value[:77] + "..."
    hint = ""
    fixed = value.lower().replace("_", "-")
    if fixed != value and _ALIAS_RE.fullmatch(fixed):
        hint = f" (did you mean {fixed!r}?)"
    raise InvalidName(
        f"alias {shown!r} is invalid: use 1-{MAX_ALIAS_LENGTH} lowercase letters, digits and"
        f" '-', starting with a letter and ending with a letter or digit{hint}"
    )


def parse_protected(value: str | Iterable[str]) -> frozenset[str]:
    """The protected aliases from a setting ("prod,production"); each must be a valid alias."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return frozenset(validate_alias(v.strip()) for v in items if v.strip())


def parse_alias_grants(value: str) -> frozenset[tuple[str, str]]:
    """Explicit grants from a setting: "alias:token_id" pairs, comma-separated."""
    out = set()
    for item in value.split(","):
        if not item.strip():
            continue
        alias, sep, token_id = item.strip().partition(":")
        if not sep or not re.fullmatch(r"[0-9a-f]{12}", token_id.strip()):
            raise InvalidName(
                f"alias grant {item.strip()!r} is invalid: write alias:token_id, the token id"
                " being the 12 hex digits after opsml_ in the token"
            )
        out.add((validate_alias(alias.strip()), token_id.strip()))
    return frozenset(out)


def set_alias(
    alias: str, target: CardRecord, aliases: Mapping[str, tuple[UUID, str]], actor: str | None
) -> dict[str, Any]:
    """The fields of the AliasSet fact: `target` is the (existing, not deleted) version, and
    `previous` where the alias pointed before (None: it is new)."""
    previous = aliases.get(alias)
    return {
        "registry": target.registry, "space": target.space, "name": target.name,
        "alias": alias, "uid": target.uid, "version": target.version,
        "previous_uid": previous[0] if previous else None,
        "previous_version": previous[1] if previous else None, "actor": actor,
    }  # fmt: skip


def remove_alias(
    key: str, alias: str, aliases: Mapping[str, tuple[UUID, str]], actor: str | None
) -> dict[str, Any]:
    """The fields of the AliasRemoved fact (registry/space/name come from the command)."""
    current = aliases.get(alias)
    if current is None:
        names = ", ".join(sorted(aliases)) or "none"
        raise AliasNotFound(f"{key} has no alias {alias!r} (its aliases: {names})")
    return {"alias": alias, "uid": current[0], "version": current[1], "actor": actor}


def check_deletable(target: CardRecord, aliases: Mapping[str, tuple[UUID, str]]) -> None:
    """A version an alias points at is not deleted: whoever deploys `prod` would lose it."""
    pointing = sorted(a for a, (uid, _) in aliases.items() if uid == target.uid)
    if pointing:
        names = ", ".join(repr(a) for a in pointing)
        raise AliasInUse(
            f"{target.key} version {target.version} cannot be deleted: alias"
            f"{'es' if len(pointing) > 1 else ''} {names} point{'' if len(pointing) > 1 else 's'}"
            f" at it; move the alias to another version or remove it first"
            f" (opsml alias set/rm)"
        )
