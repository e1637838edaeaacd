"""MADBAL selection cost: seconds per round per 1000 images at 256x512, 2 cores.

A pool of synthetic street scenes (two 256x256 scenes side by side per
256x512 image), a tiny U-Net with the maturity and loss-prediction heads
trained briefly on a few masks, the prediction services computed once (not
timed as selection: every strategy needs its model's outputs), then per
strategy ``propose`` on the same context with 10 pixels per image:

* ``madbal``: Eq. (4) over every pixel, superpixel statistics, superpixel
  features (RoI-Align on the prediction pass's deepest encoder map), K-means,
  Eqs. (5)-(8), per-image picks;
* ``madbal`` with ``cluster_features = "patches"``: the same with the
  features of every superpixel patch through the encoder (the paper's crops);
* ``pixel_entropy`` (top-k entropy per image), the baseline in the same run.

Each strategy makes one first call (imports such as torchvision, first-touch
memory; printed, not counted), then the median of ``--repeats`` calls is its
figure back to back. The strategies take turns call by call, so that load
from other jobs hits them alike. In a campaign each selection follows a
training, after which the allocator's memory is cold again (pixel_entropy
then took several times its back-to-back time), so the calls are also timed
right after a ``learner.fit`` (``--rounds``, median): the per-round figure.

The superpixel features are also timed alone on three paths: the former one
(the whole network on every patch, 2048 patches a batch), the per-patch
encoder (same features to float tolerance, max |difference| printed), and the
encoder map (different features: how far their K-means clusters and MADBAL's
picks agree with the per-patch ones is printed).

Superpixels are computed once beforehand (they are cached per dataset and
shared by every round and campaign), and that one-time cost is printed too.
The pool is kept to ``--images`` (default 100; its (N, C, H, W)
probabilities, maturity maps and weights would take ~6 GB at 1000) and the
figures are scaled linearly to 1000 images; ``--images 50`` and ``100``
side by side show how close to linear they are. Also printed: the
per-superpixel aggregation (sums, dominant labels) vectorised with
``np.bincount`` against a loop over superpixels, on the same maps.

Usage:  python benchmarks/perf_madbal.py [--images 100] [--repeats 5] [--rounds 3]
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

TARGET = 3.0  # madbal selection time / pixel_entropy selection time (issue 20)


def build(n: int):
    """Pool view, label state (4 full masks), oracle, trained learner, superpixels and their one-time cost."""
    from alharness.annotation.costs import build_cost_models
    from alharness.annotation.labels import LabelState
    from alharness.annotation.oracle import Oracle
    from alharness.datasets.base import make_pool_view
    from alharness.learner import Learner, LearnerConfig
    from alharness.registry import DATASETS
    from alharness.toolkit import superpixels as S

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
    return view, state, oracle, learner, sp, t_sp


def time_strategies(setup, configs: dict, outputs: dict, repeats: int, before=None) -> dict:
    """label → (first call s, median s, median CPU s, last batch) of ``propose``; the
    strategies take turns call by call, so that load from other jobs hits them alike;
    ``before()``, if given, runs (untimed) before every call."""
    from alharness.campaign.context import make_context
    from alharness.registry import STRATEGIES
    from alharness.seeding import derive_rng

    view, state, oracle = setup[:3]
    runs: dict = {label: [] for label in configs}
    batches = {}
    for r in range(repeats + 1):
        for label, (name, params) in configs.items():
            strat = STRATEGIES.create(name, pixels_per_image=10, **params)
            ctx = make_context(view, state, oracle, 1, 4, 1.0, derive_rng(0, "perf", r), 0,
                               {k: v for k, v in outputs.items() if k in strat.needs})
            if before is not None:
                before()
            t0, c0 = time.perf_counter(), time.process_time()
            batches[label] = strat.propose(ctx)
            runs[label].append((time.perf_counter() - t0, time.process_time() - c0))
            assert sum(len(q.coords) for q in batches[label]) == 10 * (len(view) - 4), "10 pixels per unlabelled image"
    return {label: (t[0][0], float(np.median([w for w, _ in t[1:]])), float(np.median([c for _, c in t[1:]])),
                    batches[label]) for label, t in runs.items()}


def feature_paths(setup, outputs: dict, scale: float) -> None:
    """The three superpixel-feature paths: time, and how their features and clusters compare."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from strategies.madbal import map_features, superpixel_features

    view, _, _, learner, sp, _ = setup
    images = np.asarray(view.images)
    superpixel_features(learner.model, images[:2], sp, 16)  # imports torchvision
    timed = {}
    for label, fn in (("former: whole network per patch", lambda: superpixel_features(learner.model, images, sp, 16,
                                                                                       batch=2048, encoder_only=False)),
                      ("encoder per patch", lambda: superpixel_features(learner.model, images, sp, 16)),
                      ("RoI-Align on the prediction pass's encoder map",
                       lambda: map_features(outputs["feature_map"], sp, view.image_shape))):
        t0 = time.perf_counter()
        timed[label] = (fn(), time.perf_counter() - t0)
    (old, t_old), (enc, t_enc), (emap, t_map) = timed.values()
    print("superpixel features, per 1000 images:")
    for label, (_, t) in timed.items():
        print(f"  {label:48s} {t * scale:6.1f} s  ({t_old / t:.1f}x faster than the former)")
    err = float(np.abs(enc - old).max())
    print(f"  encoder per patch vs former: max |difference| {err:.1e} (features up to {np.abs(old).max():.2f})")
    k = 10
    cl_patch = KMeans(n_clusters=k, n_init=1, random_state=0).fit_predict(old.astype(np.float64))
    cl_enc = KMeans(n_clusters=k, n_init=1, random_state=0).fit_predict(enc.astype(np.float64))
    cl_map = KMeans(n_clusters=k, n_init=1, random_state=0).fit_predict(emap.astype(np.float64))
    print(f"  K-means ({k} clusters, same seed), adjusted Rand index with the former's: encoder per patch "
          f"{adjusted_rand_score(cl_patch, cl_enc):.3f}, encoder map {adjusted_rand_score(cl_patch, cl_map):.3f}")


