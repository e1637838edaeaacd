"""Full-or-weak allocation math: the GP of eqs. (4)-(5) recovers a known
logarithmic surface; the structured grid posterior, the Pareto front and
the eq. (3) / eq. (7) solutions match brute force (gpytorch's posterior and
direct search) on small grids; the analytic fit takes gpytorch's Adam steps
(same gradient, same hyperparameters, same decisions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alharness.toolkit.allocation import (StrategyGrid, allocation_step, decide, decide_batch, expected_improvement, fit_gp,
                                          fit_gp_analytic, fit_with, grid_ei, log_surface, pareto_front,
                                          posterior_brute, posterior_grid, solve_brute, solve_on_front)


def _samples(seed: int, n: int = 60, c_hi: int = 80, s_hi: int = 30, noise: float = 0.005):
    rng = np.random.default_rng(seed)
    c, s = rng.integers(0, c_hi + 1, n), rng.integers(0, s_hi + 1, n)
    return c, s, log_surface(c, s) + rng.normal(0, noise, n)


def test_gp_recovers_a_known_logarithmic_surface():
    c, s, y = _samples(0, n=80)
    fit = fit_gp(c, s, y, (100.0, 100.0), iters=150)
    gc, gs = np.meshgrid(np.arange(0, 81, 5), np.arange(0, 31, 2), indexing="ij")
    mean, var = posterior_brute(fit, gc.ravel(), gs.ravel())
    truth = log_surface(gc.ravel(), gs.ravel())
    assert np.sqrt(np.mean((mean - truth) ** 2)) < 0.01, np.abs(mean - truth).max()
    # Extrapolation beyond the samples follows the log mean of eq. (4), not a constant.
    far, _ = posterior_brute(fit, [95, 40], [5, 45])
    assert np.all(np.abs(far - log_surface([95, 40], [5, 45])) < 0.05), (far, log_surface([95, 40], [5, 45]))
    assert fit.params()["noise"] < 1e-3
    # A constant mean could not do this: the fitted mean grows in both directions.
    assert fit.params()["gamma_c"] > 0 and fit.params()["gamma_s"] > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_structured_posterior_front_and_solutions_match_brute_force(seed):
    c, s, y = _samples(seed)
    fit = fit_gp(c, s, y, (100.0, 100.0), iters=60)
    grid = StrategyGrid(c0=int(c.max()) // 2, s0=int(s.max()) // 3, c_max=110, s_max=60, alpha_c=1, alpha_s=12,
                        budget_left=260, total_max=140)
    s_rows, hi = grid.rows()
    c_values = np.arange(grid.c0, hi.max() + 1)
    mean, var = posterior_grid(fit, c_values, s_rows)
    gc, gs = np.meshgrid(c_values, s_rows, indexing="ij")
    bm, bv = posterior_brute(fit, gc.ravel(), gs.ravel())
    np.testing.assert_allclose(mean.numpy().ravel(), bm, atol=1e-9)
    np.testing.assert_allclose(var.numpy().ravel(), bv, atol=1e-9)

    m_star = float(y.max()) - 0.01 * seed
    c1, s1, ei1 = grid_ei(fit, grid, m_star, brute=True)
    c2, s2, ei2 = grid_ei(fit, grid, m_star)
    assert np.array_equal(c1, c2) and np.array_equal(s1, s2)
    np.testing.assert_allclose(ei1, ei2, atol=1e-10)
    cost = grid.cost(c1, s1)
    front1, front2 = pareto_front(cost, ei1), pareto_front(cost, ei2)
    assert np.array_equal(front1, front2)
    for T, t in [(8, 0), (8, 4), (8, 7), (3, 1)]:
        ref = solve_brute(c1, s1, cost, ei1, T, t)
        fast = solve_on_front(c2, s2, cost, ei2, T, t)
        assert (fast.c3, fast.s3, fast.c7, fast.s7) == (ref.c3, ref.s3, ref.c7, ref.s7), (T, t, fast, ref)
        assert fast.cost7 <= grid.budget_left
    assert decide(fit, m_star, grid, 8, 7).solution.c3 == solve_brute(c1, s1, cost, ei1, 8, 7).c3


def test_short_length_scales_take_the_exact_row_path():
    c, s, y = _samples(4, n=40)
    fit = fit_gp(c, s, y, (100.0, 100.0), iters=5)
    fit.lengthscale[:] = 0.004  # kernel blocks of full numerical rank
    grid = StrategyGrid(c0=0, s0=0, c_max=50, s_max=30, alpha_c=1, alpha_s=5, budget_left=120)
    c1, s1, ei1 = grid_ei(fit, grid, float(y.mean()))
    mean, var = posterior_grid(fit, np.arange(0, 51), np.arange(0, 25))
    assert mean.shape == (51, 25)
    # Against the same hyperparameters, evaluated point by point.
    fit.model.covar_module.base_kernel.lengthscale = fit.lengthscale.reshape(1, 2)
    fit.model.prediction_strategy = None
    c2, s2, ei2 = grid_ei(fit, grid, float(y.mean()), brute=True)
    np.testing.assert_allclose(ei1, ei2, atol=1e-9)


def test_pareto_front_is_the_set_of_non_dominated_strategies():
    rng = np.random.default_rng(0)
    cost = rng.integers(0, 30, 400).astype(float)
    ei = np.round(rng.random(400), 1)  # many ties
    front = set(pareto_front(cost, ei).tolist())
    for i in range(400):
        dominated = np.any((cost < cost[i]) & (ei >= ei[i]))
        best_at_cost = ei[i] == ei[cost == cost[i]].max() and i == np.flatnonzero((cost == cost[i]) & (ei == ei[i]))[0]
        assert (i in front) == (not dominated and best_at_cost), i
    f = pareto_front(cost, ei)
    assert np.all(np.diff(cost[f]) > 0) and np.all(np.diff(ei[f]) > 0)


def test_expected_improvement_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean, var, m_star = np.array([0.4, 0.5, 0.55, 0.5]), np.array([0.01, 0.0004, 0.0, 1e-6]), 0.5
    ei = expected_improvement(mean, var, m_star)
    draws = mean[:, None] + np.sqrt(var)[:, None] * rng.standard_normal((4, 400_000))
    mc = np.maximum(draws - m_star, 0).mean(1)
    np.testing.assert_allclose(ei, mc, atol=5e-4)
    assert ei[2] == pytest.approx(0.05)


def test_grid_respects_budget_pool_and_what_was_bought():
    grid = StrategyGrid(c0=3, s0=2, c_max=20, s_max=9, alpha_c=1, alpha_s=12, budget_left=40, total_max=22)
    c, s = grid.points()
    assert c.min() == 3 and s.min() == 2 and (c + s <= 22).all()
    assert (grid.cost(c, s) <= 40).all()
    everything = {(a, b) for a in range(3, 21) for b in range(2, 10) if a + b <= 22 and (a - 3) + 12 * (b - 2) <= 40}
    assert set(zip(c.tolist(), s.tolist())) == everything


# -- the analytic fit against gpytorch (the reference) ---------------------------

def _rel(a, b):
    return max(float(((getattr(a, k) - getattr(b, k)).abs() / getattr(a, k).abs()).max())
               for k in ("gamma", "beta", "lengthscale", "outputscale", "noise"))


def test_mll_gradient_matches_gpytorch_autograd():
    import gpytorch
    import torch

    from alharness.toolkit import allocation as A

    c, s, y = _samples(5, n=30)
    fit = fit_gp(c, s, y, (100.0, 100.0), iters=7)  # somewhere off the start
    model = fit.model
    model.train()
    model.likelihood.train()
    model.zero_grad()  # the fit's last step left its gradients
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    with gpytorch.settings.max_cholesky_size(10**6):
        loss = -mll(model(fit.x), fit.y)
    loss.backward()
    raw = torch.cat([model.mean_module.gamma, model.mean_module.raw_beta,
                     model.covar_module.base_kernel.raw_lengthscale.reshape(2),
                     model.covar_module.raw_outputscale.reshape(1),
                     model.likelihood.noise_covar.raw_noise.reshape(1)]).detach()[None]
    expected = torch.cat([model.mean_module.gamma.grad, model.mean_module.raw_beta.grad,
                          model.covar_module.base_kernel.raw_lengthscale.grad.reshape(2),
                          model.covar_module.raw_outputscale.grad.reshape(1),
                          model.likelihood.noise_covar.raw_noise.grad.reshape(1)])
    g, ours = A._mll_grad(raw, A._Samples.of(fit.x[None], fit.y[None]))
    np.testing.assert_allclose(g[0].numpy(), expected.numpy(), rtol=1e-9, atol=1e-12)
    assert float(ours[0]) == pytest.approx(float(loss.detach()), rel=1e-12)


@pytest.mark.parametrize("iters", [1, 30, 100])
def test_analytic_fit_takes_the_same_adam_steps_as_gpytorch(iters):
    c, s, y = _samples(6, n=50)
    ref, fast = fit_gp(c, s, y, (100.0, 100.0), iters=iters), fit_gp_analytic(c, s, y, (100.0, 100.0), iters=iters)
    assert fast.model is None and _rel(ref, fast) < 1e-7, (ref.params(), fast.params())
    assert fast.final_loss == pytest.approx(ref.final_loss, rel=1e-9)
    # A batch of independent fits, several blocks of it (the cache-sized chunks).
    rng = np.random.default_rng(7)
    cb, sb = rng.integers(0, 81, (70, 12)), rng.integers(0, 31, (70, 12))
    yb = log_surface(cb, sb) + rng.normal(0, 0.005, cb.shape)
    refb, fastb = fit_gp(cb, sb, yb, (100.0, 100.0), iters=iters), fit_gp_analytic(cb, sb, yb, (100.0, 100.0), iters=iters)
    assert fastb.gamma.shape == (70, 2) and _rel(refb, fastb) < 1e-6


def _choice(d):
    """A decision's strategies: eq. (3), eq. (7) and the front's size (EI agrees to rounding only)."""
    return d.solution.c3, d.solution.s3, d.solution.c7, d.solution.s7, d.solution.front_size


@pytest.mark.parametrize("seed", [1, 2, 3, 8])
def test_analytic_fit_gives_the_same_decisions(seed):
    c, s, y = _samples(seed)
    grid = StrategyGrid(c0=int(c.max()) // 2, s0=int(s.max()) // 3, c_max=110, s_max=60, alpha_c=1, alpha_s=12,
                        budget_left=260, total_max=140)
    ref, fast = fit_gp(c, s, y, (100.0, 100.0)), fit_gp_analytic(c, s, y, (100.0, 100.0))
    m_star = float(y.max()) - 0.01 * seed
    for T, t in [(8, 0), (8, 3), (8, 7), (3, 1)]:
        assert _choice(decide(ref, m_star, grid, T, t)) == _choice(decide(fast, m_star, grid, T, t)), (T, t)
    # The analytic fit also feeds gpytorch's posterior (the brute-force reference).
    assert _choice(decide(fast, m_star, grid, 8, 3, brute=True)) == _choice(decide(ref, m_star, grid, 8, 3, brute=True))
    assert _choice(allocation_step(c, s, y, m_star, grid, 8, 3, scale=(100.0, 100.0))) == \
        _choice(allocation_step(c, s, y, m_star, grid, 8, 3, scale=(100.0, 100.0), gp="gpytorch"))
    with pytest.raises(ValueError, match="gp must be one of"):
        fit_with("autograd", c, s, y, (100.0, 100.0))


def test_batched_decisions_equal_each_members_own_and_gpytorchs():
    """decide_batch (one tensor program over every member's grid) against decide per member, and against
    gpytorch's posterior at every point (fit by gpytorch, the reference): same eq. (3)/(7) strategies and front,
    EI to rounding. Members of very different grid sizes pass in several padded chunks."""
    rng = np.random.default_rng(11)
    b, n = 7, 24
    c, s = rng.integers(0, 81, (b, n)), rng.integers(0, 31, (b, n))
    y = log_surface(c, s) + rng.normal(0, 0.005, (b, n))
    grids = [StrategyGrid(c0=int(c[k].max()) // 2, s0=int(s[k].max()) // 3, c_max=110, s_max=60, alpha_c=1,
                          alpha_s=float(rng.choice([5, 12])), budget_left=float(rng.integers(20, 300)), total_max=140)
             for k in range(b)]
    m_star = y.max(1) - 0.01
    for fit in (fit_gp_analytic(c, s, y, (100.0, 100.0)), fit_gp(c, s, y, (100.0, 100.0), iters=60)):
        members = fit.members()
        for T, t in [(8, 0), (8, 5), (3, 2)]:
            batch = decide_batch(fit, m_star, grids, T, t, max_points=3000)  # several chunks
            one = [decide(members[k], m_star[k], grids[k], T, t) for k in range(b)]
            assert [_choice(d) for d in batch] == [_choice(d) for d in one], (T, t)
            assert [(d.delta_c, d.delta_s, d.grid_points) for d in batch] == [(d.delta_c, d.delta_s, d.grid_points)
                                                                              for d in one]
            np.testing.assert_allclose([d.solution.ei_max for d in batch], [d.solution.ei_max for d in one], rtol=1e-9,
                                       atol=1e-15)
    brute = [decide(fit.member(k, own_model=True), m_star[k], grids[k], 8, 5, brute=True) for k in range(b)]
    assert [_choice(d) for d in decide_batch(fit, m_star, grids, 8, 5)] == [_choice(d) for d in brute]


def test_batched_decisions_take_the_exact_row_path_for_high_ranks(monkeypatch):
    from alharness.toolkit import allocation as A

    rng = np.random.default_rng(12)
    c, s = rng.integers(0, 51, (3, 30)), rng.integers(0, 25, (3, 30))
    y = log_surface(c, s) + rng.normal(0, 0.005, c.shape)
    fit = fit_gp_analytic(c, s, y, (100.0, 100.0), iters=20)
    grids = [StrategyGrid(c0=0, s0=0, c_max=50, s_max=30, alpha_c=1, alpha_s=5, budget_left=float(v), total_max=80)
             for v in (40, 120, 90)]
    members = fit.members()
    factored = [_choice(decide(members[k], float(y[k].mean()), grids[k], 8, 2)) for k in range(3)]
    monkeypatch.setattr(A, "_MAX_FACTOR_RANK", 0)  # every rank product "too high": one C at a time, exact
    assert [_choice(d) for d in decide_batch(fit, y.mean(1), grids, 8, 2)] == factored


def test_front_by_cost_level_equals_the_sorted_front():
    from alharness.toolkit.allocation import _front_by_level, _front_by_sort, _integer_levels

    rng = np.random.default_rng(1)
    for trial in range(20):
        n = int(rng.integers(1200, 3000))  # dense enough in cost levels for the level path
        cost = rng.integers(0, int(rng.integers(1, 400)), n) * float(rng.choice([1, 12]))
        ei = np.round(rng.random(n), int(rng.integers(1, 4)))  # ties within and across costs
        level = _integer_levels(cost)
        assert level is not None
        assert np.array_equal(_front_by_level(level, ei), _front_by_sort(cost, ei)), trial
    assert _integer_levels(np.array([0.0, 0.5, 1.0])) is None  # fractional prices: the sort
    assert _integer_levels(np.array([0.0, 1e9])) is None  # a sparse range: the sort
    np.testing.assert_array_equal(pareto_front(np.array([0.5, 0.0, 1.5]), np.array([0.2, 0.1, 0.3])), [1, 0, 2])


def test_warm_fit_descends_from_the_exact_fit_and_keeps_its_posterior_mean():
    """The replay-only schedule (``fit_gp_warm``): L-BFGS from given raw hyperparameters until the loss stops
    moving. Its hyperparameters cannot be compared one by one with the exact fit's (100 Adam steps): with a
    few dozen samples this likelihood often has no interior optimum (noise to its floor, length scales and
    beta running off, gamma and beta trading off), so the exact fit is an early stop. What a decision uses
    is the posterior, so the test compares that: from the exact fit, the warm fit may only lower each
    member's loss, and its posterior mean stays within the samples' own noise (sd 0.005) of the exact fit's
    at every grid point; warm-started from the exact fit of a round's first 16 samples on all 24 (a replay's
    next round), it stays within twice that of the exact fit on all 24."""
    from alharness.toolkit import allocation as A
    from alharness.toolkit.allocation import fit_gp_warm

    rng = np.random.default_rng(5)
    b, n = 4, 24
    c, s = rng.integers(0, 81, (b, n)), rng.integers(0, 31, (b, n))
    y = log_surface(c, s) + rng.normal(0, 0.005, (b, n))
    scale, gc, gs = (100.0, 100.0), np.arange(0, 81, 5), np.arange(0, 31, 3)
    exact = fit_gp_analytic(c, s, y, scale)
    warm = fit_gp_warm(c, s, y, scale, start=exact.raw)
    x, yt = A._inputs(c, s, y, scale)
    loss = lambda f: A._mll_grad(f.raw, A._Samples.of(x, yt))[1].numpy()  # noqa: E731
    assert np.all(loss(warm) <= loss(exact) + 1e-12) and warm.steps < 100
    previous = fit_gp_analytic(c[:, :16], s[:, :16], y[:, :16], scale)
    next_round = fit_gp_warm(c, s, y, scale, start=previous.raw)
    for k in range(b):
        m_exact, _ = posterior_grid(exact.member(k), gc, gs)
        m_warm, _ = posterior_grid(warm.member(k), gc, gs)
        m_next, _ = posterior_grid(next_round.member(k), gc, gs)
        assert float((m_warm - m_exact).abs().max()) < 0.005, k
        assert float((m_next - m_exact).abs().max()) < 0.01, k
    # No steps: the start itself; the cold start when none is given.
    same = fit_gp_warm(c, s, y, scale, start=exact.raw, max_iters=0)
    assert torch.equal(same.raw, exact.raw) and same.steps == 0
    assert torch.equal(fit_gp_warm(c, s, y, scale, max_iters=0).raw[0], A._raw_start())
