"""Results: the JSON document, the summary rows (ratios ours/peer) and the docs table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.config import DOCS, REPO, RESULTS, TARGETS

START = "<!-- bench:summary:start (written by python -m bench; do not edit by hand) -->"
END = "<!-- bench:summary:end -->"
PEER_ORDER = ("mlflow", "mlflow-gunicorn", "opsml")


def write(doc: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{doc['run_id']}.json"
    text = json.dumps(doc, indent=1, sort_keys=False, default=str)
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return path


def one_line(w: str, r: dict[str, Any]) -> str:
    if "status" in r and "sizes" not in r:
        return str(r["status"])
    if w == "W5":
        return (
            f"{r.get('events')} events, replay {r.get('replay_events_per_s')} events/s, "
            f"total {r.get('replay_total_s_incl_verify')} s, identical {r.get('identical')}, "
            f"worker start-up {r.get('worker_startup_s_short_log')} s (short log) / "
            f"{r.get('worker_startup_s_long_log')} s (long log)"
        )
    if w == "W6":
        return f"{r.get('mb')} MB: {r.get('seconds')} s, {r.get('mb_per_s')} MB/s (median)"
    if w == "W4":
        parts = []
        for size, b in r["sizes"].items():
            ops = ", ".join(
                f"{op} p99 {v['p99_ms']}ms" if v.get("status") == "ok" else f"{op} {v['status']}"
                for op, v in b.items()
                if isinstance(v, dict)
            )
            parts.append(f"@{size}: {ops}")
        return "; ".join(parts)
    s = f"{r.get('registered')}/{r.get('planned')} cards, {r.get('cards_per_s')} cards/s"
    if r.get("p50_ms") is not None:
        s += f", p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms"
    if "dups" in r:
        s += f", dups {r['dups']}, gaps {r['gaps']}"
    s += f", server CPU {r.get('server_cpu_s_per_1k')} s/1k"
    if r.get("errors"):
        s += f", {r['errors']} errors"
    return s


def _get(res: dict[str, Any] | None, *path: str) -> Any:
    cur: Any = res
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _row(doc, w, metric, better, path, target=None, check=None) -> dict[str, Any]:
    wl = doc["workloads"].get(w, {}).get("results", {})
    values = {k: _get(wl.get(k), *path) for k in doc["systems"]}
    ours = values.get("ours")
    passed = None if check is None or ours is None else bool(check(ours))
    return {
        "workload": w,
        "metric": metric,
        "better": better,
        "values": values,
        "target": target,
        "pass": passed,
    }


def summary_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    t = TARGETS
    rows: list[dict[str, Any]] = []
    if "W1" in doc["workloads"]:
        rows += [
            _row(doc, "W1", "cards/s", "higher", ("cards_per_s",)),
            _row(
                doc,
                "W1",
                "p50 ms",
                "lower",
                ("p50_ms",),
                f"<= {t['W1']['p50_ms']}",
                lambda v: v <= t["W1"]["p50_ms"],
            ),
            _row(
                doc,
                "W1",
                "p99 ms",
                "lower",
                ("p99_ms",),
                f"<= {t['W1']['p99_ms']}",
                lambda v: v <= t["W1"]["p99_ms"],
            ),
            _row(doc, "W1", "server CPU s / 1k cards", "lower", ("server_cpu_s_per_1k",)),
            _row(doc, "W1", "Postgres CPU s / 1k cards", "lower", ("postgres_cpu_s_per_1k",)),
        ]
    if "W2" in doc["workloads"]:
        rows += [
            _row(
                doc,
                "W2",
                "cards/s",
                "higher",
                ("cards_per_s",),
                f">= {t['W2']['cards_per_s']:.0f}",
                lambda v: v >= t["W2"]["cards_per_s"],
            ),
            _row(doc, "W2", "p50 ms", "lower", ("p50_ms",)),
            _row(doc, "W2", "p99 ms", "lower", ("p99_ms",)),
            _row(doc, "W2", "duplicate versions", "lower", ("dups",), "0", lambda v: v == 0),
            _row(doc, "W2", "version gaps", "lower", ("gaps",), "0", lambda v: v == 0),
            _row(doc, "W2", "failed registrations", "lower", ("errors",)),
            _row(doc, "W2", "server CPU s / 1k cards", "lower", ("server_cpu_s_per_1k",)),
        ]
    if "W3" in doc["workloads"]:
        rows += [
            _row(
                doc,
                "W3",
                "cards/s",
                "higher",
                ("cards_per_s",),
                f">= {t['W3']['cards_per_s']:.0f}",
                lambda v: v >= t["W3"]["cards_per_s"],
            ),
            _row(doc, "W3", "server CPU s / 1k cards", "lower", ("server_cpu_s_per_1k",)),
            _row(doc, "W3", "Postgres CPU s / 1k cards", "lower", ("postgres_cpu_s_per_1k",)),
        ]
    if "W4" in doc["workloads"]:
        sizes: list[str] = []
        for r in doc["workloads"]["W4"]["results"].values():
            for s in r.get("sizes") or {}:
                if s not in sizes:
                    sizes.append(s)
        for size in sizes:
            for op in ("latest", "get_by_uid", "list_100", "latest_caret"):
                rows.append(
                    _row(
                        doc,
                        "W4",
                        f"{op} p99 ms @ {_n(size)}",
                        "lower",
                        ("sizes", size, op, "p99_ms"),
                        f"<= {t['W4']['p99_ms']}",
                        lambda v: v <= t["W4"]["p99_ms"],
                    )
                )
                rows.append(
                    _row(
                        doc,
                        "W4",
                        f"{op} p50 ms @ {_n(size)}",
                        "lower",
                        ("sizes", size, op, "p50_ms"),
                    )
                )
    if "W5" in doc["workloads"]:
        rows += [
            _row(doc, "W5", "replay events/s", "higher", ("replay_events_per_s",)),
            _row(doc, "W5", "replay + verify total s", "lower", ("replay_total_s_incl_verify",)),
            _row(
                doc,
                "W5",
                "live projection (worker catch-up) events/s",
                "higher",
                ("live_projection_events_per_s",),
            ),
            _row(doc, "W5", "worker start-up s, long log", "lower", ("worker_startup_s_long_log",)),
            _row(
                doc, "W5", "worker start-up s, short log", "lower", ("worker_startup_s_short_log",)
            ),
        ]
    if "W6" in doc["workloads"]:
        rows += [
            _row(doc, "W6", "registration s (median)", "lower", ("median_s",)),
            _row(doc, "W6", "MB/s", "higher", ("mb_per_s",)),
        ]
    return rows


def _n(size: str | int) -> str:
    n = int(size)
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _cell(doc, key: str, row: dict[str, Any]) -> str:
    sysinfo = doc["systems"].get(key, {})
    if sysinfo.get("status") != "ok":
        return "n/a"
    res = doc["workloads"].get(row["workload"], {}).get("results", {}).get(key) or {}
    v = row["values"].get(key)
    if v is None and row["workload"] == "W4":
        op = row["metric"].split()[0]
        size = [s for s in (res.get("sizes") or {}) if _n(s) == row["metric"].split("@ ")[1]]
        st = _get(res, "sizes", size[0], op, "status") if size else None
        return st or "-"
    if v is None and isinstance(res.get("status"), str):
        return res["status"].split(":")[0] if row["metric"] != "status" else res["status"]
    mark = ""
    if (
        row["metric"] == "cards/s"
        and res.get("planned")
        and res.get("registered", 0) < res["planned"]
    ):
        mark = f" ({res['registered']:,}/{res['planned']:,}*)"
    return _fmt(v) + mark


def _ratio(row: dict[str, Any], peer: str) -> str:
    a, b = row["values"].get("ours"), row["values"].get(peer)
    if not isinstance(a, int | float) or not isinstance(b, int | float) or isinstance(a, bool):
        return ""
    if b == 0:
        return "" if a == 0 else "∞"
    return f"{a / b:.3g}"


def _split(doc: dict[str, Any]) -> str:
    """' (set-up ...; workloads ...)': installs and start-ups apart from the measured part."""
    if "setup_s" not in doc:
        return ""
    prep = {k: s.get("prepare_s") for k, s in doc["systems"].items() if s.get("prepare_s")}
    installs = ", ".join(f"{k} {v} s" for k, v in prep.items() if v >= 5)
    return (
        f" (set-up {doc['setup_s']} s: every system installed and started in parallel"
        + (f"; of it, venv installs/imports: {installs}" if installs else "")
        + f"; workloads and stops {doc.get('run_s')} s)"
    )


def markdown_summary(doc: dict[str, Any]) -> str:
    keys = list(doc["systems"])
    peers = [p for p in PEER_ORDER if p in keys]
    m = doc["machine"]
    lines = [
        f"Run `{doc['run_id']}` ({doc['mode']}: {doc['scale_note']}), {doc['date']}; "
        f"{m['cpu_count']} CPUs, Python {m['python']}, {m['postgres']}, {m['platform']}. "
        f"Whole run {doc.get('elapsed_s')} s{_split(doc)}."
        f" Raw numbers: `bench/results/{doc['run_id']}.json`.",
        "",
        "| workload | metric | "
        + "".join(f"{k} | " for k in keys)
        + "".join(f"ours/{p} | " for p in peers)
        + "target (ours) |",
        "|---|---|" + "---:|" * (len(keys) + len(peers)) + "---|",
    ]
    for row in doc["summary"]:
        better = {"higher": " ↑", "lower": " ↓"}.get(row["better"], "")
        target = ""
        if row["target"]:
            verdict = {True: "pass", False: "**FAIL**", None: "-"}[row["pass"]]
            target = f"{row['target']}: {verdict}"
        cells = [_cell(doc, k, row) for k in keys]
        ratios = [_ratio(row, p) for p in peers]
        lines.append(
            f"| {row['workload']} | {row['metric']}{better} | "
            + "".join(f"{c} | " for c in cells + ratios)
            + f"{target} |"
        )
    lines.append("")
    lines.append(
        "↑ higher is better, ↓ lower is better; ratios are ours/peer. "
        "`*` = the peer hit its time budget before registering every planned card; "
        "its rate is over what it did."
    )
    notes = []
    for k, s in doc["systems"].items():
        if s.get("status") != "ok":
            notes.append(f"- **{k}** ({s['label']}): {s['status']}: {s.get('reason')}")
        else:
            info = s.get("info") or {}
            extra = ", ".join(f"{a}: `{b}`" for a, b in info.items() if a in ("version", "server"))
            notes.append(f"- **{k}** = {s['label']}" + (f" ({extra})" if extra else ""))
    for w, block in doc["workloads"].items():
        for k, r in block["results"].items():
            if r.get("note"):
                notes.append(f"- {w} {k}: {r['note']}")
            if r.get("path") and w in ("W3", "W6"):
                notes.append(f"- {w} {k}: {r['path']}")
            if w == "W6" and r.get("seconds"):
                secs = ", ".join(f"{x:.2f}" for x in r["seconds"])
                notes.append(f"  - {r['reps']} registrations of {r['mb']} MB each: {secs} s")
            if w == "W5" and r.get("events"):
                notes.append(
                    f"  - seeding: {r['registrations']:,} events generated and published in"
                    f" {r['seed_s']} s; the worker's start-up catch-up (live projection) took"
                    f" {r.get('live_projection_catch_up_s')} s"
                    f" ({r.get('live_projection_events_per_s', 0):,} events/s);"
                    f" verified identical: {r['identical']}"
                )
            if r.get("error_samples"):
                notes.append(
                    f"- {w} {k}: {r['errors']} failed, e.g. `{r['error_samples'][0][:160]}`"
                )
    w4 = doc["workloads"].get("W4", {}).get("results", {})
    for k, r in w4.items():
        for size, b in (r.get("sizes") or {}).items():
            notes.append(
                f"- W4 {k} @ {_n(size)}: {b['versions_in_registry']:,} versions in the "
                f"registry, seeded by {b['seeded_with']}"
            )
            for op, v in b.items():
                if isinstance(v, dict) and v.get("detail"):
                    notes.append(f"  - {op}: {v['status']} ({v['detail'][:150]})")
    return "\n".join([*lines, "", *notes])


def update_docs(doc: dict[str, Any], table: str) -> None:
    block = f"{START}\n{table}\n\n![charts](../bench/results/charts/summary.png)\n{END}"
    if DOCS.exists() and START in DOCS.read_text():
        text = DOCS.read_text()
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        DOCS.write_text(head + block + tail)
    else:
        DOCS.parent.mkdir(parents=True, exist_ok=True)
        DOCS.write_text(f"# Benchmarks\n\n{block}\n")
    print(f"summary written to {DOCS.relative_to(REPO)}")
