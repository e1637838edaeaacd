"""Full-supervision reference campaigns and the leaderboard's "cost to reach X % of full supervision"."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_benchmark_doc, tiny_spec

from alharness.results import leaderboard as report, store
from alharness.execution.benchmark import parse_benchmark
from alharness.campaign.loop import run_campaign
from alharness.errors import ConfigError
from alharness.campaign.reference import REFERENCE_STRATEGY


def test_benchmark_adds_one_reference_per_dataset_learner_and_seed():
    doc = tiny_benchmark_doc(strategies=("random", "entropy", {"name": "fixed_proportion", "grid": {"mask_fraction": [0.3, 0.7]}}),
                             seeds=(0, 1), budget=[40, 60], reference=True)
    bench = parse_benchmark(doc)
    refs = [s for s in bench.specs if s.is_reference]
    others = [s for s in bench.specs if not s.is_reference]
    assert len(others) == 4 * 2 * 2 and len(refs) == 2  # shared by strategies and budgets, one per seed
    assert {r.seed for r in refs} == {0, 1}
    assert {s.reference().campaign_id for s in others} == {r.campaign_id for r in refs}
    assert all(r.reference().campaign_id == r.campaign_id for r in refs)  # a reference is its own reference
    # Off by default; a non-boolean is a clear error.
    assert not any(s.is_reference for s in parse_benchmark(tiny_benchmark_doc()).specs)
    with pytest.raises(ConfigError, match="reference must be true or false"):
        parse_benchmark(tiny_benchmark_doc(reference="yes"))


def test_reference_campaign_buys_every_pool_mask_without_noise():
    spec = tiny_spec().reference()
    res = run_campaign(spec)
    first, last = res.rows[0], res.rows[-1]
    assert first["n_full_mask"] == 12 and first["labelled_pixel_fraction"] == pytest.approx(1.0)
    assert first["reference_id"] == spec.campaign_id and first["strategy"] == REFERENCE_STRATEGY
    assert last["miou"] == first["miou"] and last["batch_size"] == 0  # nothing left to buy, nothing retrained
    assert spec.noise.to_dict() == type(spec.noise)().to_dict()


def _rows(cid, label, seed, points, ref, strategy=None, budget=100.0):
    return [
        {"campaign_id": cid, "reference_id": ref, "dataset": "d", "strategy": strategy or label, "strategy_label": label,
         "budget_metric": "label_equivalents", "budget": budget, "seed": seed, "round": i,
         "spent_label_equivalents": float(x), "miou": float(y)}
        for i, (x, y) in enumerate(points)
    ]


def _write(tmp_path, rows):
    cid = rows[0]["campaign_id"]
    store.write_campaign(tmp_path, {"campaign_id": cid, "status": "ok", "error": "", "spec": json.dumps({})}, rows)


def test_cost_to_reach_is_measured_against_the_matching_reference(tmp_path):
    # References: seed 0 reaches 0.8 with every mask, seed 1 reaches 0.6.
    _write(tmp_path, _rows("r0", REFERENCE_STRATEGY, 0, [(1200, 0.8), (1200, 0.8)], "r0", budget=1e15))
    _write(tmp_path, _rows("r1", REFERENCE_STRATEGY, 1, [(1200, 0.6)], "r1", budget=1e15))
    # A: 90 % of 0.8 = 0.72 first at cost 80 (seed 0); 90 % of 0.6 = 0.54 first at cost 40 (seed 1).
    _write(tmp_path, _rows("a0", "A", 0, [(0, 0.3), (40, 0.6), (80, 0.75), (100, 0.76)], "r0"))
    _write(tmp_path, _rows("a1", "A", 1, [(0, 0.3), (40, 0.55), (80, 0.56)], "r1"))
    # B never gets to 90 % of its reference on seed 0.
    _write(tmp_path, _rows("b0", "B", 0, [(0, 0.3), (100, 0.7)], "r0"))
    con, _ = store.connect(tmp_path)
    lb = {r["strategy"]: r for r in report.leaderboard(con, reach=0.9)}
    assert set(lb) == {"A", "B"}  # the reference is the yardstick, not a competitor
    assert lb["A"]["reach_of"] == "full supervision" and lb["A"]["reached"] == 2
    assert lb["A"]["cost_to_reach_mean"] == pytest.approx(60)
    assert lb["A"]["full_miou_mean"] == pytest.approx(0.7)
    assert lb["B"]["reached"] == 0
    text = report.format_leaderboard(report.leaderboard(con, reach=0.9), reach=0.9)
    assert "of full supervision" in text and REFERENCE_STRATEGY not in text.split("\n", 2)[2]
    # The plot draws the reference as a line, not as a strategy curve.
    assert report.plot_learning_curves(con, tmp_path / "c.png").exists()


def test_the_leaderboard_marks_a_strategy_above_full_supervision(tmp_path):
    # Seeds 0-2: references at 0.6 / 0.62 / 0.64; P ends 0.15 above its own seed's reference
    # every time (the learner is the limit), M 0.1 below it, T ties it within noise.
    for seed, full in enumerate([0.6, 0.62, 0.64]):
        _write(tmp_path, _rows(f"r{seed}", REFERENCE_STRATEGY, seed, [(1200, full)], f"r{seed}", budget=1e15))
        for label, gap in (("P", 0.15), ("M", -0.1), ("T", 0.01 * (-1) ** seed)):
            _write(tmp_path, _rows(f"{label}{seed}", label, seed, [(0, 0.2), (100, full + gap)], f"r{seed}"))
    con, _ = store.connect(tmp_path)
    lb = {r["strategy"]: r for r in report.leaderboard(con)}
    assert {s: r["beats_full"] for s, r in lb.items()} == {"P": True, "M": False, "T": False}
    text = report.format_leaderboard(list(lb.values()))
    assert "LEARNER INADEQUATE: P beat full supervision by more than seed noise" in text
    assert " P *" in text and " M *" not in text and " T *" not in text
    # The per-campaign rule (the report's "What to buy") agrees with the leaderboard's.
    assert report.learner_inadequate(report.per_campaign(con)) == {("d", "label_equivalents", "label_equivalents", 100.0): ["P"]}
    from alharness.results.report_page import build_report

    _, md = build_report(tmp_path, tmp_path / "report")
    page = md.read_text()
    assert "LEARNER INADEQUATE on d, budget 100: P (marked *) beat full supervision" in page and "| P * |" in page


def test_without_references_cost_to_reach_falls_back_to_the_best_strategy(tmp_path):
    _write(tmp_path, _rows("a0", "A", 0, [(0, 0.3), (100, 0.8)], "missing"))
    _write(tmp_path, _rows("b0", "B", 0, [(0, 0.3), (50, 0.75), (100, 0.75)], "missing"))
    con, _ = store.connect(tmp_path)
    lb = {r["strategy"]: r for r in report.leaderboard(con, reach=0.9)}
    assert lb["A"]["reach_of"] == "best" and lb["A"]["full_miou_mean"] is None
    assert lb["B"]["cost_to_reach_mean"] == pytest.approx(50)  # 0.9 * 0.8 = 0.72
    assert "no full-supervision reference" in report.format_leaderboard(report.leaderboard(con))
    assert not any(r["beats_full"] for r in lb.values()) and "LEARNER INADEQUATE" not in report.format_leaderboard(list(lb.values()))


def test_references_are_cached_across_results_directories(tmp_path, monkeypatch):
    from alharness.results import reference_cache
    from alharness.execution.execute import campaign_record

    monkeypatch.setenv(reference_cache.CACHE_ENV, str(tmp_path / "cache"))
    bench = parse_benchmark(tiny_benchmark_doc(strategies=("random",), seeds=(0,), reference=True))
    (ref,) = [s for s in bench.specs if s.is_reference]
    res = run_campaign(ref)
    store.write_campaign(tmp_path / "a", campaign_record(ref, "ok"), res.rows, res.queries)
    assert reference_cache.restore(tmp_path / "b", bench.specs) == 0  # nothing cached yet
    assert reference_cache.save(tmp_path / "a", bench.specs) == 1
    assert reference_cache.save(tmp_path / "a", bench.specs) == 0  # already there
    assert reference_cache.restore(tmp_path / "b", bench.specs) == 1
    assert store.finished_ids(tmp_path / "b") == {ref.campaign_id}
    con, _ = store.connect(tmp_path / "b")
    got = con.execute("SELECT round, miou FROM rounds ORDER BY round").fetchall()
    assert got == [(r["round"], r["miou"]) for r in res.rows]
    assert reference_cache.restore(tmp_path / "b", bench.specs) == 0  # b has it now
    # Another alharness version never reuses it; "off" disables the cache.
    monkeypatch.setattr("alharness.__version__", "0.0.0-other")
    assert reference_cache.restore(tmp_path / "c", bench.specs) == 0
    monkeypatch.setenv(reference_cache.CACHE_ENV, "off")
    assert reference_cache.cache_location() is None and reference_cache.save(tmp_path / "a", bench.specs) == 0
