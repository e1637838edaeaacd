"""The fairness contract against a hostile plugin (issue 22): a strategy
package installed through the ``alharness.strategies`` entry point
(tests/plugins/alharness_hostile) tries every route to ground truth it has
not bought. In a strategy process (the default) each route returns nothing
or is refused; in process (``strategy_process = false``, for debugging) a
write to the labels fails the campaign, and the reads succeed (the positive
control that shows the routes are real)."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from alharness.campaign.loop import CampaignTimeout, run_campaign
from alharness.campaign.state import LabelStateError
from alharness.campaign.strategy_worker import StrategyError
from alharness.errors import MalformedQueryError
from alharness.execution.execute import execute
from alharness.registry import DATASETS, STRATEGIES
from alharness_hostile import TELLING, fingerprint
from conftest import TINY_DATASET, tiny_spec

READS = ["hostile_frames", "hostile_gc", "hostile_memmap", "hostile_memo"]
WRITES = ["hostile_write_base", "hostile_write_setflags"]
# What a campaign learns from its labels: it must equal what the idle strategy learns.
SCORES = ("spent_label_equivalents", "n_full_mask", "labelled_pixel_fraction", "miou", "train_loss")
SERVICE_DS = {**TINY_DATASET, "n_val": 3}


def _scores(rows):
    return [tuple(r[k] for k in SCORES) for r in rows]


def _unbought_truth(res, dataset_params=TINY_DATASET) -> set[str]:
    """Fingerprints of every mask the campaign did not buy: unbought pool images, test and val splits."""
    ds = DATASETS.create("synthetic_shapes", **dataset_params)
    bought = {q["image"] for q in res.queries if q["query_type"] == "full_mask"}
    pool = ds.split("train")
    planes = [pool.masks[i] for i in range(len(pool)) if i not in bought]
    planes += list(ds.split("test").masks)
    if dataset_params.get("n_val"):
        planes += list(ds.split("val").masks)
    return {fingerprint(p) for p in planes if p.min() != p.max()}


def _reports(res):
    return [json.loads(r["diagnostics"]) for r in res.rows[1:]]


@pytest.fixture(scope="module")
def idle():
    return run_campaign(tiny_spec(strategy="hostile_idle", rounds=2))


def test_the_hostile_package_is_installed_through_its_entry_point():
    for name in READS + WRITES + ["hostile_service", "hostile_pickle", "hostile_forge", "hostile_hang"]:
        assert STRATEGIES.get(name).origin.startswith("alharness_hostile."), name


@pytest.mark.parametrize("strategy", READS + WRITES)
def test_in_a_strategy_process_every_route_returns_nothing(strategy, idle):
    res = run_campaign(tiny_spec(strategy=strategy, rounds=2))
    # Paid nothing after round 0, and learnt exactly what buying nothing teaches.
    assert _scores(res.rows) == _scores(idle.rows)
    truth = _unbought_truth(res)
    for report in _reports(res):
        assert report["route"]
        assert not set(report.get("kinds", [])) & TELLING, report["kinds"]
        assert not report.get("files"), report["files"]  # no memory map, no path to the cache
        assert not set(report.get("planes", [])) & truth, "a mask the campaign did not buy reached the strategy"


@pytest.mark.parametrize("strategy", READS + WRITES)
def test_in_process_a_write_to_the_labels_fails_the_campaign(strategy):
    spec = tiny_spec(strategy=strategy, rounds=2, strategy_process=False)
    with pytest.raises(LabelStateError, match=f"after strategy '{strategy}' proposed in round 1"):
        run_campaign(spec)
    out = execute(spec)  # recorded failed, with no rows: never ranked
    assert out["record"]["status"] == "failed" and out["rows"] == [] and "LabelStateError" in out["record"]["error"]


@pytest.mark.parametrize("strategy", READS)
def test_in_process_the_reads_succeed(strategy):
    """The positive control: the same routes do reach ground truth when the
    strategy shares the campaign's process, so the tests above prove something."""
    res = run_campaign(tiny_spec(strategy=strategy, strategy_params={"write": False}, rounds=1, strategy_process=False))
    (report,) = _reports(res)
    assert set(report["planes"]) & _unbought_truth(res), report


@pytest.mark.parametrize("strategy", ["hostile_memmap", "hostile_memo"])
def test_in_process_the_reads_succeed_beside_other_datasets(strategy):
    """A dataset of another image size opened earlier in the same process (as
    other tests do in one pytest run) neither breaks the cheat nor hides the pool's truth."""
    run_campaign(tiny_spec(dataset_params={**TINY_DATASET, "size": 16, "seed": 7}, rounds=1, strategy_process=False))
    test_in_process_a_write_to_the_labels_fails_the_campaign(strategy)
    test_in_process_the_reads_succeed(strategy)


