"""Semantic-version rules (pure): the next version for a name, and a sort key Postgres can index.

The `semver` package is the authority on parsing and precedence; this module only decides which
version a registration gets. OpsML 2.x picked "latest" with string ordering and repeated 1.100.0
after 100 minor versions; here every comparison is semver precedence.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

import semver

from registry_core.domain.errors import InvalidVersion, VersionConflict

FIRST_VERSION = "1.0.0"


class VersionType(StrEnum):
    MAJOR = "major"
    MINOR = "minor"
    PATCH = "patch"


def parse(version: str) -> semver.Version:
    try:
        return semver.Version.parse(version)
    except (ValueError, TypeError) as exc:
        raise InvalidVersion(
            f"{version!r} is not a semantic version (expected MAJOR.MINOR.PATCH, e.g. '1.2.0')"
        ) from exc


def latest(versions: Iterable[str]) -> semver.Version | None:
    """The highest version by semver precedence (None for an empty history)."""
    best: semver.Version | None = None
    for v in versions:
        parsed = semver.Version.parse(v)
        if best is None or parsed > best:
            best = parsed
    return best


def next_version(
    existing: Iterable[str],
    version_type: VersionType = VersionType.MINOR,
    explicit: str | None = None,
) -> str:
    """The version a new registration gets, given the versions already taken for its name.

    An explicit version is taken as given when it is free; otherwise the highest existing
    version is bumped by `version_type`; the first registration of a name is 1.0.0.
    """
    taken = list(existing)
    if explicit is not None:
        wanted = str(parse(explicit))
        if wanted in taken:
            raise VersionConflict(
                f"version {wanted} is already registered; omit `version` to get the next free one"
            )
        return wanted
    top = latest(taken)
    if top is None:
        return FIRST_VERSION
    base = top.finalize_version() if top.prerelease else top
    if top.prerelease and version_type is not VersionType.MAJOR:
        # A line that only has pre-releases (1.1.0-rc.1) is finalised by the next release bump.
        candidate = base
        if str(candidate) not in taken:
            return str(candidate)
    match version_type:
        case VersionType.MAJOR:
            return str(base.bump_major())
        case VersionType.MINOR:
            return str(base.bump_minor())
        case VersionType.PATCH:
            return str(base.bump_patch())
    raise InvalidVersion(f"unknown version_type {version_type!r}")  # pragma: no cover


_SEP = "\x01"  # sorts below every character allowed in a pre-release identifier
RELEASE_KEY = "~"  # sorts above every encoded pre-release ("0..." and "1...")


def pre_release_key(prerelease: str | None) -> str:
    """Encode a pre-release so that byte order (COLLATE "C") equals semver precedence.

    A release sorts above all of its pre-releases; numeric identifiers compare numerically
    (length-prefixed digits) and below alphanumeric ones; a shorter identifier list sorts first
    when all preceding identifiers are equal.
    """
    if not prerelease:
        return RELEASE_KEY
    parts = []
    for ident in prerelease.split("."):
        if ident.isdigit():
            digits = ident.lstrip("0") or "0"
            parts.append(f"0{len(digits):03d}{digits}")
        else:
            parts.append(f"1{ident}")
    return _SEP.join(parts)


def sort_parts(version: str) -> tuple[int, int, int, str]:
    """(major, minor, patch, pre_key): the columns the cards table orders and indexes by."""
    v = parse(version)
    return v.major, v.minor, v.patch, pre_release_key(v.prerelease)
