"""Headline claims: a paper's claim, written in a benchmark file, judged by the harness.

A benchmark file may state what its experiment is meant to test::

    [[claims]]
    says = "MADBAL beats random pixels and pixel entropy at equal clicks"
    kind = "beats"                    # or "within", "cheaper", "no_single_best", "outscores"
    a = "madbal"
    b = ["random_pixels", "pixel_entropy"]
    metric = "final_miou"             # or "auc"

and ``alharness report RESULTS --claims FILE`` judges each claim from the
per-pair statistics of the verdicts the report prints (``stats.verdicts``:
exact paired sign-flip test over the common seeds, 95 % paired bootstrap
interval), in every group (dataset, pricing, budget) where ``a`` ran:

- ``beats``: ``a`` beats every ``b``: the sign-flip p-values are
  Holm-adjusted over the pairs the file's "beats" claims name in the group
  (the hypotheses stated before the run, not every pair of the group as in
  the verdicts). *confirmed* where every such pair is called with ``a``
  ahead, *contradicted* where some ``b`` is called ahead of ``a``;
- ``within``: ``a`` is no worse than the best ``b`` of the group (highest
  mean) by more than ``margin`` × that ``b``'s mean: *confirmed* where the
  interval of mean(a − b) lies above −margin × mean(b), *contradicted* where
  it lies wholly below.

- ``cheaper``: ``a`` reaches ``reach`` (default 95 %) of full supervision's
  final mIoU at a lower ``cost`` (a cost metric every campaign recorded,
  default the budget's) than every ``b``: per seed, the cost at the first
  round that reached it (``leaderboard.per_campaign``), "never" where none
  did. "Never" has no size, so the test is the exact paired sign test
  (binomial on which of the two got there first; seeds where both never
  did, or tie, carry no sign), Holm-adjusted over the pairs the file's
  "cheaper" claims name in the group. *confirmed* / *contradicted* as for
  ``beats``;
- ``no_single_best``: no one of ``b`` is best in every group (``a`` is not
  given): *confirmed* where some s is called ahead of some t in one group
  and t ahead of s in another (sign-flip p-values Holm-adjusted over the
  pairs of ``b`` in each group), *contradicted* where one of ``b`` is called
  ahead of every other in every group (two groups at least).
- ``outscores``: in ``a``'s own campaigns, one final score (``metric``, e.g.
  ``final_ap50``: the segmentation network's) is above another (``than``,
  e.g. ``final_annotation_ap50``: the annotation network's), ``b`` not
  given: the exact sign-flip test on the per-seed differences
  (``leaderboard.final_scores``), Holm-adjusted over the file's
  "outscores" claims in the group; *confirmed* / *contradicted* as for
  ``beats``.

Anything else is *not detectable at this scale*, and so is every group where
the learner is inadequate (a strategy beats its own full-supervision
reference by more than seed noise, ``leaderboard.learner_inadequate``): there
the learner, not the labels, limits the scores. A claim is confirmed when it
is confirmed in every group, contradicted when it is contradicted in any.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from alharness.errors import ConfigError
from alharness.results import stats
from alharness.results.leaderboard import SCORE_COLUMNS

CONFIRMED, CONTRADICTED, NOT_DETECTABLE = "confirmed", "contradicted", "not detectable at this scale"
KINDS = ("beats", "within", "cheaper", "no_single_best", "outscores")
#: the per-campaign metrics the comparisons between strategies read (``leaderboard.per_campaign``)
RANKED_METRICS = ("final_miou", "auc")
#: the final scores an "outscores" claim compares (``leaderboard.final_scores``)
SCORE_METRICS = tuple(f"final_{c}" for c in SCORE_COLUMNS)


@dataclass(frozen=True)
class Claim:
    """A headline claim with its strategies as leaderboard labels (``CampaignSpec.strategy_label``)."""

    says: str
    kind: str
    a: str
    b: tuple[str, ...]
    metric: str = "final_miou"
    margin: float = 0.02
    cost: str | None = None   # "cheaper": the cost metric (None: the budget's own)
    reach: float = 0.95       # "cheaper": the share of full supervision's final mIoU to reach
    than: str | None = None   # "outscores": the score ``metric`` is compared with, in a's own campaigns


def resolve_claims(tables: Iterable[dict[str, Any]], labels: Iterable[str], where: str,
                   cost_metrics: Iterable[str] = ()) -> tuple[Claim, ...]:
    """Checked ``[[claims]]`` tables → claims whose ``a`` and ``b`` are this benchmark's strategy labels.

    A name is a label as the leaderboard prints it, or a plugin name that
    exactly one of the benchmark's labels carries. ``cost_metrics``: the
    names a "cheaper" claim's ``cost`` may take (every campaign records each)."""
    labels = sorted(set(labels))
    cost_metrics = sorted(cost_metrics)

    def label(name: str, at: str) -> str:
        if name in labels:
            return name
        matches = [lab for lab in labels if lab.split("(", 1)[0] == name]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ConfigError(f"{at} {name!r} matches several strategies ({', '.join(matches)}); give the full label")
        raise ConfigError(f"{at} {name!r} names no strategy of this benchmark (its strategies: {', '.join(labels)})")

    out = []
    for n, t in enumerate(tables, 1):
        at = f"{where}: [[claims]] entry {n}"
        if not t["says"].strip():
            raise ConfigError(f"{at} says must state the claim in words, got an empty string")
        kind = t["kind"]
        if (t.get("b") is None) != (kind == "outscores"):
            raise ConfigError(f"{at}: kind = \"outscores\" compares two scores of a's own campaigns; remove b"
                              if kind == "outscores" else f"{at}: kind = \"{kind}\" needs b (the strategies a is compared with)")
        if (kind == "outscores") != ("than" in t):
            raise ConfigError(f"{at}: kind = \"outscores\" needs than (the score metric is compared with)"
                              if kind == "outscores" else f"{at}: than belongs to kind = \"outscores\" only, not {kind!r}")
        metric = t.get("metric", "final_miou")
        if kind == "outscores":
            for field in ("metric", "than"):
                if t.get(field) not in SCORE_METRICS:
                    raise ConfigError(f"{at}: kind = \"outscores\" needs {field} = one of {', '.join(SCORE_METRICS)}, "
                                      f"got {t.get(field)!r}")
            if t["metric"] == t["than"]:
                raise ConfigError(f"{at}: metric and than are both {metric!r}; a score cannot outscore itself")
        elif metric not in RANKED_METRICS:
            raise ConfigError(f"{at}: metric = {metric!r} is for kind = \"outscores\" only; "
                              f"{kind!r} reads one of {', '.join(RANKED_METRICS)}")
        bs = () if t.get("b") is None else \
            tuple(label(b, f"{at} b =") for b in ([t["b"]] if isinstance(t["b"], str) else t["b"]))
        if kind == "no_single_best":
            if t.get("a") is not None:
                raise ConfigError(f"{at}: kind = \"no_single_best\" is about the b's alone; remove a")
            if len(set(bs)) < 2:
                raise ConfigError(f"{at}: kind = \"no_single_best\" needs at least two strategies in b")
            a = ""
        else:
            if t.get("a") is None:
                raise ConfigError(f"{at}: kind = \"{kind}\" needs a (the strategy the claim is about)")
            a = label(t["a"], f"{at} a =")
            if a in bs:
                raise ConfigError(f"{at}: a ({a}) is also one of b; a claim compares a strategy with others")
        if kind != "cheaper" and ("cost" in t or "reach" in t):
            raise ConfigError(f"{at}: cost and reach belong to kind = \"cheaper\" only, not {kind!r}")
        cost = t.get("cost")
        if cost is not None and cost_metrics and cost not in cost_metrics:
            raise ConfigError(f"{at} cost = {cost!r} is no cost metric (every campaign records: {', '.join(cost_metrics)})")
        out.append(Claim(t["says"].strip(), kind, a, bs, metric, float(t.get("margin", 0.02)),
                         cost, float(t.get("reach", 0.95)), t.get("than")))
    return tuple(out)


