"""Headline claims ([[claims]] in a benchmark file): resolved against the benchmark's strategies,
judged from the verdicts, and led with in the report."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import tiny_benchmark_doc, toml_dumps

from alharness.campaign.loop import run_campaign
from alharness.cli import main
from alharness.errors import ConfigError
from alharness.execution.benchmark import parse_benchmark
from alharness.results import leaderboard, stats, store
from alharness.results.claims import CONFIRMED, CONTRADICTED, NOT_DETECTABLE, Claim, judge


def _rows(means: dict[str, float], seeds: int, budget: float = 100, noise: float = 0.002, full: float = 0.9,
          seed: int = 0) -> list[dict]:
    """Per-campaign rows as ``leaderboard.per_campaign`` gives them, a seeded noise per (strategy, seed)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        shared = rng.normal(0, 0.05)  # what a seed does to every strategy: pairing removes it
        for label, mean in means.items():
            v = mean + shared + rng.normal(0, noise)
            rows.append({"dataset": "d", "metric": "pixels", "pricing": "pixels", "budget": budget, "strategy_label": label,
                         "seed": s, "final_miou": v, "auc": v, "full_miou": full + shared})
    return rows


def _judge(claim: Claim, rows: list[dict]) -> dict:
    found = stats.verdicts(rows, claim.metric)
    return judge([claim], rows, found, leaderboard.learner_inadequate(rows))[0]


BEATS = Claim("m beats r and e", "beats", "m", ("r", "e"))


def test_beats_is_confirmed_contradicted_or_not_detectable_from_the_verdicts():
    assert _judge(BEATS, _rows({"m": 0.6, "r": 0.5, "e": 0.55}, seeds=7))["outcome"] == CONFIRMED
    # One b beating a contradicts the claim, even where a beats the other.
    lost = _judge(BEATS, _rows({"m": 0.6, "r": 0.5, "e": 0.7}, seeds=7))
    assert lost["outcome"] == CONTRADICTED and "e beats m" in " ".join(lost["groups"][0]["why"])
    # Within seed noise: not detectable, with the verdict's own sentence.
    tied = _judge(BEATS, _rows({"m": 0.6, "r": 0.6, "e": 0.6}, seeds=7, noise=0.02))
    assert tied["outcome"] == NOT_DETECTABLE and "no detectable difference" in " ".join(tied["groups"][0]["why"])
    # Too few seeds for any verdict: not detectable, however large the gap.
    few = _judge(BEATS, _rows({"m": 0.6, "r": 0.5, "e": 0.55}, seeds=3))
    assert few["outcome"] == NOT_DETECTABLE and "too few seeds (3" in " ".join(few["groups"][0]["why"])


def test_a_claim_is_tested_among_the_claimed_pairs_not_every_pair_of_the_group():
    # 7 strategies (21 pairs) at 7 seeds: over every pair the exact test cannot call one
    # (2^(1-7) * 21 > 0.05), but the claim names one pair: 2^(1-7) < 0.05.
    rows = _rows({"m": 0.6, "r": 0.5, **{f"x{i}": 0.55 for i in range(5)}}, seeds=7)
    found = stats.verdicts(rows, "final_miou")
    (mr,) = [v for v in found if {v["a"], v["b"]} == {"m", "r"}]
    assert mr["verdict"] == "no difference" and mr["k"] == 21
    j = judge([Claim("m beats r", "beats", "m", ("r",))], rows, found, {})[0]
    assert j["outcome"] == CONFIRMED and "Holm-adjusted 0.0156 over the 1 claimed pair of this group, 7 seeds" in j["groups"][0]["why"][0]
    # Two claims in one file share the family: two pairs, each p doubled by Holm at worst.
    both = judge([Claim("m beats r", "beats", "m", ("r",)), Claim("m beats x0", "beats", "m", ("x0",))], rows, found, {})
    assert all(b["outcome"] == CONFIRMED for b in both) and "over the 2 claimed pairs" in both[0]["groups"][0]["why"][0]


def test_an_inadequate_learner_confirms_nothing():
    # Full supervision (0.5) below what the strategies reach: the learner limits the scores.
    j = _judge(BEATS, _rows({"m": 0.6, "r": 0.5, "e": 0.55}, seeds=7, full=0.5))
    assert j["outcome"] == NOT_DETECTABLE and j["groups"][0]["why"][0].startswith("LEARNER INADEQUATE: ")


