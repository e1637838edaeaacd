"""Harness overhead and Ray scaling on the quickstart spec.

Prints:
  * harness overhead = 1 - (train + predict + evaluate time) / campaign wall time,
    per campaign and overall (target <= 5 %);
  * throughput of 2 Ray workers vs 1 on the same 8 campaigns, measured in the
    same run (target >= 1.8x on 2 cores).

Usage:  python benchmarks/perf_overhead.py [--campaigns 8] [--benchmark benchmarks/quickstart.toml]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

from alharness.results import store
from alharness.execution.benchmark import load_benchmark
from alharness.execution.backends.ray import init_ray, run_benchmark


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", default="benchmarks/quickstart.toml")
    ap.add_argument("--campaigns", type=int, default=8)
    args = ap.parse_args()

    bench = load_benchmark(args.benchmark)
    # Enough campaigns: extend the seeds of the quickstart grid if needed.
    specs, seed = list(bench.specs), max(s.seed for s in bench.specs) + 1
    while len(specs) < args.campaigns:
        specs += [dataclasses.replace(s, seed=s.seed + seed) for s in bench.specs]
        seed *= 2
    bench = dataclasses.replace(bench, specs=tuple(specs[: args.campaigns]))
    print(f"{len(bench.specs)} campaigns from {args.benchmark}; Ray started once for both runs", flush=True)
    init_ray(num_cpus=2)
    tmp = Path(tempfile.mkdtemp(prefix="alharness-perf-"))
    try:
        walls = {}
        for workers in (1, 2):
            out = tmp / f"w{workers}"
            t0 = time.perf_counter()
            summary = run_benchmark(bench, out, max_concurrent=workers, progress=False)
            walls[workers] = time.perf_counter() - t0
            if summary.failed:
                print(f"campaign failures: {summary.failed}", file=sys.stderr)
                return 1
            print(f"{workers} worker(s): {walls[workers]:.1f} s for {len(bench.specs)} campaigns", flush=True)

        con, _ = store.connect(tmp / "w1")
        per = con.execute("""
            SELECT r.campaign_id, any_value(r.strategy_label), sum(train_s + predict_s + eval_s) AS model_s,
                   any_value(c.wall_s) AS wall_s
            FROM rounds r JOIN campaigns c USING (campaign_id) GROUP BY r.campaign_id ORDER BY 2
        """).fetchall()
        print("\nper campaign (1-worker run): model time = train + predict + evaluate")
        for cid, label, model_s, wall_s in per:
            print(f"  {label:40s} wall {wall_s:6.1f} s  model {model_s:6.1f} s  overhead {1 - model_s / wall_s:6.2%}")
        model_total = sum(p[2] for p in per)
        wall_total = sum(p[3] for p in per)
        overhead = 1 - model_total / wall_total
        # Driver-side cost too: bench wall time vs the campaigns' own time.
        driver = 1 - wall_total / walls[1]
        print(f"\nharness overhead inside campaigns: {overhead:.2%} (target <= 5 %)")
        print(f"scheduling + storage overhead (1 worker, bench wall vs sum of campaign walls): {driver:.2%}")
        print(f"throughput 2 workers / 1 worker: {walls[1] / walls[2]:.2f}x (target >= 1.8x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
