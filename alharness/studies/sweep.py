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
from alharness.studies.surface import (ReplayCampaign, Surface, replay_estimated_best_fixed, replay_fixed, replay_gp)

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
              batch: int = 256) -> list[dict[str, Any]]:
    """Replay GP, fixed and estimated-best-fixed campaigns over alpha_s × T × budget × seed; one row each."""
    if any(a <= 0 for a in alpha_s) or any(int(t) < 1 for t in T) or not seeds:
        raise ConfigError("sweep: alpha_s must be > 0, T >= 1 and at least one seed")
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
    kw = {"initial_fraction": initial_fraction, "samples": samples, "gp_iters": gp_iters}
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


def _panel(ax, rows: list[dict], title: str) -> None:
    budgets = sorted({r["budget"] for r in rows})

    def series(name: str) -> tuple[np.ndarray, np.ndarray]:
        by_b = [[r["utility"] for r in rows if r["strategy"] == name and r["budget"] == b] for b in budgets]
        return np.array([np.mean(v) if v else np.nan for v in by_b]), np.array([np.std(v) if v else np.nan for v in by_b])

    fixed = sorted({r["strategy"] for r in rows if r["strategy"].startswith("fixed_")}, key=lambda n: int(n.split("_")[1]))
    for i, name in enumerate(fixed):
        m, _ = series(name)
        ax.plot(budgets, m, color="tab:blue", alpha=0.25 + 0.75 * i / max(len(fixed) - 1, 1), lw=1)
        ax.annotate(name.split("_")[1] + "%", (budgets[-1], m[-1]), fontsize=6, color="tab:blue")
    m, s = series("full_or_weak_gp")
    ax.plot(budgets, m, color="tab:orange", lw=2, label="GP (Alg. 2)")
    ax.fill_between(budgets, m - s, m + s, color="tab:orange", alpha=0.25)
    m, _ = series("estimated_best_fixed")
    ax.plot(budgets, m, "o", color="tab:red", ms=4, label="estimated-best-fixed")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("budget (label equivalents)")


def plot_sweep(rows: list[dict[str, Any]], out: str | Path, *, t_ref: int = 8, alpha_ref: float = 12.0) -> list[Path]:
    """Fig. 4 (one panel per alpha_s at T = t_ref) and Fig. 5 (GP per T at alpha_s = alpha_ref)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    paths = []
    alphas = sorted({r["alpha_s"] for r in rows})
    ts = sorted({r["T"] for r in rows})
    t_ref = min(ts, key=lambda t: abs(t - t_ref))
    fig, axes = plt.subplots(1, len(alphas), figsize=(3.2 * len(alphas), 3.0), squeeze=False)
    for ax, a in zip(axes[0], alphas):
        _panel(ax, [r for r in rows if r["alpha_s"] == a and r["T"] == t_ref], f"alpha_s = {a:g}, T = {t_ref}")
    axes[0][0].set_ylabel("expected mIoU (surface)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "sweep_alpha_s.png", dpi=120)
    plt.close(fig)
    paths.append(out / "sweep_alpha_s.png")

    a_ref = min(alphas, key=lambda a: abs(a - alpha_ref))
    sub = [r for r in rows if r["alpha_s"] == a_ref]
    budgets = sorted({r["budget"] for r in sub})
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    best = [max(np.mean([r["utility"] for r in sub if r["strategy"] == n and r["budget"] == b])
                for n in {r["strategy"] for r in sub if r["strategy"].startswith("fixed_")}) for b in budgets]
    ax.plot(budgets, best, "--", color="tab:blue", label="best fixed (hindsight)")
    for t in ts:
        vals = [[r["utility"] for r in sub if r["strategy"] == "full_or_weak_gp" and r["T"] == t and r["budget"] == b]
                for b in budgets]
        m, s = np.array([np.mean(v) for v in vals]), np.array([np.std(v) for v in vals])
        line, = ax.plot(budgets, m, lw=1.5, label=f"GP, T = {t}")
        ax.fill_between(budgets, m - s, m + s, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("budget (label equivalents)")
    ax.set_ylabel("expected mIoU (surface)")
    ax.set_title(f"alpha_s = {a_ref:g}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "sweep_T.png", dpi=120)
    plt.close(fig)
    paths.append(out / "sweep_T.png")
    return paths


def fig3_table(results_dir: str | Path) -> list[dict[str, Any]]:
    """Final test mIoU per (strategy, budget) over seeds from a full-or-weak benchmark's results (Fig. 3 structure)."""
    from alharness.results import store

    con, _ = store.connect(results_dir)
    rows = con.execute(
        "WITH last AS (SELECT *, row_number() OVER (PARTITION BY campaign_id ORDER BY round DESC) k FROM rounds "
        "WHERE strategy <> 'full_supervision') "
        "SELECT strategy_label, budget, avg(miou) m, stddev_samp(miou) sd, count(*) n, "
        "avg(spent_label_equivalents) spent, avg(n_full_mask) masks, avg(n_image_labels) labels "
        "FROM last WHERE k = 1 GROUP BY ALL ORDER BY strategy_label, budget").fetchall()
    return [dict(zip(("strategy", "budget", "miou", "std", "seeds", "spent", "masks", "labels"), r)) for r in rows]


def plot_fig3(table: list[dict[str, Any]], out: str | Path) -> Path:
    """Fig. 3 layout: fixed shares (blue), the GP allocation (orange, ± std band), estimated-best-fixed (red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name in sorted({r["strategy"] for r in table}):
        rs = sorted((r for r in table if r["strategy"] == name), key=lambda r: r["budget"])
        b = [r["budget"] for r in rs]
        m = np.array([r["miou"] for r in rs])
        sd = np.array([r["std"] or 0.0 for r in rs])
        if name.startswith("full_or_weak_gp"):
            ax.plot(b, m, color="tab:orange", lw=2, label="GP allocation (Alg. 2)")
            ax.fill_between(b, m - sd, m + sd, color="tab:orange", alpha=0.25)
        elif name.startswith("estimated_best_fixed"):
            ax.errorbar(b, m, sd, fmt="o", color="tab:red", ms=4, capsize=2, label="estimated-best-fixed")
        elif name.startswith("fixed_proportion"):
            share = name.split("mask_fraction=")[1].rstrip(")").split(",")[0] if "mask_fraction=" in name else "0.5"
            ax.plot(b, m, color="tab:blue", alpha=0.35 + 0.6 * float(share), lw=1)
            ax.annotate(f"{round(float(share) * 100)}%", (b[-1], m[-1]), fontsize=7, color="tab:blue")
    ax.set_xlabel("budget (label equivalents, alpha_s = 12)")
    ax.set_ylabel("test mIoU after the last round")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_surface(surface: Surface, out: str | Path) -> Path:
    """Fig. 6 layout: the measured m(C, S) (mean over seeds) as a heat map with the seed spread in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    im = ax.imshow(surface.mean.T, origin="lower", cmap="viridis", aspect="auto")
    for i in range(len(surface.c)):
        for j in range(len(surface.s)):
            ax.text(i, j, f"{surface.mean[i, j]:.2f}\n±{surface.std[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="w")
    ax.set_xticks(range(len(surface.c)), [f"{v:g}" for v in surface.c])
    ax.set_yticks(range(len(surface.s)), [f"{v:g}" for v in surface.s])
    ax.set_xlabel("image-label sets C")
    ax.set_ylabel("masks S")
    fig.colorbar(im, ax=ax, label="test mIoU")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