def test_a_claim_holds_only_where_it_holds_in_every_group():
    rows = _rows({"m": 0.6, "r": 0.5, "e": 0.55}, seeds=7) + _rows({"m": 0.6, "r": 0.6, "e": 0.6}, seeds=7, budget=200,
                                                                   noise=0.02, seed=1)
    j = _judge(BEATS, rows)
    assert [g["outcome"] for g in j["groups"]] == [CONFIRMED, NOT_DETECTABLE] and j["outcome"] == NOT_DETECTABLE
    rows += _rows({"m": 0.4, "r": 0.6, "e": 0.6}, seeds=7, budget=300, seed=2)
    assert _judge(BEATS, rows)["outcome"] == CONTRADICTED


def test_within_compares_with_the_best_b_and_its_margin():
    claim = Claim("gp within 2 % of the best fixed share", "within", "gp", ("f25", "f50"), margin=0.02)
    close = _judge(claim, _rows({"gp": 0.597, "f25": 0.5, "f50": 0.6}, seeds=7))
    assert close["outcome"] == CONFIRMED and "gp − f50 (the best of f25, f50" in close["groups"][0]["why"][0]
    far = _judge(claim, _rows({"gp": 0.5, "f25": 0.45, "f50": 0.6}, seeds=7))
    assert far["outcome"] == CONTRADICTED
    loose = _judge(Claim("within 25 %", "within", "gp", ("f25", "f50"), margin=0.25),
                   _rows({"gp": 0.5, "f25": 0.45, "f50": 0.6}, seeds=7))
    assert loose["outcome"] == CONFIRMED
    # An interval straddling the allowed shortfall decides nothing.
    wide = _judge(claim, _rows({"gp": 0.585, "f25": 0.5, "f50": 0.6}, seeds=7, noise=0.03))
    assert wide["outcome"] == NOT_DETECTABLE


def _doc(claims: list[dict], strategies=("random", "entropy", {"name": "fixed_proportion", "mask_fraction": 0.75})):
    return {**tiny_benchmark_doc(strategies=strategies), "claims": claims}


def test_claims_name_the_benchmarks_strategies_by_label_or_unambiguous_plugin_name():
    bench = parse_benchmark(_doc([{"says": "entropy beats the rest", "kind": "beats", "a": "entropy",
                                   "b": ["random", "fixed_proportion"]}]), "b.toml", open_datasets=False)
    assert bench.claims == (Claim("entropy beats the rest", "beats", "entropy",
                                  ("random", "fixed_proportion(mask_fraction=0.75)")),)
    cases = [
        ({"a": "entropi", "b": "random"}, "b.toml: [[claims]] entry 1 a = 'entropi' names no strategy of this benchmark "
                                          "(its strategies: entropy, fixed_proportion(mask_fraction=0.75), random)"),
        ({"a": "entropy", "b": "entropy"}, "a (entropy) is also one of b"),
        ({"a": "entropy", "b": "random", "says": " "}, "says must state the claim in words"),
        ({"a": "entropy", "b": "random", "kind": "wins"}, "[[claims]] entry 1 kind must be one of 'beats', 'within'"),
        ({"a": "entropy", "b": "random", "margin": 1.5}, "[[claims]] entry 1 margin must be a finite number in [0, 1]"),
        ({"a": "entropy", "b": [], }, "[[claims]] entry 1 b must be"),
        ({"a": "entropy", "b": "random", "by": 2}, "[[claims]] entry 1: unknown key(s) 'by'"),
        ({"b": "random"}, 'entry 1: kind = "beats" needs a (the strategy the claim is about)'),
        ({"a": "entropy", "b": "random", "cost": "clicks"}, 'cost and reach belong to kind = "cheaper" only'),
        ({"a": "entropy", "b": "random", "kind": "cheaper", "cost": "klicks"},
         "entry 1 cost = 'klicks' is no cost metric (every campaign records: clicks, cost_a"),
        ({"a": "entropy", "b": "random", "kind": "cheaper", "reach": 0}, "entry 1 reach must be"),
        ({"a": "entropy", "b": ["random", "fixed_proportion"], "kind": "no_single_best"},
         'kind = "no_single_best" is about the b\'s alone; remove a'),
        ({"b": "random", "kind": "no_single_best"}, 'needs at least two strategies in b'),
        ({"a": "entropy"}, 'entry 1: kind = "beats" needs b (the strategies a is compared with)'),
        ({"a": "entropy", "b": "random", "kind": "outscores", "metric": "final_ap50", "than": "final_miou"},
         'kind = "outscores" compares two scores of a\'s own campaigns; remove b'),
        ({"a": "entropy", "kind": "outscores", "metric": "final_ap50"}, 'kind = "outscores" needs than'),
        ({"a": "entropy", "kind": "outscores", "metric": "auc", "than": "final_miou"},
         "needs metric = one of final_miou, final_ap50, final_annotation_miou, final_annotation_ap50, got 'auc'"),
        ({"a": "entropy", "kind": "outscores", "metric": "final_ap50", "than": "final_ap50"},
         "a score cannot outscore itself"),
        ({"a": "entropy", "b": "random", "than": "final_miou"}, 'than belongs to kind = "outscores" only'),
        ({"a": "entropy", "b": "random", "metric": "final_ap50"},
         "metric = 'final_ap50' is for kind = \"outscores\" only; 'beats' reads one of final_miou, auc"),
    ]
    for over, message in cases:
        with pytest.raises(ConfigError) as err:
            parse_benchmark(_doc([{"says": "x", "kind": "beats", **over}]), "b.toml", open_datasets=False)
        assert message in str(err.value), (over, str(err.value))
    two = ({"name": "fixed_proportion", "mask_fraction": 0.25}, {"name": "fixed_proportion", "mask_fraction": 0.8}, "random")
    with pytest.raises(ConfigError, match=r"'fixed_proportion' matches several strategies \(fixed_proportion\(mask_fraction=0.25\), "
                                          r"fixed_proportion\(mask_fraction=0.8\)\); give the full label"):
        parse_benchmark(_doc([{"says": "x", "kind": "beats", "a": "random", "b": "fixed_proportion"}], two), "b.toml",
                        open_datasets=False)