def _group(v: dict[str, Any]) -> tuple:
    """A verdict row's group, keyed as ``learner_inadequate`` keys it."""
    return v["dataset"], v["cost_metric"], v["pricing"], v["budget"]


def _group_order(key: tuple) -> tuple:
    """Groups in a stable order whatever their fields' types."""
    return tuple(str(x) for x in key)


def _group_fields(key: tuple) -> dict[str, Any]:
    """A judged group's identifying fields, from a (dataset, cost metric, pricing, budget) key."""
    return {"dataset": key[0], "cost_metric": key[1], "pricing": key[2], "budget": key[3]}


def _inadequate(names: list[str], then: str = ", so the learner, not the labels, limits these scores") -> str:
    """The reason a group with an inadequate learner confirms nothing."""
    return f"LEARNER INADEQUATE: {', '.join(names)} beat full supervision by more than seed noise{then}"


def _oriented(v: dict[str, Any], a: str) -> tuple[float, float, float]:
    """mean(a − other), its interval, whichever way round the verdict row holds the pair."""
    if v["a"] == a:
        return v["mean_diff"], v["lo"], v["hi"]
    return -v["mean_diff"], -v["hi"], -v["lo"]


def _claimed_family(claims: list[Claim], found: list[dict[str, Any]]) -> dict[tuple, dict[frozenset, float]]:
    """Per (group, metric), the Holm-adjusted p of every pair some "beats" claim names.

    The claims are stated before the run, so the family a claim is tested in
    is the pairs the file's claims name in that group, not every pair of the
    group (the verdicts' family): fewer pairs, so fewer seeds are needed."""
    named: dict[tuple, set[frozenset]] = {}
    for c in claims:
        if c.kind == "beats":
            named.setdefault(c.metric, set()).update(frozenset((c.a, b)) for b in c.b)
    by_group: dict[tuple, dict[frozenset, float]] = {}
    for v in found:
        pair = frozenset((v["a"], v["b"]))
        if "p" in v and pair in named.get(v["metric"], ()):
            by_group.setdefault((_group(v), v["metric"]), {})[pair] = v["p"]
    out = {}
    for key, raw in by_group.items():
        pairs = sorted(raw, key=sorted)
        out[key] = dict(zip(pairs, stats.holm([raw[p] for p in pairs])))
    return out


