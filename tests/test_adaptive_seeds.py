"""Adaptive seeding (seeds = { min, max, until = "settled" }) with a stand-in
campaign: synthetic rows instead of training, so the policy is what is tested."""

from __future__ import annotations

import json

import pytest

from alharness.errors import ConfigError
from alharness.execution.adaptive_seeds import SEEDING_FILE, decide, seeds_to_decide
from alharness.execution.backends.local import LocalBackend
from alharness.execution.benchmark import parse_benchmark
from alharness.execution.execute import campaign_record
from alharness.execution.scheduler import run_benchmark
from alharness.results import store
from alharness.results.stats import min_seeds_to_call
from conftest import tiny_benchmark_doc


def _noise(seed: int) -> float:
    return ((seed * 7919) % 13) / 100  # what a seed does to every strategy alike


class StandIn(LocalBackend):
    """Campaigns answered at once with one synthetic row: ``score(spec)`` as its mIoU."""

    def __init__(self, score):
        super().__init__()
        self.score, self.ran = score, []

    def _run(self, spec, attempt, checkpoint_at):
        self.ran.append(spec)
        row = {"campaign_id": spec.campaign_id, "strategy": spec.strategy, "strategy_label": spec.strategy_label,
               "seed": spec.seed, "round": 0, "miou": float(self.score(spec))}
        return {"record": campaign_record(spec, "ok"), "rows": [row], "queries": []}


def _bench(strategies, seeds):
    doc = tiny_benchmark_doc(strategies=strategies, seeds=[0])
    doc["benchmark"]["seeds"] = seeds
    return parse_benchmark(doc, open_datasets=False)


def _seeding(path):
    return json.loads((path / SEEDING_FILE).read_text())


def test_a_clearly_separated_pair_stops_early_and_a_rerun_adds_nothing(tmp_path):
    bench = _bench(["random", "entropy"], {"min": 3, "max": 20})
    assert len(bench.specs) == 40 and bench.seeding.max == 20
    score = lambda s: (0.7 if s.strategy == "entropy" else 0.5) + _noise(s.seed)  # noqa: E731
    summary = run_benchmark(bench, tmp_path, backend=(b := StandIn(score)), progress=False)
    seeds = sorted({s.seed for s in b.ran})
    # 6 common seeds: the first at which the report's exact test can call one pair (2^(1-6) < 0.05)
    assert seeds == [0, 1, 2, 3, 4, 5] and summary.ok == 12
    (group,) = _seeding(tmp_path).values()
    assert group["seeds"] == {"entropy": 6, "random": 6} and group["reason"].startswith("settled")
    assert group["in_contention"] == ["entropy"] and group["waves"] == 4
    con, _ = store.connect(tmp_path)
    assert con.execute("SELECT seed, min(wave), max(wave) FROM rounds GROUP BY seed ORDER BY seed").fetchall() == [
        (0, 0, 0), (1, 0, 0), (2, 0, 0), (3, 1, 1), (4, 2, 2), (5, 3, 3)]
    assert con.execute("SELECT count(*) FROM campaigns WHERE wave IS NULL").fetchone() == (0,)

    again = run_benchmark(bench, tmp_path, backend=(b2 := StandIn(score)), progress=False)
    assert b2.ran == [] and again.ok == 0 and again.skipped == 12  # resumable: settled means nothing to add


def test_two_identical_strategies_run_to_the_maximum(tmp_path):
    bench = _bench([{"name": "fixed_proportion", "grid": {"mask_fraction": [0.5, 0.75]}}], {"min": 3, "max": 8})
    run_benchmark(bench, tmp_path, backend=(b := StandIn(lambda s: 0.4 + _noise(s.seed))), progress=False)
    assert sorted({s.seed for s in b.ran}) == list(range(8)) and len(b.ran) == 16
    (group,) = _seeding(tmp_path).values()
    assert group["reason"] == "maximum of 8 seeds reached" and set(group["seeds"].values()) == {8}


def test_an_interrupted_run_continues_where_it_stopped(tmp_path):
    bench = _bench(["random", "entropy"], {"min": 3, "max": 20, "per_wave": 2})
    score = lambda s: (0.7 if s.strategy == "entropy" else 0.5) + _noise(s.seed)  # noqa: E731

    class Dies(StandIn):
        def _run(self, spec, attempt, checkpoint_at):
            if spec.seed >= 3:
                raise KeyboardInterrupt  # the driver killed after wave 0
            return super()._run(spec, attempt, checkpoint_at)

    with pytest.raises(KeyboardInterrupt):
        run_benchmark(bench, tmp_path, backend=Dies(score), progress=False)
    run_benchmark(bench, tmp_path, backend=(b := StandIn(score)), progress=False)
    assert sorted({s.seed for s in b.ran}) == [3, 4, 5, 6]  # waves 1 and 2 (two seeds each), then settled


def test_successive_elimination_keeps_the_close_pair_in_contention():
    noise = {s: _noise(s) for s in range(6)}
    values = {"a": {s: 0.7 + v for s, v in noise.items()}, "b": {s: 0.7 + v for s, v in noise.items()},
              "c": {s: 0.2 + v for s, v in noise.items()}}
    active, settled = decide(values, {"a", "b", "c"}, 5)
    assert active == {"a", "b"} and not settled  # c is out; a and b are not told apart
    assert decide({k: {s: x for s, x in v.items() if s < 4} for k, v in values.items()}, {"a", "b", "c"}, 5) == (
        {"a", "b", "c"}, False)  # 4 seeds: no interval is trusted yet


def test_groups_run_until_the_reports_exact_test_can_call_their_pairs():
    # k pairs need n seeds with 2^(1-n) * k < 0.05: 1 pair 6, 3 pairs 7, 10 pairs 9, 15 pairs 10; never below MIN_SEEDS.
    assert [seeds_to_decide(n) for n in (1, 2, 3, 5, 6)] == [6, 6, 7, 9, 10]
    assert all(min_seeds_to_call(n * (n - 1) // 2) <= seeds_to_decide(n) for n in range(2, 12))


def test_the_seeds_table_is_checked():
    with pytest.raises(ConfigError, match="min .* must be <= max"):
        _bench(["random"], {"min": 5, "max": 3})
    with pytest.raises(ConfigError, match=r"\[benchmark\] seeds"):
        _bench(["random"], {"min": 3, "max": 5, "until": "forever"})
    assert _bench(["random"], [0, 1]).seeding is None  # a list stays valid
