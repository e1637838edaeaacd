"""Ray scheduling: results land once, failures are isolated, resume finishes
the rest, worker count does not change results, dead workers are retried."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alharness.results import store
from alharness.execution.benchmark import parse_benchmark
from alharness.cli import main
from conftest import result_columns, tiny_benchmark_doc, toml_dumps

pytestmark = pytest.mark.usefixtures("ray_local")


def _rows_by_campaign(out):
    con, _ = store.connect(out)
    rows = con.execute("SELECT * EXCLUDE (per_class_iou) FROM rounds ORDER BY campaign_id, round").fetchall()
    names = [d[0] for d in con.description]
    return [dict(zip(names, r)) for r in rows]


def test_bench_runs_stores_and_resumes(tmp_path):
    from alharness.execution.backends.ray import run_benchmark

    bench = parse_benchmark(tiny_benchmark_doc(strategies=["random", "entropy", "test_always_fails"]))
    summary = run_benchmark(bench, tmp_path, progress=False)
    assert summary.total == 6 and summary.ok == 4
    assert len(summary.failed) == 2 and all("deliberate failure" in f["error"] for f in summary.failed)
    con, _ = store.connect(tmp_path)
    # Every good campaign landed exactly once, with rounds + 1 rows; failures have records with tracebacks.
    assert con.execute("SELECT count(DISTINCT campaign_id), count(*) FROM rounds").fetchone() == (4, 4 * 3)
    failed = con.execute("SELECT error FROM campaigns WHERE status = 'failed'").fetchall()
    assert len(failed) == 2 and all("Traceback" in e and "deliberate failure" in e for (e,) in failed)
    assert con.execute("SELECT count(*) FROM queries").fetchone()[0] > 0
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "rounds").iterdir()}

    again = run_benchmark(bench, tmp_path, progress=False)
    assert again.skipped == 4 and again.ok == 0 and len(again.failed) == 2  # only the failed ones are retried
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "rounds").iterdir()} == before


def test_one_or_two_workers_give_identical_rows(tmp_path):
    from alharness.execution.backends.ray import run_benchmark

    bench = parse_benchmark(tiny_benchmark_doc(strategies=["random", "entropy"]))
    run_benchmark(bench, tmp_path / "w1", max_concurrent=1, progress=False)
    run_benchmark(bench, tmp_path / "w2", max_concurrent=2, progress=False)
    a, b = _rows_by_campaign(tmp_path / "w1"), _rows_by_campaign(tmp_path / "w2")
    assert len(a) == 4 * 3
    assert result_columns(a) == result_columns(b)


def test_a_dead_worker_is_retried(tmp_path):
    from alharness.execution.backends.ray import run_benchmark

    marker = tmp_path / "crashed-once"
    doc = tiny_benchmark_doc(strategies=[{"name": "test_crash_worker", "marker": str(marker)}], seeds=[0])
    # The strategy runs in the campaign's process, so its crash kills the Ray worker (the fault under test).
    doc["resources"] = {"strategy_process": False}
    bench = parse_benchmark(doc)
    summary = run_benchmark(bench, tmp_path / "out", progress=False, retries=1)
    assert marker.exists(), "the worker never crashed; the test proves nothing"
    assert summary.ok == 1 and not summary.failed
    # The rerun continued from the checkpoint of round 0 (it crashed proposing
    # round 1) and its rows equal an uninterrupted run's.
    assert summary.resumed == 1
    con, _ = store.connect(tmp_path / "out")
    assert con.execute("SELECT resumed_round FROM campaigns").fetchall() == [(0,)]
    assert not list((tmp_path / "out" / "checkpoints").iterdir())  # removed once the results were committed
    from alharness.campaign.loop import run_campaign

    plain = run_campaign(bench.specs[0])
    got = result_columns(_rows_by_campaign(tmp_path / "out"))
    want = result_columns([{k: v for k, v in r.items() if k != "per_class_iou"} for r in plain.rows])
    assert got == want, [{k: (g.get(k), w.get(k)) for k in g.keys() | w.keys() if g.get(k) != w.get(k)} for g, w in zip(got, want)]

    marker2 = tmp_path / "crashed-again"
    doc = tiny_benchmark_doc(strategies=[{"name": "test_crash_worker", "marker": str(marker2)}], seeds=[1])
    doc["resources"] = {"strategy_process": False}
    summary = run_benchmark(parse_benchmark(doc), tmp_path / "out2", progress=False, retries=0)
    assert summary.ok == 0 and len(summary.failed) == 1
    assert "Worker" in summary.failed[0]["error"] or "died" in summary.failed[0]["error"].lower()


def test_cli_bench_prints_leaderboard_plot_and_failure_summary(tmp_path, capsys):
    bfile = tmp_path / "b.toml"
    bfile.write_text(toml_dumps(tiny_benchmark_doc(strategies=["random", "test_always_fails"], seeds=[0])))
    rc = main(["bench", str(bfile), "--out", str(tmp_path / "out"), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "1 of 2 campaign(s) FAILED" in err and "deliberate failure" in err
    assert "rank" in out and "random" in out
    assert (tmp_path / "out" / "learning_curves.png").exists()


def test_killed_driver_resumes_without_duplicates(tmp_path):
    # Campaigns of >= 2 s: results are written in batches at most 5 s apart,
    # so the first batch lands while most campaigns are still to run.
    doc = tiny_benchmark_doc(strategies=[{"name": "test_sleepy", "grid": {"sleep_s": [1.0, 1.01, 1.02]}}], seeds=[0, 1])
    bfile = tmp_path / "b.toml"
    bfile.write_text(toml_dumps(doc))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "alharness.cli", "bench", str(bfile), "--out", str(out), "--num-cpus", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.environ["PYTHONPATH"]}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while time.time() < deadline and not list((out / "campaigns").glob("*.parquet")):
        if proc.poll() is not None:
            pytest.fail(f"bench ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    proc.wait()
    first = set(store.finished_ids(out))
    assert 1 <= len(first) < 6, first

    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{len(first)} campaign(s) already finished" in proc.stderr, [l for l in proc.stderr.splitlines() if "finished" in l]
    bench = parse_benchmark(doc)
    assert store.finished_ids(out) == {s.campaign_id for s in bench.specs}
    con, _ = store.connect(out)
    dup = con.execute("SELECT campaign_id, round, count(*) FROM rounds GROUP BY ALL HAVING count(*) > 1").fetchall()
    assert dup == []
    assert con.execute("SELECT count(*) FROM rounds").fetchone()[0] == 6 * 3


def test_application_errors_are_retried_up_to_attempts_then_recorded(tmp_path):
    from alharness.execution.backends.ray import run_benchmark

    def bench(counter, failures):
        return parse_benchmark(tiny_benchmark_doc(
            strategies=[{"name": "test_flaky", "counter": str(counter), "failures": failures}], seeds=[0]))

    # One transient failure, three attempts allowed: the second attempt succeeds.
    summary = run_benchmark(bench(tmp_path / "c1", 1), tmp_path / "out1", progress=False, attempts=3)
    assert summary.ok == 1 and not summary.failed
    con, _ = store.connect(tmp_path / "out1")
    assert con.execute("SELECT status, attempt, resumed_round FROM campaigns").fetchall() == [("ok", 2, 0)]
    # Failing every time: recorded as failed after exactly `attempts` runs, with the last traceback.
    summary = run_benchmark(bench(tmp_path / "c2", 99), tmp_path / "out2", progress=False, attempts=2)
    assert summary.ok == 0 and len(summary.failed) == 1
    assert len((tmp_path / "c2").read_text().splitlines()) == 2
    con, _ = store.connect(tmp_path / "out2", require_rounds=False)
    (status, attempt, error), = con.execute("SELECT status, attempt, error FROM campaigns").fetchall()
    assert status == "failed" and attempt == 2 and "Traceback" in error and "failure 2 of 99" in error


def test_results_to_a_file_uri(tmp_path):
    from alharness.execution.backends.ray import run_benchmark

    bench = parse_benchmark(tiny_benchmark_doc(strategies=["random"], seeds=[0, 1]))
    summary = run_benchmark(bench, f"file://{tmp_path}/res", progress=False)
    assert summary.ok == 2 and summary.batches >= 1
    assert store.finished_ids(tmp_path / "res") == {s.campaign_id for s in bench.specs}
    again = run_benchmark(bench, f"file://{tmp_path}/res", progress=False)
    assert again.skipped == 2


def test_fractional_gpus_are_validated():
    from alharness.errors import ConfigError
    from alharness.execution.backends.ray import task_resources
    from conftest import tiny_spec

    assert task_resources(tiny_spec(num_gpus=0.25)) == {"num_cpus": 1.0, "num_gpus": 0.25}
    assert task_resources(tiny_spec(num_gpus=2)) == {"num_cpus": 1.0, "num_gpus": 2.0}
    with pytest.raises(ConfigError, match=r"num_gpus must be 0, a fraction in \(0, 1\] or a whole number of GPUs, got 1.5"):
        task_resources(tiny_spec(num_gpus=1.5))


def test_tiny_campaigns_share_tasks_and_give_the_same_rows(tmp_path, monkeypatch):
    from alharness.execution import scheduler
    from alharness.execution.backends.local import LocalBackend
    from alharness.execution.backends.ray import RayBackend, run_benchmark

    chunks = []
    submit_chunk = RayBackend.submit_chunk
    monkeypatch.setattr(RayBackend, "submit_chunk", lambda self, items, at: chunks.append(len(items)) or submit_chunk(self, items, at))
    monkeypatch.setattr(scheduler, "CHUNK_S", 1e6)  # every campaign counts as tiny
    bench = parse_benchmark(tiny_benchmark_doc(strategies=["random"], seeds=range(6)))
    summary = run_benchmark(bench, tmp_path / "ray", max_concurrent=1, progress=False)
    assert summary.ok == 6 and chunks and max(chunks) > 1
    scheduler.run_benchmark(bench, tmp_path / "local", backend=LocalBackend(), progress=False)
    assert result_columns(_rows_by_campaign(tmp_path / "ray")) == result_columns(_rows_by_campaign(tmp_path / "local"))
    con, _ = store.connect(tmp_path / "ray")
    assert con.execute("SELECT count(*) FROM campaigns WHERE node_id IS NOT NULL").fetchone() == (6,)
