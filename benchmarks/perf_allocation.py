"""Full-or-weak allocation: one allocation step and replay throughput, each
against the old path (the GP fitted through gpytorch, 100 Adam steps) in the
same run.

Paper: "Full or Weak annotations? An adaptive strategy for budget-constrained
annotation campaigns" (Gamazo Tejero et al.).

1. One step of Alg. 2 at M = 300 utility samples (GP fit of eqs. (4)-(5),
   EI of eq. (6) over every feasible strategy, Pareto front, eqs. (3) and
   (7)): the analytic fit against gpytorch's. Prints both step times (best
   of two runs each), their
   ratio, the 0.5 s target, and how many eq. (3) / eq. (7) decisions
   (three problems × every round t of T = 8) and fronts are identical.
   ``--brute`` also checks the structured EI against gpytorch's posterior at
   every feasible point (minutes).
2. Replay: Alg. 2 campaigns against a logarithmic surface (T = 8, M = 8 per
   round, batched GP fits, 2 processes): analytic fits with every campaign's
   EI in one tensor program (``decide_batch``, the default), against the
   same fits with EI campaign by campaign (``decide``, the previous path) and
   against gpytorch fits. Prints the rates, their ratios, where a campaign's
   time goes (GP fits, EI/front/eqs.), the 10 000 campaigns/min target and
   how many campaigns end on the same strategy.
3. Replay fit schedules, same run: the exact one (above: 100 Adam steps from
   the cold start every round, the allocation step's) against the replay-only
   warm one (round 0 exact, later rounds L-BFGS from the campaign's previous
   hyperparameters until the loss moves by less than WARM_TOL): rates, their
   ratio, the target, the share of campaigns ending on the same (C, S), and
   the paired utility difference against its standard error; beside it the
   exact schedule at 110 steps, to show how far any change of the fit moves
   the final strategies.

    python benchmarks/perf_allocation.py            # the issue's sizes (a few minutes)
    python benchmarks/perf_allocation.py --small    # a quick smoke run
    python benchmarks/perf_allocation.py --replay-only   # parts 2 and 3
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from alharness.toolkit.allocation import (_CACHE_ELEMENTS, WARM_TOL, StrategyGrid, fit_gp, fit_gp_analytic, grid_ei,
                                          log_surface, pareto_front, solve_on_front)
from alharness.studies.surface import ReplayCampaign, Surface, replay_gp

T_STEP = 8  # Alg. 2's installments in the step problems


def _problem(args, seed: int):
    """M utility samples below (C, S) = (600, 120) on a log surface, and the grid of what the budget buys."""
    rng = np.random.default_rng(seed)
    m, c_t, s_t = args.samples, 600, 120
    c, s = rng.integers(0, c_t + 1, m), rng.integers(0, s_t + 1, m)
    y = log_surface(c, s) + rng.normal(0, 0.01, m)
    grid = StrategyGrid(c0=c_t, s0=s_t, c_max=c_t + args.c_span - 1, s_max=s_t + args.s_span - 1, alpha_c=1.0,
                        alpha_s=12.0, budget_left=args.budget)
    return c, s, y, float(log_surface(c_t, s_t)), grid


def _timed_step(fit_fn, c, s, y, m_star, grid, t: int):
    """One allocation step; returns (fit s, EI + front + eqs. s, (C, S, EI, cost, front), solution at t)."""
    t0 = time.perf_counter()
    fit = fit_fn(c, s, y, (3000.0, 3000.0), iters=100)
    t1 = time.perf_counter()
    cc, ss, ei = grid_ei(fit, grid, m_star)
    cost = grid.cost(cc, ss)
    sol = solve_on_front(cc, ss, cost, ei, T_STEP, t)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, (fit, cc, ss, ei, cost, pareto_front(cost, ei)), sol


def _choices(cc, ss, cost, ei) -> list[tuple[int, int, int, int]]:
    """Eq. (3) and eq. (7) strategies for every round t of T_STEP."""
    return [(lambda o: (o.c3, o.s3, o.c7, o.s7))(solve_on_front(cc, ss, cost, ei, T_STEP, t)) for t in range(T_STEP)]


def step(args) -> None:
    small = _problem(argparse.Namespace(samples=20, c_span=30, s_span=20, budget=50.0), 99)
    for fn in (fit_gp, fit_gp_analytic):  # warm-up: first calls load kernels and LAPACK
        _timed_step(fn, *small, 0)
    same = total = fronts = 0
    worst = 0.0
    for seed in range(args.step_problems):
        problem = _problem(args, seed)
        old_fit_s, old_ei_s, (ref, *old), old_sol = _timed_step(fit_gp, *problem, 3)
        new_fit_s, new_ei_s, (fast, *new), new_sol = _timed_step(fit_gp_analytic, *problem, 3)
        a, b = _choices(*old[:2], old[3], old[2]), _choices(*new[:2], new[3], new[2])
        same += sum(x == y for x, y in zip(a, b))
        total += len(a)
        fronts += np.array_equal(old[4], new[4])
        worst = max(worst, max(abs(ref.params()[k] - v) / abs(ref.params()[k]) for k, v in fast.params().items()))
        if seed == 0:  # the timed problem: best of two runs of each path
            o_fit, o_ei, *_ = _timed_step(fit_gp, *problem, 3)
            n_fit, n_ei, *_ = _timed_step(fit_gp_analytic, *problem, 3)
            old_fit_s, old_ei_s = min((old_fit_s, old_ei_s), (o_fit, o_ei), key=sum)
            new_fit_s, new_ei_s = min((new_fit_s, new_ei_s), (n_fit, n_ei), key=sum)
            first = (old_fit_s, old_ei_s, new_fit_s, new_ei_s, len(new[0]), len(new[4]), new_sol, new[:4], fast)
    old_fit_s, old_ei_s, new_fit_s, new_ei_s, n_points, n_front, sol, arrays, fast = first
    old_step, new_step = old_fit_s + old_ei_s, new_fit_s + new_ei_s
    print(f"allocation step, M = {args.samples} samples, {n_points:,} feasible strategies "
          f"on a {args.c_span * args.s_span / 1e6:.2f} M grid (eq. 3: {sol.c3, sol.s3}, eq. 7 at t = 3: {sol.c7, sol.s7})")
    print(f"  old path, gpytorch fit (Adam lr 0.1, 100 steps): {old_fit_s:.3f} s + EI/front/eqs. {old_ei_s:.3f} s"
          f" = {old_step:.3f} s")
    print(f"  new path, analytic fit (the same 100 Adam steps): {new_fit_s:.3f} s + EI/front/eqs. {new_ei_s:.3f} s"
          f" = {new_step:.3f} s")
    print(f"  speed-up {old_step / new_step:.1f}x (fit {old_fit_s / new_fit_s:.1f}x); target <= 0.5 s: "
          f"{'met' if new_step <= 0.5 else 'NOT met'} ({new_step / 0.5:.2f} of it)")
    print(f"  identical eq. (3)/(7) decisions, old vs new fit: {same}/{total} ({args.step_problems} problems x "
          f"t = 0..{T_STEP - 1}); identical Pareto fronts ({n_front} points on problem 0): {fronts}/{args.step_problems};"
          f" max relative hyperparameter difference {worst:.1e}")
    if args.brute:
        _brute_check(fast, arrays, _problem(args, 0))


def _brute_check(fit, arrays, problem) -> None:
    """The structured EI against gpytorch's posterior at every feasible point (same fit)."""
    cc, ss, ei, cost = arrays
    *_, m_star, grid = problem
    t0 = time.perf_counter()
    cb, sb, eb = grid_ei(fit, grid, m_star, brute=True)
    t_brute = time.perf_counter() - t0
    same = _choices(cc, ss, cost, ei) == _choices(cb, sb, grid.cost(cb, sb), eb) and \
        np.array_equal(pareto_front(cost, ei), pareto_front(grid.cost(cb, sb), eb))
    print(f"  brute force (gpytorch posterior at every feasible point): {t_brute:.1f} s; max |EI difference| "
          f"{np.abs(ei - eb).max():.2e}; identical front and decisions: {same}")


