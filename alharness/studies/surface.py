"""Ground-truth budget-performance surfaces m(C, S) and replay fidelity.

Fig. 6 of the full-or-weak paper shows the true surface: the test mIoU of a
model trained on C random image-label sets and S random masks. ``surface_specs``
turns a benchmark into one campaign per grid point and seed (strategy
``allocation_point``), which the existing Ray runner schedules;
``collect_surface`` reduces the results to ``surface.parquet`` (C, S, seed,
miou). ``Surface`` interpolates it (bilinear in (C, S)) and, for replay,
adds the seed-to-seed spread as Gaussian noise.

Replay fidelity: ``replay_gp`` runs Alg. 2 against a surface instead of
training models — Alg. 1's utility samples are surface values at the
subsampled (C', S') — for a whole batch of campaigns at once (Alg. 1's draws
and the surface's interpolation vectorised over the batch, one batched GP fit
per round: the analytic fit, which takes the gpytorch reference's Adam steps
and so its decisions; every campaign's EI over its grid in one tensor program,
``decide_batch``), so sweeps over thousands of (alpha_s, T, budget, seed)
take minutes. ``replay_fixed`` and ``replay_estimated_best_fixed`` give the
baselines on the same surface.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from alharness.toolkit.allocation import StrategyGrid, decide, decide_batch, fit_gp_warm, fit_with
from alharness.errors import ConfigError, ResultsError
from alharness.seeding import derive_rng

SURFACE_FILE = "surface.parquet"
SCHEDULES = ("exact", "warm")  # replay_gp's GP fit schedules


# -- computing the surface (campaigns on the existing runner) -----------------

def surface_specs(bench, labels: Sequence[int], masks: Sequence[int], seeds: Sequence[int]) -> list:
    """One campaign per (C, S, seed): buy C label sets and S masks on random images, train once, score on test.

    Dataset, learner and cost parameters come from the benchmark's first
    campaign; budgets are the points' own prices in label equivalents.
    """
    from alharness.annotation.costs import PoolInfo, build_cost_models
    from alharness.contract.queries import FullMask, ImageLabels

    if not bench.specs:
        raise ConfigError(f"benchmark {bench.name!r} has no campaigns to take a dataset and learner from")
    base = bench.specs[0]
    if any(int(v) < 0 for v in (*labels, *masks)):
        raise ConfigError("surface: --labels and --masks must be counts >= 0")
    price = build_cost_models(base.costs)["label_equivalents"]
    price.prepare(PoolInfo(size=1, num_classes=2, image_shape=(1, 1)))  # label and mask prices are per image
    price_c, price_s = price.quote(ImageLabels(0)), price.quote(FullMask(0))
    n_pool = int(base.dataset_params.get("n_train", 0)) or None
    specs = []
    for c in sorted(set(int(v) for v in labels)):
        for s in sorted(set(int(v) for v in masks)):
            if n_pool is not None and c + s > n_pool:
                continue  # an image gets labels or a mask: not enough images for this point
            for seed in seeds:
                specs.append(dataclasses.replace(
                    base, strategy="allocation_point", strategy_params={"labels": c, "masks": s},
                    budget_metric="label_equivalents", budget=max(price_c * c + price_s * s, 1e-6),
                    rounds=1, initial_masks=0, validation="none", seed=int(seed), benchmark=f"{bench.name}-surface"))
    if not specs:
        raise ConfigError("surface: no grid point fits in the pool")
    return specs


def collect_surface(results_dir: str | Path) -> Path:
    """Reduce surface campaigns' round-0 rows to ``surface.parquet`` (C, S, seed, miou) and return its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from alharness.results import store

    con, _ = store.connect(results_dir)
    rows = con.execute(
        "SELECT CAST(p_strategy_labels AS INTEGER) AS c, CAST(p_strategy_masks AS INTEGER) AS s, seed, miou, "
        "dataset, p_dataset_n_train AS n_pool FROM rounds WHERE strategy = 'allocation_point' AND round = 0 "
        "ORDER BY c, s, seed").fetchall()
    if not rows:
        raise ResultsError(f"{results_dir}: no allocation_point campaigns (run 'alharness surface' first)")
    cols = list(zip(*rows))
    table = pa.table({"C": list(cols[0]), "S": list(cols[1]), "seed": list(cols[2]), "miou": list(cols[3])})
    n_pool = cols[5][0]
    meta = {"dataset": str(cols[4][0]), "n_pool": None if n_pool is None else int(n_pool)}
    table = table.replace_schema_metadata({"alharness_surface": json.dumps(meta)})
    out = Path(results_dir) / SURFACE_FILE
    pq.write_table(table, out)
    return out


