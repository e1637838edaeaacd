"""Headline claims: a paper's claim, written in a benchmark file, judged by the harness.

A benchmark file may state what its experiment is meant to test::

    [[claims]]
    says = "MADBAL beats random pixels and pixel entropy at equal clicks"
    kind = "beats"                    # or "within"
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

Anything else is *not detectable at this scale*, and so is every group where
the learner is inadequate (a strategy beats its own full-supervision
reference by more than seed noise, ``leaderboard.learner_inadequate``): there
the learner, not the labels, limits the scores. A claim is confirmed when it
is confirmed in every group, contradicted when it is contradicted in any.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from alharness.errors import ConfigError
from alharness.results import stats

CONFIRMED, CONTRADICTED, NOT_DETECTABLE = "confirmed", "contradicted", "not detectable at this scale"
KINDS = ("beats", "within")


@dataclass(frozen=True)
class Claim:
    """A headline claim with its strategies as leaderboard labels (``CampaignSpec.strategy_label``)."""

    says: str
    kind: str
    a: str
    b: tuple[str, ...]
    metric: str = "final_miou"
    margin: float = 0.02


def resolve_claims(tables: Iterable[dict[str, Any]], labels: Iterable[str], where: str) -> tuple[Claim, ...]:
    """Checked ``[[claims]]`` tables → claims whose ``a`` and ``b`` are this benchmark's strategy labels.

    A name is a label as the leaderboard prints it, or a plugin name that
    exactly one of the benchmark's labels carries."""
    labels = sorted(set(labels))

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
        a = label(t["a"], f"{at} a =")
        bs = tuple(label(b, f"{at} b =") for b in ([t["b"]] if isinstance(t["b"], str) else t["b"]))
        if a in bs:
            raise ConfigError(f"{at}: a ({a}) is also one of b; a claim compares a strategy with others")
        out.append(Claim(t["says"].strip(), t["kind"], a, bs, t.get("metric", "final_miou"), float(t.get("margin", 0.02))))
    return tuple(out)


def _group(v: dict[str, Any]) -> tuple:
    """A verdict row's group, keyed as ``learner_inadequate`` keys it."""
    return v["dataset"], v["cost_metric"], v["pricing"], v["budget"]


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
            floor = stats.min_seeds_to_call(k)
            why.append(f"{claim.a} vs {b} on {name}: no detectable difference (difference {diff:+.3g} [{lo:.3g}, {hi:.3g}], "
                       f"{tested}" + (f"; the exact test cannot reach p < {stats.ALPHA:g} over {k} pairs below {floor} seeds"
                                      if v["seeds"] < floor else "") + ")")
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


def _combine(outcomes: list[str]) -> str:
    if CONTRADICTED in outcomes:
        return CONTRADICTED
    return CONFIRMED if outcomes and all(o == CONFIRMED for o in outcomes) else NOT_DETECTABLE


def judge(claims: Iterable[Claim], rows: list[dict[str, Any]], found: list[dict[str, Any]],
          inadequate: dict[tuple, list[str]]) -> list[dict[str, Any]]:
    """One judgement per claim: ``outcome`` overall and per group, each with its reasons.

    ``rows`` are per-campaign rows (``leaderboard.per_campaign``), ``found``
    the verdicts (``stats.verdicts`` on the claim's metric), ``inadequate``
    the groups where the learner is inadequate (``leaderboard.learner_inadequate``)."""
    claims = list(claims)
    family = _claimed_family(claims, found)
    out = []
    for claim in claims:
        groups = []
        grouped = stats.by_group(rows, claim.metric)
        keys = sorted({_group(v) for v in found if v["metric"] == claim.metric and claim.a in (v["a"], v["b"])},
                      key=lambda k: tuple(str(x) for x in k))
        for key in keys:
            pairs = {v["b"] if v["a"] == claim.a else v["a"]: v for v in found
                     if _group(v) == key and v["metric"] == claim.metric and claim.a in (v["a"], v["b"])}
            # Each strategy's mean over its seeds in the group (stats' grouping of per-campaign rows).
            means = {st: statistics.fmean(by_seed.values()) for st, by_seed in grouped.get(key, {}).items()}
            outcome, why = (_beats(claim, pairs, family.get((key, claim.metric), {})) if claim.kind == "beats"
                            else _within(claim, pairs, means))
            if key in inadequate:
                outcome = NOT_DETECTABLE
                why = [f"LEARNER INADEQUATE: {', '.join(inadequate[key])} beat full supervision by more than seed "
                       "noise, so the learner, not the labels, limits these scores"] + why
            groups.append({"dataset": key[0], "cost_metric": key[1], "pricing": key[2], "budget": key[3],
                           "outcome": outcome, "why": why,
                           "seeds": sorted({pairs[b]["seeds"] for b in claim.b if b in pairs})})  # per pair compared
        outcome = _combine([g["outcome"] for g in groups]) if groups else NOT_DETECTABLE
        out.append({**asdict(claim), "b": list(claim.b), "outcome": outcome, "groups": groups,
                    **({} if groups else {"why": [f"{claim.a} has no finished campaigns in these results"]})})
    return out


CLAIMS_HEAD = ("# Headline claims\n\nGenerated by `alharness report --claims` from the per-seed results: \"beats\" "
               "needs the exact paired sign-flip test over the common seeds to call the winner, its p-values "
               "Holm-adjusted over the pairs that the file's \"beats\" claims name in the group (stated before the "
               "run; verdicts.md adjusts over every pair instead); \"within\" needs the 95 % paired bootstrap "
               "interval of the difference to lie above the allowed shortfall. A claim is confirmed when it holds in "
               "every group (dataset, pricing, budget), contradicted when it fails in any, and otherwise not "
               "detectable at this scale. A group whose learner is inadequate (a strategy beats full supervision) "
               "confirms nothing.\n\n")


def claim_lines(judged: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: one heading per claim with its outcome, one bullet per group."""
    lines = []
    for j in judged:
        vs = " and ".join(j["b"]) if j["kind"] == "beats" else f"the best of {', '.join(j['b'])} (margin {j['margin']:.0%})"
        lines += [f"## {j['says']}: {j['outcome'].upper()}", "",
                  f"Tested as: {j['a']} {j['kind']} {vs} on {stats.metric_name(j['metric'])}.", ""]
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


__all__ = ["Claim", "resolve_claims", "judge", "claim_lines", "write_claims", "CONFIRMED", "CONTRADICTED",
           "NOT_DETECTABLE", "KINDS"]
