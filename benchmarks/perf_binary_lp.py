"""binary_lp selection at paper scale: the literal LP of eq. (8) vs the lazy
pair-constraint solver, same instance, same run.

Paper scale (binary-user-feedback §4.3): N = 1200 unlabelled images, C = 19
classes (Cityscapes), B = 200 queries per round, C_max = 5, λ = 1.

Usage:  python benchmarks/perf_binary_lp.py [--n 1200] [--skip-literal]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from strategies.binary_feedback import (confidence_matrix, integer_objective, redundancy_matrix, round_selection,
                                        solve_lp)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1200)
    ap.add_argument("--c", type=int, default=19)
    ap.add_argument("--b", type=int, default=200)
    ap.add_argument("--skip-literal", action="store_true")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    # Presence probabilities skewed towards "absent", as a trained model's are.
    G = confidence_matrix(rng.beta(0.5, 2.0, size=(args.n, args.c)))
    R = redundancy_matrix(rng.normal(size=(args.n, 64)))
    allowed = np.ones((args.n, args.c), bool)
    print(f"N={args.n} C={args.c} B={args.b} C_max=5 lambda=1", flush=True)

    t0 = time.perf_counter()
    fast = solve_lp(G, R, allowed, args.b, 5, 1.0, lazy=True)
    t_fast = time.perf_counter() - t0
    sel = round_selection(fast.M, args.b, 5, allowed, G)
    print(f"lazy LP:    {t_fast:7.2f} s  objective {fast.objective:.9g}  ({fast.rounds} solves)")
    print(f"rounded batch: {int(sel.sum())} queries, integer objective {integer_objective(sel, G, R, 1.0):.6g}")
    if not args.skip_literal:
        t0 = time.perf_counter()
        lit = solve_lp(G, R, allowed, args.b, 5, 1.0, lazy=False)
        t_lit = time.perf_counter() - t0
        print(f"literal LP: {t_lit:7.2f} s  objective {lit.objective:.9g}")
        print(f"speed-up {t_lit / t_fast:.1f}x, objective difference {abs(lit.objective - fast.objective):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
