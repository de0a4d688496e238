"""Draw bench charts: `python plot.py RESULTS.json OUTDIR` (needs only matplotlib; run by
bench/charts.py inside the tools venv)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"ours": "#1b9e77", "mlflow": "#d95f02", "mlflow-gunicorn": "#e6ab02", "opsml": "#7570b3"}


def main(path: str, outdir: str) -> None:
    doc = json.loads(Path(path).read_text())
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    systems = [k for k, s in doc["systems"].items() if s.get("status") == "ok"]
    wl = doc["workloads"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    _bars(
        axes[0][0],
        wl,
        systems,
        "W1",
        ["p50_ms", "p99_ms"],
        "W1 sequential: latency (ms, log)",
        log=True,
    )
    _bars(
        axes[0][1],
        wl,
        systems,
        None,
        ["cards_per_s"],
        "registration throughput (cards/s, log)",
        log=True,
        multi=["W1", "W2", "W3"],
    )
    _w4(axes[1][0], wl, systems, "p99_ms", "W4 reads: p99 ms (log)")
    _bars(
        axes[1][1],
        wl,
        systems,
        None,
        ["server_cpu_s_per_1k"],
        "server CPU seconds per 1,000 registrations",
        multi=["W1", "W2", "W3"],
    )
    fig.suptitle(
        f"opsml-registry bench {doc['run_id']} ({doc['mode']}; {doc['machine']['cpu_count']} CPUs)"
    )
    fig.tight_layout()
    fig.savefig(out / "summary.png", dpi=90)
    print(out / "summary.png")


def _val(wl, w, sysname, key):
    r = wl.get(w, {}).get("results", {}).get(sysname) or {}
    v = r.get(key)
    return v if isinstance(v, int | float) else 0


def _bars(ax, wl, systems, w, keys, title, log=False, multi=None):
    groups = multi or keys
    width = 0.8 / max(1, len(systems))
    for i, s in enumerate(systems):
        ys = (
            [_val(wl, g, s, keys[0]) for g in groups]
            if multi
            else [_val(wl, w, s, k) for k in keys]
        )
        xs = [j + i * width for j in range(len(groups))]
        ax.bar(xs, ys, width, label=s, color=COLORS.get(s))
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(groups))], groups)
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)


def _w4(ax, wl, systems, key, title):
    res = wl.get("W4", {}).get("results", {})
    labels = []
    for r in res.values():
        for size, b in (r.get("sizes") or {}).items():
            for op, v in b.items():
                if isinstance(v, dict) and "status" in v and f"{op}@{size}" not in labels:
                    labels.append(f"{op}@{size}")
    width = 0.8 / max(1, len(systems))
    for i, s in enumerate(systems):
        ys = []
        for lab in labels:
            op, size = lab.split("@")
            v = ((res.get(s) or {}).get("sizes", {}).get(size, {}).get(op) or {}).get(key)
            ys.append(v or 0)
        ax.bar([j + i * width for j in range(len(labels))], ys, width, label=s, color=COLORS.get(s))
    ax.set_xticks(
        [j + width * (len(systems) - 1) / 2 for j in range(len(labels))],
        [lab.replace("@", "\n@") for lab in labels],
        fontsize=7,
    )
    ax.set_yscale("log")
    ax.axhline(5, color="grey", linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.legend(fontsize=8)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
