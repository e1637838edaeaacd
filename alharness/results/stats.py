"""Comparisons between strategies over seeds: paired bootstrap intervals,
win rates, ranks as a cost parameter changes, and verdicts (an exact paired
sign-flip test with Holm correction, written as sentences).

Pure functions over the per-campaign metrics of ``report.per_campaign``
(dicts with dataset, metric, budget, strategy_label, seed and the metric
columns), so they are tested on hand-made numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations
from typing import Any, Iterable, Iterator

import numpy as np

GroupKey = tuple[str, str, str, float]
#: fewest common seeds for which paired_bootstrap calls a difference significant
MIN_SEEDS = 5


def by_group(rows: Iterable[dict[str, Any]], metric: str) -> dict[GroupKey, dict[str, dict[int, float]]]:
    """(dataset, cost metric, pricing, budget) → strategy → seed → value (None values dropped)."""
    out: dict[GroupKey, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.get(metric) is not None:
            out[(r["dataset"], r["metric"], r["pricing"], r["budget"])][r["strategy_label"]][int(r["seed"])] = float(r[metric])
    return out


def _paired(by_strategy: dict[str, dict[int, float]]) -> Iterator[tuple[str, str, np.ndarray]]:
    """Every strategy pair (a before b by name) with the differences A − B on their common seeds, in seed order."""
    for a, b in combinations(sorted(by_strategy), 2):
        seeds = sorted(set(by_strategy[a]) & set(by_strategy[b]))
        yield a, b, np.array([by_strategy[a][s] - by_strategy[b][s] for s in seeds])


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
    for (dataset, cost_metric, pricing, budget), by_strategy in sorted(by_group(rows, metric).items()):
        for a, b, diff in _paired(by_strategy):
            if not len(diff):
                continue
            lo, hi = _interval(diff, rng, n_boot, level)
            out.append({"dataset": dataset, "cost_metric": cost_metric, "pricing": pricing, "budget": budget, "a": a, "b": b,
                        "metric": metric, "seeds": len(diff), "mean_diff": float(diff.mean()), "lo": lo, "hi": hi,
                        "significant": bool(lo > 0 or hi < 0) if len(diff) >= MIN_SEEDS else None})
    return out


def win_rates(rows: Iterable[dict[str, Any]], metric: str = "auc") -> dict[GroupKey, tuple[list[str], np.ndarray]]:
    """Per group: strategies and the matrix W[i, j] = share of common seeds on
    which strategy i scored higher than j (ties count one half; NaN without
    common seeds; the diagonal is NaN)."""
    out = {}
    for key, by_strategy in sorted(by_group(rows, metric).items()):
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


# --- Verdicts: sentences computed from the seeds, never typed by hand -------

#: Monte-Carlo sign flips drawn when the exact enumeration (2^n) is too large
SIGN_FLIPS_MC = 20_000
#: largest number of common seeds whose 2^n sign flips are enumerated exactly
EXACT_MAX_SEEDS = 16
#: family-wise level of the verdicts, and the power the detectable effect is quoted for
ALPHA, POWER = 0.05, 0.8


def sign_flip_p(diff: np.ndarray, n_mc: int = SIGN_FLIPS_MC, seed: int = 0) -> float:
    """Two-sided p of a paired sign-flip permutation test of mean(diff) = 0.

    Under the null the two strategies are exchangeable on each seed, so every
    sign pattern of the per-seed differences is equally likely; the test
    holds its level at any n. All 2^n patterns for n ≤ ``EXACT_MAX_SEEDS``,
    else ``n_mc`` seeded random patterns (plus the observed one, so p > 0).
    The smallest attainable exact p is 2^(1−n): 1/16 at 5 seeds.
    """
    diff = np.asarray(diff, dtype=float)
    n = len(diff)
    if n == 0:
        return 1.0
    observed = abs(diff.mean())
    if n <= EXACT_MAX_SEEDS:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
        extreme, total = 0, len(signs)
    else:
        signs = np.random.default_rng(seed).choice(np.array([-1, 1]), size=(n_mc, n))
        extreme, total = 1, n_mc + 1
    means = np.abs(signs @ diff) / n
    # a relative tolerance so that float round-off never hides the observed pattern itself
    extreme += int(np.count_nonzero(means >= observed * (1 - 1e-9) - 1e-15))
    return min(1.0, extreme / total)


def holm(pvalues: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error over ``len(pvalues)`` tests), in input order."""
    k = len(pvalues)
    order = sorted(range(k), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * k, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def detectable_effect(sd: float, n: int, k: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest mean paired difference the test would find with probability ``power``.

    d = (t_{1−α/(2k), n−1} + t_{power, n−1}) · sd / √n: the usual paired
    power formula, at Holm's strictest step (Bonferroni α/k, the level the
    first of k pairs is tested at), with Student-t quantiles because n is
    small. ``sd`` is the sample SD of the per-seed differences.
    """
    from scipy.stats import t

    if n < 2:
        return math.inf
    return float((t.ppf(1 - alpha / (2 * k), n - 1) + t.ppf(power, n - 1)) * sd / math.sqrt(n))


def _interval(diff: np.ndarray, rng: np.random.Generator, n_boot: int, level: float) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(diff), resampling seeds."""
    idx = rng.integers(0, len(diff), size=(n_boot, len(diff)))
    lo, hi = np.quantile(diff[idx].mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def pair_stats(diff: np.ndarray, k: int, rng: np.random.Generator, n_boot: int = 10_000) -> dict[str, Any]:
    """Seeds, mean, 95 % bootstrap interval, SD, sign-flip p and detectable effect (one of k tests) of paired differences."""
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    lo, hi = _interval(diff, rng, n_boot, 1 - ALPHA)
    return {"seeds": len(diff), "mean_diff": float(diff.mean()), "lo": lo, "hi": hi, "sd": sd,
            "p": sign_flip_p(diff), "detectable": detectable_effect(sd, len(diff), k)}


def verdicts(rows: Iterable[dict[str, Any]], metric: str = "auc", n_boot: int = 10_000, seed: int = 0) -> list[dict[str, Any]]:
    """One verdict per strategy pair and group (dataset, cost metric, pricing, budget).

    Each pair is tested on its common seeds with the exact paired sign-flip
    test (``sign_flip_p``); p-values are Holm-adjusted over the k pairs of the
    group that have at least ``MIN_SEEDS`` common seeds; the effect is mean(A − B)
    with its 95 % paired bootstrap interval. ``verdict`` is "beats" (adjusted
    p < ``ALPHA``; ``a`` is then the winner), "no difference" or "too few seeds";
    ``sentence`` says it in words (``verdict_sentence``).
    """
    rng = np.random.default_rng(seed)
    out = []
    for (dataset, cost_metric, pricing, budget), by_strategy in sorted(by_group(rows, metric).items()):
        pairs = list(_paired(by_strategy))
        k = max(1, sum(len(diff) >= MIN_SEEDS for _, _, diff in pairs))
        group = []
        for a, b, diff in pairs:
            row = {"dataset": dataset, "cost_metric": cost_metric, "pricing": pricing, "budget": budget, "metric": metric,
                   "a": a, "b": b, "k": k, "seeds": len(diff)}
            if len(diff) >= MIN_SEEDS:
                row.update(pair_stats(diff, k, rng, n_boot))
            group.append(row)
        tested = [r for r in group if "p" in r]
        for r, adj in zip(tested, holm([r["p"] for r in tested])):
            r["p_holm"] = adj
        for r in group:
            _decide(r)
        out += group
    return out


def _decide(r: dict[str, Any]) -> None:
    """Fill ``verdict``, orient the pair winner first, and write the sentence."""
    if "p" not in r:
        r["verdict"] = "too few seeds"
    elif r["p_holm"] < ALPHA:
        r["verdict"] = "beats"
        if r["mean_diff"] < 0:  # report the winner first
            r["a"], r["b"] = r["b"], r["a"]
            r["mean_diff"], r["lo"], r["hi"] = -r["mean_diff"], -r["hi"], -r["lo"]
    else:
        r["verdict"] = "no difference"
    r["sentence"] = verdict_sentence(r)


def min_seeds_to_call(k: int, alpha: float = ALPHA) -> int:
    """Fewest common seeds at which the exact test can call the first of k pairs at all (2^(1−n) · k < α)."""
    n = 1
    while 2.0 ** (1 - n) * k >= alpha:
        n += 1
    return n


def floor_note(seeds: int, k: int, tests: str = "pair") -> str:
    """Why a test over ``seeds`` common seeds could not call anything: "; the exact test cannot reach
    p < ALPHA over k pairs below n seeds" (``min_seeds_to_call``), or "" where the seeds would suffice."""
    floor = min_seeds_to_call(k)
    return (f"; the exact test cannot reach p < {ALPHA:g} over {k} {tests}{'s' if k != 1 else ''} below {floor} seeds"
            if seeds < floor else "")


METRIC_NAMES = {"auc": "AUC", "final_miou": "final mIoU", "final_ap50": "final AP50",
                "final_annotation_miou": "the annotation network's final mIoU",
                "final_annotation_ap50": "the annotation network's final AP50"}


def metric_name(metric: str) -> str:
    """A ranking metric as sentences write it ("AUC", "final mIoU")."""
    return METRIC_NAMES.get(metric, metric)


def verdict_sentence(r: dict[str, Any]) -> str:
    """The verdict of one pair (a row of ``verdicts``) as a sentence."""
    name = metric_name(r["metric"])
    if r["verdict"] == "too few seeds":
        return f"{r['a']} vs {r['b']} on {name}: too few seeds ({r['seeds']}; a verdict needs {MIN_SEEDS})"
    pairs = f"{r['k']} pair" + ("s" if r["k"] != 1 else "")
    if r["verdict"] == "beats":
        return (f"{r['a']} beats {r['b']} on {name} by {r['mean_diff']:.3g} [{r['lo']:.3g}, {r['hi']:.3g}] "
                f"(paired sign-flip test p = {r['p']:.3g}, Holm-adjusted {r['p_holm']:.3g} over {pairs}, {r['seeds']} seeds)")
    why = floor_note(r["seeds"], r["k"])
    return (f"{r['a']} vs {r['b']} on {name}: no detectable difference at {r['seeds']} seeds "
            f"(difference {r['mean_diff']:+.3g} [{r['lo']:.3g}, {r['hi']:.3g}], p = {r['p']:.3g}, Holm-adjusted "
            f"{r['p_holm']:.3g} over {pairs}; smallest detectable effect about {r['detectable']:.3g}{why})")