def _surface() -> Surface:
    c = np.repeat([0, 50, 100, 200, 400, 600], 6)
    s = np.tile([0, 5, 10, 20, 40, 80], 6)
    return Surface.from_points(c, s, log_surface(c, s), n_pool=600)


def _replay(job):
    camps, gp, samples, iters, batched, schedule = job
    torch.set_num_threads(1)
    return replay_gp(_surface(), camps, initial_fraction=0.03, samples=samples, gp_iters=iters, gp=gp,
                     batched=batched, schedule=schedule)


def _rate(args, n: int, gp: str, batched: bool = True, schedule: str = "exact", iters: int = 100) -> tuple[float, list]:
    """Campaigns per minute over 2 processes, each replaying half of ``n`` campaigns as one batch."""
    camps = [ReplayCampaign(budget=float(b), alpha_s=12.0, T=args.T, seed=k)
             for k, b in enumerate(np.resize([500, 800, 1100, 1400], n))]
    half = max(1, n // 2)
    jobs = [(camps[i : i + half], gp, args.replay_samples, iters, batched, schedule) for i in range(0, n, half)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_replay, [(j[0][:2], *j[1:]) for j in jobs]))  # start the workers, warm them up
        t0 = time.perf_counter()
        results = list(pool.map(_replay, jobs))
        wall = time.perf_counter() - t0
    return n / wall * 60.0, [r for res in results for r in res]


