"""Summarise py-spy collapsed stacks (`--format raw`): `python -m bench.profile_report FILE...`
prints, per file, the share of samples by leaf function (self) and by selected frames
(inclusive), to see where a process spends its CPU."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

from bench.config import REPO

FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def short(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    f = m.group("file")
    for marker in ("site-packages/", "python3.11/", f"{REPO}/"):
        if marker in f:
            f = f.split(marker, 1)[1]
    return f"{m.group('func')} ({f})"


def report(path: Path, top: int = 20) -> str:
    stacks = load(path)
    total = sum(c for _, c in stacks) or 1
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, c in stacks:
        self_c[short(frames[-1])] += c
        for f in {short(x) for x in frames}:
            incl[f] += c
    out = [f"== {path.name}: {total} samples"]
    out.append("-- self (leaf) --")
    out += [f"{100 * c / total:5.1f}%  {f}" for f, c in self_c.most_common(top)]
    out.append("-- inclusive --")
    out += [f"{100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(top * 2)]
    return "\n".join(out)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(report(Path(arg)))
