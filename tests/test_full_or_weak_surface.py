"""Surfaces, replay and sweeps: allocation_point buys exactly (C, S); the
surface CLI runs campaigns on Ray and stores surface.parquet; replayed GP
campaigns stay within budget and close to the best fixed strategy on a
logarithmic surface; the sweep CLI writes Parquet and both figures."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from alharness.toolkit.allocation import log_surface
from alharness.execution.benchmark import parse_benchmark
from alharness.campaign.loop import run_campaign
from alharness.cli import main
from alharness.studies.surface import ReplayCampaign, Surface, replay_fixed, replay_gp, surface_specs
from conftest import tiny_benchmark_doc, toml_dumps


def _log_surface(n_pool: int = 600) -> Surface:
    c = np.repeat([0, 50, 100, 200, 400, 600], 18)
    s = np.tile(np.repeat([0, 5, 10, 20, 40, 80], 3), 6)
    rng = np.random.default_rng(0)
    return Surface.from_points(c, s, log_surface(c, s) + rng.normal(0, 0.005, len(c)), n_pool=n_pool)


def test_allocation_point_buys_exactly_its_point():
    bench = parse_benchmark(tiny_benchmark_doc(strategies=("random",), seeds=(0,)))
    specs = surface_specs(bench, labels=[0, 3], masks=[0, 2], seeds=[0, 1])
    assert len(specs) == 8 and {s.budget for s in specs} >= {3 + 24.0, 24.0, 3.0}
    spec = next(s for s in specs if s.strategy_params == {"labels": 3, "masks": 2})
    row = run_campaign(spec).rows[0]
    assert (row["n_image_labels"], row["n_full_mask"]) == (3, 2)
    assert row["spent_label_equivalents"] == pytest.approx(27.0)


def test_surface_cli_runs_campaigns_and_stores_the_surface(ray_local, tmp_path):
    path = tmp_path / "b.toml"
    path.write_text(toml_dumps(tiny_benchmark_doc(name="surf", strategies=("random",), seeds=(0,))))
    out = tmp_path / "surface"
    assert main(["surface", str(path), "--labels", "0,4", "--masks", "2", "--seeds", "0,1", "--out", str(out),
                 "--quiet"]) == 0
    table = pq.read_table(out / "surface.parquet").to_pydict()
    assert sorted(zip(table["C"], table["S"], table["seed"])) == sorted(
        (c, s, k) for c in (0, 4) for s in (2,) for k in (0, 1))
    assert all(0.0 <= v <= 1.0 for v in table["miou"])
    surf = Surface.load(out)
    assert surf.n_pool == 12 and surf(0, 2) == pytest.approx(np.mean(
        [m for c, s, m in zip(table["C"], table["S"], table["miou"]) if (c, s) == (0, 2)]))


def test_surface_interpolates_and_adds_the_seed_spread():
    surf = Surface.from_points([0, 0, 10, 10, 0, 0, 10, 10], [0, 4, 0, 4] * 2, [0.1, 0.3, 0.2, 0.6, 0.1, 0.5, 0.2, 0.6])
    assert surf(5, 2) == pytest.approx(np.mean([0.1, 0.4, 0.2, 0.6]))
    assert surf.std[0, 1] > 0 and surf.std[1, 1] == 0
    draws = surf.sample(np.zeros(4000), np.full(4000, 4.0), np.random.default_rng(0))
    assert draws.std() == pytest.approx(surf.std[0, 1], rel=0.1)


def test_replayed_gp_stays_within_budget_and_near_the_best_fixed_strategy():
    surf = _log_surface()
    camps = [ReplayCampaign(budget=900.0, alpha_s=12.0, T=5, seed=s) for s in range(4)]
    rows = replay_gp(surf, camps, initial_fraction=0.03, samples=6, gp_iters=60)
    best_fixed = max(replay_fixed(surf, p, camps[0])["utility"] for p in np.arange(0.5, 0.96, 0.05))
    worst_fixed = min(replay_fixed(surf, p, camps[0])["utility"] for p in np.arange(0.5, 0.96, 0.05))
    for r in rows:
        assert r["cost"] <= 900.0 + 1e-9 and r["C"] + r["S"] <= 600
    gp = np.mean([r["utility"] for r in rows])
    # On a logarithmic surface (the GP's own mean form) it should land near the best fixed share.
    assert gp >= best_fixed - 0.03, (gp, best_fixed, worst_fixed)


def test_replay_with_the_analytic_fit_makes_gpytorchs_decisions():
    surf = _log_surface()
    camps = [ReplayCampaign(budget=float(b), alpha_s=a, T=4, seed=s)
             for s, (b, a) in enumerate([(500, 12.0), (900, 12.0), (1300, 5.0), (700, 25.0), (1100, 12.0)])]
    fast = replay_gp(surf, camps, initial_fraction=0.03, samples=5)
    ref = replay_gp(surf, camps, initial_fraction=0.03, samples=5, gp="gpytorch")
    assert [(r["C"], r["S"], r["cost"]) for r in fast] == [(r["C"], r["S"], r["cost"]) for r in ref]
    with pytest.raises(ValueError, match="gp must be one of"):
        replay_gp(surf, camps[:1], gp="autograd")


def test_replay_with_batched_ei_makes_the_per_campaign_and_gpytorch_posterior_decisions():
    """Every campaign's EI in one tensor program (the default) against decide campaign by campaign and against
    gpytorch's posterior at every grid point: the same strategies each round, hence the same rows."""
    surf = _log_surface()
    camps = [ReplayCampaign(budget=float(b), alpha_s=a, T=3, seed=s)
             for s, (b, a) in enumerate([(300, 12.0), (500, 5.0), (400, 25.0)])]
    kw = {"initial_fraction": 0.03, "samples": 4, "gp_iters": 30}
    key = lambda rows: [(r["C"], r["S"], r["cost"], r["utility"]) for r in rows]  # noqa: E731
    batched = replay_gp(surf, camps, **kw)
    assert key(batched) == key(replay_gp(surf, camps, batched=False, **kw))
    assert key(batched) == key(replay_gp(surf, camps, brute=True, gp="gpytorch", **kw))