def replay(args) -> None:
    fast, rows = _rate(args, args.replay_n, "analytic")
    member, rows_member = _rate(args, args.replay_n, "analytic", batched=False)
    slow, rows_ref = _rate(args, args.old_n, "gpytorch")
    key = lambda r: (r["C"], r["S"], r["cost"])  # noqa: E731
    same_member = sum(key(a) == key(b) for a, b in zip(rows, rows_member))
    # The first half of each run's campaigns are the same campaigns (same seeds and budgets).
    shared = [(a, b) for a, b in zip(rows[: args.old_n // 2], rows_ref[: args.old_n // 2])]
    same = sum(key(a) == key(b) for a, b in shared)

    def split(rs) -> str:
        fit_ms, ei_ms = (1e3 * np.mean([r[k] for r in rs]) for k in ("fit_s", "ei_s"))
        return f"per campaign and core GP fits {fit_ms:.1f} ms, EI/front/eqs. {ei_ms:.1f} ms"

    print(f"replay, T = {args.T}, M = {args.replay_samples} per round, 100 Adam steps per fit, 2 processes")
    print(f"  new path (analytic fits, every campaign's EI in one tensor program): {fast:,.0f} campaigns/min "
          f"({args.replay_n} campaigns); {split(rows)}")
    print(f"  previous path (analytic fits, EI campaign by campaign): {member:,.0f} campaigns/min; {split(rows_member)};"
          f" ratio {fast / member:.2f}x")
    print(f"  old path (gpytorch fits): {slow:,.0f} campaigns/min ({args.old_n} campaigns); ratio {fast / slow:.1f}x")
    print(f"  identical final strategies: new vs previous {same_member}/{len(rows)}, new vs gpytorch on the shared "
          f"campaigns {same}/{len(shared)}")
    print(f"  target 10 000 campaigns/min: {'met' if fast >= 10_000 else 'NOT met'} ({fast / 10_000:.2f} of it)")
    floor_s = _factorisation_floor(args)
    print(f"  ceiling of the exact schedule: the Cholesky factor and inverse of K alone, {args.T} rounds x 100 Adam "
          f"steps at n = {args.replay_samples}..{args.replay_samples * args.T} samples, batched as the fit batches "
          f"them, take {1e3 * floor_s:.1f} ms per campaign and core: at most {2 * 60 / floor_s:,.0f} campaigns/min on "
          f"2 processes with nothing else done ({2 * 60 / floor_s / 10_000:.2f} of the target)")
    schedules(args, fast, rows)


def _factorisation_floor(args) -> float:
    """Seconds per campaign of the exact schedule's LAPACK work alone: every Adam step of every round factorises
    K (n x n, n = M (t + 1)) and inverts it (``_mll_grad``), in blocks of the fit's size; one core."""
    total = 0.0
    for t in range(args.T):
        n = args.replay_samples * (t + 1)
        b = max(1, _CACHE_ELEMENTS // n**2)
        x = torch.rand(b, n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(t))
        k = torch.exp(-((x[:, :, None] - x[:, None]) ** 2).sum(-1) / 0.125) * 0.01
        k.diagonal(dim1=-2, dim2=-1).add_(1e-3)
        reps = 20
        torch.cholesky_inverse(torch.linalg.cholesky_ex(k)[0])  # warm
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.cholesky_inverse(torch.linalg.cholesky_ex(k)[0])
        total += (time.perf_counter() - t0) / reps / b * 100  # 100 Adam steps per round
    return total


def _moved(ref: list, rows: list) -> str:
    """Same final (C, S) per campaign, and the paired utility difference with its standard error."""
    same = sum((a["C"], a["S"]) == (b["C"], b["S"]) for a, b in zip(ref, rows))
    du = np.array([b["utility"] - a["utility"] for a, b in zip(ref, rows)])
    return (f"same final (C, S) {same}/{len(rows)} ({same / len(rows):.0%}); utility difference "
            f"{du.mean():+.4f} ± {du.std(ddof=1) / np.sqrt(len(du)):.4f} (mean ± s.e.; per campaign sd {du.std(ddof=1):.4f},"
            f" max |{np.abs(du).max():.4f}|)")


def schedules(args, exact: float | None = None, rows: list | None = None) -> None:
    if exact is None:
        exact, rows = _rate(args, args.replay_n, "analytic")
    warm, rows_warm = _rate(args, args.replay_n, "analytic", schedule="warm")
    _, rows_110 = _rate(args, args.replay_n, "analytic", iters=110)
    sd = np.std([r["utility"] for r in rows], ddof=1)
    steps = lambda rs: np.mean([r["fit_steps"] for r in rs])  # noqa: E731
    print(f"replay fit schedules, T = {args.T}, M = {args.replay_samples}, {args.replay_n} campaigns, 2 processes "
          f"(mean utility of the exact schedule {np.mean([r['utility'] for r in rows]):.4f}, sd over campaigns {sd:.4f})")
    print(f"  exact (100 Adam steps from the cold start every round): {exact:,.0f} campaigns/min; "
          f"GP fits {1e3 * np.mean([r['fit_s'] for r in rows]):.1f} ms per campaign")
    print(f"  warm (round 0 exact, then L-BFGS from the previous round to a relative loss change <= {WARM_TOL:g}, "
          f"at most 100 steps; {steps(rows_warm):.1f} steps per round on average): {warm:,.0f} campaigns/min; GP fits "
          f"{1e3 * np.mean([r['fit_s'] for r in rows_warm]):.1f} ms per campaign; ratio {warm / exact:.2f}x; target "
          f"10 000 campaigns/min: {'met' if warm >= 10_000 else 'NOT met'} ({warm / 10_000:.2f} of it)")
    print(f"  warm vs exact: {_moved(rows, rows_warm)}")
    print(f"  for scale, exact at 110 Adam steps vs 100: {_moved(rows, rows_110)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="small sizes for a quick check")
    p.add_argument("--brute", action="store_true", help="also check EI against gpytorch's posterior at every point")
    p.add_argument("--skip-replay", action="store_true", help="only the allocation step")
    p.add_argument("--replay-only", action="store_true", help="only the replays (parts 2 and 3)")
    p.add_argument("--schedules-only", action="store_true", help="only the fit schedules (part 3)")
    args = p.parse_args()
    torch.set_num_threads(1)
    full = not args.small
    args.samples = 300 if full else 60
    args.c_span, args.s_span = (3001, 1501) if full else (400, 200)
    args.budget = 6500.0 if full else 900.0
    args.step_problems = 3
    args.T, args.replay_samples = 8, 8
    args.replay_n, args.old_n = (512, 64) if full else (32, 8)
    if args.schedules_only:
        schedules(args)
        return
    if not args.replay_only:
        step(args)
    if not args.skip_replay:
        replay(args)


if __name__ == "__main__":
    main()