def test_report_leads_with_the_judged_claims(tmp_path):
    doc = _doc([{"says": "Entropy beats random", "kind": "beats", "a": "entropy", "b": "random"},
                {"says": "Entropy is cheaper in clicks", "kind": "cheaper", "a": "entropy", "b": "random",
                 "cost": "clicks", "reach": 0.5},
                {"says": "Entropy's AP50 is above its mIoU", "kind": "outscores", "a": "entropy",
                 "metric": "final_ap50", "than": "final_miou"}],
               strategies=("random", "entropy"))
    bench = parse_benchmark(doc, "b.toml")
    out = str(tmp_path / "res")
    for spec in bench.specs:
        res = run_campaign(spec)
        store.write_campaign(out, {"campaign_id": spec.campaign_id, "status": "ok", "error": "", "spec": spec.to_json()},
                             res.rows, res.queries)
    (tmp_path / "b.toml").write_text(toml_dumps(doc))
    rep = tmp_path / "rep"
    assert main(["report", out, "--out", str(rep), "--claims", str(tmp_path / "b.toml")]) == 0
    md = (rep / "report.md").read_text()
    assert md.split("\n## ")[1].startswith("Headline claims")
    assert "### Entropy beats random: NOT DETECTABLE AT THIS SCALE" in md and "too few seeds (2" in md
    judged = json.loads((rep / "claims.json").read_text())
    assert judged[0]["outcome"] == NOT_DETECTABLE and judged[0]["b"] == ["random"]
    # The cost claim is read in its own metric, from the same results (SQL of leaderboard.per_campaign).
    assert judged[1]["cost"] == "clicks" and judged[1]["groups"][0]["cost_metric"] == "clicks"
    assert "### Entropy is cheaper in clicks: NOT DETECTABLE AT THIS SCALE" in md
    assert "of 2 seeds): too few seeds (2 common; at least 5)" in judged[1]["groups"][0]["why"][0]
    # The score claim reads both final scores of entropy's own campaigns (leaderboard.final_scores).
    assert judged[2]["than"] == "final_miou" and judged[2]["groups"][0]["seeds"] == [2]
    assert "entropy: 2 of 2 campaigns recorded both final AP50 and final mIoU; at least 5 seeds" in md
    assert "# Headline claims" in (rep / "claims.md").read_text()
    # Without --claims the report has no such section; a file without claims is an error.
    assert main(["report", out, "--out", str(tmp_path / "plain")]) == 0
    assert "Headline claims" not in (tmp_path / "plain" / "report.md").read_text()
    (tmp_path / "none.toml").write_text(toml_dumps(tiny_benchmark_doc()))
    assert main(["report", out, "--out", str(tmp_path / "x"), "--claims", str(tmp_path / "none.toml")]) != 0
    assert not os.path.exists(tmp_path / "x" / "claims.md")