# -- the interpolated surface ------------------------------------------------

@dataclass
class Surface:
    """m(C, S) on a grid: mean and seed-to-seed standard deviation, bilinear in between."""

    c: np.ndarray  # (nc,) grid C values, ascending
    s: np.ndarray  # (ns,) grid S values, ascending
    mean: np.ndarray  # (nc, ns)
    std: np.ndarray  # (nc, ns)
    n_pool: int

    @classmethod
    def from_points(cls, c: Sequence[int], s: Sequence[int], miou: Sequence[float], n_pool: int | None = None) -> "Surface":
        c, s, miou = np.asarray(c, float), np.asarray(s, float), np.asarray(miou, float)
        cu, su = np.unique(c), np.unique(s)
        mean = np.full((len(cu), len(su)), np.nan)
        std = np.zeros((len(cu), len(su)))
        ic, js = np.searchsorted(cu, c), np.searchsorted(su, s)
        for i in range(len(cu)):
            for j in range(len(su)):
                v = miou[(ic == i) & (js == j)]
                if len(v):
                    mean[i, j], std[i, j] = v.mean(), v.std(ddof=1) if len(v) > 1 else 0.0
        # Points the pool could not hold (C + S > N): nearest feasible value along C.
        for j in range(len(su)):
            ok = np.flatnonzero(~np.isnan(mean[:, j]))
            if len(ok) == 0:
                raise ConfigError(f"surface: no point with S = {su[j]:g}")
            for i in np.flatnonzero(np.isnan(mean[:, j])):
                k = ok[np.argmin(np.abs(ok - i))]
                mean[i, j], std[i, j] = mean[k, j], std[k, j]
        return cls(cu, su, mean, std, int(n_pool) if n_pool else int(cu.max() + su.max()))

    @classmethod
    def load(cls, path: str | Path) -> "Surface":
        import pyarrow.parquet as pq

        path = Path(path)
        if path.is_dir():
            path = path / SURFACE_FILE
        if not path.is_file():
            raise ResultsError(f"{path}: no surface file (run 'alharness surface BENCH --out DIR' first)")
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(b"alharness_surface", b"{}"))
        d = table.to_pydict()
        return cls.from_points(d["C"], d["S"], d["miou"], meta.get("n_pool"))

    def _weights(self, c: Any, s: Any) -> tuple:
        """Bilinear cell corners and weights of the points (c, s) (clipped to the grid)."""
        c = np.clip(np.asarray(c, float), self.c[0], self.c[-1])
        s = np.clip(np.asarray(s, float), self.s[0], self.s[-1])
        i = np.clip(np.searchsorted(self.c, c, side="right") - 1, 0, max(len(self.c) - 2, 0))
        j = np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, max(len(self.s) - 2, 0))
        i1, j1 = np.minimum(i + 1, len(self.c) - 1), np.minimum(j + 1, len(self.s) - 1)
        wc = np.where(i1 > i, (c - self.c[i]) / np.maximum(self.c[i1] - self.c[i], 1e-12), 0.0)
        ws = np.where(j1 > j, (s - self.s[j]) / np.maximum(self.s[j1] - self.s[j], 1e-12), 0.0)
        return i, j, i1, j1, wc, ws

    @staticmethod
    def _blend(grid: np.ndarray, w: tuple) -> np.ndarray:
        i, j, i1, j1, wc, ws = w
        return ((1 - wc) * (1 - ws) * grid[i, j] + wc * (1 - ws) * grid[i1, j] + (1 - wc) * ws * grid[i, j1]
                + wc * ws * grid[i1, j1])

    def _interp(self, grid: np.ndarray, c: Any, s: Any) -> np.ndarray:
        return self._blend(grid, self._weights(c, s))

    def __call__(self, c: Any, s: Any) -> np.ndarray:
        """Expected utility at (c, s), interpolated."""
        return self._interp(self.mean, c, s)

    def sample(self, c: Any, s: Any, rng: np.random.Generator) -> np.ndarray:
        """One noisy draw: the interpolated mean plus the interpolated seed spread times N(0, 1)."""
        return self.draw(c, s, rng.standard_normal(np.shape(np.asarray(c))))

    def draw(self, c: Any, s: Any, z: np.ndarray) -> np.ndarray:
        """The interpolated mean plus the interpolated seed spread times the given N(0, 1) draws ``z``."""
        w = self._weights(c, s)
        return self._blend(self.mean, w) + self._blend(self.std, w) * z

    @property
    def c_max(self) -> int:
        return int(self.c[-1])

    @property
    def s_max(self) -> int:
        return int(self.s[-1])


