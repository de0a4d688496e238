"""The card page's content: everything shown about one card, read in a few queries (the card,
its lineage both ways, the runs to compare and their metrics) and shaped for the template,
including the per-type sections (data, model, run, audit, prompt)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from registry_core.persistence import read
from workers.ui import charts
from workers.ui.data import is_prerelease

MAX_COMPARE = 8  # runs on one chart
SIBLINGS = 20  # other versions of a run offered for comparison


def card_href(card: dict[str, Any]) -> str:
    return f"/ui/cards/{card['uid']}"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# The shape each type's section expects of an attribute. The read tables keep a card whose
# attributes its class refuses (an event from an older or hostile writer: docs/architecture.md,
# "Poison events"), so a section shows only values of the expected shape; the raw JSON at the
# bottom of the page shows everything.
SHAPES: dict[str, type | tuple[type, ...]] = {
    "feature_map": dict, "data_splits": list, "framework_versions": dict, "parameters": dict,
    "questionnaire": dict, "comments": list, "row_count": int, "approved": bool,
    "data_type": str, "framework": str, "model_format": str, "model_class": str,
    "sample_data_type": str, "prompt": str, "system_prompt": str, "model": str, "provider": str,
}  # fmt: skip
ITEMS_ARE_DICTS = ("data_splits", "comments", "questionnaire")


def shaped(attrs: Any) -> dict[str, Any]:
    """The attributes a section may show: each of the expected shape, or left out."""
    if not isinstance(attrs, dict):
        return {}
    out = {}
    for key, value in attrs.items():
        want = SHAPES.get(key)
        if want is None or (isinstance(value, want) and not (want is int and value is True)):
            out[key] = value
    for key in ITEMS_ARE_DICTS:
        if key in out:
            items = out[key]
            if isinstance(items, dict):
                out[key] = {k: v for k, v in items.items() if isinstance(v, dict)}
            else:
                out[key] = [v for v in items if isinstance(v, dict)]
    return out


def _artifacts(refs: Any) -> list[dict[str, Any]]:
    out = []
    for a in refs if isinstance(refs, list) else []:
        if (
            isinstance(a, dict)
            and isinstance(a.get("path"), str)
            and isinstance(a.get("size"), int)
        ):
            out.append({**a, "sha256": str(a.get("sha256", "")), "human": human_size(a["size"])})
    return out


async def card_view(conn: read.Conn, row: dict[str, Any], compare: list[UUID]) -> dict[str, Any]:
    uid = row["uid"]
    attrs = shaped(row["attributes"])
    row["tags"] = row["tags"] if isinstance(row["tags"], dict) else {}
    row["metadata"] = row["metadata"] if isinstance(row["metadata"], dict) else {}
    links = await read.lineage(conn, uid)
    view: dict[str, Any] = {
        "card": row,
        "attrs": attrs,
        "prerelease": is_prerelease(row["version"]),
        "upstream": links["upstream"],
        "downstream": links["downstream"],
        "graph": charts.lineage_graph(row, links["upstream"], links["downstream"], card_href)
        if links["upstream"] or links["downstream"]
        else "",
        "artifacts": _artifacts(row["artifacts"]),
        "raw": row["attributes"],
        "watch_uids": [str(uid)] + [str(c["uid"]) for _, c in links["upstream"]],
    }
    registry = row["registry"]
    if registry == "model":
        data_links = [c for f, c in links["upstream"] if f == "datacard_uid"]
        view["datacard"] = data_links[0] if data_links else None
        view["datacard_attrs"] = shaped(data_links[0]["attributes"]) if data_links else {}
        view["sample"] = next(
            (a for a in view["artifacts"] if a["path"].startswith("sample_data.")), None
        )
    if registry == "run":
        await _runs(conn, row, compare, view)
    return view


async def _runs(
    conn: read.Conn, row: dict[str, Any], compare: list[UUID], view: dict[str, Any]
) -> None:
    """The run's parameters and metrics, with the chosen other runs on the same charts."""
    siblings, _ = await read.list_cards(
        conn,
        read.CardFilter(registry="run", space=row["space"], name=row["name"], limit=SIBLINGS),
    )
    chosen = [u for u in dict.fromkeys(compare) if u != row["uid"]][: MAX_COMPARE - 1]
    others = {c["uid"]: c for c in await read.get_cards(conn, chosen)} if chosen else {}
    runs = [row] + [others[u] for u in chosen if u in others and others[u]["registry"] == "run"]
    labels = {r["uid"]: f"{r['name']} {r['version']}" for r in runs}
    if len({r["name"] for r in runs}) > 1 or len(set(labels.values())) < len(labels):
        labels = {r["uid"]: f"{r['space']}/{r['name']} {r['version']}" for r in runs}
    metrics = await read.run_metrics(conn, [r["uid"] for r in runs])
    grouped = charts.series_from_rows(metrics, labels)
    view["runs"] = runs
    view["run_labels"] = labels
    view["charts"] = [
        {"name": name, "svg": charts.metric_chart(name, series, f"chart-{i}"),
         "points": sum(len(s.points) for s in series)}
        for i, (name, series) in enumerate(grouped.items())
    ]  # fmt: skip
    view["metric_rows"] = metrics
    for r in runs:  # the compared runs' parameters, of the expected shape only
        r["params"] = shaped(r["attributes"]).get("parameters", {})
    keys = sorted({k for r in runs for k in r["params"]})
    view["param_keys"] = keys
    view["siblings"] = [s for s in siblings if s["uid"] != row["uid"]]
    view["compared"] = {str(u) for u in chosen}
    view["watch_uids"] += [str(r["uid"]) for r in runs[1:]]
