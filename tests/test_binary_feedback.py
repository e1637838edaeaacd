"""Binary-feedback strategies: eq. (1)-(3), the LP of eq. (8) (fast = literal),
rounding, the exact ILP, and the strategy contract."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from alharness.testing import parametrize_with_checks
from strategies.binary_feedback import (_certified, _restricted, confidence_matrix, integer_objective,
                                        presence_probabilities, redundancy_matrix, round_selection, solve_ilp,
                                        solve_lp)


def test_confidence_and_redundancy_follow_eq_1_to_3():
    p = np.array([[0.5, 0.9, 0.99], [0.1, 0.5, 0.01]])
    G = confidence_matrix(p, alpha=1.0)
    h = -p * np.log(p) - (1 - p) * np.log(1 - p)
    raw = 1.0 / h
    np.testing.assert_allclose(G, (raw - raw.min()) / (raw.max() - raw.min()))
    assert G[0, 0] == 0.0 and G[1, 1] == 0.0  # p = 0.5: maximal entropy, least confident
    assert G[0, 2] == pytest.approx(1.0) and G[1, 2] == pytest.approx(1.0)
    f = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    R = redundancy_matrix(f)
    np.testing.assert_allclose(R, [[1, 0.5, 0], [0.5, 1, 0.5], [0, 0.5, 1]])
    probs = np.zeros((1, 2, 2, 2))
    probs[0, 0] = [[1, 1], [0, 0]]
    probs[0, 1] = 1 - probs[0, 0]
    np.testing.assert_allclose(presence_probabilities(probs), [[0.5, 0.5]])


def _instance(seed, n, c):
    rng = np.random.default_rng(seed)
    G = confidence_matrix(rng.random((n, c)))
    R = redundancy_matrix(rng.normal(size=(n, 8)))
    allowed = rng.random((n, c)) > 0.15
    return G, R, allowed


@pytest.mark.parametrize("seed, n, c, B, c_max, lam", [(0, 10, 4, 5, 2, 1.0), (1, 25, 5, 12, 3, 1.0), (2, 40, 6, 30, 5, 0.5),
                                                     (3, 60, 3, 20, 2, 2.0), (4, 8, 4, 20, 4, 0.05), (5, 12, 3, 30, 3, 0.01)])
def test_fast_lp_equals_literal_lp(seed, n, c, B, c_max, lam):
    G, R, allowed = _instance(seed, n, c)
    literal = solve_lp(G, R, allowed, B, c_max, lam, lazy=False)
    fast = solve_lp(G, R, allowed, B, c_max, lam, lazy=True)
    # Usually the closed form's certificate settles it without HiGHS; with a
    # weak redundancy term (small lambda, large B) it fails and HiGHS adds pair rows.
    assert fast.certified == (fast.rounds == 0) == (lam >= 0.5)
    assert fast.objective == pytest.approx(literal.objective, rel=1e-9)
    assert fast.M.sum() == pytest.approx(B)
    assert (fast.M[~allowed] < 1e-9).all()


def _tiny_g_instance(seed, n, c):
    """G as eq. (2)'s min-max map makes it for a trained model: the picked entries ~1e-8."""
    rng = np.random.default_rng(seed)
    G = confidence_matrix(rng.beta(0.5, 2.0, size=(n, c)))
    R = redundancy_matrix(rng.normal(size=(n, 8)))
    return G, R, rng.random((n, c)) > 0.1


@pytest.mark.parametrize("seed", range(3))
def test_tiny_g_reaches_the_true_optimum_in_relative_terms(seed):
    G, R, allowed = _tiny_g_instance(seed, 300, 6)
    B = 40
    assert np.sort(G[allowed])[2 * B] < 1e-6  # below HiGHS's absolute tolerances
    literal = solve_lp(G, R, allowed, B, 3, 1.0, lazy=False)  # rescaled: the reference
    fast = solve_lp(G, R, allowed, B, 3, 1.0)
    highs = solve_lp(G, R, allowed, B, 3, 1.0, closed_form=False)  # HiGHS's own v <= 1/2 solve, rescaled
    assert fast.certified and fast.rounds == 0
    assert fast.objective == pytest.approx(literal.objective, rel=1e-6)
    assert highs.objective == pytest.approx(literal.objective, rel=1e-6)


