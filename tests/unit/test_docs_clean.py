"""The docs hold no stray log lines (docs/registry.md once carried two, pasted with a plan)."""

from __future__ import annotations

import re
from pathlib import Path

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\S* +\[(debug|info|warning|error)")


def test_no_log_lines_in_the_docs() -> None:
    root = Path(__file__).resolve().parents[2]
    found = [
        f"{path.relative_to(root)}:{number}"
        for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if LOG_LINE.match(line)
    ]
    assert found == []