def _reach_rows(first: dict[str, list[float | None]], budget: float = 100) -> list[dict]:
    """Per-campaign rows with each seed's cost to reach the target (None: never reached)."""
    return [{"dataset": "d", "metric": "cost_a", "pricing": "pixels", "budget": budget, "strategy_label": label,
             "seed": s, "cost_to_reach": c, "reach_of": "full supervision", "final_miou": 0.5, "auc": 0.5,
             "full_miou": 0.9}
            for label, costs in first.items() for s, c in enumerate(costs)]


def _judge_cheaper(claim: Claim, rows: list[dict]) -> dict:
    asked = []

    def rows_at(cost, reach):
        asked.append((cost, reach))
        return rows
    j = judge([claim], [], [], {}, rows_at=rows_at)[0]
    assert asked == [(claim.cost, claim.reach)]
    return j


CHEAPER = Claim("m+ reaches 95 % cheaper than r", "cheaper", "m+", ("r",), cost="cost_a", reach=0.95)


def test_cheaper_is_an_exact_sign_test_on_who_reached_the_target_first():
    # a first on all 8 seeds: p = 2/256; b never reaching it counts as dearest.
    first = _judge_cheaper(CHEAPER, _reach_rows({"m+": [0.2] * 8, "r": [0.3] * 4 + [None] * 4}))
    why = first["groups"][0]["why"][0]
    assert first["outcome"] == CONFIRMED and first["cost"] == "cost_a", first
    assert ("m+ got to 95% of full supervision at the lower cost_a on 8 of 8 seeds, r on 0 (median 0.2 vs never; "
            "reached on 8 and 4 of 8 seeds): m+ is cheaper (exact sign test p = 0.00781") in why
    late = _judge_cheaper(CHEAPER, _reach_rows({"m+": [None] * 8, "r": [0.3] * 8}))
    assert late["outcome"] == CONTRADICTED and "r is cheaper" in late["groups"][0]["why"][0]
    # Both never reaching it, or reaching it at the same cost, carry no sign.
    ties = _judge_cheaper(CHEAPER, _reach_rows({"m+": [None] * 6 + [0.2, 0.2], "r": [None] * 6 + [0.3, 0.2]}))
    assert ties["outcome"] == NOT_DETECTABLE and "on 1 of 8 seeds, r on 0" in ties["groups"][0]["why"][0]
    few = _judge_cheaper(CHEAPER, _reach_rows({"m+": [0.2] * 4, "r": [0.3] * 4}))
    assert few["outcome"] == NOT_DETECTABLE and "too few seeds (4 common" in few["groups"][0]["why"][0]


def test_cheaper_claims_on_one_cost_share_their_holm_family():
    rows = _reach_rows({"m+": [0.2] * 6, "e+": [0.2] * 6, "r": [0.3] * 6})
    claims = [CHEAPER, Claim("e+ too", "cheaper", "e+", ("r",), cost="cost_a", reach=0.95)]
    alone = judge(claims[:1], [], [], {}, rows_at=lambda c, r: rows)[0]
    both = judge(claims, [], [], {}, rows_at=lambda c, r: rows)
    # 6 seeds: p = 2/64 = 0.031 calls one pair, but not two (Holm: 0.0625).
    assert alone["outcome"] == CONFIRMED and [b["outcome"] for b in both] == [NOT_DETECTABLE] * 2
    assert "Holm-adjusted 0.0625 over the 2 claimed pairs" in both[0]["groups"][0]["why"][0]
    # An inadequate learner in the group confirms nothing.
    unfit = judge(claims[:1], [], [], {("d", "pixels", "pixels", 100): ["m+"]}, rows_at=lambda c, r: rows)[0]
    assert unfit["outcome"] == NOT_DETECTABLE and unfit["groups"][0]["why"][0].startswith("LEARNER INADEQUATE")


NO_SINGLE_BEST = Claim("no fixed share is best everywhere", "no_single_best", "", ("f50", "f75", "f95"))


def _judge_all(claim: Claim, rows: list[dict]) -> dict:
    return judge([claim], rows, stats.verdicts(rows, claim.metric), leaderboard.learner_inadequate(rows))[0]


