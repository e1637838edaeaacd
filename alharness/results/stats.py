"""Comparisons between strategies over seeds: paired bootstrap intervals,
win rates and ranks as a cost parameter changes.

Pure functions over the per-campaign metrics of ``report.per_campaign``
(dicts with dataset, metric, budget, strategy_label, seed and the metric
columns), so they are tested on hand-made numbers.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from typing import Any, Iterable

import numpy as np

GroupKey = tuple[str, str, str, float]
#: fewest common seeds for which paired_bootstrap calls a difference significant
MIN_SEEDS = 5


def _by_group(rows: Iterable[dict[str, Any]], metric: str) -> dict[GroupKey, dict[str, dict[int, float]]]:
    """(dataset, cost metric, pricing, budget) → strategy → seed → value (None values dropped)."""
    out: dict[GroupKey, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.get(metric) is not None:
            out[(r["dataset"], r["metric"], r["pricing"], r["budget"])][r["strategy_label"]][int(r["seed"])] = float(r[metric])
    return out


def paired_bootstrap(rows: Iterable[dict[str, Any]], metric: str = "auc", n_boot: int = 10_000,
                     level: float = 0.95, seed: int = 0) -> list[dict[str, Any]]:
    """Percentile bootstrap interval of mean(A − B) over the seeds both strategies ran.

    Pairing on seeds removes what the seed does to both (the same initial
    batch, data order and initialisation), which is most of the spread.
    Seeds are resampled with replacement ``n_boot`` times with a generator
    seeded by ``seed``, so the report is reproducible. ``significant`` is
    True when the interval excludes 0, and None with fewer than
    ``MIN_SEEDS`` common seeds: a percentile interval from 2–4 values has
    almost no resampling distribution and would call every gap significant.
    One row per strategy pair and group.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    out = []
    for (dataset, cost_metric, pricing, budget), by_strategy in sorted(_by_group(rows, metric).items()):
        for a, b in combinations(sorted(by_strategy), 2):
            seeds = sorted(set(by_strategy[a]) & set(by_strategy[b]))
            if not seeds:
                continue
            diff = np.array([by_strategy[a][s] - by_strategy[b][s] for s in seeds])
            idx = rng.integers(0, len(diff), size=(n_boot, len(diff)))
            means = diff[idx].mean(axis=1)
            lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
            out.append({"dataset": dataset, "cost_metric": cost_metric, "pricing": pricing, "budget": budget, "a": a, "b": b,
                        "metric": metric, "seeds": len(seeds), "mean_diff": float(diff.mean()),
                        "lo": float(lo), "hi": float(hi),
                        "significant": bool(lo > 0 or hi < 0) if len(seeds) >= MIN_SEEDS else None})
    return out


def win_rates(rows: Iterable[dict[str, Any]], metric: str = "auc") -> dict[GroupKey, tuple[list[str], np.ndarray]]:
    """Per group: strategies and the matrix W[i, j] = share of common seeds on
    which strategy i scored higher than j (ties count one half; NaN without
    common seeds; the diagonal is NaN)."""
    out = {}
    for key, by_strategy in sorted(_by_group(rows, metric).items()):
        names = sorted(by_strategy)
        w = np.full((len(names), len(names)), np.nan)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                seeds = set(by_strategy[a]) & set(by_strategy[b])
                if i == j or not seeds:
                    continue
                wins = sum(1.0 if by_strategy[a][s] > by_strategy[b][s] else 0.5 if by_strategy[a][s] == by_strategy[b][s]
                           else 0.0 for s in seeds)
                w[i, j] = wins / len(seeds)
        out[key] = (names, w)
    return out


def ranks_by_parameter(rows: Iterable[dict[str, Any]], parameter: str, metric: str = "auc") -> dict[str, dict[Any, dict[str, float]]]:
    """Rank (1 = best mean ``metric``) of each strategy at each value of ``parameter``,
    per dataset: dataset → parameter value → strategy → rank.

    ``parameter`` is a column of the rows, e.g. a cost model's price ratio
    ``p_cost_label_equivalents_alpha_s`` from a sweep over it. Ties share the
    better rank.
    """
    means: dict[str, dict[Any, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        if r.get(metric) is not None and parameter in r:
            means[r["dataset"]][r[parameter]][r["strategy_label"]].append(float(r[metric]))
    out: dict[str, dict[Any, dict[str, float]]] = {}
    for dataset, by_value in means.items():
        out[dataset] = {}
        for value, by_strategy in sorted(by_value.items()):
            avg = {s: float(np.mean(v)) for s, v in by_strategy.items()}
            out[dataset][value] = {s: 1 + sum(o > m for o in avg.values()) for s, m in avg.items()}
    return out
