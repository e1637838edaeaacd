"""MADBAL selection cost: seconds per round per 1000 images at 256x512, 2 cores.

A pool of synthetic street scenes (two 256x256 scenes side by side per
256x512 image), a tiny U-Net with the maturity and loss-prediction heads
trained briefly on a few masks, the prediction services computed once (not
timed as selection: every strategy needs its model's outputs), then per
strategy one ``propose`` on the same context with 10 pixels per image:

* ``madbal``: Eq. (4) over every pixel, superpixel statistics, backbone
  features of every superpixel patch, K-means, Eqs. (5)-(8), per-image picks;
* ``pixel_entropy`` (top-k entropy per image), the baseline in the same run.

Superpixels are computed once beforehand (they are cached per dataset and
shared by every round and campaign), and that one-time cost is printed too.
The pool is kept to ``--images`` (default 100; its (N, C, H, W)
probabilities, maturity maps and weights would take ~6 GB at 1000) and the
figures are scaled linearly to 1000 images; ``--images 50`` and ``100``
side by side show how close to linear they are. Also printed: the
per-superpixel aggregation (sums, dominant labels) vectorised with
``np.bincount`` against a loop over superpixels, on the same maps.

Usage:  python benchmarks/perf_madbal.py [--images 100] [--repeats 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

import numpy as np
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2, help="propose calls per strategy (median reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loop-superpixels", type=int, default=2000, help="superpixels the loop reference visits")
    args = ap.parse_args()
    os.environ.setdefault("ALHARNESS_CACHE", tempfile.mkdtemp(prefix="perf-madbal-"))
    torch.set_num_threads(args.threads)

    from alharness.toolkit import superpixels as S
    from alharness.campaign.context import make_context
    from alharness.annotation.costs import build_cost_models
    from alharness.datasets.base import make_pool_view
    from alharness.annotation.labels import LabelState
    from alharness.learner import Learner, LearnerConfig
    from alharness.learner.services import pool_outputs
    from alharness.annotation.oracle import Oracle
    from alharness.registry import DATASETS, STRATEGIES
    from alharness.seeding import derive_rng
    from strategies.madbal import superpixel_features

    n = args.images
    ds = DATASETS.create("synthetic_street", n_train=2 * n, n_val=0, n_test=2, size=256, seed=0)
    pool = ds.split("train")
    images = np.concatenate([pool.images[0::2], pool.images[1::2]], axis=2)  # (n, 256, 512, 3)
    masks = np.concatenate([pool.masks[0::2], pool.masks[1::2]], axis=2)
    split = dataclasses.replace(pool, images=images, masks=masks, instances=None, dataset_ids=np.arange(n), polygons=None)
    view = make_pool_view(split, ds.class_names)
    state = LabelState(n, view.image_shape, ds.num_classes, ds.ignore_index)
    for i in range(4):
        state.set_full_mask(i, masks[i])
    cfg = LearnerConfig(steps=5, batch_size=2, model_params={"width": 16, "depth": 2},
                        heads=["maturity", "loss_prediction"], head_steps=3, eval_batch_size=8)
    learner = Learner(cfg, ds.num_classes, ds.ignore_index)
    learner.fit(view.images, state, seed=0)

    t0 = time.perf_counter()
    sp = S.compute(np.asarray(view.images))
    t_sp = time.perf_counter() - t0
    oracle = Oracle(split, build_cost_models({}), "pixels", 1.0)
    results = {}
    for name in ("pixel_entropy", "madbal"):
        strat = STRATEGIES.create(name, pixels_per_image=10)
        t0 = time.perf_counter()
        outputs = pool_outputs(learner, view.images, strat.needs)
        t_pred = time.perf_counter() - t0
        times, cpu = [], []
        for r in range(args.repeats):
            strat = STRATEGIES.create(name, pixels_per_image=10)
            ctx = make_context(view, state, oracle, 1, 4, 1.0, derive_rng(0, "perf", r), 0, outputs)
            t0, c0 = time.perf_counter(), time.process_time()
            batch = strat.propose(ctx)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        assert sum(len(q.coords) for q in batch) == 10 * (n - 4), "every unlabelled image gets its 10 pixels"
        results[name] = (float(np.median(times)), float(np.median(cpu)), t_pred)
        if name == "madbal":  # the part of it that is a forward pass of the backbone over every superpixel patch
            t0 = time.perf_counter()
            superpixel_features(learner.model, np.asarray(view.images), sp, 16)
            t_feat = time.perf_counter() - t0
        del outputs

    # Per-superpixel aggregation: bincount over global ids vs one boolean mask per superpixel.
    u = np.random.default_rng(0).random(view.images.shape[:3], dtype=np.float32)
    pred = np.random.default_rng(1).integers(0, ds.num_classes, view.images.shape[:3])
    t0 = time.perf_counter()
    sums, dom = S.Superpixels(sp.labels, sp.counts).sum(u), sp.majority(pred, ds.num_classes)
    t_vec = time.perf_counter() - t0
    visit = min(args.loop_superpixels, len(sp))
    t0 = time.perf_counter()
    for g in range(visit):
        i = int(sp.image_of[g])
        m = sp.labels[i] == g - sp.offsets[i]
        assert abs(u[i][m].sum() - sums[g]) < 1e-2 * max(1.0, sums[g])
        assert np.bincount(pred[i][m], minlength=ds.num_classes).argmax() == dom[g]
    t_loop = (time.perf_counter() - t0) / visit * len(sp)

    scale = 1000 / n
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other jobs share the cores: wall times inflate)")
    print(f"pool: {n} images of 256x512 ({len(sp)} SLIC superpixels, {len(sp) / n:.0f} per image), "
          f"{args.threads} torch threads, {os.cpu_count()} cores visible; figures per 1000 images (x{scale:g})")
    print(f"superpixels, once per dataset (cached): {t_sp * scale:.1f} s")
    for name, (t, c, t_pred) in results.items():
        print(f"{name:14s} selection {t * scale:7.1f} s per round, {c * scale:7.1f} CPU s "
              f"(prediction services {t_pred * scale:.1f} s, not counted)")
    print(f"  of madbal's: backbone features of every superpixel patch {t_feat * scale:.1f} s")
    ratio = results["madbal"][0] / results["pixel_entropy"][0]
    print(f"madbal / pixel_entropy selection time: {ratio:.1f}x (CPU time {results['madbal'][1] / results['pixel_entropy'][1]:.1f}x)")
    print(f"superpixel aggregation (sums + dominant labels): vectorised {t_vec * scale:.2f} s, "
          f"loop over superpixels {t_loop * scale:.1f} s (extrapolated from {visit}); speed-up {t_loop / t_vec:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
