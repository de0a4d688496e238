"""Pictures drawn on the server as SVG: a run metric's points per step, several runs on one chart,
and a card's lineage as a three-column graph (upstream, the card, downstream).

Server-side SVG needs no chart library in the browser, renders before any script runs, is part of
the page a screen reader and a test read (each point is a `<circle>` with a `<title>`), and costs
well under a millisecond for the chart sizes a card page shows (docs/ui.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Any

# Okabe-Ito: colours told apart with the common forms of colour blindness.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000")
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 560, 220, 56, 12, 12, 30
MAX_POINTS = 2000  # per run and metric: a longer series is thinned evenly (the table has all)


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[float, float]]  # (step, value)


def _fmt(v: float) -> str:
    if v == 0 or 1e-3 <= abs(v) < 1e6:
        return f"{v:.4g}"
    return f"{v:.2e}"


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = len(points) / MAX_POINTS
    return [points[int(i * stride)] for i in range(MAX_POINTS)]


def metric_chart(metric: str, series: list[Series], chart_id: str) -> str:
    """One metric of one or more runs: a line and a dot per logged point, x = step."""
    finite = [(x, y) for s in series for x, y in s.points if math.isfinite(y)]
    if not finite:
        return f'<p class="muted">{escape(metric)}: no finite values logged.</p>'
    xs, ys = [p[0] for p in finite], [p[1] for p in finite]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - abs(y0 or 1) * 0.1, y1 + abs(y1 or 1) * 0.1
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return PAD_T + ph - (y - y0) / (y1 - y0) * ph

    title = escape(metric)
    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {W} {H}" role="img"'
        f' aria-labelledby="{chart_id}-t" data-metric="{title}">',
        f'<title id="{chart_id}-t">{title} per step, {len(series)} run(s)</title>',
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" class="plot"/>',
    ]
    for t in _ticks(y0, y1):
        y = sy(t)
        parts.append(
            f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_fmt(t)}</text>'
        )
    for t in _ticks(x0, x1):
        x = sx(t)
        parts.append(
            f'<text x="{x:.1f}" y="{H - 10}" class="tick" text-anchor="middle">{_fmt(t)}</text>'
        )
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        pts = _thin([(x, y) for x, y in s.points if math.isfinite(y)])
        label = escape(s.label)
        parts.append(f'<g class="series" data-run="{label}" fill="{colour}" stroke="{colour}">')
        if len(pts) > 1:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke-width="1.5"/>')
        for x, y in pts:
            parts.append(
                f'<circle class="pt" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5">'
                f"<title>{label}: step {_fmt(x)} = {_fmt(y)}</title></circle>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" style="background:{PALETTE[i % len(PALETTE)]}"></span>'
        f"{escape(s.label)} ({len(s.points)} points)</li>"
        for i, s in enumerate(series)
    )
    return "".join(parts) + f'<ul class="legend">{legend}</ul>'


def series_from_rows(rows: list[dict[str, Any]], labels: dict[Any, str]) -> dict[str, list[Series]]:
    """Rows of `read.run_metrics` (by uid, name, step) grouped into one chart per metric name,
    one series per run; a point without a step is placed at its position in the log."""
    grouped: dict[str, dict[Any, list[tuple[float, float]]]] = {}
    for r in rows:
        runs = grouped.setdefault(r["name"], {})
        pts = runs.setdefault(r["uid"], [])
        step = r["step"] if r["step"] is not None else len(pts)
        pts.append((float(step), float(r["value"])))
    order = {uid: i for i, uid in enumerate(labels)}  # the runs in the order they were chosen
    return {
        name: [
            Series(labels.get(uid, str(uid)), runs[uid])
            for uid in sorted(runs, key=lambda u: order.get(u, len(order)))
        ]
        for name, runs in sorted(grouped.items())
    }


NODE_W, NODE_H, COL_GAP, ROW_GAP = 200, 44, 90, 14
MAX_NODES = 30  # per side: a card named by hundreds of others gets a readable graph


def _node(x: float, y: float, card: dict[str, Any], href: str, cls: str) -> str:
    label = f"{card['registry']}/{card['space']}/{card['name']}"
    short = label if len(label) <= 28 else label[:27] + "…"
    text = escape(short)
    return (
        f'<a href="{escape(href)}" aria-label="{escape(label)} {escape(card["version"])}">'
        f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" class="node {cls}"/>'
        f'<text x="{x + 8}" y="{y + 18}" class="node-name">{text}</text>'
        f'<text x="{x + 8}" y="{y + 35}" class="node-ver">{escape(card["version"])}'
        f"{' (deleted)' if card.get('status') == 'deleted' else ''}</text></a>"
    )


def lineage_graph(
    card: dict[str, Any],
    upstream: list[tuple[str, dict[str, Any]]],
    downstream: list[tuple[str, dict[str, Any]]],
    href: Any,
) -> str:
    """Upstream cards on the left, the card in the middle, downstream on the right; each edge
    is labelled with the attribute that makes the link (e.g. `datacard_uid`)."""
    more_up, more_down = len(upstream) - MAX_NODES, len(downstream) - MAX_NODES
    upstream, downstream = upstream[:MAX_NODES], downstream[:MAX_NODES]  # the lists have all
    rows = max(len(upstream), len(downstream), 1)
    height = rows * (NODE_H + ROW_GAP) + ROW_GAP
    width = 3 * NODE_W + 2 * COL_GAP + 20
    cx, cy = 10 + NODE_W + COL_GAP, (height - NODE_H) / 2
    parts = [
        f'<svg class="lineage" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="lineage: {len(upstream)} upstream, {len(downstream)} downstream">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/>'
        "</marker></defs>",
    ]

    def column(items: list[tuple[str, dict[str, Any]]], x: float, upstream_side: bool) -> None:
        top = (height - len(items) * (NODE_H + ROW_GAP) + ROW_GAP) / 2
        for i, (fld, other) in enumerate(items):
            y = top + i * (NODE_H + ROW_GAP)
            # the arrow points from the card that holds the reference to the one it names
            x1: float
            y1: float
            if upstream_side:
                x1, y1, x2, y2 = cx, cy + NODE_H / 2, x + NODE_W, y + NODE_H / 2
            else:
                x1, y1, x2, y2 = x, y + NODE_H / 2, cx + NODE_W, cy + NODE_H / 2
            parts.append(
                f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" class="edge"'
                ' marker-end="url(#arrow)"/>'
                f'<text x="{(x1 + x2) / 2}" y="{(y1 + y2) / 2 - 4}" class="edge-label"'
                f' text-anchor="middle">{escape(fld)}</text>'
            )
            parts.append(_node(x, y, other, href(other), "up" if upstream_side else "down"))

    column(upstream, 10, True)
    column(downstream, cx + NODE_W + COL_GAP, False)
    parts.append(_node(cx, cy, card, href(card), "self"))
    for more, x in ((more_up, 10), (more_down, cx + NODE_W + COL_GAP)):
        if more > 0:
            parts.append(f'<text x="{x}" y="{height - 2}" class="edge-label">+{more} more</text>')
    parts.append("</svg>")
    return "".join(parts)
