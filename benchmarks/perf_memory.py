"""Memory of one acquisition round at Cityscapes shape: streamed outputs vs the dense path.

One round (predict, select, answer) of ``entropy``, ``metabox_plus``,
``binary_lp`` and ``madbal`` through the campaign loop as a campaign runs it
(``setup_campaign``, round 0 buys the initial masks and trains, round 1 is
the measured round; the strategy in its own process), on a Cityscapes-shaped
synthetic pool: ``--n`` images (default 1000) of ``synthetic_street`` scenes
with ``--classes`` classes (default 19), two square scenes side by side per
image (the synthetic presets are square), at each of ``--sizes`` (default
256x512 and 512x1024). ``--unique`` distinct image pairs are generated and
repeated to fill the pool (the content does not change the memory). The
learner is a tiny U-Net (width 4, depth 1, 2 steps): the round's prediction
over the pool is the point, not the training.

Each campaign runs in a fresh process; this process samples the memory of
that process *and all its descendants* (the strategy processes' server and
the strategy process, forked from it) every ``--interval`` seconds from
``/proc/<pid>/status`` and ``/proc/<pid>/maps`` (Linux; no psutil):

* ``peak RSS``: the largest sum of VmRSS over the process tree during round 1
  (predict + select + answer, up to the moment the round's training
  starts), sampled (a peak shorter than the interval can be missed; it
  counts a page shared by two processes twice, and file pages of the dataset
  cache, which the kernel can drop, as resident);
* ``+memfd``: the same peak counting the sealed anonymous files the campaign
  sends the strategy process (each batch's outputs; the pool images once and
  the label state each round below ``ALHARNESS_LABELS_MMAP_BYTES``, from it on
  those two travel as nameless scratch files, page cache counted where
  touched: ``strategy_worker.send_shared``) by their size, once, whether or
  not a process has touched them (they hold RAM either way);
* ``RAM``: the largest sum of Pss_Anon + Pss_Shmem over the tree
  (``/proc/<pid>/smaps_rollup``): anonymous and shared memory, each page
  divided among the processes that map it (the strategy process shares its
  server's pages copy-on-write). Left out: file pages, i.e. shared libraries
  (``import torch`` alone is about 520 MB of RSS, one copy per node whatever
  the number of processes), the dataset cache, the memory-mapped label state
  and the scratch copies sent to the strategy process, which the kernel
  writes back and reclaims. What a campaign holds that nothing else can use;
* ``maxrss``: the campaign process's own high-water mark from
  ``getrusage(RUSAGE_SELF)`` (exact, no sampling; RUSAGE_CHILDREN would not
  see the strategy process: it is the server's child, not ours).

Also printed: the volume the dense path would have built, i.e. the sum over
the round's eval batches of the declared outputs the loop sent (probabilities
N*C*H*W*4 bytes, maturity maps, loss prediction, feature maps, features),
and the loop's own phase timings from the round's row (``predict_s``,
``select_s``, ``oracle_s``; with a streaming strategy the scoring runs inside
``predict_s``). Targets: peak RSS (and RAM) <= label state + model + 1 GiB, the same
with ``--classes-check`` classes (default 5, for ``entropy``) as with
``--classes``, and the dense volume >= 10x the peak at 512x1024.

Baseline in the same run: ``dense_entropy`` (entropy's selection from a dense
``ctx.probabilities``, the contract before streaming) under a raised
``dense_outputs_cap_gib``, and streamed ``entropy`` on the same pool, at the
smallest size with ``--dense-n`` images (default 100: the dense arrays of
1000 images at 256x512 would take 10 GB, with their copies more than this
machine has): the ratio of their peaks.

The dataset cache lives in a temporary ALHARNESS_CACHE, deleted at the end.

Usage:  python benchmarks/perf_memory.py [--n 1000] [--sizes 256x512,512x1024]
            [--strategies entropy,metabox_plus,binary_lp,madbal] [--no-baseline] [--no-classes-check]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

GIB = 2**30
STRATEGIES = ("entropy", "metabox_plus", "binary_lp", "madbal")
# Each strategy's budget metric as its paper benchmark has it (benchmarks/*.toml) and a round's budget in it.
BUDGETS = {"entropy": ("label_equivalents", 4.0), "dense_entropy": ("label_equivalents", 4.0),
           "metabox_plus": ("pixels", None), "binary_lp": ("label_equivalents", 4.0), "madbal": ("pixels", None)}
HERE = os.path.dirname(os.path.abspath(__file__))


# -- the pool: a registered dataset over arrays written once under the temporary cache ------------
def _paths(root: str, n: int, h: int, classes: int) -> dict[str, str]:
    d = os.path.join(root, f"pool-{n}-{h}x{2 * h}-{classes}c")
    return {k: os.path.join(d, f"{k}.npy") for k in ("images", "masks", "instances")} | {"dir": d}


def build_pool(root: str, n: int, h: int, classes: int, unique: int, n_test: int = 4) -> float:
    """Write the pool (n train images + n_test test images, h x 2h) as .npy files; seconds taken."""
    from alharness.registry import DATASETS

    p = _paths(root, n, h, classes)
    if os.path.exists(os.path.join(p["dir"], "done")):
        return 0.0
    t = time.perf_counter()
    os.makedirs(p["dir"], exist_ok=True)
    k = min(unique, n + n_test)
    ds = DATASETS.create("synthetic_street", n_train=2 * k, n_val=0, n_test=2, size=h, num_classes=classes, seed=0)
    src = ds.split("train")
    img = np.concatenate([src.images[0::2], src.images[1::2]], axis=2)
    msk = np.concatenate([src.masks[0::2], src.masks[1::2]], axis=2)
    ins = np.concatenate([src.instances[0::2], src.instances[1::2] + 1000 * (src.instances[1::2] > 0)], axis=2)
    total = n + n_test
    out = {name: np.lib.format.open_memmap(p[name], mode="w+", dtype=a.dtype, shape=(total, *a.shape[1:]))
           for name, a in (("images", img), ("masks", msk), ("instances", ins))}
    for start in range(0, total, k):
        stop = min(total, start + k)
        for name, a in (("images", img), ("masks", msk), ("instances", ins)):
            out[name][start:stop] = a[:stop - start]
    for m in out.values():
        m.flush()
    del out
    open(os.path.join(p["dir"], "done"), "w").close()
    return time.perf_counter() - t


def _register_pool() -> None:
    from alharness.datasets.base import SegmentationDataset
    from alharness.registry import DATASETS, register_dataset

    if "perf_memory_pool" in DATASETS.names():
        return

    @register_dataset("perf_memory_pool")
    def perf_memory_pool(root: str = "", n: int = 1000, height: int = 256, classes: int = 19,
                         n_test: int = 4) -> SegmentationDataset:
        """The pool build_pool wrote, memory-mapped read-only (as the dataset cache is)."""
        p = _paths(root, n, height, classes)
        arrays = {k: np.load(p[k], mmap_mode="r") for k in ("images", "masks", "instances")}
        return SegmentationDataset(name="perf_memory_pool", images=arrays["images"], masks=arrays["masks"],
                                   instances=arrays["instances"], class_names=tuple(f"c{i}" for i in range(classes)),
                                   splits={"train": np.arange(n), "val": np.arange(0),
                                           "test": np.arange(n, n + n_test)})


# -- the baseline strategy: entropy from dense whole-pool probabilities ----------------------------
# Registered at import: the strategy process imports this module (as perf_memory) to build it.
def _register_dense_entropy() -> None:
    from alharness.contract.strategy import Strategy
    from alharness.registry import STRATEGIES, register_strategy
    from alharness.toolkit import pixel_entropy
    from strategies.baselines import EntropyMasks

    if "dense_entropy" in STRATEGIES.names():
        return

    @register_strategy("dense_entropy")
    class DenseEntropy(EntropyMasks):
        """entropy's selection, read from ctx.probabilities (does not stream)."""

        score = Strategy.score

        def pool_scores(self, ctx):
            return {"entropy": pixel_entropy(ctx.probabilities).mean(axis=(1, 2))}