def _beats(claim: Claim, pairs: dict[str, dict[str, Any]], adjusted: dict[frozenset, float]) -> tuple[str, list[str]]:
    outcomes, why = [], []
    name = stats.metric_name(claim.metric)
    k = len(adjusted)
    for b in claim.b:
        v = pairs.get(b)
        if v is None:
            outcomes.append(NOT_DETECTABLE)
            why.append(f"{b} has no common seeds with {claim.a} here")
            continue
        if "p" not in v:
            outcomes.append(NOT_DETECTABLE)
            why.append(v["sentence"])
            continue
        diff, lo, hi = _oriented(v, claim.a)
        adj = adjusted[frozenset((claim.a, b))]
        tested = (f"paired sign-flip test p = {v['p']:.3g}, Holm-adjusted {adj:.3g} over the {k} claimed "
                  f"pair{'s' if k != 1 else ''} of this group, {v['seeds']} seeds")
        if adj < stats.ALPHA:
            win, lose = (claim.a, b) if diff > 0 else (b, claim.a)
            outcomes.append(CONFIRMED if diff > 0 else CONTRADICTED)
            why.append(f"{win} beats {lose} on {name} by {abs(diff):.3g} [{min(abs(lo), abs(hi)):.3g}, "
                       f"{max(abs(lo), abs(hi)):.3g}] ({tested})")
        else:
            why.append(f"{claim.a} vs {b} on {name}: no detectable difference (difference {diff:+.3g} [{lo:.3g}, {hi:.3g}], "
                       f"{tested}{stats.floor_note(v['seeds'], k)})")
            outcomes.append(NOT_DETECTABLE)
    return _combine(outcomes), why