# -- replay -------------------------------------------------------------------

@dataclass(frozen=True)
class ReplayCampaign:
    """One replayed allocation campaign."""

    budget: float
    alpha_s: float
    T: int
    seed: int
    alpha_c: float = 1.0


def _point_for(surface: Surface, p: float, budget: float, alpha_c: float, alpha_s: float) -> tuple[int, int]:
    """(C, S) of a fixed proportion p of ``budget`` on masks, within the pool and the surface's grid."""
    s = min(int(p * budget / alpha_s + 1e-9), surface.s_max, surface.n_pool)
    c = min(int((budget - alpha_s * s) / alpha_c + 1e-9), surface.c_max, surface.n_pool - s)
    return max(c, 0), s


def replay_fixed(surface: Surface, p: float, camp: ReplayCampaign) -> dict[str, Any]:
    c, s = _point_for(surface, p, camp.budget, camp.alpha_c, camp.alpha_s)
    return {"strategy": f"fixed_{round(p * 100)}", "C": c, "S": s, "cost": camp.alpha_c * c + camp.alpha_s * s,
            "utility": float(surface(c, s))}


def replay_estimated_best_fixed(surface: Surface, camp: ReplayCampaign, proportions: Sequence[float],
                                initial_fraction: float) -> dict[str, Any]:
    """§4.2 on the surface: score every proportion at the design sub-budget (noisy draws), keep the best."""
    rng = derive_rng(camp.seed, "replay", "ebf", camp.budget, camp.alpha_s)
    n0 = max(1, round(initial_fraction * surface.n_pool))
    b = n0 * (camp.alpha_c + camp.alpha_s) / (max(proportions) + 1.0 - min(proportions))
    scores = [float(surface.sample(*_point_for(surface, p, b, camp.alpha_c, camp.alpha_s), rng)) for p in proportions]
    best = max(zip(scores, proportions))[1]
    row = replay_fixed(surface, best, camp)
    return {**row, "strategy": "estimated_best_fixed", "chosen": best}


