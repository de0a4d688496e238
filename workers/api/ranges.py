"""HTTP byte ranges and sizes as the client sent them, read without trusting their length.

A header's digits can be any length: `int()` refuses more than 4300 of them and Postgres or a
store cannot take a position past 2**63, so anything longer than 18 digits counts as "past any
file" instead of failing the request with a 500.
"""

from __future__ import annotations

import re

from registry_core.domain.errors import clip

RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
PAST_ANY_FILE = 2**63  # a Range position of more than 18 digits: beyond any file


def bounded_int(digits: str) -> int:
    """ASCII digits as an int; more than 18 significant digits count as PAST_ANY_FILE."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else PAST_ANY_FILE


def parse_range(header: str, size: int) -> tuple[int, int]:
    """(first, last) byte of the one range `bytes=a-b`, `bytes=a-` or `bytes=-n` of a file of
    `size` bytes (an end past the file is its last byte, a suffix longer than the file is all
    of it). ValueError, with the reason, for anything else: answered 416."""
    m = RANGE_RE.fullmatch(header.strip())
    if m is None or not (m.group(1) or m.group(2)):
        raise ValueError(
            f"bad Range {clip(header, 60)!r}: send one range, bytes=<first>-<last>,"
            " bytes=<first>- or bytes=-<length>"
        )
    if m.group(1):
        start = bounded_int(m.group(1))
        last = bounded_int(m.group(2)) if m.group(2) else PAST_ANY_FILE
        if last < start:
            raise ValueError(f"bad Range {clip(header, 60)!r}: the last byte is before the first")
        end = min(last, size - 1)
    else:
        length = bounded_int(m.group(2))
        if length == 0:
            raise ValueError("bad Range: bytes=-0 asks for no bytes")
        start, end = max(0, size - length), size - 1
    if start >= size:
        raise ValueError(f"Range starts past the end of the file ({size} bytes)")
    return start, end