if __name__ == "perf_memory":
    _register_dense_entropy()


# -- one campaign, in a fresh process -----------------------------------------------------------------
def _nbytes(obj) -> int:
    return sum(v.nbytes for v in vars(obj).values() if isinstance(v, np.ndarray))


def child(cfg: dict) -> None:
    """Run rounds 0 and 1 of one campaign; print one JSON line (round 1's figures)."""
    import resource

    import torch

    torch.set_num_threads(cfg["threads"])
    _register_pool()
    _register_dense_entropy()
    from alharness.campaign.loop import run_round, setup_campaign
    from alharness.campaign.spec import CampaignSpec
    from alharness.execution.estimate import model_footprint
    from alharness.learner import LearnerConfig

    heads = ["maturity", "loss_prediction"] if cfg["strategy"] == "madbal" else []
    learner = LearnerConfig(steps=2, batch_size=2, model_params={"width": 4, "depth": 1}, heads=heads,
                            head_steps=1 if heads else 0, eval_batch_size=cfg["eval_batch_size"])
    metric, budget = BUDGETS[cfg["strategy"]]
    h, w = cfg["height"], 2 * cfg["height"]
    if budget is None:  # pixels: the initial masks and about 20 pixels an image in round 1
        budget = 2 * h * w + 20.0 * cfg["n"]
    spec = CampaignSpec(dataset="perf_memory_pool",
                        dataset_params={"root": cfg["root"], "n": cfg["n"], "height": h, "classes": cfg["classes"]},
                        strategy=cfg["strategy"], budget_metric=metric, budget=budget, rounds=1, seed=0,
                        initial_masks=2, learner=learner, dense_outputs_cap_gib=cfg["cap_gib"])
    setup, state = setup_campaign(spec)
    dense = {"bytes": 0, "by_need": {}}
    score = state.strategy.score

    def counted(start, stop, outputs, deadline=None):  # the volume a dense context would have held
        for k, v in outputs.items():
            dense["by_need"][k] = dense["by_need"].get(k, 0) + int(np.asarray(v).nbytes)
        return score(start, stop, outputs, deadline)

    state.strategy.score = counted
    try:
        run_round(setup, state, 0)
        model = state.learner.services.model
        model_bytes = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
        # What the dry run expects one eval batch's forward pass to hold at its peak (the round's prediction).
        eval_peak = model_footprint(spec.learner, setup.pool_view.num_classes, h, w, setup.model_needs).eval_peak_bytes
        fit = state.learner.fit

        def answered_then_fit(*args, **kwargs):  # the round's training starts once the oracle has answered
            _mark(cfg["marks"], "answered")
            return fit(*args, **kwargs)

        state.learner.fit = answered_then_fit
        _mark(cfg["marks"], "begin")
        t = time.perf_counter()
        row = run_round(setup, state, 1)
        _mark(cfg["marks"], "end")
        round_s = time.perf_counter() - t
    finally:
        state.strategy.close()
    if not state.strategy.streams:
        c = setup.pool_view.num_classes
        dense["by_need"]["probabilities"] = len(setup.pool_view) * c * h * w * 4
    dense["bytes"] = sum(dense["by_need"].values())
    print(json.dumps({"row": {k: row[k] for k in ("predict_s", "select_s", "oracle_s", "train_s", "eval_s", "round_s",
                                                 "batch_size")},
                      "label_bytes": _nbytes(state.labels), "labels_mapped": bool(state.labels.memory_mapped),
                      "model_bytes": model_bytes, "eval_peak_bytes": eval_peak, "dense": dense, "streams": bool(state.strategy.streams),
                      "images_bytes": int(setup.pool_view.images.nbytes), "round_s": round_s,
                      "maxrss_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def _mark(path: str, what: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"{what} {time.monotonic()}\n")


# -- sampling the process tree ---------------------------------------------------------------------------
def _tree(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    todo += [int(x) for x in fh.read().split()]
        except OSError:
            pass
    return pids


def _sample(root: int) -> tuple[int, int, int, int]:
    """(sum of VmRSS over the tree, sum of RssAnon + RssFile over the tree + distinct memfds' sizes, sum of Pss,
    sum of Pss_Anon + Pss_Shmem)."""
    rss = anon_file = pss = ram = 0
    memfds: dict[str, int] = {}
    for pid in _tree(root):
        try:
            with open(f"/proc/{pid}/status") as fh:
                st = {ln.split(":")[0]: ln.split()[1] for ln in fh if ln.startswith(("VmRSS", "RssAnon", "RssFile"))}
            with open(f"/proc/{pid}/maps") as fh:
                for ln in fh:
                    if "memfd:" in ln:
                        parts = ln.split()
                        lo, hi = (int(x, 16) for x in parts[0].split("-"))
                        memfds[parts[4]] = max(memfds.get(parts[4], 0), hi - lo)
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                roll = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("Pss")}
            pss += roll.get("Pss", 0)
            ram += roll.get("Pss_Anon", 0) + roll.get("Pss_Shmem", 0)
        except (OSError, IndexError):
            continue
        rss += int(st.get("VmRSS", 0)) * 1024
        anon_file += (int(st.get("RssAnon", 0)) + int(st.get("RssFile", 0))) * 1024
    return rss, anon_file + sum(memfds.values()), pss, ram


def measure(cfg: dict, interval: float) -> dict:
    """Run one campaign in a fresh process; its round 1 figures and the tree's peaks within round 1."""
    cfg = dict(cfg, marks=tempfile.mktemp(prefix="perf-memory-marks-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", "import sys, json, perf_memory; perf_memory.child(json.loads(sys.argv[1]))",
                             json.dumps(cfg)], stdout=subprocess.PIPE, env=env, text=True)
    samples: list[tuple[float, int, int, int, int]] = []
    done = threading.Event()

    def sampler():
        while not done.is_set():
            samples.append((time.monotonic(), *_sample(proc.pid)))
            done.wait(interval)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    out, _ = proc.communicate()
    done.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"campaign {cfg['strategy']} {cfg['height']}x{2 * cfg['height']} failed (exit {proc.returncode})")
    res = json.loads(out.strip().splitlines()[-1])
    with open(cfg["marks"]) as fh:
        marks = {a: float(b) for a, b in (ln.split() for ln in fh)}
    os.unlink(cfg["marks"])
    # The window: predict, select, answer (up to round 1's training, which is not the acquisition's memory).
    inside = [s for s in samples if marks["begin"] <= s[0] <= marks.get("answered", marks["end"])] or samples
    before = [s for s in samples if s[0] <= marks["begin"]][-1:] or samples[:1]
    res["peak_rss"] = max(s[1] for s in inside)
    res["peak_memfd"] = max(s[2] for s in inside)
    res["peak_pss"] = max(s[3] for s in inside)
    res["peak_ram"] = max(s[4] for s in inside)
    res["ram_before"] = before[0][4]
    res["rss_before"] = before[0][1]
    res["n_samples"] = len(inside)
    return res


def report(label: str, res: dict) -> None:
    mib = 2**20
    target = res["label_bytes"] + res["model_bytes"] + GIB
    r = res["row"]
    grown = res["peak_rss"] - res["rss_before"]
    met = lambda v: "yes" if v <= target else "NO"  # noqa: E731
    print(f"{label:<34} {res['peak_rss'] / mib:8.0f} {grown / mib:7.0f} {res['peak_pss'] / mib:7.0f} "
          f"{res['peak_ram'] / mib:7.0f} {res['ram_before'] / mib:7.0f} {res['peak_memfd'] / mib:8.0f} {res['maxrss_self'] / mib:7.0f} "
          f"{target / mib:8.0f} {met(res['peak_rss']) + '/' + met(grown) + '/' + met(res['peak_ram']):>11} "
          f"{res['dense']['bytes'] / mib:9.0f} {res['dense']['bytes'] / res['peak_rss']:7.1f} "
          f"{res['dense']['bytes'] / res['peak_ram']:7.1f} "
          f"{r['predict_s']:8.1f} {r['select_s']:7.1f} {r['oracle_s']:7.1f}", flush=True)


HEADER = (f"{'strategy, size, classes':<34} {'peak RSS':>8} {'growth':>7} {'PSS':>7} {'RAM':>7} {'RAM0':>7} {'+memfd':>8} "
          f"{'maxrss':>7} {'target':>8} {'met':>11} {'dense vol':>9} {'dense/pk':>7} {'dns/RAM':>7} {'predict':>8} "
          f"{'select':>7} {'answer':>7}\n"
          f"{'':<34} {'MiB':>8} {'MiB':>7} {'MiB':>7} {'MiB':>7} {'MiB':>7} {'MiB':>8} {'MiB':>7} {'MiB':>8} {'pk/gr/RAM':>11} "
          f"{'MiB':>9} {'x':>7} {'x':>7} {'s':>8} {'s':>7} {'s':>7}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="pool images")
    ap.add_argument("--sizes", default="256x512,512x1024", help="HxW list (W = 2H)")
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--classes-check", type=int, default=5, help="classes of the second entropy run, at the smallest size (0: none)")
    ap.add_argument("--dense-n", type=int, default=100, help="pool images of the dense baseline (0: none)")
    ap.add_argument("--unique", type=int, default=24, help="distinct images, repeated to fill the pool")
    ap.add_argument("--eval-batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between memory samples")
    args = ap.parse_args()
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    for h, w in sizes:
        if w != 2 * h:
            raise SystemExit(f"--sizes: {h}x{w}: the width must be twice the height (two square scenes side by side)")
    root = tempfile.mkdtemp(prefix="perf-memory-")
    os.environ["ALHARNESS_CACHE"] = os.path.join(root, "cache")
    os.environ.setdefault("ALHARNESS_LABELS_MMAP_BYTES", str(256 * 2**20))
    base = {"root": root, "threads": args.threads, "eval_batch_size": args.eval_batch_size, "cap_gib": 2.0}
    print(f"pool: synthetic_street, two {sizes[0][0]}-pixel scenes side by side per image, {args.unique} distinct "
          f"images repeated; tiny_unet width 4 depth 1, 2 steps; eval_batch_size {args.eval_batch_size}; "
          f"{args.threads} torch threads; samples every {args.interval:g} s over the campaign's process tree")
    print("peak RSS: sum of VmRSS over the tree in round 1; growth: that peak less the tree's RSS just before round 1 "
          "(three interpreters with torch); PSS: sum of Pss (shared pages divided); RAM: sum of Pss_Anon + Pss_Shmem, the memory no other process shares and the kernel cannot reclaim (shared-library and dataset-cache pages excluded: one copy per node; memory-mapped label state and scratch copies excluded: written back, reclaimable); RAM0: RAM just before round 1 (the interpreters, estimate.PROCESS_BYTES); +memfd: anon + file RSS + the memfds sent to the "
          "strategy process, once each; maxrss: the campaign process's getrusage(RUSAGE_SELF) high-water mark "
          "(whole run); target: label state + model + 1 GiB; dense vol: the declared outputs of the whole pool")
    try:
        results = {}
        print(HEADER, flush=True)
        for h, w in sizes:
            for c in sorted({args.classes, args.classes_check} - {0}, reverse=True):
                t = build_pool(root, args.n, h, c, args.unique)
                if t:
                    print(f"  (pool {args.n}x{h}x{w}, {c} classes written in {t:.0f} s)", flush=True)
            for name in args.strategies.split(","):
                res = measure({**base, "strategy": name, "n": args.n, "height": h, "classes": args.classes},
                              args.interval)
                results[(name, h, args.classes)] = res
                report(f"{name} {h}x{w} C={args.classes} N={args.n}", res)
            if args.classes_check and (h, w) == sizes[0]:  # once, at the smallest size
                res = measure({**base, "strategy": "entropy", "n": args.n, "height": h, "classes": args.classes_check},
                              args.interval)
                results[("entropy", h, args.classes_check)] = res
                report(f"entropy {h}x{w} C={args.classes_check} N={args.n}", res)
                if ("entropy", h, args.classes) in results:
                    a, b = results[("entropy", h, args.classes)], res
                    print(f"  classes: entropy's peak RSS at C={args.classes} / C={args.classes_check} = "
                          f"{a['peak_rss'] / b['peak_rss']:.2f} (dense volume {a['dense']['bytes'] / b['dense']['bytes']:.1f}x)")
        if args.dense_n:
            h, w = sizes[0]
            build_pool(root, args.dense_n, h, args.classes, args.unique)
            need = args.dense_n * args.classes * h * w * 4 / GIB
            dres = measure({**base, "strategy": "dense_entropy", "n": args.dense_n, "height": h,
                            "classes": args.classes, "cap_gib": 2 * need + 1}, args.interval)
            sres = measure({**base, "strategy": "entropy", "n": args.dense_n, "height": h, "classes": args.classes},
                           args.interval)
            print(f"baseline, N={args.dense_n} at {h}x{w}, C={args.classes}:")
            report(f"dense_entropy (cap raised)", dres)
            report(f"entropy (streamed)", sres)
            print(f"  dense / streamed peak RSS = {dres['peak_rss'] / sres['peak_rss']:.1f}x "
                  f"(+memfd {dres['peak_memfd'] / sres['peak_memfd']:.1f}x); phases dense/streamed: predict "
                  f"{dres['row']['predict_s'] / sres['row']['predict_s']:.2f}x, select "
                  f"{dres['row']['select_s'] / max(sres['row']['select_s'], 1e-9):.1f}x")
        big = [(k, r) for k, r in results.items() if k[1] == max(h for h, _ in sizes) and k[2] == args.classes]
        for (name, h, c), r in big:
            ratio = r["dense"]["bytes"] / r["peak_rss"]
            grown = r["dense"]["bytes"] / max(1, r["peak_rss"] - r["rss_before"])
            ram = r["dense"]["bytes"] / r["peak_ram"]
            print(f"target dense volume >= 10x peak at {h}x{2 * h}: {name} {ratio:.1f}x the peak RSS "
                  f"({'met' if ratio >= 10 else 'NOT met'}), {grown:.1f}x its growth, {ram:.1f}x the peak RAM "
                  f"({'met' if ram >= 10 else 'NOT met'}); pool images {r['images_bytes'] / 2**20:.0f} MiB, "
                  f"label state {r['label_bytes'] / 2**20:.0f} MiB ({'memory-mapped' if r['labels_mapped'] else 'in RAM'}), "
                  f"model {r['model_bytes'] / 2**20:.2f} MiB (one eval batch's forward pass at its peak, the dry "
                  f"run's estimate: {r.get('eval_peak_bytes', 0) / 2**20:.0f} MiB), dense by output: "
                  + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in sorted(r["dense"]["by_need"].items())))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