def test_no_single_best_needs_two_groups_that_order_a_pair_oppositely():
    swap = (_rows({"f50": 0.6, "f75": 0.5, "f95": 0.4}, seeds=8) +
            _rows({"f50": 0.5, "f75": 0.6, "f95": 0.4}, seeds=8, budget=200, seed=1))
    j = _judge_all(NO_SINGLE_BEST, swap)
    assert j["outcome"] == CONFIRMED and j["why"] == ["f50 is ahead of f75 at d budget 100 and f75 ahead of f50 at d budget 200"]
    assert [g["outcome"] for g in j["groups"]] == ["ordered", "ordered"]
    same = (_rows({"f50": 0.6, "f75": 0.5, "f95": 0.4}, seeds=8) +
            _rows({"f50": 0.7, "f75": 0.6, "f95": 0.5}, seeds=8, budget=200, seed=1))
    assert _judge_all(NO_SINGLE_BEST, same)["outcome"] == CONTRADICTED
    noise = (_rows({"f50": 0.6, "f75": 0.6, "f95": 0.6}, seeds=8, noise=0.03) +
             _rows({"f50": 0.6, "f75": 0.6, "f95": 0.6}, seeds=8, budget=200, noise=0.03, seed=1))
    quiet = _judge_all(NO_SINGLE_BEST, noise)
    assert quiet["outcome"] == NOT_DETECTABLE and quiet["why"] == ["no two groups call a pair of b in opposite order"]
    # One group says nothing about "everywhere".
    one = _judge_all(NO_SINGLE_BEST, _rows({"f50": 0.6, "f75": 0.5, "f95": 0.4}, seeds=8))
    assert one["outcome"] == NOT_DETECTABLE and "fewer than two groups" in one["why"][0]


def _final_rows(diffs: dict[str, list[float | None]], budget: float = 100) -> list[dict]:
    """Final scores as ``leaderboard.final_scores`` gives them: seg. AP50 = annotation AP50 + the seed's difference."""
    return [{"dataset": "d", "metric": "pixels", "pricing": "pixels", "budget": budget, "strategy_label": label,
             "seed": s, "final_ap50": None if d is None else 0.4 + d, "final_annotation_ap50": 0.4}
            for label, ds in diffs.items() for s, d in enumerate(ds)]


SEG_ABOVE = Claim("the segmentation network outscores the annotation network", "outscores", "mg", (),
                  metric="final_ap50", than="final_annotation_ap50")


def test_outscores_is_a_sign_flip_test_on_two_scores_of_the_same_campaigns():
    def judged(claims, rows, inadequate=None):
        asked = []

        def finals(columns):
            asked.append(columns)
            return rows
        out = judge(claims, [], [], inadequate or {}, finals=finals)
        assert asked == [("annotation_ap50", "ap50")]
        return out

    up = [0.05, 0.03, 0.04, 0.06, 0.02, 0.05, 0.04]
    j = judged([SEG_ABOVE], _final_rows({"mg": up, "r": [-x for x in up]}))[0]
    assert j["outcome"] == CONFIRMED and j["b"] == [] and j["groups"][0]["seeds"] == [7], j
    assert ("mg: final AP50 − the annotation network's final AP50 = +0.0414" in j["groups"][0]["why"][0]
            and "p = 0.0156, Holm-adjusted 0.0156 over the 1 claim of this kind" in j["groups"][0]["why"][0])
    assert judged([SEG_ABOVE], _final_rows({"mg": [-x for x in up]}))[0]["outcome"] == CONTRADICTED
    mixed = judged([SEG_ABOVE], _final_rows({"mg": [0.05, -0.03, 0.04, -0.06, 0.02, -0.05, 0.04]}))[0]
    assert mixed["outcome"] == NOT_DETECTABLE and "no detectable difference" in mixed["groups"][0]["why"][0]
    # Two claims of the kind share a Holm family: 6 seeds (p = 1/32) call one, not two.
    other = Claim("r too", "outscores", "r", (), metric="final_ap50", than="final_annotation_ap50")
    six = _final_rows({"mg": up[:6], "r": up[:6]})
    assert judged([SEG_ABOVE], six)[0]["outcome"] == CONFIRMED
    assert [x["outcome"] for x in judged([SEG_ABOVE, other], six)] == [NOT_DETECTABLE] * 2
    # A score the pipeline does not record (single network: no annotation scores) says so.
    missing = judged([SEG_ABOVE], _final_rows({"mg": [None] * 7}))[0]
    assert missing["outcome"] == NOT_DETECTABLE
    assert ("mg: 0 of 7 campaigns recorded both final AP50 and the annotation network's final AP50 (is the annotation "
            "network's final AP50 a score of this pipeline?)") in missing["groups"][0]["why"][0]
    unfit = judged([SEG_ABOVE], _final_rows({"mg": up}), {("d", "pixels", "pixels", 100): ["mg"]})[0]
    assert unfit["outcome"] == NOT_DETECTABLE and unfit["groups"][0]["why"][0].startswith("LEARNER INADEQUATE")
    assert judged([SEG_ABOVE], _final_rows({"r": up}))[0]["why"] == ["mg has no finished campaigns in these results"]
