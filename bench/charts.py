"""PNG charts from a results file. matplotlib lives in a tools venv (bench/.work/venvs/tools) so
the project's venv stays as it is; if it cannot be installed, charts are skipped with a message."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.config import BENCH, RESULTS
from bench.util import Unavailable, ensure_venv, log

REQUIREMENTS = ("matplotlib>=3.7",)


def render(results_path: Path) -> None:
    try:
        py = ensure_venv("tools", list(REQUIREMENTS))
    except Unavailable as exc:
        log(f"charts skipped: matplotlib unavailable ({exc})")
        return
    out = RESULTS / "charts"
    r = subprocess.run(
        [str(py), str(BENCH / "plot.py"), str(results_path), str(out)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        log(f"charts failed: {r.stderr[-600:]}")
    else:
        log(f"charts: {out.relative_to(BENCH.parent)}/")
