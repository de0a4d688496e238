"""Name rules for spaces and card names (pure).

Names become storage paths, Kafka keys and URL segments, so they are kept to a small, safe
alphabet: no case folding surprises, no separators, no traversal.
"""

from __future__ import annotations

import re

from registry_core.domain.errors import InvalidName

MAX_NAME_LENGTH = 64
_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def validate_name(value: object, *, field: str = "name") -> str:
    """Return `value` if it is a valid space/name, else raise InvalidName saying how to fix it."""
    if not isinstance(value, str):
        raise InvalidName(f"{field} must be a string, got {type(value).__name__}")
    if _NAME_RE.fullmatch(value):
        return value
    shown = value if len(value) <= 80 else value[:77] + "..."
    hint = ""
    if value and value.lower() != value and _NAME_RE.fullmatch(value.lower()):
        hint = f" (did you mean {value.lower()!r}?)"
    elif "_" in value and _NAME_RE.fullmatch(value.replace("_", "-")):
        hint = f" (did you mean {value.replace('_', '-')!r}?)"
    raise InvalidName(
        f"{field} {shown!r} is invalid: use 1-{MAX_NAME_LENGTH} lowercase letters, digits and '-',"
        f" starting and ending with a letter or digit{hint}"
    )
