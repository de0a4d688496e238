"""Artifact manifests and path rules (pure).

An artifact path is relative to its card's directory and becomes part of a storage key, so it
is held to a strict shape: POSIX segments of safe characters, no `..`, no absolute paths, no
empty or dot segments, no backslashes or control characters.
"""

from __future__ import annotations

import re

from pydantic import ConfigDict, Field, field_validator

from registry_core.domain.bounds import Int64, Storable
from registry_core.domain.errors import InvalidArtifact

MAX_PATH_LENGTH = 512
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._ -]{0,254}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
RESERVED = {"card.json"}


def validate_artifact_path(path: object) -> str:
    if not isinstance(path, str) or not path:
        raise InvalidArtifact("an artifact path must be a non-empty string")
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidArtifact(f"artifact path is over {MAX_PATH_LENGTH} characters")
    if path.startswith("/") or "\\" in path or re.match(r"^[A-Za-z]:", path):
        raise InvalidArtifact(f"artifact path {path[:80]!r} must be relative, with '/' separators")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidArtifact(f"artifact path {path[:80]!r} has an empty, '.' or '..' segment")
        if not _SEGMENT_RE.fullmatch(segment) or segment.endswith(" "):
            raise InvalidArtifact(
                f"artifact path {path[:80]!r}: use letters, digits, '_', '-', '.' and spaces;"
                " a segment starts with a letter, digit or '_'"
            )
    if path in RESERVED:
        raise InvalidArtifact(f"{path!r} is reserved for the registry's own metadata")
    return path


class ArtifactRef(Storable):
    """One file of a card: where it sits under the card's directory, its sha256 and size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    sha256: str
    size: Int64 = Field(ge=0)  # artifacts.size is a bigint
    media_type: str | None = Field(default=None, max_length=128)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return validate_artifact_path(value)

    @field_validator("sha256")
    @classmethod
    def _sha(cls, value: str) -> str:
        if not SHA256_RE.fullmatch(value):
            raise ValueError("sha256 must be 64 lowercase hex characters")
        return value


def card_prefix(registry: str, space: str, name: str, version: str) -> str:
    """The directory of one card version in artifact storage."""
    return f"{registry}/{space}/{name}/v{version}"


def staging_prefix(command_id: object) -> str:
    return f"staging/{command_id}"
