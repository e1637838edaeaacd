"""What running strategies in a process of their own costs (issue 22, part 1).

Runs the same campaigns twice in this process, in process
(``strategy_process = false``) and in a strategy process (the default), and
prints the wall time of each and the ratio strategy process / in process:

* the quickstart's campaigns (benchmarks/quickstart.toml, references included);
* a 1000-image pool (synthetic shapes, 48x48, 5 classes): ``entropy``, whose
  per-round context carries (N, C, H, W) probabilities (46 MB), and ``random``.

The strategy processes' server starts once per campaign process; its start-up
is measured apart (it is amortised over every campaign the process runs).

    .venv/bin/python benchmarks/perf_strategy_worker.py [--campaigns N] [--no-quickstart]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from alharness.campaign.loop import run_campaign
from alharness.campaign.spec import CampaignSpec
from alharness.campaign import strategy_worker
from alharness.execution.benchmark import load_benchmark
from alharness.learner import LearnerConfig

HERE = Path(__file__).parent


def server_start_s() -> float:
    """Start the strategy processes' server and fork one process from it."""
    t0 = time.perf_counter()
    strategy_worker.warm_up()
    conn, _ = strategy_worker._zygote().fork()
    conn.close()
    return time.perf_counter() - t0


def timed(spec: CampaignSpec, process: bool) -> tuple[float, float]:
    """(campaign wall s, the strategy's share of it: select_s over the rounds plus
    what is spent outside the rounds: setup, the strategy process's start and stop)."""
    res = run_campaign(dataclasses.replace(spec, strategy_process=process))
    outside = res.wall_s - sum(r["round_s"] for r in res.rows)
    return res.wall_s, outside + sum(r["select_s"] for r in res.rows)


def compare(label: str, specs: list[CampaignSpec]) -> None:
    """Both modes per campaign. The wall ratio carries the training's run-to-run
    noise (a few %); the overhead is measured where it arises (start, messages)."""
    print(f"\n{label}")
    print(f"  {'campaign':40s} {'wall in process':>16s} {'strategy proc.':>15s} {'ratio':>6s} {'overhead':>9s}")
    tot_in = tot_proc = tot_over = 0.0
    for i, spec in enumerate(specs):
        # Alternate the order, so that a drift of the machine's speed favours neither mode.
        order = (False, True) if i % 2 == 0 else (True, False)
        got = {mode: timed(spec, mode) for mode in order}
        (w_in, s_in), (w_proc, s_proc) = got[False], got[True]
        over = s_proc - s_in
        tot_in, tot_proc, tot_over = tot_in + w_in, tot_proc + w_proc, tot_over + over
        name = f"{spec.strategy_label} seed {spec.seed}"
        print(f"  {name[:40]:40s} {w_in:15.2f}s {w_proc:14.2f}s {w_proc / w_in:6.3f} {over:8.3f}s")
    print(f"  {'all':40s} {tot_in:15.2f}s {tot_proc:14.2f}s {tot_proc / tot_in:6.3f} {tot_over:8.3f}s"
          f"  = {100 * tot_over / tot_in:.2f} % of the in-process wall")


def big_pool_specs(n: int) -> list[CampaignSpec]:
    learner = LearnerConfig(steps=50, batch_size=8, model_params={"width": 8, "depth": 2})
    data = {"n_train": n, "n_val": 0, "n_test": 64, "size": 48, "num_classes": 5, "seed": 0}
    return [CampaignSpec(dataset="synthetic_shapes", dataset_params=data, strategy=s, budget_metric="label_equivalents",
                         budget=12 * 40, rounds=3, seed=0, initial_masks=10, learner=learner)
            for s in ("entropy", "random")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", type=int, default=None, help="only the first N quickstart campaigns")
    ap.add_argument("--no-quickstart", action="store_true")
    ap.add_argument("--pool", type=int, default=1000, help="images in the large pool (0: skip it)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as the quickstart's num_cpus = 1 gives each campaign
    print(f"strategy processes' server: started and first fork in {server_start_s():.2f} s (once per campaign process)")
    for process in (False, True):  # first-use costs (lazy imports, allocator) are no one mode's
        run_campaign(dataclasses.replace(big_pool_specs(64)[0], strategy_process=process))
    if not args.no_quickstart:
        specs = list(load_benchmark(HERE / "quickstart.toml").specs)[: args.campaigns]
        compare(f"quickstart ({len(specs)} campaigns)", specs)
    if args.pool:
        compare(f"{args.pool}-image pool, 48x48, 5 classes, 3 rounds", big_pool_specs(args.pool))


if __name__ == "__main__":
    main()
