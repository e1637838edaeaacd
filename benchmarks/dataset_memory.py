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

``--layout`` measures building the cache instead: it writes a Cityscapes
layout of ``--images`` images at ``--height`` x ``--width`` (default the
native 1024x2048), then decodes it in a fresh process with the loader as it
is (images streamed into the cache one at a time, ``CacheWriter.rows``) and,
as the baseline in the same run, with the rows written through a writable
memory map of the whole array (``CacheWriter.empty``, the previous writer).
It prints each builder's peak resident memory (VmHWM) above what it held
before decoding, against the size of the cache it wrote:

    python benchmarks/dataset_memory.py --layout              # 24 images at 1024x2048
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def build_child(root: str, writer: str) -> None:
    """In a fresh process: build the cityscapes cache of ``root``; print one
    JSON line with the peak resident memory above the start, and the cache's bytes."""
    import json

    from alharness.datasets import cache
    from alharness.registry import DATASETS

    if writer == "memmap":  # the baseline: every row through a writable map of the whole array
        cache.CacheWriter.rows = cache.CacheWriter.empty
    DATASETS.get("cityscapes")
    from alharness.datasets.cityscapes import class_table

    class_table()  # torchvision imported before the baseline reading
    build, peak = cache._build_entry, {}

    def measured(*a, **k):  # the peak of decoding and writing, before the entry is opened and checked
        build(*a, **k)
        peak["kib"] = _status_kib("VmHWM")

    cache._build_entry = measured
    before = _status_kib("VmRSS")
    t = time.perf_counter()
    ds = DATASETS.create("cityscapes", root=root, size="native", val_fraction=0.0, polygons=False)
    seconds = time.perf_counter() - t
    nbytes = sum(a.nbytes for a in (ds.images, ds.masks, ds.instances))
    print(json.dumps({"peak_kib": peak["kib"] - before, "bytes": nbytes, "seconds": seconds}))


def write_layout(root, n: int, h: int, w: int) -> None:
    """Cityscapes files for n - 1 train images and 1 val image at h x w (smooth images: quick to encode)."""
    import json
    from pathlib import Path

    import numpy as np
    from PIL import Image

    for k in range(n):
        split, city = ("val", "frankfurt") if k == n - 1 else ("train", "aachen")
        base = f"{city}_{k:06d}_000019"
        img_dir, gt_dir = Path(root) / "leftImg8bit" / split / city, Path(root) / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        ramp = (np.arange(w) * 255 // w).astype(np.uint8)
        rgb = np.stack([np.broadcast_to(ramp, (h, w)), np.full((h, w), 37 * k % 256, np.uint8),
                        np.broadcast_to(ramp[::-1], (h, w))], axis=-1)
        Image.fromarray(rgb).save(img_dir / f"{base}_leftImg8bit.png", compress_level=1)
        label = np.zeros((h, w), np.uint8)
        label[h // 2:] = 7
        label[h // 2:h // 2 + h // 8, w // 4 + k:w // 4 + k + w // 8] = 26
        inst = label.astype(np.uint16)
        inst[label == 26] = 26000
        Image.fromarray(label).save(gt_dir / f"{base}_gtFine_labelIds.png", compress_level=1)
        Image.fromarray(inst).save(gt_dir / f"{base}_gtFine_instanceIds.png", compress_level=1)
        (gt_dir / f"{base}_gtFine_polygons.json").write_text(json.dumps({"objects": []}))


def layout_main(args) -> None:
    import json
    import subprocess
    import sys

    root = tempfile.mkdtemp(prefix="alharness-layout-")
    t = time.perf_counter()
    write_layout(root, args.images, args.height, args.width)
    print(f"layout: {args.images} Cityscapes images at {args.height}x{args.width} written in "
          f"{time.perf_counter() - t:.1f} s (removed at the end)")
    res = {}
    try:
        for writer in ("rows", "memmap"):
            with tempfile.TemporaryDirectory(prefix=f"alharness-cache-{writer}-") as where:
                out = subprocess.run([sys.executable, __file__, "--_build", root, writer], check=True,
                                     env={**os.environ, "ALHARNESS_CACHE": where}, capture_output=True, text=True).stdout
            res[writer] = json.loads(out.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mib = 2**20
    one = res["rows"]["bytes"] / args.images
    print(f"cache: {res['rows']['bytes'] / mib:.0f} MiB (images, masks, instance ids; {one / mib:.1f} MiB per image)")
    print(f"{'writer':<34} {'peak RSS above start':>20} {'x one image':>12} {'x the cache':>12} {'build s':>8}")
    for writer, label in (("rows", "streamed (CacheWriter.rows)"), ("memmap", "baseline: memory map (.empty)")):
        peak = res[writer]["peak_kib"] * 1024
        print(f"{label:<34} {peak / mib:>16.0f} MiB {peak / one:>12.1f} {peak / res[writer]['bytes']:>12.2f} "
              f"{res[writer]['seconds']:>8.1f}")
    ratio = res["memmap"]["peak_kib"] / max(1, res["rows"]["peak_kib"])
    print(f"peak memory while decoding: streamed / baseline = {1 / ratio:.3f} (baseline {ratio:.1f}x the streamed peak)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--images", type=int, help="synthetic images (train 75 %%, test 25 %%; default 1200), "
                                               "or with --layout the layout's images (default 24)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--mode", choices=["mmap", "copy"], default="mmap")
    ap.add_argument("--layout", action="store_true", help="measure building a Cityscapes cache (see above)")
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--_build", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._build:
        return build_child(*args._build)
    if args.layout:
        args.images = args.images or 24
        return layout_main(args)
    args.images = args.images or 1200
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