def aggregation(setup, num_classes: int, scale: float, visit: int) -> tuple[float, float, int]:
    """Per-superpixel sums + dominant labels: bincount over global ids vs one boolean mask per superpixel."""
    from alharness.toolkit import superpixels as S

    view, sp = setup[0], setup[4]
    u = np.random.default_rng(0).random(view.images.shape[:3], dtype=np.float32)
    pred = np.random.default_rng(1).integers(0, num_classes, view.images.shape[:3])
    t0 = time.perf_counter()
    sums, dom = S.Superpixels(sp.labels, sp.counts).sum(u), sp.majority(pred, num_classes)
    t_vec = time.perf_counter() - t0
    visit = min(visit, len(sp))
    t0 = time.perf_counter()
    for g in range(visit):
        i = int(sp.image_of[g])
        m = sp.labels[i] == g - sp.offsets[i]
        assert abs(u[i][m].sum() - sums[g]) < 1e-2 * max(1.0, sums[g])
        assert np.bincount(pred[i][m], minlength=num_classes).argmax() == dom[g]
    t_loop = (time.perf_counter() - t0) / visit * len(sp)
    return t_vec, t_loop, visit


def _shared(a, b) -> float:
    """Share of the pixels picked in batch ``a`` also picked in ``b``."""
    pa = {(q.image, y, x) for q in a for y, x in q.coords}
    pb = {(q.image, y, x) for q in b for y, x in q.coords}
    return len(pa & pb) / max(len(pa), 1)


def ratios(runs: dict, how: str) -> None:
    base = runs["pixel_entropy"]
    for label in runs:
        if label != "pixel_entropy":
            ratio = runs[label][1] / base[1]
            print(f"{label} / pixel_entropy selection time, {how}: {ratio:.1f}x (target <= {TARGET:g}x: "
                  f"{'met' if ratio <= TARGET else 'NOT met'}; CPU time {runs[label][2] / base[2]:.1f}x)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5, help="timed propose calls per strategy after the first (median)")
    ap.add_argument("--rounds", type=int, default=3, help="timed calls per strategy right after a training (median)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loop-superpixels", type=int, default=2000, help="superpixels the loop reference visits")
    args = ap.parse_args()
    os.environ.setdefault("ALHARNESS_CACHE", tempfile.mkdtemp(prefix="perf-madbal-"))
    torch.set_num_threads(args.threads)
    from alharness.learner.services import pool_outputs
    from alharness.registry import STRATEGIES

    n = args.images
    setup = build(n)
    learner, sp, t_sp = setup[3], setup[4], setup[5]
    scale = 1000 / n
    t0 = time.perf_counter()
    outputs = pool_outputs(learner, setup[0].images, STRATEGIES.create("madbal").needs)
    t_pred = time.perf_counter() - t0
    configs = {"pixel_entropy": ("pixel_entropy", {}), "madbal": ("madbal", {}),
               "madbal, patches": ("madbal", {"cluster_features": "patches"})}
    runs = time_strategies(setup, configs, outputs, args.repeats)
    print(f"load average at the end of selection: {os.getloadavg()[0]:.1f} (other jobs share the cores: wall times inflate)")
    print(f"pool: {n} images of 256x512 ({len(sp)} SLIC superpixels, {len(sp) / n:.0f} per image), "
          f"{args.threads} torch threads, {os.cpu_count()} cores visible; figures per 1000 images (x{scale:g})")
    print(f"superpixels, once per dataset (cached): {t_sp * scale:.1f} s")
    print(f"prediction services for madbal (not counted as selection): {t_pred * scale:.1f} s; "
          f"its feature_map {outputs['feature_map'].nbytes * scale / 2**30:.2f} GiB")
    for label, (first, wall, cpu, _) in runs.items():
        print(f"{label:16s} selection back to back {wall * scale:6.1f} s, {cpu * scale:6.1f} CPU s "
              f"(median of {args.repeats}; first call {first * scale:.1f} s)")
    ratios(runs, "back to back")
    print(f"madbal's picks also picked with patch features: {_shared(runs['madbal'][3], runs['madbal, patches'][3]):.0%}")
    feature_paths(setup, outputs, scale)
    t_vec, t_loop, visit = aggregation(setup, learner.num_classes, scale, args.loop_superpixels)
    print(f"superpixel aggregation (sums + dominant labels): vectorised {t_vec * scale:.2f} s, "
          f"loop over superpixels {t_loop * scale:.1f} s (extrapolated from {visit}); speed-up {t_loop / t_vec:.0f}x")
    # In a campaign each selection follows a training: the allocator's memory is cold again.
    view, state = setup[0], setup[1]
    rounds = time_strategies(setup, {k: configs[k] for k in ("pixel_entropy", "madbal")}, outputs, args.rounds,
                             before=lambda: learner.fit(view.images, state, seed=0))
    for label, (_, wall, cpu, _) in rounds.items():
        print(f"{label:16s} selection right after a training {wall * scale:6.1f} s, {cpu * scale:6.1f} CPU s "
              f"(median of {args.rounds})")
    ratios(rounds, "right after a training, as in a campaign round")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
