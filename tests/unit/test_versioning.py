"""Semver rules (pure), table-driven."""

from __future__ import annotations

import random

import pytest
import semver

from registry_core.domain.errors import InvalidVersion, VersionConflict
from registry_core.domain.versioning import VersionType, next_version, pre_release_key, sort_parts


@pytest.mark.parametrize(
    ("existing", "version_type", "expected"),
    [
        ([], VersionType.MINOR, "1.0.0"),
        ([], VersionType.MAJOR, "1.0.0"),
        ([], VersionType.PATCH, "1.0.0"),
        (["1.0.0"], VersionType.MINOR, "1.1.0"),
        (["1.0.0"], VersionType.MAJOR, "2.0.0"),
        (["1.0.0"], VersionType.PATCH, "1.0.1"),
        (["1.0.0", "1.1.0", "1.2.0"], VersionType.MINOR, "1.3.0"),
        (["1.2.3", "2.0.0", "1.9.9"], VersionType.PATCH, "2.0.1"),
        # string order would pick 1.9.0 as "latest" here; precedence picks 1.100.0
        ([f"1.{i}.0" for i in range(101)], VersionType.MINOR, "1.101.0"),
        (["1.10.0", "1.9.0"], VersionType.MINOR, "1.11.0"),
        # a line that only has a pre-release is finalised by the next release bump
        (["1.0.0", "1.1.0-rc.1"], VersionType.MINOR, "1.1.0"),
        (["1.0.0", "1.1.0-rc.1"], VersionType.MAJOR, "2.0.0"),
    ],
)
def test_next_version(existing: list[str], version_type: VersionType, expected: str) -> None:
    assert next_version(existing, version_type) == expected


def test_explicit_version_taken_when_free_and_refused_when_taken() -> None:
    assert next_version(["1.0.0"], VersionType.MINOR, explicit="3.2.1") == "3.2.1"
    with pytest.raises(VersionConflict, match="already registered"):
        next_version(["1.0.0", "3.2.1"], VersionType.MINOR, explicit="3.2.1")


@pytest.mark.parametrize("bad", ["1", "1.2", "v1.0.0", "1.0.0.0", "", "01.0.0"])
def test_invalid_explicit_version_is_a_clear_error(bad: str) -> None:
    with pytest.raises(InvalidVersion, match="not a semantic version"):
        next_version([], VersionType.MINOR, explicit=bad)


def test_many_registrations_never_repeat_a_version() -> None:
    taken: list[str] = []
    for _ in range(250):
        taken.append(next_version(taken, VersionType.MINOR))
    assert len(set(taken)) == 250
    assert taken[-1] == "1.249.0"


VERSIONS = [
    "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
    "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0-rc.1", "1.1.0", "1.2.0",
    "1.10.0", "1.100.0", "2.0.0-0", "2.0.0-1", "2.0.0-9", "2.0.0-10", "2.0.0-a-b", "2.0.0-a",
    "2.0.0-a.1", "2.0.0", "10.0.0",
]  # fmt: skip


def test_sort_key_order_equals_semver_precedence() -> None:
    shuffled = VERSIONS[:]
    random.Random(7).shuffle(shuffled)
    by_key = sorted(shuffled, key=sort_parts)
    by_semver = sorted(shuffled, key=semver.Version.parse)
    assert by_key == by_semver
    # and the pre-release key alone behaves as byte strings ("C" collation in Postgres)
    assert pre_release_key(None) > pre_release_key("rc.1") > pre_release_key("beta.11")
    assert pre_release_key("beta.11").encode() > pre_release_key("beta.2").encode()
