"""Cost-sensitivity sweeps of the full-or-weak allocation on a stored surface.

Figs. 4 and 5 of the full-or-weak paper: the GP allocation against the
fixed proportions and estimated-best-fixed for several mask prices alpha_s
(Fig. 4) and numbers of installments T (Fig. 5). Every campaign is replayed
against a ground-truth surface (``alharness.studies.surface``), so the whole grid
(alpha_s × T × budget × seed) runs in minutes. Results: ``sweep.parquet``
and ``sweep_alpha_s.png`` / ``sweep_T.png``.
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from alharness.errors import ConfigError
from alharness.results import plots
from alharness.studies.surface import (SCHEDULES, ReplayCampaign, Surface, replay_estimated_best_fixed, replay_fixed,
                                       replay_gp)

ALPHA_S = (5.0, 12.0, 25.0, 50.0)  # Fig. 4
T_VALUES = (3, 5, 8, 10)  # Fig. 5
PROPORTIONS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)  # §4.2


def default_budgets(surface: Surface, alpha_s: float, initial_fraction: float, n: int = 5) -> list[float]:
    """``n`` budgets from twice the initial installment B0 to what the 95 % strategy can spend on the surface."""
    b0 = max(1, round(initial_fraction * surface.n_pool)) * (1.0 + alpha_s)
    top = min(surface.s_max * alpha_s / 0.95, (surface.c_max + surface.s_max) * alpha_s)
    lo = min(2 * b0, top / 2)
    return [float(round(v)) for v in np.linspace(lo, max(top, lo * 1.5), n)]


def _gp_batch(args: tuple) -> list[dict[str, Any]]:
    surface, camps, kw = args
    import torch

    torch.set_num_threads(1)  # one process per core
    return replay_gp(surface, camps, **kw)


def run_sweep(surface: Surface, *, alpha_s: Sequence[float] = ALPHA_S, T: Sequence[int] = T_VALUES,
              budgets: Sequence[float] | None = None, seeds: Sequence[int] = (0, 1, 2), initial_fraction: float = 0.08,
              samples: int = 8, gp_iters: int = 100, proportions: Sequence[float] = PROPORTIONS, workers: int = 2,
              batch: int = 256, schedule: str = "exact") -> list[dict[str, Any]]:
    """Replay GP, fixed and estimated-best-fixed campaigns over alpha_s × T × budget × seed; one row each.

    ``schedule``: the GP fits of ``replay_gp``, "exact" (the allocation step's, the default) or "warm"
    (warm-started L-BFGS to convergence, faster; decisions differ, benchmarks/perf_allocation.py)."""
    if any(a <= 0 for a in alpha_s) or any(int(t) < 1 for t in T) or not seeds:
        raise ConfigError("sweep: alpha_s must be > 0, T >= 1 and at least one seed")
    if schedule not in SCHEDULES:
        raise ConfigError(f"sweep: schedule must be one of {SCHEDULES}, got {schedule!r}")
    camps = [ReplayCampaign(budget=float(b), alpha_s=float(a), T=int(t), seed=int(s))
             for a in alpha_s for t in T
             for b in (budgets or default_budgets(surface, a, initial_fraction)) for s in seeds]
    rows: list[dict[str, Any]] = []

    def tag(row: dict, camp: ReplayCampaign) -> dict:
        return {**row, "budget": camp.budget, "alpha_s": camp.alpha_s, "T": camp.T, "seed": camp.seed}

    # Baselines do not depend on T: once per (alpha_s, budget, seed), tagged with each T for plotting.
    for camp in camps:
        for p in proportions:
            rows.append(tag(replay_fixed(surface, p, camp), camp))
        rows.append(tag(replay_estimated_best_fixed(surface, camp, proportions, initial_fraction), camp))
    kw = {"initial_fraction": initial_fraction, "samples": samples, "gp_iters": gp_iters, "schedule": schedule}
    jobs = []
    for t, group in itertools.groupby(sorted(camps, key=lambda c: c.T), key=lambda c: c.T):
        group = list(group)
        jobs += [(surface, group[i : i + batch], kw) for i in range(0, len(group), batch)]
    t0 = time.perf_counter()
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_gp_batch, jobs))
    else:
        results = [_gp_batch(j) for j in jobs]
    wall = time.perf_counter() - t0
    for (_, group, _), res in zip(jobs, results):
        rows += [{**tag(r, c), "replay_wall_s": wall} for r, c in zip(res, group)]
    return rows


def write_sweep(rows: list[dict[str, Any]], out: str | Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r})
    pq.write_table(pa.table({k: [r.get(k) for r in rows] for k in keys}), out / "sweep.parquet")
    return out / "sweep.parquet"


def _sweep_panel(rows: list[dict], alpha_s: float, T: int) -> plots.SweepPanel:
    budgets = sorted({r["budget"] for r in rows})

    def series(name: str) -> tuple[np.ndarray, np.ndarray]:
        by_b = [[r["utility"] for r in rows if r["strategy"] == name and r["budget"] == b] for b in budgets]
        return np.array([np.mean(v) if v else np.nan for v in by_b]), np.array([np.std(v) if v else np.nan for v in by_b])

    fixed = sorted({r["strategy"] for r in rows if r["strategy"].startswith("fixed_")}, key=lambda n: int(n.split("_")[1]))
    return plots.SweepPanel(alpha_s, T, budgets, [(name.split("_")[1], series(name)[0]) for name in fixed],
                            series("full_or_weak_gp"), series("estimated_best_fixed")[0])


def plot_sweep(rows: list[dict[str, Any]], out: str | Path, *, t_ref: int = 8, alpha_ref: float = 12.0) -> list[Path]:
    """Fig. 4 (one panel per alpha_s at T = t_ref) and Fig. 5 (GP per T at alpha_s = alpha_ref)."""
    out = Path(out)
    alphas = sorted({r["alpha_s"] for r in rows})
    ts = sorted({r["T"] for r in rows})
    t_ref = min(ts, key=lambda t: abs(t - t_ref))
    panels = [_sweep_panel([r for r in rows if r["alpha_s"] == a and r["T"] == t_ref], a, t_ref) for a in alphas]
    paths = [plots.sweep_by_alpha(panels, out / "sweep_alpha_s.png")]

    a_ref = min(alphas, key=lambda a: abs(a - alpha_ref))
    sub = [r for r in rows if r["alpha_s"] == a_ref]
    budgets = sorted({r["budget"] for r in sub})
    best = [max(np.mean([r["utility"] for r in sub if r["strategy"] == n and r["budget"] == b])
                for n in {r["strategy"] for r in sub if r["strategy"].startswith("fixed_")}) for b in budgets]
    gp = []
    for t in ts:
        vals = [[r["utility"] for r in sub if r["strategy"] == "full_or_weak_gp" and r["T"] == t and r["budget"] == b]
                for b in budgets]
        gp.append((t, np.array([np.mean(v) for v in vals]), np.array([np.std(v) for v in vals])))
    paths.append(plots.sweep_by_T(a_ref, budgets, best, gp, out / "sweep_T.png"))
    return paths
