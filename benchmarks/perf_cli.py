"""Start-up time of the ``alharness`` command: ``list`` and ``leaderboard DIR``.

Each command runs in a fresh interpreter, ``--repeats`` times; the median
wall time is printed against its target on this 2-core machine
(``alharness list`` <= 1 s, ``alharness leaderboard DIR`` <= 1.5 s) and as a
ratio to two baselines timed in the same run: ``python -c pass`` (the
interpreter alone) and ``python -c "import torch"`` (what importing the
strategies used to cost, and more). For each command it also reports which
heavy modules the command imported (a ``sys.modules`` check in a separate
run of the same command).

``alharness list`` takes its names and descriptions from a cached listing
when no plugin changed (``alharness.registry``): the first listing after a
change imports every plugin and is timed separately ("cold"), with a cache
of its own in a temporary folder, not the user's.

    python benchmarks/perf_cli.py [--repeats 7] [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "scipy", "sklearn", "gpytorch", "cv2", "highspy", "skimage", "matplotlib", "ray", "strategies")
TARGETS = {"list": 1.0, "leaderboard": 1.5}

# The command's main() with stdout swallowed, then the heavy modules it left in sys.modules.
PROBE = ("import contextlib, io, json, sys\n"
         "from alharness.cli import main\n"
         "with contextlib.redirect_stdout(io.StringIO()):\n"
         "    main(sys.argv[1:])\n"
         f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n")


def alharness_cmd() -> list[str]:
    script = Path(sys.executable).with_name("alharness")
    return [str(script)] if script.exists() else [sys.executable, "-m", "alharness.cli"]


def wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def median_wall(cmd: list[str], env: dict[str, str], repeats: int) -> float:
    return statistics.median(wall(cmd, env) for _ in range(repeats))


def imported(args: list[str], env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def tiny_results(where: Path) -> Path:
    """Two one-round campaigns on 16-px images, run in process (not timed)."""
    from alharness.execution.backends.local import LocalBackend
    from alharness.execution.benchmark import parse_benchmark
    from alharness.execution.scheduler import run_benchmark

    doc = {"benchmark": {"name": "perf_cli", "seeds": [0], "budget": 4, "budget_metric": "label_equivalents",
                         "rounds": 1, "initial_masks": 1},
           "datasets": [{"name": "synthetic_shapes", "n_train": 4, "n_val": 0, "n_test": 2, "size": 16,
                         "num_classes": 2, "seed": 0}],
           "learner": {"steps": 1, "batch_size": 2, "model_params": {"width": 2, "depth": 1}},
           "strategies": [{"name": "random"}, {"name": "entropy"}]}
    summary = run_benchmark(parse_benchmark(doc), where, backend=LocalBackend(), progress=False)
    if summary.failed:
        raise SystemExit(f"campaign failures: {summary.failed}")
    return where


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--results", help="a results folder for `leaderboard` (default: two tiny campaigns, made here)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="alharness-perf-cli-"))
    env = {**os.environ, "ALHARNESS_CACHE": str(tmp / "cache")}  # a plugin listing cache of this run's own
    results = args.results or str(tiny_results(tmp / "results"))
    cli = alharness_cmd()
    py = sys.executable
    bare = median_wall([py, "-c", "pass"], env, args.repeats)
    torch = median_wall([py, "-c", "import torch"], env, args.repeats)
    print(f"baselines: python -c pass median {bare:.3f} s, python -c 'import torch' median {torch:.3f} s "
          f"over {args.repeats} runs", flush=True)

    cold = wall([*cli, "list"], env)  # the first listing: imports every plugin, caches the listing
    print(f"alharness list, cold (no cached listing: every plugin imported, then cached): {cold:.2f} s", flush=True)
    ok = True
    for what, cmd_args in (("list", ["list"]), ("leaderboard", ["leaderboard", results])):
        t = median_wall([*cli, *cmd_args], env, args.repeats)
        target = TARGETS[what]
        met = t <= target
        ok &= met
        heavy = imported(cmd_args, env)
        print(f"alharness {what}: median {t:.3f} s over {args.repeats} runs (target <= {target:g} s: "
              f"{'met' if met else 'NOT met'}); {t / bare:.1f}x python -c pass, {t / torch:.2f}x import torch; "
              f"heavy modules imported: {', '.join(heavy) or 'none'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
