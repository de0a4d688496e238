"""A card's type-specific attributes, validated by its card class (pure), with a memo.

Most registrations carry the same small attributes (a metadata-only card: its class's
defaults), and building the card to validate them costs more than the rest of the decision. So
successes are memoised by (card class, attributes as JSON); the result is kept as JSON and
loaded anew for every caller, so no two records share a mutable value. Bad input is validated,
and refused, every time.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from registry_core.domain.cards import Card, plain_json
from registry_core.domain.commands import AnyCommand
from registry_core.domain.errors import InvalidCommand, summarize_validation

_CACHE: dict[tuple[type[Card], bytes], bytes] = {}
_CACHE_MAX = 4096
_KEY_MAX = 1024  # bytes of JSON; larger attributes are validated every time


# Only plain JSON values (what a decoded command holds) take part: a UUID object or an enum
# could serialise like a string and validate differently, so it never shares an entry with one.
def _key(cls: type[Card], attributes: dict[str, Any]) -> tuple[type[Card], bytes] | None:
    try:
        raw = orjson.dumps(attributes)
    except TypeError:  # orjson.JSONEncodeError: big ints, surrogates, ...
        return None
    if len(raw) > _KEY_MAX or not plain_json(attributes):
        return None
    return cls, raw


def validated(cls: type[Card], command: AnyCommand, attributes: dict[str, Any]) -> dict[str, Any]:
    """`validate`, memoised."""
    # space and name do not take part: the command validated them with the card's own rule,
    # so they can neither fail here nor change the attributes
    key = _key(cls, attributes)
    if key is not None:
        hit = _CACHE.get(key)
        if hit is not None:
            return orjson.loads(hit)  # type: ignore[no-any-return]
    result = validate(cls, command, attributes)
    if key is not None:
        try:
            value = orjson.dumps(result)
        except TypeError:
            return result
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = value
    return result


def validate(cls: type[Card], command: AnyCommand, attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes as the card class keeps them; InvalidCommand says what is wrong."""
    try:
        # The card class is the schema of the type-specific attributes.
        card = cls(space=command.space, name=command.name, **attributes)
    except (ValidationError, TypeError) as exc:
        raise InvalidCommand(
            f"invalid {cls.card_type} attributes: {summarize_validation(exc)}"
        ) from exc
    return card.attributes()
