"""Oracle throughput at 512x1024 and click counting for a 500-image pool.

Prints the time to compute click data (RDP polygons, segment maps) for a
pool of 500 images of 512x1024, and the time to reuse it; then, for full
masks, regions and pixel queries, answers per second of answer + record
alone (the label copy into the label state), of a straightforward per-pixel
Python loop that copies the same labels, and of the whole oracle (checks,
every cost metric, record, ledger), all measured in the same run. The whole
oracle's rate over answer + record is the figure of issue 20 for full
masks (target >= 0.5).

Usage:  python benchmarks/perf_oracle.py [--images 500]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from skimage import draw

from alharness.annotation.answers import answer, record
from alharness.annotation.costs import build_cost_models
from alharness.datasets.base import SplitData
from alharness.annotation.labels import LabelState
from alharness.annotation.oracle import Oracle
from alharness.contract.queries import FullMask, Pixels, Region

H, W, C = 512, 1024, 8
TARGET = 0.5  # issue 20: the whole oracle at least half as fast as answer + record


def make_masks(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, H, W), np.uint8)
    for m in masks:
        for _ in range(10):
            rr, cc = draw.ellipse(rng.uniform(0, H), rng.uniform(0, W), rng.uniform(20, 120), rng.uniform(20, 200),
                                  shape=(H, W), rotation=rng.uniform(0, np.pi))
            m[rr, cc] = rng.integers(1, C)
    return masks


def loop_answer(mask: np.ndarray, state: np.ndarray, ys, xs) -> None:
    """The straightforward version: one pixel at a time in Python."""
    for y in ys:
        for x in xs:
            state[y, x] = mask[y, x]


def rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=500)
    args = ap.parse_args()

    t0 = time.perf_counter()
    masks = make_masks(args.images)
    print(f"{args.images} masks of {H}x{W}, {C} classes, made in {time.perf_counter() - t0:.1f} s", flush=True)
    split = SplitData(dataset_ids=np.arange(args.images), images=np.zeros((args.images, 1, 1, 3), np.uint8),
                      masks=masks, instances=None, num_classes=C, ignore_index=255)

    t0 = time.perf_counter()
    oracle = Oracle(split, build_cost_models({}), "label_equivalents", 1e18)
    oracle._truth.clicks(1.0)  # click data for the whole pool (cost_A/B need pool totals)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    Oracle(split, build_cost_models({}), "label_equivalents", 1e18)._truth.clicks(1.0)
    again = time.perf_counter() - t0
    print(f"clicks for {args.images} images: {first:.1f} s (target well under 60 s); reused from cache: {again:.3f} s")

    state = LabelState(args.images, (H, W), C, 255)
    answer_state = LabelState(args.images, (H, W), C, 255)
    loop_state = np.full((H, W), 255, np.uint8)
    rng = np.random.default_rng(1)
    coords = [tuple((int(y), int(x)) for y, x in zip(rng.integers(0, H, 20), rng.integers(0, W, 20))) for _ in range(args.images)]
    b = 128
    queries = {
        "full_mask": ([FullMask(i) for i in range(args.images)], lambda i: loop_answer(masks[i], loop_state, range(H), range(W)), 3),
        "region 128x128": ([Region(i, 64, 64 + i % 700, b) for i in range(args.images)],
                           lambda i: loop_answer(masks[i], loop_state, range(64, 64 + b), range(64 + i % 700, 64 + i % 700 + b)), 20),
        "pixels x20": ([Pixels(i, coords[i]) for i in range(args.images)],
                       lambda i: [loop_answer(masks[i], loop_state, [y], [x]) for y, x in coords[i]], 200),
    }
    truth = oracle._truth
    metrics = len(oracle.cost_models)
    print(f"\n{'query':16s} {'answer+record/s':>16s} {'per-pixel loop/s':>17s} {'ratio':>8s} {'whole oracle/s':>15s} "
          f"{'oracle/(answer+record)':>23s}")
    ratios = {}
    for rnd, (name, (qs, slow, n_slow)) in enumerate(queries.items()):
        # The oracle's own answering path (vectorised) vs the loop, same labels copied.
        r_fast = rate(lambda i: record(qs[i], answer_state, answer(qs[i], truth.image(i))), len(qs))
        r_slow = rate(slow, min(n_slow, len(qs)))
        # Everything the oracle does per answer: checks, every cost metric (incl. cost_A/B clicks), record, ledger.
        r_full = rate(lambda i: oracle.answer([qs[i]], strategy="perf", round=rnd, state=state), len(qs))
        ratios[name] = r_full / r_fast
        print(f"{name:16s} {r_fast:16.1f} {r_slow:17.1f} {r_fast / r_slow:7.1f}x {r_full:15.1f} {ratios[name]:23.2f}",
              flush=True)
    met = "met" if ratios["full_mask"] >= TARGET else "NOT met"
    print(f"\nfull masks: whole oracle ({metrics} metrics) / answer + record = {ratios['full_mask']:.2f} "
          f"(target >= {TARGET}): {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
