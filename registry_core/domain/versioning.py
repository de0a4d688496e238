"""Semantic-version rules (pure): the next version for a name, version constraints for queries,
and a sort key Postgres can index.

The `semver` package is the authority on parsing and precedence. The rules follow OpsML's
documented behaviour (version_type major | minor | patch | pre | build | pre_build, partial
versions bump within their line, an explicit version is taken when free, a major/minor/patch bump
of a pre-release line finalises it) and fix its bugs: "latest" is chosen by semver precedence over
every version of the name (OpsML 2.x sorted a truncated, string-ordered list and repeated 1.100.0),
and a release candidate can never be created for a version that is already released (it would
sort below the release and never be "latest").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import semver

from registry_core.domain.errors import InvalidVersion, VersionConflict

FIRST_VERSION = "1.0.0"
MAX_PART = 2**31 - 1  # the cards table stores major/minor/patch as integer
_TAG_RE = re.compile(r"^[0-9A-Za-z-]{1,32}$")
_PARTIAL_RE = re.compile(r"^(0|[1-9]\d{0,9})(?:\.(0|[1-9]\d{0,9}))?$")


class VersionType(StrEnum):
    MAJOR = "major"
    MINOR = "minor"
    PATCH = "patch"
    PRE = "pre"
    BUILD = "build"
    PRE_BUILD = "pre_build"


RELEASE_BUMPS = (VersionType.MAJOR, VersionType.MINOR, VersionType.PATCH)


def parse(version: str) -> semver.Version:
    try:
        v = semver.Version.parse(version)
    except (ValueError, TypeError) as exc:
        raise InvalidVersion(
            f"{version!r} is not a semantic version (expected MAJOR.MINOR.PATCH, e.g. '1.2.0')"
        ) from exc
    if max(v.major, v.minor, v.patch) > MAX_PART:
        raise InvalidVersion(f"{version!r}: version numbers must be at most {MAX_PART}")
    return v


def _build_rank(v: semver.Version) -> tuple[int, ...]:
    """Build metadata does not count for precedence; for "the newest build" use its numbers."""
    return tuple(int(p) for p in re.findall(r"\d+", v.build or ""))


def _newest(versions: Iterable[semver.Version]) -> semver.Version | None:
    best: semver.Version | None = None
    for v in versions:
        if best is None or v > best or (v == best and _build_rank(v) > _build_rank(best)):
            best = v
    return best


def latest(versions: Iterable[str]) -> semver.Version | None:
    """The highest version by semver precedence (None for an empty history)."""
    return _newest(semver.Version.parse(v) for v in versions)


@dataclass(frozen=True)
class _Line:
    """The versions a request is about: all of them, or one major / major.minor line."""

    major: int | None = None
    minor: int | None = None
    patch: int | None = None

    def contains(self, v: semver.Version) -> bool:
        return (
            (self.major is None or v.major == self.major)
            and (self.minor is None or v.minor == self.minor)
            and (self.patch is None or v.patch == self.patch)
        )

    def base(self) -> semver.Version:
        if self.major is None:
            return semver.Version.parse(FIRST_VERSION)
        return semver.Version(self.major, self.minor or 0, self.patch or 0)


def _check_tag(tag: str, what: str) -> str:
    if not _TAG_RE.fullmatch(tag):
        raise InvalidVersion(f"{what} {tag!r} must be 1-32 letters, digits or '-'")
    return tag


def next_version(
    existing: Iterable[str],
    version_type: VersionType = VersionType.MINOR,
    explicit: str | None = None,
    *,
    pre_tag: str = "rc",
    build_tag: str = "build",
    newest: semver.Version | None = None,
) -> str:
    """The version a new registration gets, given every version already taken for its name
    (deleted ones included: a version number is never reused).

    `newest` (the highest of `existing`, if the caller keeps it) makes the common request - bump
    the newest version - independent of how many versions the name has."""
    taken = existing if isinstance(existing, set | frozenset) else set(existing)
    _check_tag(pre_tag, "pre_tag")
    _check_tag(build_tag, "build_tag")

    if explicit is None:
        if not taken:
            return str(_first_in_line(_Line().base(), version_type, pre_tag, build_tag))
        recent = newest if newest is not None else latest(taken)
        assert recent is not None
        return _bump_free(recent, version_type, taken, pre_tag, build_tag)

    line, start = _Line(), None
    parsed = [semver.Version.parse(t) for t in taken]
    explicit = explicit.strip()
    partial = _PARTIAL_RE.fullmatch(explicit)
    if partial:
        major = int(partial.group(1))
        minor = int(partial.group(2)) if partial.group(2) is not None else None
        if version_type is VersionType.MAJOR:
            raise InvalidVersion(
                f"version_type 'major' cannot stay within line {explicit!r}: pass"
                f" version='{major + 1}' to start the next major line, or omit version"
            )
        if minor is None:
            line = _Line(major)
        elif version_type is VersionType.MINOR:
            # "2.1" + minor: bump the minor within line 2, or start at 2.1.0 if it is empty
            line, start = _Line(major), semver.Version(major, minor, 0)
        else:
            line = _Line(major, minor)
    else:
        wanted = parse(explicit)
        if version_type in RELEASE_BUMPS:
            return _take_explicit(wanted, taken, parsed)
        line = _Line(wanted.major, wanted.minor, wanted.patch)

    scope = [v for v in parsed if line.contains(v)]
    if not scope:
        return str(_first_in_line(start or line.base(), version_type, pre_tag, build_tag))
    recent = _newest(scope)
    assert recent is not None
    return _bump_free(recent, version_type, taken, pre_tag, build_tag)


def _bump_free(
    recent: semver.Version,
    version_type: VersionType,
    taken: set[str] | frozenset[str],
    pre_tag: str,
    build_tag: str,
) -> str:
    if version_type in RELEASE_BUMPS and recent.prerelease is None and recent.build is None:
        # The common request (a release bump of a release), as text without building the next
        # Version: the same string str(_bump(...)) gives, when it is free and in range.
        major, minor, patch = recent.major, recent.minor, recent.patch
        if version_type is VersionType.MAJOR:
            major, minor, patch = major + 1, 0, 0
        elif version_type is VersionType.MINOR:
            minor, patch = minor + 1, 0
        else:
            patch += 1
        text = f"{major}.{minor}.{patch}"
        if text not in taken and max(major, minor, patch) <= MAX_PART:
            return text
    candidate = _bump(recent, version_type, taken, pre_tag, build_tag)
    while str(candidate) in taken:  # a safety net: bumps of the newest version are always free
        candidate = _bump(candidate, version_type, taken, pre_tag, build_tag)
    if max(candidate.major, candidate.minor, candidate.patch) > MAX_PART:
        raise InvalidVersion(
            f"a {version_type.value} bump of {recent} would exceed {MAX_PART}, the largest"
            " version number the registry stores"
        )
    return str(candidate)


def _released(final: semver.Version, taken: set[str] | frozenset[str]) -> bool:
    """Is `final` (a release) taken, with or without build metadata?"""
    text = str(final)
    return text in taken or any(t.startswith(text + "+") for t in taken)


def _take_explicit(
    wanted: semver.Version, taken: set[str] | frozenset[str], parsed: list[semver.Version]
) -> str:
    text = str(wanted)
    if text in taken:
        raise VersionConflict(
            f"version {text} is already registered; omit `version` to get the next free one"
        )
    if wanted.prerelease:
        released = wanted.finalize_version()
        if any(v.prerelease is None and v.finalize_version() == released for v in parsed):
            raise InvalidVersion(
                f"{released} is already released, so a pre-release {text} would sort below it;"
                " create pre-releases for a version that is not released yet"
            )
    return text


def _first_in_line(
    base: semver.Version, version_type: VersionType, pre_tag: str, build_tag: str
) -> semver.Version:
    match version_type:
        case VersionType.PRE:
            return base.replace(prerelease=f"{pre_tag}.1")
        case VersionType.BUILD:
            return base.replace(build=f"{build_tag}.1")
        case VersionType.PRE_BUILD:
            return base.replace(prerelease=f"{pre_tag}.1", build=f"{build_tag}.1")
    return base


def _bump(
    recent: semver.Version,
    version_type: VersionType,
    taken: set[str] | frozenset[str],
    pre_tag: str,
    build_tag: str,
) -> semver.Version:
    if version_type in RELEASE_BUMPS:
        if recent.prerelease:
            final = recent.finalize_version()
            if not _released(final, taken):
                return final  # a line of pre-releases is finalised by the next release bump
            recent = final
        release = recent.replace(build=None)
        if version_type is VersionType.MAJOR:
            return release.bump_major()
        if version_type is VersionType.MINOR:
            return release.bump_minor()
        return release.bump_patch()

    if version_type in (VersionType.PRE, VersionType.PRE_BUILD):
        if recent.prerelease is None:
            raise InvalidVersion(
                f"{recent.finalize_version()} is already released, so a release candidate for it"
                " would sort below it; pass version='<next version>' (e.g."
                f" '{recent.bump_minor()}') with version_type='pre'"
            )
        nxt = recent.replace(build=None).bump_prerelease(pre_tag)
        if version_type is VersionType.PRE_BUILD:
            nxt = nxt.replace(build=f"{build_tag}.1")
        return nxt
    # BUILD: a new build of the newest version
    return recent.bump_build(build_tag)


# ---- sorting ---------------------------------------------------------------------------------

_SEP = "\x01"  # sorts below every character allowed in a pre-release identifier
RELEASE_KEY = "~"  # sorts above every encoded pre-release ("0..." and "1...")
BELOW_ALL_KEY = ""  # sorts below every pre-release key: the bottom of a version's range


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


SortKey = tuple[int, int, int, str]


def sort_parts(version: str) -> SortKey:
    """(major, minor, patch, pre_key): the columns the cards table orders and indexes by."""
    v = parse(version)
    return v.major, v.minor, v.patch, pre_release_key(v.prerelease)


# ---- constraints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    op: str  # one of > >= < <=
    key: SortKey


@dataclass(frozen=True)
class Constraint:
    """A parsed version query: an exact version string, or bounds on the sort key."""

    exact: str | None = None
    bounds: tuple[Bound, ...] = ()

    def matches(self, version: str) -> bool:
        if self.exact is not None:
            return version == self.exact
        key = sort_parts(version)
        ops = {
            ">": key.__gt__,
            ">=": key.__ge__,
            "<": key.__lt__,
            "<=": key.__le__,
        }
        return all(ops[b.op](b.key) for b in self.bounds)


_COMPARATOR_RE = re.compile(r"^(>=|<=|>|<|=|==)?\s*v?([0-9][0-9A-Za-z.+-]*)$")
_WILD_RE = re.compile(r"^(\d+)(?:\.(\d+|\*|x))?(?:\.(\*|x))?$|^\*$")


def _floor(major: int, minor: int = 0, patch: int = 0) -> SortKey:
    """Below every version (pre-releases included) of major.minor.patch."""
    return major, minor, patch, BELOW_ALL_KEY


def _partial_numbers(text: str) -> list[int]:
    nums = [int(p) for p in text.split(".")]
    if len(nums) > 3 or max(nums) > MAX_PART:
        raise InvalidVersion(f"{text!r} is not a version")
    return nums


def parse_constraint(spec: str) -> Constraint:
    """Parse a version query: "1.2.3" (exact), "1", "1.2", "1.*", "1.2.*" (a line, which never
    matches 10.x or 1.20.x), "^1.2.0", "~1.2.0", or comparators joined by "," or spaces
    (">=1.2,<2")."""
    text = spec.strip()
    if not text or len(text) > 200:
        raise InvalidVersion("empty or overlong version constraint")
    if text in ("*", "x"):
        return Constraint(bounds=())
    try:
        if text[0] in "^~":
            return Constraint(bounds=_caret_tilde(text[0], text[1:].strip()))
        wild = _WILD_RE.fullmatch(text)
        if wild and (len(text.split(".")) < 3 or "*" in text or "x" in text):
            nums = [int(p) for p in text.replace("x", "*").split(".") if p != "*"]
            if max(nums) > MAX_PART:
                raise InvalidVersion(f"{text!r}: version numbers must be at most {MAX_PART}")
            if len(nums) == 1:
                return Constraint(
                    bounds=(Bound(">=", _floor(nums[0])), Bound("<", _floor(nums[0] + 1)))
                )
            return Constraint(
                bounds=(
                    Bound(">=", _floor(nums[0], nums[1])),
                    Bound("<", _floor(nums[0], nums[1] + 1)),
                )
            )
        parts = [p for p in re.split(r"[,\s]+", text) if p]
        if len(parts) == 1 and parts[0][0].isdigit():
            return Constraint(exact=str(parse(parts[0])))
        bounds: list[Bound] = []
        for part in parts:
            m = _COMPARATOR_RE.fullmatch(part)
            if not m:
                raise InvalidVersion(f"cannot read {part!r}")
            op, ver = m.group(1) or "=", m.group(2)
            bounds.extend(_comparator(op, ver))
        return Constraint(bounds=tuple(bounds))
    except InvalidVersion as exc:
        raise InvalidVersion(
            f"invalid version constraint {spec!r} ({exc}); use e.g. '1.2.3', '1.*', '1.2.*',"
            " '^1.2.0', '~1.2.0' or '>=1.2,<2'"
        ) from None
    except ValueError:
        raise InvalidVersion(
            f"invalid version constraint {spec!r}; use e.g. '1.2.3', '1.*', '1.2.*',"
            " '^1.2.0', '~1.2.0' or '>=1.2,<2'"
        ) from None


def _comparator(op: str, ver: str) -> list[Bound]:
    if re.fullmatch(r"\d+(\.\d+)?", ver):  # partial: ">=1.2" means ">=1.2.0", "<2" means "<2.0.0"
        nums = [*_partial_numbers(ver), 0, 0]
        full: SortKey = (nums[0], nums[1], nums[2], RELEASE_KEY)
        if op in ("=", "=="):
            upper = [nums[0] + 1, 0] if ver.count(".") == 0 else [nums[0], nums[1] + 1]
            return [Bound(">=", _floor(nums[0], nums[1])), Bound("<", _floor(*upper))]
        if op == "<":
            return [Bound("<", _floor(nums[0], nums[1], nums[2]))]
        if op == ">=":
            return [Bound(">=", full)]
        return [Bound(op, full)]
    key = sort_parts(ver)
    if op in ("=", "=="):
        return [Bound(">=", key), Bound("<=", key)]
    return [Bound(op, key)]


def _caret_tilde(symbol: str, ver: str) -> tuple[Bound, ...]:
    low: SortKey
    if re.fullmatch(r"\d+(\.\d+){0,2}", ver):
        nums = _partial_numbers(ver)
        padded = [*nums, 0, 0]
        low = (padded[0], padded[1], padded[2], RELEASE_KEY)
    else:
        v = parse(ver)
        nums, low = [v.major, v.minor, v.patch], sort_parts(ver)
    given = len(nums)
    major, minor, patch = [*nums, 0, 0][:3]
    if symbol == "~":
        upper = _floor(major + 1) if given == 1 else _floor(major, minor + 1)
    elif major > 0 or given == 1:
        upper = _floor(major + 1)
    elif minor > 0 or given == 2:
        upper = _floor(0, minor + 1)
    else:
        upper = _floor(0, 0, patch + 1)
    return (Bound(">=", low), Bound("<", upper))
