"""The web UI's pure parts: SVG charts and lineage graphs (every point drawn, text escaped,
large graphs capped), the login's redirect target, the paths the guard leaves to the UI, and
the version check of the names search."""

from __future__ import annotations

import math
import re
import uuid

import pytest

from registry_core.domain.errors import InvalidQuery
from workers.api.guard import OPEN_PATHS
from workers.ui import access, card, charts, data


def test_metric_chart_draws_every_finite_point_and_escapes_labels() -> None:
    series = [
        charts.Series("<b>run</b> 1.0.0", [(float(s), 1 / (s + 1)) for s in range(12)]),
        charts.Series("run 1.1.0", [(0.0, 1.0), (1.0, math.nan), (2.0, 0.5)]),
    ]
    svg = charts.metric_chart("loss<script>", series, "c1")
    assert svg.count('<circle class="pt"') == 12 + 2  # the NaN is not drawn
    assert "<script>" not in svg and "<b>" not in svg
    assert "loss&lt;script&gt;" in svg
    assert 'role="img"' in svg and 'aria-labelledby="c1-t"' in svg


def test_metric_chart_thins_long_series_and_handles_flat_or_empty_ones() -> None:
    long = charts.Series("r", [(float(s), float(s)) for s in range(10_000)])
    assert charts.metric_chart("m", [long], "c").count("<circle") == charts.MAX_POINTS
    flat = charts.Series("r", [(1.0, 3.0)])
    assert charts.metric_chart("m", [flat], "c").count("<circle") == 1
    assert "no finite values" in charts.metric_chart("m", [charts.Series("r", [])], "c")


def test_series_follow_the_chosen_run_order() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    rows = [{"uid": u, "name": "loss", "step": s, "value": 1.0} for u in (b, a) for s in (0, 1)]
    got = charts.series_from_rows(rows, {a: "first", b: "second"})
    assert [s.label for s in got["loss"]] == ["first", "second"]


def _card(name: str) -> dict[str, object]:
    return {"uid": uuid.uuid4(), "registry": "data", "space": "s", "name": name,
            "version": "1.0.0", "status": "active"}  # fmt: skip


def test_lineage_graph_links_every_node_and_caps_large_sides() -> None:
    me = _card("me")
    up = [("datacard_uid", _card("a<x>"))]
    down = [("card_uids", _card(f"d{i}")) for i in range(100)]
    svg = charts.lineage_graph(me, up, down, lambda c: f"/ui/cards/{c['uid']}")
    assert len(re.findall(r"<a href=", svg)) == 1 + charts.MAX_NODES + 1
    assert "+70 more" in svg and "a&lt;x&gt;" in svg


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/ui/r/data?q=x", "/ui/r/data?q=x"), ("//evil.example/x", "/"), ("https://evil", "/"),
     ("/\\evil", "/"), ("", "/"), (None, "/")],
)  # fmt: skip
def test_login_returns_only_to_this_site(target: str | None, expected: str) -> None:
    assert access.safe_next(target) == expected


def test_the_guard_leaves_the_ui_paths_and_nothing_else_to_the_ui() -> None:
    paths = access.UiPaths(OPEN_PATHS)
    for path in ("/", "/ui/r/data", "/ui/stream", "/ui/login", "/healthz", "/docs"):
        assert path in paths, path
    for path in ("/api/v1/cards", "/uix", "/static/x", "/api/v1/tokens"):
        assert path not in paths, path


def test_names_search_refuses_a_bad_cursor() -> None:
    with pytest.raises(InvalidQuery, match="first page"):
        data._uncursor("not-a-cursor")
    assert data._uncursor(data._cursor("space", "name")) == ("space", "name")
    assert data.is_prerelease("2.0.0-rc.1") and not data.is_prerelease("2.0.0+build.1-x")


def test_card_sections_show_only_attributes_of_the_expected_shape() -> None:
    odd = {
        "feature_map": "oops", "row_count": True, "data_splits": [1, {"label": "train"}],
        "questionnaire": {"a": "text", "b": {"question": "q"}}, "framework": 3, "extra": [1],
    }  # fmt: skip
    kept = {"data_splits": [{"label": "train"}], "questionnaire": {"b": {"question": "q"}},
            "extra": [1]}  # fmt: skip
    assert card.shaped(odd) == kept
    assert card.shaped(["not", "a", "dict"]) == {}
    refs = [{"path": "a.bin", "size": 2048, "sha256": "ab"}, {"path": 1, "size": 2}, "x",
            {"path": "b", "size": "big"}]  # fmt: skip
    assert [(a["path"], a["human"]) for a in card._artifacts(refs)] == [("a.bin", "2.0 KiB")]
    assert card._artifacts(None) == []
