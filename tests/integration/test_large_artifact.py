"""A 200 MB artifact streams through client, API and worker with bounded memory.

The client runs in its own process so its peak RSS (VmHWM) is its own; the API's and the
worker's RSS are sampled while the transfer runs.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.integration

SIZE = 200 * 1024 * 1024

CLIENT = textwrap.dedent(
    """
    import json, os, sys, time
    from client import CardRegistry, RunCard

    url, src, dst = sys.argv[1:4]
    with open(src, "wb") as fh:          # 200 MB of random bytes, written 1 MiB at a time
        for _ in range(200):
            fh.write(os.urandom(1024 * 1024))
    with CardRegistry("run", tracking_uri=url) as reg:
        run = RunCard(space="big", name="blob")
        run.add_artifact(src, "weights.bin")
        t0 = time.monotonic(); reg.register_card(run, progress=False); up = time.monotonic() - t0
        card = reg.load_card(uid=run.uid)
        t0 = time.monotonic(); reg.download_artifacts(card, dst, progress=False)
        down = time.monotonic() - t0
    # VmHWM, not ru_maxrss: the latter keeps the high-water mark of the forked parent across exec
    peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
    peak_mb = peak_kb / 1024
    print(json.dumps({"up_s": up, "down_s": down, "peak_rss_mb": peak_mb}))
    """
)


async def test_200mb_artifact_with_bounded_memory(stack: Stack, tmp_path: Path) -> None:
    api = psutil.Process(stack.api.pid)  # type: ignore[union-attr]
    worker = psutil.Process(stack.workers[0].pid)
    base = {"api": api.memory_info().rss, "worker": worker.memory_info().rss}
    peak = dict(base)
    errlog = open(tmp_path / "client.err", "w")  # noqa: ASYNC230 - closed below
    proc = subprocess.Popen(  # noqa: ASYNC220 - polled below, never waited on blocking
        [sys.executable, "-c", CLIENT, stack.url, str(tmp_path / "src.bin"), str(tmp_path / "dl")],
        stdout=subprocess.PIPE,
        stderr=errlog,
        text=True,
    )
    while proc.poll() is None:
        peak["api"] = max(peak["api"], api.memory_info().rss)
        peak["worker"] = max(peak["worker"], worker.memory_info().rss)
        await asyncio.sleep(0.05)
    out, _ = proc.communicate()
    errlog.close()
    assert proc.returncode == 0, (tmp_path / "client.err").read_text()[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    got = tmp_path / "dl" / "weights.bin"
    assert got.stat().st_size == SIZE
    assert got.read_bytes()[:4096] == (tmp_path / "src.bin").read_bytes()[:4096]
    growth = {k: (peak[k] - base[k]) / 2**20 for k in base}
    print(f"\n200 MB artifact: {result} server RSS growth MiB: {growth}")
    # bounded: a fraction of the file, not the file
    assert result["peak_rss_mb"] < 160, result
    assert growth["api"] < 64 and growth["worker"] < 64, growth
