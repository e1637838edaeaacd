"""Table 2 analogue of the mask-guided paper: how well the IoU head predicts the IoU score.

    python benchmarks/mask_guided_iou_head.py --out results/reference/mask_guided/iou_head
        [--n 4,8,16,32] [--seeds 0,1,2] [--benchmarks benchmarks/mask_guided_nuclei.toml,...]

"Mask-guided sample selection for semi-supervised instance segmentation",
§5 and Table 2: the annotation network is trained on N randomly chosen
strongly annotated images, its IoU branch on the frozen network, and the
predicted IoU scores of the other images are compared with the true ones by
their mean absolute error. The paper reports the MAE falling as N grows, and
regressing √IoU as the best variant (its figures are not quoted here).

Here, per benchmark file (dataset and ``[learner]`` table of the mask-guided
β sweeps: tiny U-Net, 120 steps, IoU head 40 steps), per N and seed: N random
pool images get their full masks, the learner is fitted, and on the remaining
pool images the predicted image scores (the ``iou`` service: the mean of the
per-object predictions, eq. (2)) are compared with the true scores, eq. (2)
over the same predicted objects with their true IoUs
(``alharness.metrics.predicted_iou_score``, with the dataset's instances as
ground-truth objects where it has them): MAE, Pearson and Spearman
correlation. Spearman against the oracle's score (``iou_score``, the mean
over the ground-truth objects) is printed too.

Baseline "per image": the former head, one fully connected layer on the
globally pooled decoder maps giving the image's score directly, trained on
the same frozen network, images and target (the true image score), with the
same L1 on √IoU, start (every image at the mean target), optimiser,
learning rate and steps (no flips; features computed once).

Writes ``iou_head.md`` and ``iou_head.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from alharness.annotation.labels import LabelState
from alharness.execution.benchmark import load_benchmark
from alharness.learner import Learner, losses
from alharness.learner.heads import IoUHead
from alharness.learner.services import pool_outputs
from alharness.metrics import iou_scores, predicted_iou_score
from alharness.registry import DATASETS
from alharness.toolkit.model_outputs import to_tensor

BENCHMARKS = ("benchmarks/mask_guided_nuclei.toml", "benchmarks/mask_guided_synthetic.toml")


def _corr(fn, a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan  # undefined for a constant
    return float(fn(a, b)[0])


def _pooled_decoder(learner: Learner, images: np.ndarray) -> torch.Tensor:
    """Globally average-pooled decoder maps, concatenated (the former head's input)."""
    out = []
    net = learner.model.eval()
    with torch.no_grad():
        for start in range(0, len(images), learner.config.eval_batch_size):
            parts = net.parts(to_tensor(images[start : start + learner.config.eval_batch_size], learner.device))
            out.append(torch.cat([d.float().mean(dim=(2, 3)) for d in parts.decoder], dim=1).cpu())
    return torch.cat(out)


def per_image_baseline(learner: Learner, train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor,
                       seed: int) -> np.ndarray:
    """The former per-image head trained on (pooled features, true image score); its predictions on test_x."""
    cfg = learner.config
    torch.manual_seed(seed)
    head = IoUHead((train_x.shape[1],))
    head.start_at(float(np.sqrt(train_y).mean()))  # started as the learner starts its head: at the mean target
    fc = head.fc
    opt = torch.optim.AdamW(fc.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(cfg.head_steps, 2), pct_start=0.1)
    y = torch.from_numpy(train_y).float()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(cfg.head_steps):
        idx = torch.randint(len(y), (min(cfg.batch_size, len(y)),), generator=gen)
        pred = torch.sigmoid(fc(train_x[idx])).squeeze(1) ** 2
        loss = losses.iou_regression_loss(pred, y[idx], torch.ones(len(idx)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return (torch.sigmoid(fc(test_x)).squeeze(1) ** 2).numpy()


def run_one(spec, pool, num_classes: int, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool.images))
    train, rest = np.sort(order[:n]), np.sort(order[n:])
    state = LabelState(len(pool.images), pool.images.shape[1:3], num_classes, pool.ignore_index)
    for i in train:
        state.set_full_mask(int(i), pool.masks[i])
    learner = Learner(spec.learner, num_classes, pool.ignore_index)
    learner.fit(pool.images, state, seed)
    inst = pool.instances

    def truth(rows: np.ndarray, pred: np.ndarray, fn) -> np.ndarray:
        return np.array([fn(p, pool.masks[i], pool.ignore_index, None if inst is None else inst[i])
                         for p, i in zip(pred, rows)])

    pred_rest = learner.predict(pool.images[rest])
    true = truth(rest, pred_rest, predicted_iou_score)
    oracle = iou_scores(pred_rest, pool.masks[rest], pool.ignore_index, None if inst is None else inst[rest])
    head = pool_outputs(learner, pool.images[rest], {"iou"})["iou"].astype(np.float64)
    # Baseline target: the true image score of the training images (as the per-object head sees them).
    train_true = truth(train, learner.predict(pool.images[train]), predicted_iou_score)
    base = per_image_baseline(learner, _pooled_decoder(learner, pool.images[train]), train_true,
                              _pooled_decoder(learner, pool.images[rest]), seed).astype(np.float64)
    row = {"n": n, "seed": seed, "images": len(rest), "mean_true": float(true.mean())}
    for name, p in (("object", head), ("image", base)):
        row[f"{name}_mae"] = float(np.abs(p - true).mean())
        row[f"{name}_pearson"] = _corr(stats.pearsonr, p, true)
        row[f"{name}_spearman"] = _corr(stats.spearmanr, p, true)
        row[f"{name}_spearman_oracle"] = _corr(stats.spearmanr, p, oracle)
    return row


def _fmt(values: list[float]) -> str:
    v = np.array(values, float)
    v = v[np.isfinite(v)]
    return "–" if v.size == 0 else f"{v.mean():.3f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.3f}"


def table(dataset: str, rows: list[dict], ns: list[int]) -> str:
    cols = ["object_mae", "object_pearson", "object_spearman", "image_mae", "image_pearson", "image_spearman",
            "object_spearman_oracle", "image_spearman_oracle"]
    out = [f"### {dataset}: predicted vs true IoU score (eq. 2) on the pool images not annotated, mean ± std over seeds",
           "",
           "| N | images | mean true score | per-object MAE | Pearson | Spearman | per-image MAE | Pearson | Spearman "
           "| Spearman vs oracle score (per-object / per-image) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for n in ns:
        mine = [r for r in rows if r["n"] == n]
        cells = {c: _fmt([r[c] for r in mine]) for c in cols}
        out.append(f"| {n} | {mine[0]['images']} | {_fmt([r['mean_true'] for r in mine])} | "
                   + " | ".join(cells[c] for c in cols[:6])
                   + f" | {cells['object_spearman_oracle']} / {cells['image_spearman_oracle']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", default="4,8,16,32")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    ap.add_argument("--head-steps", type=int, default=None, help="override the benchmarks' learner.head_steps")
    args = ap.parse_args(argv)
    ns = [int(v) for v in args.n.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    torch.set_num_threads(1)
    result = {"n": ns, "seeds": seeds, "datasets": {}}
    md = ["# IoU head: predicted vs true IoU score (mask-guided Table 2 analogue)", "",
          "Generated by `benchmarks/mask_guided_iou_head.py` (see its docstring for the protocol); "
          "per-object = the learner's IoU head (eq. 2 mean of per-object predictions), "
          "per-image = the former head (one score from globally pooled decoder maps).", ""]
    t0 = time.perf_counter()
    for path in args.benchmarks.split(","):
        spec = load_benchmark(path, open_datasets=False).specs[0]
        if args.head_steps is not None:
            spec = dataclasses.replace(spec, learner=dataclasses.replace(spec.learner, head_steps=args.head_steps))
        ds = DATASETS.create(spec.dataset, **spec.dataset_params)
        pool = ds.split("train")
        rows = []
        for n in ns:
            for seed in seeds:
                rows.append(run_one(spec, pool, ds.num_classes, n, seed))
                r = rows[-1]
                print(f"{spec.dataset} N={n} seed={seed}: per-object MAE {r['object_mae']:.3f}, "
                      f"per-image MAE {r['image_mae']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        result["datasets"][spec.dataset] = {"benchmark": path, "learner": {
            k: getattr(spec.learner, k) for k in ("model", "steps", "batch_size", "lr", "head_steps")},
            "model_params": dict(spec.learner.model_params), "pool_images": len(pool.images), "rows": rows}
        md += [table(spec.dataset, rows, ns), ""]
    md.append(f"{len(seeds)} seeds; {time.perf_counter() - t0:.0f} s on the shared 2-core machine.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "iou_head.md").write_text("\n".join(md) + "\n")
    (out / "iou_head.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
