"""Full-or-weak allocation: one allocation step and replay throughput, each
against the brute-force gpytorch path in the same run.

1. One step of Alg. 2 at M = 300 utility samples (GP fit, EI over every
   feasible strategy, Pareto front, eqs. (3) and (7)): structured grid
   posterior vs gpytorch's posterior at every feasible point. Prints both
   times, their ratio, and whether the eq. (3) / eq. (7) solutions and the
   Pareto front are identical. Target: the step <= 1 s.
2. Replay: Alg. 2 campaigns against a logarithmic surface (T = 8, M = 8 per
   round, batched GP fits, 2 processes), structured vs brute-force EI.
   Target: >= 10 000 campaigns per minute on 2 cores.

    python benchmarks/perf_allocation.py            # the issue's sizes (a few minutes)
    python benchmarks/perf_allocation.py --small    # a quick smoke run
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from alharness.toolkit.allocation import StrategyGrid, fit_gp, grid_ei, log_surface, pareto_front, solve_on_front
from alharness.studies.surface import ReplayCampaign, Surface, replay_gp


def step(args) -> None:
    rng = np.random.default_rng(0)
    m = args.samples
    c_t, s_t = 600, 120
    c = rng.integers(0, c_t + 1, m)
    s = rng.integers(0, s_t + 1, m)
    y = log_surface(c, s) + rng.normal(0, 0.01, m)
    m_star = float(log_surface(c_t, s_t))
    grid = StrategyGrid(c0=c_t, s0=s_t, c_max=c_t + args.c_span - 1, s_max=s_t + args.s_span - 1, alpha_c=1.0,
                        alpha_s=12.0, budget_left=args.budget)
    rect = args.c_span * args.s_span
    t0 = time.perf_counter()
    fit = fit_gp(c, s, y, (3000.0, 3000.0), iters=args.gp_iters)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    cc, ss, ei = grid_ei(fit, grid, m_star)
    cost = grid.cost(cc, ss)
    fast = solve_on_front(cc, ss, cost, ei, 8, 3)
    front_fast = pareto_front(cost, ei)
    t_fast = time.perf_counter() - t0
    print(f"allocation step, M = {m} samples, {len(cc):,} feasible strategies on a {rect / 1e6:.2f} M grid")
    print(f"  GP fit (gpytorch, Adam lr 0.1, {args.gp_iters} steps): {t_fit:.2f} s")
    print(f"  structured EI + Pareto + eq. (3)/(7): {t_fast:.3f} s   -> step {t_fit + t_fast:.2f} s (target <= 1 s)")
    t0 = time.perf_counter()
    cb, sb, eb = grid_ei(fit, grid, m_star, brute=True)
    costb = grid.cost(cb, sb)
    ref = solve_on_front(cb, sb, costb, eb, 8, 3)
    front_ref = pareto_front(costb, eb)
    t_brute = time.perf_counter() - t0
    same = (fast.c3, fast.s3, fast.c7, fast.s7) == (ref.c3, ref.s3, ref.c7, ref.s7) and np.array_equal(front_fast, front_ref)
    print(f"  brute force (gpytorch posterior at every feasible point): {t_brute:.2f} s")
    print(f"  EI evaluation speed-up: {t_brute / t_fast:.1f}x;  max |EI difference| {np.abs(ei - eb).max():.2e}")
    print(f"  identical Pareto front ({len(front_fast)} points) and eq. (3)/(7) solutions: {same}"
          f"  (eq. 3: {fast.c3, fast.s3}, eq. 7: {fast.c7, fast.s7})")


def _surface() -> Surface:
    c = np.repeat([0, 50, 100, 200, 400, 600], 6)
    s = np.tile([0, 5, 10, 20, 40, 80], 6)
    return Surface.from_points(c, s, log_surface(c, s), n_pool=600)


def _replay(job):
    camps, brute, samples, iters = job
    torch.set_num_threads(1)
    return replay_gp(_surface(), camps, initial_fraction=0.03, samples=samples, gp_iters=iters, brute=brute)


def replay(args) -> None:
    def rate(n: int, batch: int, brute: bool) -> tuple[float, list]:
        camps = [ReplayCampaign(budget=float(b), alpha_s=12.0, T=args.T, seed=k)
                 for k, b in enumerate(np.resize([500, 800, 1100, 1400], n))]
        jobs = [(camps[i : i + batch], brute, args.replay_samples, args.gp_iters) for i in range(0, n, batch)]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=2) as pool:
            rows = [r for res in pool.map(_replay, jobs) for r in res]
        return n / (time.perf_counter() - t0) * 60.0, rows

    fast, rows = rate(args.replay_n, args.replay_n // 2, False)
    slow, rows_b = rate(args.brute_n, max(1, args.brute_n // 2), True)
    same = [(r["C"], r["S"]) for r in rows[: args.brute_n]] == [(r["C"], r["S"]) for r in rows_b]
    print(f"replay, T = {args.T}, M = {args.replay_samples} per round, {args.gp_iters} Adam steps per fit, 2 processes")
    print(f"  structured: {fast:,.0f} campaigns/min ({args.replay_n} campaigns, batched GP fits)")
    print(f"  brute-force EI: {slow:,.1f} campaigns/min ({args.brute_n} campaigns); ratio {fast / slow:.0f}x;"
          f" same final strategies on the shared campaigns: {same}")
    print(f"  target 10 000 campaigns/min: {'met' if fast >= 10_000 else 'NOT met'} ({fast / 10_000:.2f} of it)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="small sizes for a quick check")
    args = p.parse_args()
    torch.set_num_threads(1)
    full = not args.small
    args.samples = 300 if full else 60
    args.c_span, args.s_span = (3001, 1501) if full else (400, 200)
    args.budget = 6500.0 if full else 900.0
    args.gp_iters = 100
    args.T, args.replay_samples = 8, 8
    args.replay_n, args.brute_n = (512, 4) if full else (32, 2)
    step(args)
    replay(args)


if __name__ == "__main__":
    main()