def replay_gp(surface: Surface, camps: Sequence[ReplayCampaign], *, initial_fraction: float = 0.08,
              samples: int = 8, gp_iters: int = 100, brute: bool = False, gp: str = "analytic",
              batched: bool = True, schedule: str = "exact") -> list[dict[str, Any]]:
    """Alg. 2 with Alg. 1 samples drawn from the surface, for campaigns sharing T (one batched GP fit per round).

    ``gp``: the fit, "analytic" or "gpytorch" (the reference; same decisions, slower).
    ``schedule``: "exact" (every round's fit as the allocation step takes it: ``gp_iters`` Adam steps from the
    cold start) or "warm" (replay only: round 0 as "exact", each later round's fit by ``fit_gp_warm`` from
    the campaign's previous hyperparameters until its loss moves by less than ``allocation.WARM_TOL`` (relative),
    at most 100 L-BFGS steps, ``fit_gp_warm``'s defaults; analytic fits only).
    ``batched``: every campaign's EI of eq. (6) over its grid in one tensor program (``decide_batch``);
    False: campaign by campaign (``decide``), same decisions.
    ``brute``: EI from gpytorch's posterior at every grid point instead of the structured evaluation."""
    if not camps:
        return []
    T = camps[0].T
    if any(c.T != T for c in camps):
        raise ValueError("replay_gp: a batch must share T (group campaigns by T)")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "warm" and gp != "analytic":
        raise ValueError("replay_gp: the warm schedule needs the analytic fit (gp='analytic')")
    b, n = len(camps), surface.n_pool
    rngs = [derive_rng(c.seed, "replay", "gp", c.budget, c.alpha_s, c.T) for c in camps]
    cs, spent = _initial_strategies(surface, camps, initial_fraction)
    xs_c, xs_s, ys = np.zeros((b, 0), np.int64), np.zeros((b, 0), np.int64), np.zeros((b, 0))
    fit_s = ei_s = fit_steps = 0.0
    fit = None
    for t in range(T):
        c_, s_, y_ = _utility_samples(surface, cs, rngs, samples)
        m_star = y_[:, 0]  # Alg. 1: the first sample uses all the data bought so far
        xs_c, xs_s, ys = np.hstack([xs_c, c_]), np.hstack([xs_s, s_]), np.hstack([ys, y_])
        if schedule == "warm" and t > 0:
            fit = fit_gp_warm(xs_c, xs_s, ys, (float(n), float(n)), start=fit.raw)
        else:
            fit = fit_with(gp, xs_c, xs_s, ys, (float(n), float(n)), iters=gp_iters)
        fit_s += fit.fit_s
        fit_steps += fit.steps
        grids = [StrategyGrid(c0=int(cs[k, 0]), s0=int(cs[k, 1]), c_max=surface.c_max, s_max=surface.s_max,
                              alpha_c=camp.alpha_c, alpha_s=camp.alpha_s, budget_left=max(camp.budget - spent[k], 0.0),
                              total_max=n) for k, camp in enumerate(camps)]
        if batched and not brute:
            decisions = decide_batch(fit, m_star, grids, T, t)
        else:
            members = [fit.member(k, own_model=True) for k in range(b)] if brute else fit.members()
            decisions = [decide(members[k], float(m_star[k]), grids[k], T, t, brute=brute) for k in range(b)]
        for k, (camp, d) in enumerate(zip(camps, decisions)):
            ei_s += d.ei_s
            cs[k] += (d.delta_c, d.delta_s)
            spent[k] += camp.alpha_c * d.delta_c + camp.alpha_s * d.delta_s
    utility = surface(cs[:, 0], cs[:, 1])
    return [{"strategy": "full_or_weak_gp", "C": int(cs[k, 0]), "S": int(cs[k, 1]), "cost": float(spent[k]),
             "utility": float(utility[k]), "fit_s": fit_s / b, "ei_s": ei_s / b, "fit_steps": fit_steps / T}
            for k in range(b)]


def _initial_strategies(surface: Surface, camps: Sequence[ReplayCampaign],
                        initial_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Alg. 2's input (C0, S0) of each campaign (§4.3: a fraction of the pool each, within the budget) and its cost."""
    n0 = max(1, round(initial_fraction * surface.n_pool))
    cs = np.zeros((len(camps), 2), np.int64)
    spent = np.zeros(len(camps))
    for k, camp in enumerate(camps):
        s0 = min(n0, int(camp.budget / camp.alpha_s), surface.s_max)
        c0 = min(n0, int((camp.budget - camp.alpha_s * s0) / camp.alpha_c), surface.c_max)
        cs[k] = (c0, s0)
        spent[k] = camp.alpha_c * c0 + camp.alpha_s * s0
    return cs, spent


def _utility_samples(surface: Surface, cs: np.ndarray, rngs: Sequence[np.random.Generator],
                     samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Alg. 1 on the surface for every campaign: M sizes (C', S'), the first (C, S) itself, the others
    uniform in [0, C] × [0, S], and one noisy surface draw at each; (b, M) arrays."""
    sub = np.empty((len(cs), samples, 2), np.int64)
    z = np.empty((len(cs), samples))
    sub[:, 0] = cs
    for k, rng in enumerate(rngs):
        sub[k, 1:] = rng.integers(0, cs[k] + 1, size=(samples - 1, 2))
        z[k] = rng.standard_normal(samples)
    return sub[..., 0], sub[..., 1], surface.draw(sub[..., 0], sub[..., 1], z)
