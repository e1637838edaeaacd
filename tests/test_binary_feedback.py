"""Binary-feedback strategies: eq. (1)-(3), the LP of eq. (8) (fast = literal),
rounding, the exact ILP, and the strategy contract."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from alharness.testing import parametrize_with_checks
from strategies.binary_feedback import (confidence_matrix, integer_objective, presence_probabilities,
                                        redundancy_matrix, round_selection, solve_ilp, solve_lp)


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
    # Usually one solve certifies the v <= 1/2 optimum; with a weak redundancy
    # term (small lambda, large B) the certificate fails and pair rows are added.
    assert (fast.rounds == 1) == (lam >= 0.5)
    assert fast.objective == pytest.approx(literal.objective, abs=1e-7)
    assert fast.M.sum() == pytest.approx(B)
    assert (fast.M[~allowed] < 1e-9).all()


@pytest.mark.parametrize("seed", range(4))
def test_rounding_respects_budget_cmax_and_answered_pairs(seed):
    G, R, allowed = _instance(seed, 30, 5)
    sol = solve_lp(G, R, allowed, 17, 3, 1.0)
    sel = round_selection(sol.M, 17, 3, allowed, G)
    assert sel.sum() == 17
    assert (sel.sum(axis=1) <= 3).all()
    assert not (sel & ~allowed).any()


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
