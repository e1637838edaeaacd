"""Box priority aggregation (eq. 4-5) plus non-overlapping top-k selection
(eq. 8) on 1024x2048 priority maps, against a straightforward per-box loop
in the same run.

The loop sums the priority inside each box with one numpy call per box
position; it is timed on the first rows of one map and extrapolated to the
whole map (every box position costs the same).

Usage:  python benchmarks/perf_boxes.py [--maps 20] [--box 128] [--k 10]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from strategies.metabox import box_sums, select_boxes

H, W = 1024, 2048


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maps", type=int, default=20)
    ap.add_argument("--box", type=int, default=128)
    ap.add_argument("--k", type=int, default=10, help="boxes selected per map")
    ap.add_argument("--loop-rows", type=int, default=4)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    maps = rng.random((args.maps, H, W), dtype=np.float32)
    b = args.box

    t0 = time.perf_counter()
    for m in maps:
        select_boxes([box_sums(m, b)], args.k, b)
    fast = (time.perf_counter() - t0) / args.maps

    m = maps[0]
    positions_per_row = W - b + 1
    t0 = time.perf_counter()
    for y in range(args.loop_rows):
        for x in range(positions_per_row):
            m[y:y + b, x:x + b].sum()
    per_position = (time.perf_counter() - t0) / (args.loop_rows * positions_per_row)
    loop = per_position * (H - b + 1) * positions_per_row  # aggregation only, no selection

    print(f"{args.maps} maps {H}x{W}, box {b}, {args.k} non-overlapping boxes per map")
    print(f"vectorised aggregation + selection: {1 / fast:.1f} maps/s ({fast * 1000:.0f} ms/map; target >= 20 maps/s)")
    print(f"per-box loop, aggregation only:     {1 / loop:.4f} maps/s ({loop:.1f} s/map, extrapolated from {args.loop_rows} rows)")
    print(f"speed-up: {loop / fast:.0f}x (target >= 50x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