def _within(claim: Claim, pairs: dict[str, dict[str, Any]], means: dict[str, float]) -> tuple[str, list[str]]:
    present = [b for b in claim.b if b in means and b in pairs]
    if not present:
        return NOT_DETECTABLE, [f"none of {', '.join(claim.b)} has common seeds with {claim.a} here"]
    best = max(present, key=lambda b: means[b])
    v = pairs[best]
    if "lo" not in v:
        return NOT_DETECTABLE, [v["sentence"]]
    diff, lo, hi = _oriented(v, claim.a)
    tol = claim.margin * means[best]
    outcome = CONFIRMED if lo >= -tol else CONTRADICTED if hi < -tol else NOT_DETECTABLE
    return outcome, [f"{claim.a} − {best} (the best of {', '.join(claim.b)} here, mean {means[best]:.3g}) = {diff:+.3g} "
                     f"[{lo:.3g}, {hi:.3g}] over {v['seeds']} seeds; the claim allows down to −{tol:.3g} "
                     f"({claim.margin:.0%} of {best}'s mean)"]


#: per-campaign rows (``leaderboard.per_campaign``) with ``cost_to_reach`` at (cost metric, reach)
RowsAt = Callable[[str | None, float], list[dict[str, Any]]]


def _reach_costs(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, dict[int, float]]]:
    """(dataset, pricing, budget) → strategy → seed → cost at the first round that reached the target (inf: never)."""
    out: dict[tuple, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        cost = r.get("cost_to_reach")
        out[(r["dataset"], r["pricing"], r["budget"])][r["strategy_label"]][int(r["seed"])] = \
            math.inf if cost is None else float(cost)
    return out


def sign_test(a: dict[int, float], b: dict[int, float]) -> tuple[int, int, int, float]:
    """(common seeds, seeds where a is lower, seeds where b is lower, two-sided exact sign-test p).

    Only which of the two is lower counts, so a value of inf ("never
    reached") is as good a datum as any; tied seeds carry no sign."""
    from scipy.stats import binomtest

    seeds = sorted(set(a) & set(b))
    lower = sum(a[s] < b[s] for s in seeds)
    higher = sum(a[s] > b[s] for s in seeds)
    p = float(binomtest(lower, lower + higher).pvalue) if lower + higher else 1.0
    return len(seeds), lower, higher, p


def _cost_text(costs: list[float]) -> str:
    m = statistics.median(costs)
    return "never" if math.isinf(m) else f"{m:.4g}"


def _cheaper(claim: Claim, costs: dict[str, dict[int, float]], tests: dict[frozenset, tuple],
             adjusted: dict[frozenset, float], unit: str, of: str) -> tuple[str, list[str]]:
    """``tests``: ``sign_test`` of each claimed pair (a first), ``adjusted``: their Holm-adjusted p."""
    outcomes, why = [], []
    k = len(adjusted)
    for b in claim.b:
        if claim.a not in costs or b not in costs:
            outcomes.append(NOT_DETECTABLE)
            why.append(f"{b if claim.a in costs else claim.a} has no finished campaigns here")
            continue
        n, lower, higher, p = tests[(claim.a, b)]
        seeds = sorted(set(costs[claim.a]) & set(costs[b]))
        ca, cb = [costs[claim.a][s] for s in seeds], [costs[b][s] for s in seeds]
        reached = lambda c: sum(not math.isinf(x) for x in c)  # noqa: E731
        facts = (f"{claim.a} got to {claim.reach:.0%} of {of} at the lower {unit} on {lower} of {n} seeds, {b} on "
                 f"{higher} (median {_cost_text(ca)} vs {_cost_text(cb)}; reached on {reached(ca)} and {reached(cb)} "
                 f"of {n} seeds)")
        if n < stats.MIN_SEEDS:
            outcomes.append(NOT_DETECTABLE)
            why.append(f"{facts}: too few seeds ({n} common; at least {stats.MIN_SEEDS})")
            continue
        adj = adjusted[frozenset((claim.a, b))]
        tested = (f"exact sign test p = {p:.3g}, Holm-adjusted {adj:.3g} over the {k} claimed "
                  f"pair{'s' if k != 1 else ''} of this group")
        if adj < stats.ALPHA:
            outcomes.append(CONFIRMED if lower > higher else CONTRADICTED)
            why.append(f"{facts}: {claim.a if lower > higher else b} is cheaper ({tested})")
        else:
            outcomes.append(NOT_DETECTABLE)
            why.append(f"{facts}: no detectable difference ({tested}{stats.floor_note(n, k)})")
    return _combine(outcomes), why


def _judge_cheaper(claims: list[Claim], rows_at: RowsAt | None,
                   inadequate: dict[tuple, list[str]]) -> dict[Claim, tuple[list[dict[str, Any]], str]]:
    """Every "cheaper" claim's groups, each claim's pairs Holm-adjusted with the other
    "cheaper" claims' pairs on the same (cost, reach) in the group."""
    cheaper = [c for c in claims if c.kind == "cheaper"]
    if not cheaper:
        return {}
    if rows_at is None:
        raise ValueError("judging a \"cheaper\" claim needs rows_at (per-campaign rows at a cost metric and reach)")
    unfit = {(k[0], k[2], k[3]): v for k, v in inadequate.items()}
    out = {}
    for cost, reach in sorted({(c.cost, c.reach) for c in cheaper}, key=str):
        rows = rows_at(cost, reach)
        by_group = _reach_costs(rows)
        units = {(r["dataset"], r["pricing"], r["budget"]): (r["metric"], r.get("reach_of")) for r in rows}
        family = [c for c in cheaper if (c.cost, c.reach) == (cost, reach)]
        for claim in family:
            groups = []
            for key in sorted((k for k, v in by_group.items() if claim.a in v), key=_group_order):
                costs = by_group[key]
                # One sign test per claimed pair of the family; a claim reads its own pairs' from here.
                tests = {(c.a, b): sign_test(costs[c.a], costs[b]) for c in family for b in c.b
                         if c.a in costs and b in costs}
                raw = {frozenset(pair): t[3] for pair, t in tests.items()}
                pairs = sorted(raw, key=sorted)
                adjusted = dict(zip(pairs, stats.holm([raw[p] for p in pairs])))
                unit, of = units[key]
                outcome, why = _cheaper(claim, costs, tests, adjusted, unit,
                                        "full supervision" if of == "full supervision" else "the best strategy's final mIoU")
                if key in unfit:
                    outcome = NOT_DETECTABLE
                    why = [_inadequate(unfit[key])] + why
                groups.append({**_group_fields((key[0], unit, key[1], key[2])), "outcome": outcome, "why": why,
                               "seeds": sorted({tests[(claim.a, b)][0] for b in claim.b if (claim.a, b) in tests})})
            out[claim] = (groups, unit if groups else (cost or "the budget metric"))
    return out


def _no_single_best(claim: Claim, found: list[dict[str, Any]], rows: list[dict[str, Any]],
                    inadequate: dict[tuple, list[str]]) -> tuple[str, list[dict[str, Any]], list[str]]:
    """(outcome, groups, why): is one of ``claim.b`` called ahead of the others everywhere, or do two swap?"""
    bs = set(claim.b)
    mine = [v for v in found if v["metric"] == claim.metric and v["a"] in bs and v["b"] in bs]
    grouped = stats.by_group(rows, claim.metric)
    ahead: dict[tuple, set[tuple[str, str]]] = {}
    groups = []
    for key in sorted({_group(v) for v in mine}, key=_group_order):
        means = {st: statistics.fmean(by_seed.values()) for st, by_seed in grouped.get(key, {}).items() if st in bs}
        best = max(means, key=means.get)
        here = [v for v in mine if _group(v) == key]
        why = [f"best by mean {best} ({means[best]:.3g})"]
        seeds = sorted({v["seeds"] for v in here})
        if key in inadequate:
            groups.append({**_group_fields(key), "outcome": NOT_DETECTABLE, "seeds": seeds,
                           "why": [_inadequate(inadequate[key], "; left out")] + why})
            continue
        tested = [v for v in here if "p" in v]
        adjusted = stats.holm([v["p"] for v in tested])
        called = set()
        for v, q in zip(tested, adjusted):
            if q < stats.ALPHA:
                win, lose = (v["a"], v["b"]) if v["mean_diff"] > 0 else (v["b"], v["a"])
                called.add((win, lose))
                why.append(f"{win} ahead of {lose} (Holm-adjusted p = {q:.3g} over the {len(tested)} pairs of b)")
        if not called:
            why.append(f"no pair of b called apart over {', '.join(map(str, seeds))} seeds")
        ahead[key] = called
        groups.append({**_group_fields(key), "outcome": "ordered" if called else NOT_DETECTABLE, "seeds": seeds,
                       "why": why})
    budget = lambda k: f"{k[0]} budget {k[3]:g}"  # noqa: E731
    for g1, pairs in ahead.items():
        for s, t in sorted(pairs):
            for g2, other in ahead.items():
                if (t, s) in other:
                    return CONFIRMED, groups, [f"{s} is ahead of {t} at {budget(g1)} and {t} ahead of {s} at {budget(g2)}"]
    if len(ahead) >= 2:
        for s in sorted(bs):
            if all(all((s, t) in ahead[g] for t in bs - {s} if t in grouped.get(g, {})) for g in ahead):
                return CONTRADICTED, groups, [f"{s} is called ahead of every other in every group"]
    return NOT_DETECTABLE, groups, ["no two groups call a pair of b in opposite order"
                                    + ("" if len(ahead) >= 2 else " (fewer than two groups with an adequate learner)")]


#: per-campaign final scores (``leaderboard.final_scores``) of the given round columns
Finals = Callable[[tuple[str, ...]], list[dict[str, Any]]]


def _judge_outscores(claims: list[Claim], finals: Finals | None,
                     inadequate: dict[tuple, list[str]]) -> dict[Claim, list[dict[str, Any]]]:
    """Every "outscores" claim's groups; in each group the claims' sign-flip p-values are
    Holm-adjusted over the file's "outscores" claims that have campaigns there."""
    mine = [c for c in claims if c.kind == "outscores"]
    if not mine:
        return {}
    if finals is None:
        raise ValueError("judging an \"outscores\" claim needs finals (per-campaign final scores)")
    columns = tuple(sorted({m[len("final_"):] for c in mine for m in (c.metric, c.than)}))
    diffs: dict[tuple, dict[Claim, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    recorded: dict[tuple, dict[Claim, int]] = defaultdict(lambda: defaultdict(int))
    for r in finals(columns):
        key = (r["dataset"], r["metric"], r["pricing"], r["budget"])
        for c in mine:
            if r["strategy_label"] == c.a:
                recorded[key][c] += 1
                x, y = r[c.metric], r[c.than]
                if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
                    diffs[key][c][int(r["seed"])] = float(x) - float(y)
    out: dict[Claim, list[dict[str, Any]]] = {c: [] for c in mine}
    rng = np.random.default_rng(0)
    for key in sorted(recorded, key=_group_order):
        here = [c for c in mine if recorded[key][c]]
        tested = {c: stats.pair_stats(np.array([d for _, d in sorted(diffs[key][c].items())]), len(here), rng)
                  for c in here if len(diffs[key][c]) >= stats.MIN_SEEDS}
        adjusted = dict(zip(tested, stats.holm([t["p"] for t in tested.values()])))
        for c in here:
            n = len(diffs[key][c])
            name, other = stats.metric_name(c.metric), stats.metric_name(c.than)
            if c not in tested:
                outcome = NOT_DETECTABLE
                why = [f"{c.a}: {n} of {recorded[key][c]} campaigns recorded both {name} and {other}"
                       + ("" if n else f" (is {other} a score of this pipeline?)")
                       + f"; at least {stats.MIN_SEEDS} seeds are needed"]
            else:
                t, adj = tested[c], adjusted[c]
                k = len(tested)
                facts = (f"{c.a}: {name} − {other} = {t['mean_diff']:+.3g} [{t['lo']:.3g}, {t['hi']:.3g}] over "
                         f"{n} seeds (paired sign-flip test p = {t['p']:.3g}, Holm-adjusted {adj:.3g} over the {k} "
                         f"claim{'s' if k != 1 else ''} of this kind in this group)")
                if adj < stats.ALPHA:
                    outcome = CONFIRMED if t["mean_diff"] > 0 else CONTRADICTED
                    why = [f"{facts}: {name if t['mean_diff'] > 0 else other} is higher"]
                else:
                    outcome = NOT_DETECTABLE
                    why = [f"{facts}: no detectable difference{stats.floor_note(n, k, 'claim')}"]
            if key in inadequate:
                outcome, why = NOT_DETECTABLE, [_inadequate(inadequate[key])] + why
            out[c].append({**_group_fields(key), "outcome": outcome, "why": why, "seeds": [n]})
    return out


def _combine(outcomes: list[str]) -> str:
    if CONTRADICTED in outcomes:
        return CONTRADICTED
    return CONFIRMED if outcomes and all(o == CONFIRMED for o in outcomes) else NOT_DETECTABLE


def _judgement(claim: Claim, groups: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """A claim's judgement: its fields, its groups and the outcome they combine to (none: not detectable)."""
    return {**asdict(claim), "b": list(claim.b), **fields, "groups": groups,
            "outcome": _combine([g["outcome"] for g in groups]) if groups else NOT_DETECTABLE,
            **({} if groups else {"why": [f"{claim.a} has no finished campaigns in these results"]})}


def judge(claims: Iterable[Claim], rows: list[dict[str, Any]], found: list[dict[str, Any]],
          inadequate: dict[tuple, list[str]], rows_at: RowsAt | None = None,
          finals: Finals | None = None) -> list[dict[str, Any]]:
    """One judgement per claim: ``outcome`` overall and per group, each with its reasons.

    ``rows`` are per-campaign rows (``leaderboard.per_campaign``), ``found``
    the verdicts (``stats.verdicts`` on the claim's metric), ``inadequate``
    the groups where the learner is inadequate (``leaderboard.learner_inadequate``),
    ``rows_at(cost, reach)`` per-campaign rows scored in a cost metric with
    the cost to reach a share of full supervision ("cheaper" claims only),
    ``finals(columns)`` per-campaign final scores (``leaderboard.final_scores``,
    "outscores" claims only)."""
    claims = list(claims)
    family = _claimed_family(claims, found)
    cheaper = _judge_cheaper(claims, rows_at, inadequate)
    outscores = _judge_outscores(claims, finals, inadequate)
    out = []
    for claim in claims:
        if claim.kind == "outscores":
            out.append(_judgement(claim, outscores[claim]))
            continue
        if claim.kind == "cheaper":
            groups, unit = cheaper[claim]
            out.append(_judgement(claim, groups, cost=unit))
            continue
        if claim.kind == "no_single_best":
            outcome, groups, why = _no_single_best(claim, found, rows, inadequate)
            out.append({**asdict(claim), "b": list(claim.b), "outcome": outcome, "groups": groups, "why": why})
            continue
        groups = []
        grouped = stats.by_group(rows, claim.metric)
        keys = sorted({_group(v) for v in found if v["metric"] == claim.metric and claim.a in (v["a"], v["b"])},
                      key=_group_order)
        for key in keys:
            pairs = {v["b"] if v["a"] == claim.a else v["a"]: v for v in found
                     if _group(v) == key and v["metric"] == claim.metric and claim.a in (v["a"], v["b"])}
            # Each strategy's mean over its seeds in the group (stats' grouping of per-campaign rows).
            means = {st: statistics.fmean(by_seed.values()) for st, by_seed in grouped.get(key, {}).items()}
            outcome, why = (_beats(claim, pairs, family.get((key, claim.metric), {})) if claim.kind == "beats"
                            else _within(claim, pairs, means))
            if key in inadequate:
                outcome = NOT_DETECTABLE
                why = [_inadequate(inadequate[key])] + why
            groups.append({**_group_fields(key), "outcome": outcome, "why": why,
                           "seeds": sorted({pairs[b]["seeds"] for b in claim.b if b in pairs})})  # per pair compared
        out.append(_judgement(claim, groups))
    return out


CLAIMS_HEAD = ("# Headline claims\n\nGenerated by `alharness report --claims` from the per-seed results: \"beats\" "
               "needs the exact paired sign-flip test over the common seeds to call the winner, its p-values "
               "Holm-adjusted over the pairs that the file's \"beats\" claims name in the group (stated before the "
               "run; verdicts.md adjusts over every pair instead); \"within\" needs the 95 % paired bootstrap "
               "interval of the difference to lie above the allowed shortfall; \"cheaper\" needs the exact paired sign test "
               "on which strategy first reached the target share of full supervision at the lower cost (\"never\" counts "
               "as dearest), Holm-adjusted like \"beats\"; \"no single best\" needs two groups that call a pair in "
               "opposite order; \"outscores\" needs the paired sign-flip test on one score minus another of the same "
               "campaigns to call the sign, Holm-adjusted over the file's \"outscores\" claims in the group. A claim is confirmed when it holds in "
               "every group (dataset, pricing, budget), contradicted when it fails in any, and otherwise not "
               "detectable at this scale. A group whose learner is inadequate (a strategy beats full supervision) "
               "confirms nothing.\n\n")


def claim_lines(judged: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: one heading per claim with its outcome, one bullet per group."""
    lines = []
    for j in judged:
        if j["kind"] == "cheaper":
            tested = (f"{j['a']} reaches {j['reach']:.0%} of full supervision at a lower {j['cost']} than "
                      f"{' and '.join(j['b'])}")
        elif j["kind"] == "no_single_best":
            tested = f"none of {', '.join(j['b'])} is best on {stats.metric_name(j['metric'])} in every group"
        elif j["kind"] == "outscores":
            tested = f"{stats.metric_name(j['metric'])} above {stats.metric_name(j['than'])} in {j['a']}'s own campaigns"
        else:
            vs = " and ".join(j["b"]) if j["kind"] == "beats" else f"the best of {', '.join(j['b'])} (margin {j['margin']:.0%})"
            tested = f"{j['a']} {j['kind']} {vs} on {stats.metric_name(j['metric'])}"
        lines += [f"## {j['says']}: {j['outcome'].upper()}", "", f"Tested as: {tested}.", ""]
        for g in j["groups"]:
            lines.append(f"- {g['dataset']}, budget {g['budget']:g} {g['pricing']}: {g['outcome']}. " + " ".join(
                w.rstrip(".") + "." for w in g["why"]))
        lines += [f"- {w}." for w in j.get("why", [])] + [""]
    return lines


def write_claims(judged: list[dict[str, Any]], out_dir: Path) -> list[str]:
    """Write ``claims.md`` and ``claims.json`` into ``out_dir``; return the Markdown body's lines."""
    lines = claim_lines(judged)
    (out_dir / "claims.md").write_text(CLAIMS_HEAD + "\n".join(lines) + "\n")
    (out_dir / "claims.json").write_text(json.dumps(judged, indent=1, default=float) + "\n")
    return lines


__all__ = ["Claim", "resolve_claims", "judge", "sign_test", "claim_lines", "write_claims", "CONFIRMED", "CONTRADICTED",
           "NOT_DETECTABLE", "KINDS"]
