"""Semver rules (pure), table-driven."""

from __future__ import annotations

import random

import pytest
import semver

from registry_core.domain.errors import InvalidVersion, RegistryError, VersionConflict
from registry_core.domain.versioning import (
    VersionType,
    next_version,
    parse_constraint,
    pre_release_key,
    sort_parts,
)
from tests.semver_cases import CASES, Case


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
        (["1.0.0", "1.1.0-rc.1"], VersionType.MAJOR, "1.1.0"),
    ],
)
def test_next_version(existing: list[str], version_type: VersionType, expected: str) -> None:
    assert next_version(existing, version_type) == expected


def test_explicit_version_taken_when_free_and_refused_when_taken() -> None:
    assert next_version(["1.0.0"], VersionType.MINOR, explicit="3.2.1") == "3.2.1"
    with pytest.raises(VersionConflict, match="already registered"):
        next_version(["1.0.0", "3.2.1"], VersionType.MINOR, explicit="3.2.1")


@pytest.mark.parametrize("bad", ["v1.0.0", "1.0.0.0", "", "01.0.0", "1.x", "9999999999.0.0"])
def test_invalid_explicit_version_is_a_clear_error(bad: str) -> None:
    with pytest.raises(InvalidVersion, match=r"not a semantic version|at most"):
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


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_semver_rules_table(case: Case) -> None:
    def run() -> str:
        return next_version(
            case.history, VersionType(case.version_type), case.version, **case.kwargs
        )

    if case.error:
        with pytest.raises(RegistryError) as info:
            run()
        assert info.value.code == case.error
    else:
        assert run() == case.expected


ALL = ["0.9.0", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0-rc.1", "1.1.0", "1.2.0", "1.2.5", "1.20.0",
       "1.3.0", "2.0.0-rc.1", "2.0.0", "10.0.0", "10.1.0"]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1.2.0", ["1.2.0"]),
        ("1.*", ["1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0-rc.1", "1.1.0", "1.2.0", "1.2.5", "1.20.0",
                 "1.3.0"]),
        ("1", ["1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0-rc.1", "1.1.0", "1.2.0", "1.2.5", "1.20.0",
               "1.3.0"]),
        ("1.2.*", ["1.2.0", "1.2.5"]),  # never 1.20.0
        ("1.2", ["1.2.0", "1.2.5"]),
        ("10.*", ["10.0.0", "10.1.0"]),
        ("^1.2.0", ["1.2.0", "1.2.5", "1.20.0", "1.3.0"]),
        ("~1.2.0", ["1.2.0", "1.2.5"]),
        ("^0.9.0", ["0.9.0"]),
        (">=1.2,<2", ["1.2.0", "1.2.5", "1.20.0", "1.3.0"]),
        (">1.0.0 <=1.1.0", ["1.0.1", "1.1.0-rc.1", "1.1.0"]),
        ("<1.0.0", ["0.9.0", "1.0.0-rc.1"]),
        ("*", ALL),
    ],
)  # fmt: skip
def test_version_constraints(spec: str, expected: list[str]) -> None:
    c = parse_constraint(spec)
    assert [v for v in ALL if c.matches(v)] == expected


@pytest.mark.parametrize("bad", ["", "^", "1.2.3.4", ">>1", "abc", "^x", "1.*.3", "~1.2.3.4"])
def test_bad_constraints_are_clear_errors(bad: str) -> None:
    with pytest.raises(InvalidVersion, match=r"version constraint|not a"):
        parse_constraint(bad)