def test_train_and_score_answers_by_message_and_exposes_nothing():
    spec = tiny_spec(strategy="hostile_service", dataset_params=SERVICE_DS, validation="charged", budget=96, rounds=1)
    res = run_campaign(spec)
    (report,) = _reports(res)
    assert "refused: UnboughtDataError" in report["kinds"]  # the service's own refusal reaches the strategy
    assert not {"trained on unbought data", "bad score"} & set(report["kinds"])
    assert not set(report["kinds"]) & TELLING, report["kinds"]  # no label state, no TrainAndScore object
    assert not set(report["planes"]) & _unbought_truth(res, SERVICE_DS)  # the validation masks neither
    in_process = tiny_spec(strategy="hostile_service", dataset_params=SERVICE_DS, validation="charged", budget=96,
                           rounds=1, strategy_process=False)
    with pytest.raises(LabelStateError):  # in process the service's label state is writable: the write is caught
        run_campaign(in_process)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "payload-ran"
    spec = tiny_spec(strategy="hostile_pickle", strategy_params={"marker": str(marker)}, rounds=1)
    t0 = time.monotonic()
    with pytest.raises(StrategyError, match="plain values"):
        run_campaign(spec)
    assert time.monotonic() - t0 < 20 and not marker.exists()
    with pytest.raises(MalformedQueryError, match="not a known query type"):
        run_campaign(tiny_spec(strategy="hostile_pickle", strategy_params={"marker": str(marker)}, rounds=1,
                               strategy_process=False))
    assert not marker.exists()


def test_a_forged_service_call_is_refused():
    with pytest.raises(StrategyError, match="'oracle', which it did not declare"):
        run_campaign(tiny_spec(strategy="hostile_forge", rounds=1))


# -- the time limit -------------------------------------------------------------
def _gone(pid: int, within: float = 5.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("process", [True, False], ids=["strategy-process", "in-process"])
def test_a_hanging_strategy_times_out_with_its_phase_and_is_stopped(process, tmp_path, idle):
    marker = tmp_path / "pid"
    spec = tiny_spec(strategy="hostile_hang", strategy_params={"marker": str(marker)}, rounds=2, timeout_s=6,
                     strategy_process=process)
    t0 = time.monotonic()
    out = execute(spec)
    assert time.monotonic() - t0 < 15
    rec = out["record"]
    assert rec["status"] == "failed" and out["rows"] == []
    assert "CampaignTimeout: timed out after 6 s in round 1, phase propose" in rec["error"], rec["error"][-500:]
    if process:
        assert _gone(int(marker.read_text())), "the hung strategy process was left running"
    # The campaign process is free: the next campaign runs normally.
    assert _scores(run_campaign(tiny_spec(strategy="hostile_idle", rounds=2)).rows) == _scores(idle.rows)


def test_the_time_limit_fails_only_the_campaign_that_ran_over(tmp_path):
    from alharness.execution.backends.local import LocalBackend
    from alharness.execution.benchmark import parse_benchmark
    from alharness.execution.scheduler import run_benchmark
    from conftest import tiny_benchmark_doc

    doc = tiny_benchmark_doc(strategies=["random", {"name": "hostile_hang"}], seeds=[0], rounds=1)
    doc["resources"] = {"timeout_s": 6}
    summary = run_benchmark(parse_benchmark(doc), tmp_path, backend=LocalBackend(), progress=False)
    assert summary.ok == 1 and len(summary.failed) == 1
    assert "timed out after 6 s in round 1, phase propose" in summary.failed[0]["error"]


def test_a_timeout_in_the_harness_phases_names_them():
    """Training that runs over is interrupted too (the watchdog, in the main thread)."""
    from alharness.learner import LearnerConfig

    spec = tiny_spec(rounds=1, timeout_s=0.5, learner=LearnerConfig(steps=10_000, batch_size=4,
                                                                   model_params={"width": 4, "depth": 1}))
    with pytest.raises(CampaignTimeout, match=r"timed out after 0.5 s in (setup|round 0, phase \w+)"):
        run_campaign(spec)


def test_pool_images_reach_the_strategy_process_as_a_plain_copy():
    """No memory map, no file name: the route to masks.npy beside the cache file is closed."""
    res = run_campaign(tiny_spec(strategy="hostile_memmap", strategy_params={"write": False}, rounds=1))
    (report,) = _reports(res)
    assert report["files"] == [] and "memmap" not in report["kinds"]
    in_process = run_campaign(tiny_spec(strategy="hostile_memmap", strategy_params={"write": False}, rounds=1,
                                        strategy_process=False))
    (report,) = _reports(in_process)
    assert any(f.endswith(".npy") for f in report["files"]), "in process the images are the cache's memory map"
    assert np.isfinite(in_process.rows[-1]["miou"])


def test_large_arrays_arrive_as_read_only_anonymous_memory(monkeypatch, idle):
    """From 1 MiB on (here: every buffer) arrays travel as sealed memfds: no
    file name, and not writable in the strategy process even after setflags."""
    from alharness.campaign import strategy_worker

    monkeypatch.setattr(strategy_worker, "_SHARE_BYTES", 1)
    res = run_campaign(tiny_spec(strategy="hostile_memmap", strategy_params={"write": False}, rounds=1))
    (report,) = _reports(res)
    assert report["files"] == [] and not set(report["planes"]) & _unbought_truth(res)
    res = run_campaign(tiny_spec(strategy="hostile_write_setflags", rounds=2))
    assert [r["wrote"] for r in _reports(res)] == [False, False]
    assert _scores(res.rows) == _scores(idle.rows)
    a = run_campaign(tiny_spec(strategy="entropy", strategy_process=False))
    b = run_campaign(tiny_spec(strategy="entropy"))
    assert _scores(a.rows) == _scores(b.rows) and a.queries == b.queries
