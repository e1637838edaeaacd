"""How much memory does one dataset cost when several Ray workers on one
node use it?

Each worker (a Ray actor, as a campaign is a Ray task in its own worker)
builds the dataset through the registry (memory-mapped from the cache),
reads every byte of it, and takes the campaign's views: the pool split, its
strategy-facing PoolView and the test split. Then, with all workers still
holding everything, the driver reads Rss and Pss from
``/proc/<pid>/smaps_rollup`` (Pss divides each shared page among the
processes that map it, so the sum of Pss over processes is what the node
really holds). ``--mode copy`` loads private in-memory copies instead, for
comparison: what every worker would hold if it decoded or generated the
data itself.

    python benchmarks/dataset_memory.py --workers 4            # memory-mapped (default)
    python benchmarks/dataset_memory.py --workers 4 --mode copy
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def smaps(pid: int) -> dict[str, int]:
    """Rss, Pss, ... of a process in MiB."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--images", type=int, default=1200, help="synthetic images (train 75 %%, test 25 %%)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--mode", choices=["mmap", "copy"], default="mmap")
    args = ap.parse_args()
    os.environ.setdefault("ALHARNESS_CACHE", tempfile.mkdtemp(prefix="alharness-memory-"))
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import numpy as np
    import ray

    from alharness.registry import DATASETS

    params = dict(n_train=args.images * 3 // 4, n_val=0, n_test=args.images - args.images * 3 // 4,
                  size=args.size, num_classes=5, seed=0)
    t = time.perf_counter()
    ds = DATASETS.create("synthetic_shapes", **params)  # built once, in the driver, into the cache
    nbytes = sum(a.nbytes for a in (ds.images, ds.masks, ds.instances))
    print(f"dataset: {len(ds.images)} images {args.size}², images+masks+instances = {nbytes / 2**20:.1f} MiB "
          f"(built/opened in {time.perf_counter() - t:.1f} s) at {ds.metadata['cache_dir']}")
    del ds

    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)

    @ray.remote(num_cpus=1)
    class Worker:
        def load(self, mode: str) -> tuple[int, dict, dict]:
            from alharness.datasets.base import make_pool_view
            from alharness.registry import DATASETS

            pid = os.getpid()
            before = smaps(pid)
            d = DATASETS.create("synthetic_shapes", **params)
            if mode == "copy":
                self.held = [np.array(a) for a in (d.images, d.masks, d.instances)]
            else:
                pool, test = d.split("train"), d.split("test")
                self.held = [d, pool, test, make_pool_view(pool, d.class_names)]
                # Read every byte, as training and evaluation do.
                total = sum(int(np.asarray(a[i:i + 64]).sum()) for a in (d.images, d.masks, d.instances)
                            for i in range(0, len(a), 64))
                assert total > 0
            return pid, before, smaps(pid)

    workers = [Worker.remote() for _ in range(args.workers)]
    results = ray.get([w.load.remote(args.mode) for w in workers])
    now = {pid: smaps(pid) for pid, _, _ in results}  # all workers hold the data right now
    print(f"\nmode={args.mode}, {args.workers} Ray workers on one node (MiB; 'delta' = after loading - before)")
    print(f"{'pid':>8} {'Rss':>8} {'Pss':>8} {'Rss delta':>10} {'Pss delta':>10} {'private delta':>14}")
    sum_pss_delta = 0.0
    for pid, before, _ in results:
        m = now[pid]
        priv = (m["Private_Clean"] + m["Private_Dirty"]) - (before["Private_Clean"] + before["Private_Dirty"])
        d_pss = m["Pss"] - before["Pss"]
        sum_pss_delta += d_pss
        print(f"{pid:>8} {m['Rss']:>8.1f} {m['Pss']:>8.1f} {m['Rss'] - before['Rss']:>10.1f} {d_pss:>10.1f} {priv:>14.1f}")
    print(f"\nsum of Pss deltas over workers: {sum_pss_delta:.1f} MiB for a {nbytes / 2**20:.1f} MiB dataset "
          f"({sum_pss_delta / (nbytes / 2**20):.2f} copies)")
    ray.shutdown()


if __name__ == "__main__":
    main()
