"""Learner training throughput against a plain hand-written torch loop.

Both train the same registered model class, on the same images and masks,
with the same batch size, optimizer (AdamW + one-cycle schedule) and flip
augmentation, in the same process; runs alternate so that load from other
processes hits both alike. Each timed run includes building the model and
moving the data to tensors, as a campaign round does. Prints images/s of
each (median over repeats) and the ratio learner / plain (target >= 0.9).

Usage:  python benchmarks/perf_learner.py [--steps 40] [--size 64] [--batch 8] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from torch.nn import functional as F

from alharness.annotation.labels import LabelState
from alharness.learner import Learner, LearnerConfig
from alharness.registry import DATASETS, MODELS


def plain_train(images: np.ndarray, masks: np.ndarray, num_classes: int, *, model: str, model_params: dict,
                steps: int, batch_size: int, lr: float, weight_decay: float, seed: int, ignore_index: int = 255,
                flip: bool = True, device: str = "cpu") -> torch.nn.Module:
    """What a person would write: random batches with flips, cross-entropy, AdamW, one-cycle LR (fp32)."""
    torch.manual_seed(seed)
    net = MODELS.create(model, num_classes=num_classes, in_channels=3, **model_params).to(device)
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(np.array(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)
    y_all = torch.from_numpy(masks.astype(np.int64)).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    net.train()
    for _ in range(steps):
        idx = torch.randint(len(x_all), (min(batch_size, len(x_all)),), generator=gen).to(device)
        x, y = x_all[idx], y_all[idx]
        if flip:
            f = (torch.rand(len(idx), generator=gen) < 0.5).to(device)
            x = torch.where(f[:, None, None, None], x.flip(-1), x)
            y = torch.where(f[:, None, None], y.flip(-1), y)
        loss = F.cross_entropy(net(x)["logits"], y, ignore_index=ignore_index)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny_unet")
    ap.add_argument("--width", type=int, default=16, help="tiny_unet width")
    ap.add_argument("--depth", type=int, default=2, help="tiny_unet depth")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 keeps timings stable on a shared machine)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda; on cuda the learner also runs with AMP (bf16, channels-last)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    ds = DATASETS.create("synthetic_shapes", n_train=args.images, n_val=0, n_test=1, size=args.size, num_classes=5, seed=0)
    pool = ds.split("train")
    state = LabelState(len(pool.images), pool.images.shape[1:3], ds.num_classes, ds.ignore_index)
    for i, m in enumerate(pool.masks):
        state.set_full_mask(i, m)
    params = {"width": args.width, "depth": args.depth} if args.model == "tiny_unet" else {}
    cfg = LearnerConfig(model=args.model, model_params=params, steps=args.steps, batch_size=args.batch, lr=5e-3,
                        device=args.device, amp=False)
    cfg_amp = LearnerConfig(model=args.model, model_params=params, steps=args.steps, batch_size=args.batch, lr=5e-3,
                            device=args.device, amp=True)

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def run_learner() -> None:
        Learner(cfg, ds.num_classes, ds.ignore_index).fit(pool.images, state, seed=0)
        sync()

    def run_learner_amp() -> None:
        Learner(cfg_amp, ds.num_classes, ds.ignore_index).fit(pool.images, state, seed=0)
        sync()

    def run_plain() -> None:
        plain_train(pool.images, pool.masks, ds.num_classes, model=args.model, model_params=params, steps=args.steps,
                    batch_size=args.batch, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=0, device=args.device)
        sync()

    print(f"{args.model} {params}, {args.images} images {args.size}², batch {args.batch}, {args.steps} steps per run, "
          f"{args.repeats} alternating repeats, {torch.get_num_threads()} thread(s)", flush=True)
    runs = [("learner", run_learner), ("plain", run_plain)]
    if args.device.startswith("cuda"):
        runs.append(("learner_amp", run_learner_amp))
    for _, fn in runs:
        fn()  # warm-up: allocator, oneDNN / cuDNN kernels
    rates: dict[str, list[float]] = {name: [] for name, _ in runs}
    for _ in range(args.repeats):
        for name, fn in runs:
            t0 = time.perf_counter()
            fn()
            rates[name].append(args.steps * args.batch / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["learner"] / med["plain"]
    print(f"learner: {med['learner']:8.1f} images/s   (runs: {', '.join(f'{r:.1f}' for r in rates['learner'])})")
    print(f"plain:   {med['plain']:8.1f} images/s   (runs: {', '.join(f'{r:.1f}' for r in rates['plain'])})")
    if "learner_amp" in med:
        print(f"learner with AMP (bf16, channels-last): {med['learner_amp']:8.1f} images/s "
              f"({med['learner_amp'] / med['plain']:.2f}x the plain fp32 loop)")
    print(f"ratio learner/plain: {ratio:.3f}  (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