def test_surface_draw_is_the_mean_plus_the_spread_times_the_given_normals():
    surf = _log_surface()
    c, s = np.array([[10, 300], [599, 0]]), np.array([[3, 70], [0, 80]])
    z = np.random.default_rng(1).standard_normal(c.shape)
    np.testing.assert_allclose(surf.draw(c, s, z), surf(c, s) + surf._interp(surf.std, c, s) * z, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(surf.sample(c, s, np.random.default_rng(1)), surf.draw(c, s, z))


def test_sweep_cli_writes_parquet_and_figures(tmp_path):
    import pyarrow as pa

    surf = _log_surface()
    d = tmp_path / "s"
    d.mkdir()
    c, s = np.meshgrid(surf.c, surf.s, indexing="ij")
    pq.write_table(pa.table({"C": c.ravel().tolist(), "S": s.ravel().tolist(), "seed": [0] * c.size,
                             "miou": surf.mean.ravel().tolist()}), d / "surface.parquet")
    assert main(["sweep", str(d), "--alpha-s", "5,25", "--T", "2,3", "--budgets", "400,800", "--seeds", "2",
                 "--samples", "3", "--gp-iters", "10", "--workers", "1", "--initial-fraction", "0.03"]) == 0
    rows = pq.read_table(d / "sweep" / "sweep.parquet").to_pylist()
    gp = [r for r in rows if r["strategy"] == "full_or_weak_gp"]
    assert len(gp) == 2 * 2 * 2 * 2
    assert {r["strategy"] for r in rows} >= {"fixed_50", "fixed_95", "estimated_best_fixed"}
    assert all(r["cost"] <= r["budget"] + 1e-9 for r in rows)
    assert (d / "sweep" / "sweep_alpha_s.png").stat().st_size > 1000 and (d / "sweep" / "sweep_T.png").is_file()


def test_replay_schedules_exact_by_default_and_a_deterministic_warm_sweep():
    """The exact schedule is the default (the allocation step's fits: gpytorch's decisions, as above); the
    replay-only warm schedule needs the analytic fit, and a sweep with it gives the same rows twice."""
    from alharness.studies.sweep import run_sweep

    surf = _log_surface()
    camps = [ReplayCampaign(budget=float(b), alpha_s=12.0, T=4, seed=s) for s, b in enumerate([500, 900, 1300])]
    kw = {"initial_fraction": 0.03, "samples": 5}
    key = lambda rows: [(r["C"], r["S"], r["cost"], r["utility"]) for r in rows]  # noqa: E731
    default = replay_gp(surf, camps, **kw)
    assert key(default) == key(replay_gp(surf, camps, schedule="exact", **kw)) == \
        key(replay_gp(surf, camps, gp="gpytorch", **kw))
    warm = replay_gp(surf, camps, schedule="warm", **kw)
    assert all(r["cost"] <= c.budget + 1e-9 and r["C"] + r["S"] <= 600 for r, c in zip(warm, camps))
    assert all(r["fit_steps"] < 100 for r in warm) and all(r["fit_steps"] == 100 for r in default)
    with pytest.raises(ValueError, match="analytic"):
        replay_gp(surf, camps, schedule="warm", gp="gpytorch", **kw)
    with pytest.raises(ValueError, match="schedule must be one of"):
        replay_gp(surf, camps, schedule="lbfgs", **kw)

    timing = {"fit_s", "ei_s", "replay_wall_s"}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    args = {"alpha_s": (5.0, 25.0), "T": (2, 3), "budgets": (400.0, 800.0), "seeds": (0, 1), "samples": 4,
            "initial_fraction": 0.03, "schedule": "warm"}
    one, two = run_sweep(surf, workers=1, **args), run_sweep(surf, workers=2, batch=3, **args)
    gp = lambda rows: sorted((r["alpha_s"], r["T"], r["budget"], r["seed"], r["C"], r["S"])  # noqa: E731
                             for r in rows if r["strategy"] == "full_or_weak_gp")
    assert strip(one) == strip(run_sweep(surf, workers=1, **args)) and gp(one) == gp(two)
