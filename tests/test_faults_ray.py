"""SIGKILL random Ray workers during a bench of 20 campaigns: every campaign
finishes exactly once, and the killed ones resume from their last
checkpointed round with the rows an uninterrupted run gives."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest

from alharness.results import store
from alharness.execution.benchmark import parse_benchmark
from conftest import result_columns, tiny_benchmark_doc

pytestmark = pytest.mark.usefixtures("ray_local")


def campaign_workers(root_pid: int, token: str) -> dict[int, str]:
    """pid -> title of the Ray workers running one of *our* campaigns: only
    descendants of ``root_pid`` (the Ray this process started), never another
    process on the machine with a similar title."""
    import psutil

    out = {}
    for p in psutil.Process(root_pid).children(recursive=True):
        try:
            title = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if title.startswith("ray::campaign:") and token in title:
            out[p.pid] = title
    return out


def run_in_thread(fn, **kw):
    box: dict = {}

    def target():
        try:
            box["summary"] = fn(**kw)
        except BaseException as exc:  # surfaced by the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def test_sigkill_random_workers_during_a_bench(tmp_path):
    from alharness.campaign.loop import run_campaign
    from alharness.execution.backends.ray import run_benchmark

    seeds = list(range(20))
    doc = tiny_benchmark_doc(strategies=[{"name": "test_sleepy", "sleep_s": 0.25}], seeds=seeds)
    bench = parse_benchmark(doc)
    cid_of_seed = {s.seed: s.campaign_id for s in bench.specs}
    out = tmp_path / "out"
    thread, box = run_in_thread(run_benchmark, bench=bench, out_dir=out, progress=False, retries=8)

    rng = __import__("random").Random(0)
    killed: set[str] = set()
    kills, deadline = 0, time.time() + 240
    while kills < 4 and thread.is_alive() and time.time() < deadline:
        # Only workers whose campaign has saved a round: the kill must test resuming.
        victims = [(pid, cid_of_seed[int(re.search(r":seed(\d+)", title).group(1))])
                   for pid, title in campaign_workers(os.getpid(), "test_sleepy").items()]
        victims = [(pid, cid) for pid, cid in victims if (out / "checkpoints" / f"{cid}.ckpt").exists()]
        if victims:
            pid, cid = rng.choice(victims)
            os.kill(pid, signal.SIGKILL)
            killed.add(cid)
            kills += 1
            time.sleep(1.0)
        else:
            time.sleep(0.05)
    thread.join(timeout=300)
    assert "error" not in box, box.get("error")
    summary = box["summary"]
    assert kills >= 3, f"only {kills} kills happened; the test proves too little"
    assert summary.ok == 20 and not summary.failed
    assert store.finished_ids(out) == set(cid_of_seed.values())
    con, _ = store.connect(out)
    assert con.execute("SELECT count(*), count(DISTINCT (campaign_id, round)) FROM rounds").fetchone() == (60, 60)
    assert con.execute("SELECT count(*), count(DISTINCT campaign_id) FROM campaigns").fetchone() == (20, 20)
    resumed = dict(con.execute("SELECT campaign_id, resumed_round FROM campaigns").fetchall())
    assert all(resumed[cid] is not None for cid in killed), {cid: resumed[cid] for cid in killed}
    assert not list((out / "checkpoints").iterdir())
    # The killed campaigns' rows equal uninterrupted runs'.
    for cid in sorted(killed)[:2]:
        spec = next(s for s in bench.specs if s.campaign_id == cid)
        plain = run_campaign(spec)
        got = con.execute(f"SELECT * EXCLUDE (per_class_iou) FROM rounds WHERE campaign_id = '{cid}' ORDER BY round")
        names = [d[0] for d in got.description]
        rows = [dict(zip(names, r)) for r in got.fetchall()]
        want = [{k: v for k, v in r.items() if k != "per_class_iou"} for r in plain.rows]
        assert result_columns(rows) == result_columns([{k: r.get(k) for k in names} for r in want])
