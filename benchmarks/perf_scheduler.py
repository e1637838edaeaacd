"""Scheduler overhead on many minimal campaigns (tiny data, one round).

Runs N campaigns through ``run_benchmark`` on a local Ray and compares the
bench's wall time with the ideal, the sum of the campaigns' own times
divided by the number of workers (the time a perfect scheduler with free
storage would need):

    overhead = wall / ideal - 1            (target <= 5 %; Ray Tune reports ~14 %
                                            for 10 000 one-second trials)
    per campaign = (wall - ideal) * workers / N

The baseline, in the same run on the same Ray: bare Ray, the same campaigns
as one plain Ray task each (``run_campaign`` and nothing else: no
checkpoints, no records, no store; all submitted at once, the rows and query
logs fetched with one ``ray.get``), its overhead over its own ideal computed
the same way. Target: alharness within 2 points of bare Ray. (Ray Tune is
not compared: ``ray.tune`` needs pandas, which this environment lacks.)

It also prints where the driver's time went (writing results, its CPU
time per campaign) and, with ``--baseline N``, the same bench with one
result file per campaign (``batch_size = 1``, the store's layout before
batching) on the first N campaigns. Ray is started, and every worker
imported, before any timing.

    python benchmarks/perf_scheduler.py --campaigns 10000
    python benchmarks/perf_scheduler.py --campaigns 2000 --baseline 300
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import ray

from alharness.results import store
from alharness.execution.benchmark import parse_benchmark
from alharness.execution.backends.ray import init_ray, run_benchmark

# One round on the smallest data a campaign can have: the scheduler, not the
# model, should dominate.
MINIMAL = {
    "benchmark": {"name": "perf_scheduler", "seeds": [0], "budget": 4, "budget_metric": "label_equivalents", "rounds": 1,
                  "initial_masks": 1},
    "datasets": [{"name": "synthetic_shapes", "n_train": 4, "n_val": 0, "n_test": 2, "size": 16, "num_classes": 2,
                  "seed": 0}],
    "learner": {"steps": 1, "batch_size": 2, "model_params": {"width": 2, "depth": 1}},
    "strategies": [{"name": "random"}],
}


def bench_of(n: int, offset: int = 0, steps: int = 1):
    doc = {**MINIMAL, "benchmark": {**MINIMAL["benchmark"], "seeds": list(range(offset, offset + n))},
           "learner": {**MINIMAL["learner"], "steps": steps}}
    return parse_benchmark(doc)


def cpu_seconds() -> dict[str, float]:
    """CPU time so far of this driver and of its Ray processes (workers vs Ray's own daemons)."""
    import os

    import psutil

    me = psutil.Process(os.getpid())
    out = {"driver": time.process_time(), "workers": 0.0, "ray_daemons": 0.0}
    for p in me.children(recursive=True):
        try:
            t = p.cpu_times()
            kind = "workers" if " ".join(p.cmdline()).startswith(("ray::IDLE", "ray::campaign", "ray::_bare_campaign")) else "ray_daemons"
        except psutil.Error:
            continue
        out[kind] += t.user + t.system
    return out


def measure(bench, out: Path, workers: int, **kw) -> dict:
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    summary = run_benchmark(bench, out, progress=False, **kw)
    wall = time.perf_counter() - t0
    cpu = {k: v - cpu0[k] for k, v in cpu_seconds().items()}
    if summary.failed:
        raise SystemExit(f"campaign failures: {summary.failed[:3]}")
    con, _ = store.connect(out)
    campaign_s, = con.execute("SELECT sum(wall_s) FROM campaigns").fetchone()
    n = len(bench.specs)
    ideal = campaign_s / workers
    files = sum(len(list((out / t).glob("*.parquet"))) for t in store.TABLES)
    return {"n": n, "wall": wall, "ideal": ideal, "campaign_s": campaign_s, "overhead": wall / ideal - 1,
            "per_campaign_ms": 1000 * (wall - ideal) * workers / n, "write_s": summary.write_s, "files": files,
            "batches": summary.batches, "cpu": cpu}


@ray.remote(num_cpus=1)
def _bare_campaign(spec) -> tuple[float, list, list]:
    import torch

    from alharness.campaign.loop import run_campaign

    torch.set_num_threads(1)  # what the scheduler gives a one-CPU campaign
    res = run_campaign(spec)
    return res.wall_s, res.rows, res.queries


def measure_bare(specs, workers: int) -> dict:
    """The same campaigns as plain Ray tasks, one each, nothing stored."""
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    outs = ray.get([_bare_campaign.remote(s) for s in specs])
    wall = time.perf_counter() - t0
    cpu = {k: v - cpu0[k] for k, v in cpu_seconds().items()}
    campaign_s = sum(o[0] for o in outs)
    ideal = campaign_s / workers
    return {"n": len(specs), "wall": wall, "ideal": ideal, "campaign_s": campaign_s, "overhead": wall / ideal - 1,
            "per_campaign_ms": 1000 * (wall - ideal) * workers / len(specs), "cpu": cpu}


def show(label: str, m: dict) -> None:
    if "files" not in m:  # bare Ray: nothing written
        print(f"{label}: {m['n']} campaigns, wall {m['wall']:.1f} s, ideal {m['ideal']:.1f} s "
              f"(mean campaign {1000 * m['campaign_s'] / m['n']:.0f} ms): overhead {m['overhead']:+.2%}, "
              f"{m['per_campaign_ms']:.1f} ms per campaign; CPU s: "
              + ", ".join(f"{k} {v:.1f}" for k, v in m["cpu"].items()), flush=True)
        return
    print(f"{label}: {m['n']} campaigns, wall {m['wall']:.1f} s, ideal {m['ideal']:.1f} s "
          f"(mean campaign {1000 * m['campaign_s'] / m['n']:.0f} ms): overhead {m['overhead']:+.2%}, "
          f"{m['per_campaign_ms']:.1f} ms per campaign; writing results {m['write_s']:.2f} s "
          f"({m['files']} files in {m['batches']} batches); driver CPU {1000 * m['cpu']['driver'] / m['n']:.2f} ms "
          f"per campaign; CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in m["cpu"].items()), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaigns", type=int, default=10000)
    ap.add_argument("--baseline", type=int, default=0, help="campaigns for the one-file-per-campaign comparison (0: skip)")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare-Ray baseline")
    ap.add_argument("--workers", type=int, default=2, help="Ray CPUs (one campaign per CPU)")
    ap.add_argument("--no-checkpoints", action="store_true", help="also skip per-round checkpoints")
    ap.add_argument("--steps", type=int, default=1, help="training steps per campaign (longer campaigns: e.g. 40 for ~1 s)")
    args = ap.parse_args()

    init_ray(num_cpus=args.workers)
    tmp = Path(tempfile.mkdtemp(prefix="alharness-perf-sched-"))
    try:
        # Warm up: every worker process started and its imports done.
        run_benchmark(bench_of(2 * args.workers, offset=10**6, steps=args.steps), tmp / "warm", progress=False)
        t0 = time.perf_counter()
        bench = bench_of(args.campaigns, steps=args.steps)
        print(f"{args.campaigns} campaign specs built in {time.perf_counter() - t0:.1f} s (not timed below); "
              f"{args.workers} workers", flush=True)
        ray.get([_bare_campaign.remote(s) for s in bench_of(2 * args.workers, offset=2 * 10**6).specs])  # warm too
        kw = {"checkpoints": not args.no_checkpoints}
        bare = None if args.no_bare else measure_bare(bench.specs, args.workers)
        if bare:
            show("baseline, bare Ray (one plain task per campaign, nothing stored)", bare)
        main_m = measure(bench, tmp / "batched", args.workers, **kw)
        show("alharness (default: batched writes, checkpoints)", main_m)
        print(f"alharness overhead over ideal: {main_m['overhead']:+.2%} (target <= 5 %: "
              f"{'met' if main_m['overhead'] <= 0.05 else 'NOT met'})")
        if bare:
            gap = 100 * (main_m["overhead"] - bare["overhead"])
            print(f"alharness vs bare Ray: {main_m['overhead']:+.2%} vs {bare['overhead']:+.2%}, {gap:+.1f} points "
                  f"(target <= +2 points: {'met' if gap <= 2 else 'NOT met'}); wall ratio alharness / bare Ray "
                  f"{main_m['wall'] / bare['wall']:.3f}x")
        if args.baseline:
            sub = dataclasses.replace(bench, specs=bench.specs[: args.baseline])
            base = measure(sub, tmp / "per_campaign", args.workers, batch_size=1, **kw)
            show("baseline, one file per campaign and table", base)
            same = measure(sub, tmp / "batched_small", args.workers, **kw)
            show("batched, same campaigns as the baseline", same)
            print(f"writing time, batched / one file per campaign: {same['write_s'] / base['write_s']:.3f}x; "
                  f"overhead {same['overhead']:+.2%} vs {base['overhead']:+.2%}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