def test_tiny_g_fallback_to_highs_is_rescaled():
    # B above half of what v <= 1/2 can place (2 per image here): the closed form cannot
    # hold, and HiGHS solves the rescaled model with pair rows.
    G, R, allowed = _tiny_g_instance(7, 30, 4)
    B = 40
    assert _restricted(G, allowed, B, 1) is None
    literal = solve_lp(G, R, allowed, B, 1, 1.0, lazy=False)
    fast = solve_lp(G, R, allowed, B, 1, 1.0)
    assert not fast.certified and fast.rounds > 1
    assert fast.objective == pytest.approx(literal.objective, rel=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_closed_form_and_certificate_against_the_literal_lp(seed):
    """Many small random instances: a certified closed form is the literal LP's optimum, the fallback too."""
    rng = np.random.default_rng(100 + seed)
    for _ in range(25):
        n, c, c_max = int(rng.integers(2, 16)), int(rng.integers(1, 6)), int(rng.integers(1, 4))
        G = confidence_matrix(rng.beta(0.5, 2.0, size=(n, c))) if rng.random() < 0.5 else rng.random((n, c))
        R = redundancy_matrix(rng.normal(size=(n, 4)))
        allowed = rng.random((n, c)) > rng.uniform(0, 0.5)
        cap = int(np.minimum(allowed.sum(1), c_max).sum())
        if cap == 0:
            continue
        B, lam = int(rng.integers(1, cap + 1)), float(rng.choice([0.0, 0.05, 0.5, 1.0]))
        literal = solve_lp(G, R, allowed, B, c_max, lam, lazy=False)
        fast = solve_lp(G, R, allowed, B, c_max, lam)
        assert fast.objective == pytest.approx(literal.objective, rel=1e-6, abs=1e-300)
        picked = _restricted(G, allowed, B, c_max)
        if picked is not None and 0.5 * G[picked].sum() > literal.objective * (1 + 1e-6) + 1e-12:
            assert not _certified(G, np.diag(R), lam, *picked, c_max)  # never certifies a suboptimal point
        assert fast.M.sum() == pytest.approx(B) and (fast.M.sum(1) <= c_max + 1e-9).all()


def test_budget_is_clamped_to_what_c_max_and_the_allowed_entries_can_place():
    G, R, allowed = _instance(0, 6, 4)
    allowed[:] = False
    allowed[:, 0] = allowed[0] = True  # 9 allowed entries, but C_max = 2 leaves 2 + 5 placeable
    sol = solve_lp(G, R, allowed, 12, 2, 1.0)
    assert sol.M.sum() == pytest.approx(7)
    literal = solve_lp(G, R, allowed, 12, 2, 1.0, lazy=False)
    assert sol.objective == pytest.approx(literal.objective, rel=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_rounding_respects_budget_cmax_and_answered_pairs(seed):
    G, R, allowed = _instance(seed, 30, 5)
    sol = solve_lp(G, R, allowed, 17, 3, 1.0)
    sel = round_selection(sol.M, 17, 3, allowed, G)
    assert sel.sum() == 17
    assert (sel.sum(axis=1) <= 3).all()
    assert not (sel & ~allowed).any()


def _greedy_rounding(M, B, c_max, allowed, tie_break):
    """The rounding as a plain loop, the reference for the vectorised one."""
    n, c = M.shape
    out = np.zeros((n, c), bool)
    for k in np.lexsort((tie_break.ravel(), -np.round(M.ravel(), 9))):
        if out.sum() < B and allowed.flat[k] and out[k // c].sum() < c_max:
            out.flat[k] = True
    return out


@pytest.mark.parametrize("seed", range(5))
def test_rounding_equals_the_greedy_loop(seed):
    G, R, allowed = _instance(seed, 40, 6)
    rng = np.random.default_rng(seed)
    M = np.round(rng.random(G.shape) * 2) / 2  # many ties at 1/2
    for B, c_max in [(1, 1), (17, 3), (60, 2), (500, 6)]:
        tie = G + 1e-9 * rng.random(G.shape)
        np.testing.assert_array_equal(round_selection(M, B, c_max, allowed, tie),
                                      _greedy_rounding(M, B, c_max, allowed, tie))


def _brute_force(G, R, allowed, B, c_max, lam):
    cells = [tuple(x) for x in np.argwhere(allowed)]
    best = np.inf
    for combo in itertools.combinations(cells, B):
        M = np.zeros(G.shape, bool)
        for i, j in combo:
            M[i, j] = True
        if (M.sum(1) <= c_max).all():
            best = min(best, integer_objective(M, G, R, lam))
    return best


@pytest.mark.parametrize("seed", range(3))
def test_ilp_is_exact_and_never_worse_than_rounded_lp(seed):
    G, R, allowed = _instance(seed, 5, 3)
    ilp = solve_ilp(G, R, allowed, 4, 2, 1.0, time_limit=20)
    ilp_obj = integer_objective(ilp.M, G, R, 1.0)
    assert ilp_obj == pytest.approx(_brute_force(G, R, allowed, 4, 2, 1.0))
    lp = solve_lp(G, R, allowed, 4, 2, 1.0)
    rounded = round_selection(lp.M, 4, 2, allowed, G)
    assert ilp_obj <= integer_objective(rounded, G, R, 1.0) + 1e-9
    assert ilp.mip_gap is not None and ilp.mip_gap <= 1e-6


@parametrize_with_checks([("binary_rr", {"queries_per_round": 6, "c_max": 2}),
                          ("binary_ee", {"queries_per_round": 6, "c_max": 2}),
                          ("binary_lp", {"queries_per_round": 6, "c_max": 2}),
                          ("binary_ilp", {"queries_per_round": 4, "c_max": 2, "time_limit": 5.0})])
def test_binary_strategies_pass_the_strategy_checks(strategy, check):
    check(strategy)


def test_binary_lp_in_a_campaign_asks_yes_no_questions_only():
    from alharness.campaign.loop import run_campaign
    from conftest import tiny_spec

    res = run_campaign(tiny_spec(strategy="binary_lp", strategy_params={"queries_per_round": 5, "c_max": 2}, budget=60, rounds=2))
    kinds = {q["query_type"] for q in res.queries if q["round"] > 0}
    assert kinds == {"class_presence"}
    per_round = [sum(1 for q in res.queries if q["round"] == r) for r in (1, 2)]
    assert per_round == [5, 5]
    diag = __import__("json").loads(res.rows[-1]["diagnostics"])
    assert diag["rounded_objective"] >= diag["lp_objective"] - 1e-9


@pytest.mark.parametrize("name", ["binary_lp", "binary_ilp"])
def test_optimised_strategies_propose_nothing_once_every_pair_is_asked(name):
    from types import SimpleNamespace

    from alharness.contract import UNKNOWN
    from alharness.registry import STRATEGIES

    n, c = 5, 3
    labels = SimpleNamespace(image_labels=np.zeros((n, c), np.int8), has_full_mask=np.zeros(n, bool))
    assert (labels.image_labels != UNKNOWN).all()  # every (image, class) pair answered
    ctx = SimpleNamespace(labels=labels, probabilities=np.full((n, c, 4, 4), 1 / c, np.float32),
                          features=np.ones((n, 8)), budget_left_this_round=100.0, quote=lambda q: 1.0,
                          rng=np.random.default_rng(0))
    strategy = STRATEGIES.create(name)  # default parameters: queries_per_round = 200
    assert strategy.propose(ctx) == []


def test_binary_benchmark_has_region_and_pixel_arms_at_the_same_seconds():
    """The paper's headline comparison (binary- vs region- vs pixel-level annotation, Table 3) at equal
    annotator time: every arm of benchmarks/binary.toml shares the budget and the user-study preset, and
    the region-level arms start from the same initial masks."""
    from pathlib import Path

    from alharness.execution.benchmark import load_benchmark

    bench = load_benchmark(Path(__file__).parent.parent / "benchmarks" / "binary.toml", open_datasets=False)
    arms = {s.strategy: s for s in bench.specs if not s.is_reference}
    assert {"binary_rr", "binary_ee", "binary_lp", "binary_ilp", "random_box", "entropy_box", "random"} <= set(arms)
    assert {(s.budget_metric, s.budget, s.costs["seconds"]["preset"]) for s in arms.values()} == \
        {("seconds", 7152, "binary_feedback_pascal")}
    for name in ("random_box", "entropy_box"):
        assert arms[name].strategy_params["initial_images"] == arms[name].initial_masks
