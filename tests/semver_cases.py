"""The semver rules as a table, shared by the pure unit tests and the whole-stack tests.

Each case: the versions already registered (in order), the request, and the expected version
or the expected error code.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    id: str
    history: list[str]
    version_type: str = "minor"
    version: str | None = None
    expected: str | None = None
    error: str | None = None  # error code
    kwargs: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("first-minor", [], expected="1.0.0"),
    Case("first-major", [], "major", expected="1.0.0"),
    Case("first-patch", [], "patch", expected="1.0.0"),
    Case("first-pre", [], "pre", expected="1.0.0-rc.1"),
    Case("first-build", [], "build", expected="1.0.0+build.1"),
    Case("first-pre-build", [], "pre_build", expected="1.0.0-rc.1+build.1"),
    Case("minor", ["1.0.0"], expected="1.1.0"),
    Case("major", ["1.0.0", "1.1.0"], "major", expected="2.0.0"),
    Case("patch", ["1.0.0", "1.1.0"], "patch", expected="1.1.1"),
    Case("precedence-not-string-order", ["1.9.0", "1.10.0"], expected="1.11.0"),
    Case("past-100", [f"1.{i}.0" for i in range(101)], expected="1.101.0"),
    Case("pre-tag", [], "pre", kwargs={"pre_tag": "alpha"}, expected="1.0.0-alpha.1"),
    Case("build-tag", ["1.0.0"], "build", kwargs={"build_tag": "ci"}, expected="1.0.0+ci.1"),
    Case("pre-bump", ["1.0.0-rc.1"], "pre", expected="1.0.0-rc.2"),
    Case("pre-line-finalised-by-minor", ["1.0.0-rc.1", "1.0.0-rc.2"], expected="1.0.0"),
    Case("pre-line-finalised-by-major", ["1.0.0", "1.1.0-rc.1"], "major", expected="1.1.0"),
    Case("pre-line-finalised-by-patch", ["1.0.0", "1.0.1-rc.1"], "patch", expected="1.0.1"),
    Case("build-of-newest", ["1.0.0", "1.0.0+build.1"], "build", expected="1.0.0+build.2"),
    Case("pre-build-bump", ["1.0.0-rc.1+build.1"], "pre_build", expected="1.0.0-rc.2+build.1"),
    Case("rc-of-released-is-an-error", ["1.0.0"], "pre", error="invalid_version"),
    Case("rc-of-released-explicit", ["1.0.0"], "minor", "1.0.0-rc.1", error="invalid_version"),
    Case("rc-for-next-version", ["1.0.0"], "pre", "1.1.0", expected="1.1.0-rc.1"),
    Case("explicit-free", ["1.0.0"], "minor", "3.2.1", expected="3.2.1"),
    Case("explicit-taken", ["1.0.0", "3.2.1"], "minor", "3.2.1", error="version_conflict"),
    Case("partial-major-line-minor", ["1.0.0", "1.1.0", "2.0.0"], "minor", "1", expected="1.2.0"),
    Case("partial-major-line-patch", ["1.0.0", "1.1.0", "2.0.0"], "patch", "1", expected="1.1.1"),
    Case("partial-minor-line-patch", ["1.0.0", "1.1.0", "1.2.0"], "patch", "1.1", expected="1.1.1"),
    Case("partial-new-line", ["1.0.0"], "minor", "3", expected="3.0.0"),
    Case("partial-new-minor-line", ["1.0.0"], "minor", "3.1", expected="3.1.0"),
    Case("partial-major-is-an-error", ["1.0.0"], "major", "1", error="invalid_version"),
    Case("partial-pre", ["2.0.0"], "pre", "2.1", expected="2.1.0-rc.1"),
    Case("invalid-version", [], "minor", "v1.0", error="invalid_version"),
    Case("invalid-pre-tag", [], "pre", kwargs={"pre_tag": "r.c"}, error="invalid_version"),
]
