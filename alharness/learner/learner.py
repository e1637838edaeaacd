"""Train a segmentation model on what a campaign bought, and predict with it.

One ``fit`` runs up to three phases, each with its own AdamW + one-cycle
schedule:

1. ``labels_then_masks`` only: image-level labels alone (full-or-weak §4.3,
   "first train … with the weakly-annotated data until convergence and then
   with the segmentation data"; ``weak_steps = "auto"`` runs it until the
   training loss plateaus, as ``steps = "auto"`` does).
2. The segmentation phase: pixel labels (full, partial, pseudo) with the
   pixel loss, plus, unless phase 1 ran, image labels / yes-no answers with
   the image-label loss scaled by ``weak_weight``. Optional early stopping
   on a validation split the caller passes.
3. Auxiliary heads (IoU, loss prediction, maturity; the classifier when it
   is not the image-label loss) with the segmentation network frozen
   (mask-guided §5: "the network weights are frozen and only the additional
   IoU branch is trained"; MADBAL training phase II).

Randomness comes from the ``seed`` argument only (model init and batch
order), so a fit is reproducible on CPU.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.nn import functional as F

from alharness.errors import ConfigError
from alharness.annotation.labels import UNKNOWN, LabelState
from alharness.learner.config import LearnerConfig, resolve_device
from alharness.learner.heads import FROZEN_PHASE_HEADS, Network, object_iou_targets
from alharness.learner import losses
from alharness.learner.targets import TrainingSet, training_set
from alharness.learner.weights import load_matching, read_state_dict
from alharness.toolkit.model_outputs import network_input, to_tensor
from alharness.metrics import confusion_matrix, mean_iou
from alharness.registry import MODELS

LossFn = Callable[[dict[str, torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor]


class _Batches:
    """Training tensors of one phase on the device, and seeded batch sampling.

    The images stay (N, H, W, 3) uint8 and the pixel labels (N, H, W) uint8, as bought: each batch is
    converted when drawn (``batch``), to the same values as converting the whole set up front. A float32
    image set plus int64 targets is 20 bytes a pixel: 10 GB for 1000 sparsely labelled 512×1024 images."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor, batch_size: int, epochs: int,
                 gen: torch.Generator):
        self.x, self.y, self.labels = x, y, labels
        self.n = len(x)
        self.batch_size = min(batch_size, self.n)
        self.epochs = epochs
        self.gen = gen
        self.strata: list[torch.Tensor] = []

    def stratify(self, *groups: np.ndarray) -> "_Batches":
        """Draw every step as one batch from each non-empty group (positions in
        this phase's rows), each forwarded on its own. Joint training then
        keeps a full batch of pixel-labelled images per step however many
        weakly labelled images there are, and no batch-norm statistics mix
        the two: with mixed batches, even a zero-weight image-label loss cut
        test mIoU from 0.68 to 0.46 on synthetic scenes."""
        self.strata = [torch.from_numpy(np.asarray(g, np.int64)) for g in groups if len(g)]
        return self

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows ``idx`` as the network's input (B, 3, H, W) float32, int64 targets and image labels."""
        return network_input(self.x[idx]), self.y[idx].long(), self.labels[idx]

    def steps(self, steps: int | str) -> int | str:
        """Steps of this phase (``"auto"`` stays: ``Learner._run`` decides when to stop)."""
        return self.epochs * math.ceil(self.n / self.batch_size) if self.epochs > 0 else steps

    def indices(self, steps: int) -> Iterator[list[torch.Tensor]]:
        """Per step, the index batches to forward (one per stratum, else one)."""
        if self.epochs == 0 and self.strata:
            for _ in range(steps):
                yield [g[torch.randint(len(g), (min(self.batch_size, len(g)),), generator=self.gen)] for g in self.strata]
            return
        if self.epochs == 0:  # with replacement, one batch per step (the first learner's sampling)
            for _ in range(steps):
                yield [torch.randint(self.n, (self.batch_size,), generator=self.gen)]
            return
        for _ in range(self.epochs):  # every image once per epoch
            yield from ([part] for part in torch.randperm(self.n, generator=self.gen).split(self.batch_size))


class Learner:
    """Builds the model (from scratch each ``fit`` unless ``warm_start``), trains and predicts."""

    def __init__(self, config: LearnerConfig, num_classes: int, ignore_index: int):
        self.config = config
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = resolve_device(config.device)
        self.model: Network | None = None
        self._weights: dict[str, torch.Tensor] | None = None

    # -- building -------------------------------------------------------------
    def _autocast(self):
        if self.device.type == "cuda" and self.config.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _build(self, seed: int) -> tuple[Network, dict[str, int]]:
        cfg = self.config
        torch.manual_seed(seed)
        base = MODELS.create(cfg.model, num_classes=self.num_classes, in_channels=3, **cfg.model_params)
        net = Network(base, self.num_classes, cfg.model_heads, model_name=cfg.model,
                      weight_prediction=cfg.weight_prediction)
        info: dict[str, int] = {}
        if cfg.weights_path:
            if self._weights is None:  # read once; every round starts from the same weights
                self._weights = read_state_dict(cfg.weights_path)
            info = load_matching(net, self._weights, cfg.weights_path)
        net = net.to(self.device)
        if self.device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        return net, info

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x

    @property
    def services(self) -> "Learner":
        """The network that strategies' needs are computed from (a pipeline may use another)."""
        return self

    def extra_networks(self) -> dict[str, "Learner"]:
        """Further networks the campaign scores on the test split (``<name>_miou``); none here."""
        return {}

    # -- training ---------------------------------------------------------------
    def fit(self, images: np.ndarray, state: LabelState, seed: int, *,
            val: tuple[np.ndarray, np.ndarray] | None = None,
            pseudo: tuple[np.ndarray, np.ndarray | None] | None = None) -> dict[str, Any]:
        """Train on every pool image the label state (and ``pseudo``) says something about.

        ``val``: (images, masks) of a declared validation split, for early
        stopping (``patience``) and the reported ``val_miou``; never the test
        split. ``pseudo``: (pixels (N, H, W) uint8, confidence (N, H, W) or
        None) from another network for the pool; bought labels take
        precedence, and pixels below ``pseudo_label_threshold`` are ignored.
        Returns statistics (``train_steps``, ``final_loss``, ...).
        """
        cfg = self.config
        if cfg.patience > 0 and val is None:
            raise ConfigError("learner.patience > 0 (early stopping) needs a validation split, and none was passed")
        stats: dict[str, Any] = {}
        if not (cfg.warm_start and self.model is not None):
            self.model, info = self._build(seed)
            stats.update(info)
        net = self.model
        use_labels = cfg.image_label_loss != "none"
        data = training_set(state, use_labels or "classification" in self._frozen_phase_heads(), pseudo,
                            cfg.pseudo_label_threshold)
        has_pixels = (state.pixels != self.ignore_index).reshape(len(state.pixels), -1).any(axis=1)
        weak_only = (state.image_labels != UNKNOWN).any(axis=1) & ~has_pixels
        stats.update({"train_steps": 0, "train_images": len(data), "pseudo_images": data.n_pseudo,
                      "unused_image_label_images": 0 if use_labels else int(weak_only.sum()),
                      "weak_steps": 0, "head_steps": 0, "final_loss": float("nan"), "val_miou": None})
        if len(data) == 0 or (cfg.steps == 0 and cfg.epochs == 0):
            net.eval()
            return stats
        gen = torch.Generator().manual_seed(seed)
        x_all = torch.from_numpy(np.ascontiguousarray(images[data.index])).to(self.device)  # uint8: see _Batches
        y_all = torch.from_numpy(np.ascontiguousarray(data.pixels)).to(self.device)
        lab_all = torch.from_numpy(data.image_labels).to(self.device)

        def batches(rows: np.ndarray, epochs: int = cfg.epochs) -> _Batches:
            if len(rows) == len(data):  # all rows: no copy (and the first learner's exact tensors)
                return _Batches(x_all, y_all, lab_all, cfg.batch_size, epochs, gen)
            r = torch.from_numpy(rows).to(self.device)
            return _Batches(x_all[r], y_all[r], lab_all[r], cfg.batch_size, epochs, gen)

        image_loss = self._image_loss()
        heads = ("classification",) if cfg.image_label_loss == "head" else ()
        forward = lambda x: net(x, heads=heads)  # noqa: E731
        net.train()
        if cfg.labels_then_masks:
            weak_rows = np.flatnonzero((data.image_labels != UNKNOWN).any(axis=1))
            if len(weak_rows):
                b = batches(weak_rows)
                stats["weak_steps"], _ = self._run(net.parameters(), b, cfg.weak_steps or b.steps(cfg.steps),
                                                   lambda out, y, lab: image_loss(out, lab), forward)
        joint = use_labels and not cfg.labels_then_masks
        seg_rows = np.arange(len(data)) if joint else np.flatnonzero(data.has_pixels)
        seg_loss = self._joint_loss(image_loss) if joint else self._pixel_loss
        if len(seg_rows):
            b = batches(seg_rows)
            if joint:
                b.stratify(np.flatnonzero(data.has_pixels[seg_rows]), np.flatnonzero(~data.has_pixels[seg_rows]))
            done, last = self._run(net.parameters(), b, b.steps(cfg.steps), seg_loss, forward, val=val, stats=stats)
            stats["train_steps"] = stats["weak_steps"] + done
            stats["final_loss"] = last
        stats["head_steps"] = self._fit_frozen_heads(images, data, batches)
        net.eval()
        return stats

    def _image_loss(self) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]:
        cfg = self.config
        if cfg.image_label_loss == "head":
            return lambda out, lab: losses.head_image_label_loss(out["class_logits"], lab)
        return lambda out, lab: losses.pooled_image_label_loss(out["logits"], lab, cfg.lse_r)

    def _pixel_loss(self, out: dict[str, torch.Tensor], y: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
        return losses.pixel_loss(out["logits"], y, self.config.loss, self.ignore_index)

    def _joint_loss(self, image_loss) -> LossFn:
        w = self.config.weak_weight

        def loss(out, y, lab):
            return self._pixel_loss(out, y, lab) + w * image_loss(out, lab)

        return loss

    def _run(self, params, b: _Batches, steps: int, loss_fn: LossFn, forward: Callable[[torch.Tensor], dict[str, torch.Tensor]],
             *, val: tuple[np.ndarray, np.ndarray] | None = None, stats: dict[str, Any] | None = None) -> tuple[int, float]:
        """One training phase (its own AdamW and one-cycle schedule); returns (steps done, last loss).

        ``steps = "auto"``: at most ``max_steps``, at a constant learning rate
        after a linear warm-up (a one-cycle schedule needs its length in
        advance), stopped by ``_EarlyStopping`` on the validation split when
        one is passed, else by ``_AutoStop`` on a training-loss plateau."""
        cfg = self.config
        if steps == 0:
            return 0, float("nan")
        auto = steps == "auto"
        steps = cfg.max_steps if auto else steps
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if auto:
            warm = max(1, min(100, steps // 10))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warm))
        else:
            # OneCycleLR divides by (pct_start·steps − 1), zero at exactly 10 steps: warm up for 1.5 steps there.
            pct_start = 0.1 if steps != 10 else 0.15
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=pct_start)
        patience = (cfg.patience or AUTO_PATIENCE) if auto else cfg.patience
        stopper = _EarlyStopping(self, val, patience, cfg.val_every) if val is not None else None
        plateau = _AutoStop(cfg.val_every, cfg.auto_tol, AUTO_PATIENCE) if auto and stopper is None else None
        loss = None
        done = 0
        for groups in b.indices(steps):
            loss = 0.0
            for idx in groups:
                idx = idx.to(self.device)
                x, y, lab = b.batch(idx)
                if cfg.flip:
                    flip = torch.rand(len(idx), generator=b.gen) < 0.5
                    flip = flip.to(self.device)
                    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                    y = torch.where(flip[:, None, None], y.flip(-1), y)
                with self._autocast():
                    loss = loss + loss_fn(forward(self._prepare(x)), y, lab)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if stopper is not None and stopper.after_step(done, final=done == steps):
                break
            if plateau is not None and plateau.after_step(float(loss.detach())):
                break
        if stopper is not None and stats is not None:
            stats["val_miou"] = stopper.finish()
        return done, float(loss.detach())

    def _frozen_phase_heads(self) -> set[str]:
        cfg = self.config
        heads = set(FROZEN_PHASE_HEADS & set(cfg.model_heads))
        if "classification" in cfg.model_heads and cfg.image_label_loss != "head":
            heads.add("classification")  # an output for strategies, not a loss of the segmentation
        return heads if cfg.head_steps > 0 else set()

    def _fit_frozen_heads(self, images: np.ndarray, data: TrainingSet, batches: Callable[..., _Batches]) -> int:
        """Phase 3: heads trained on the frozen segmentation network; returns the steps done."""
        heads = self._frozen_phase_heads()
        pixel_heads = heads - {"classification"}
        use = np.zeros(len(data), bool)
        if pixel_heads:
            use |= data.has_pixels
        if "classification" in heads:
            use |= (data.image_labels != UNKNOWN).any(axis=1)
        rows = np.flatnonzero(use)
        if not heads or len(rows) == 0:
            return 0
        net = self.model
        pix = np.flatnonzero(data.has_pixels)
        tau = self._class_mean_loss(images[data.index[pix]], data.pixels[pix]) if "loss_prediction" in heads else None
        if "iou" in heads and len(pix):
            # Start the IoU layer at the mean target: a short head phase then fits how objects differ
            # instead of spending its steps moving the output from sigmoid(0)² = 0.25 to the mean.
            net.iou.start_at(float(np.sqrt(object_iou_targets(self.predict(images[data.index[pix]]), data.pixels[pix],
                                                               self.ignore_index)).mean()))
        net.train()
        net.base.eval()  # frozen: batch-norm statistics stay those of the segmentation phase

        def forward(x: torch.Tensor) -> dict[str, torch.Tensor]:
            with torch.no_grad():  # no gradient reaches the segmentation network
                parts = net.parts(x)
            return net.head_outputs(parts, heads)

        ignore = self.ignore_index

        def loss_fn(out, y, lab):
            total = out["logits"].new_zeros((), dtype=torch.float32)
            logits = out["logits"].float()
            if "classification" in heads:
                total = total + losses.head_image_label_loss(out["class_logits"], lab)
            if "iou" in heads:
                # Mask-guided §5: per predicted object, its IoU with the matched ground-truth object.
                true = object_iou_targets(logits.argmax(1).cpu().numpy(), y.cpu().numpy(), ignore)
                true = torch.from_numpy(true).to(logits.device, torch.float32)
                weight = (y != ignore).flatten(1).any(1).float()[out["object_image"]]  # no labelled pixel: no target
                total = total + losses.iou_regression_loss(out["object_iou"].float(), true, weight)
            if "maturity" in heads:  # MADBAL Eq. 3: one CE term per varied-maturity head, λ = 0.05, 0.1, 0.15
                lam = losses.maturity_lambdas(out["maturity_logits"].shape[1])
                for k, lam_k in enumerate(lam):
                    total = total + lam_k * losses.cross_entropy(out["maturity_logits"][:, k].float(), y, ignore)
            if "loss_prediction" in heads:  # Eqs. 1-2 (λ₀ = λ₁ = 1); centre/boundary from the phase-I prediction
                ce = F.cross_entropy(logits, y, ignore_index=ignore, reduction="none")
                total = total + losses.loss_prediction_loss(out["loss_prediction"], ce, y, tau, ignore,
                                                            boundary=losses.predicted_boundary(logits.argmax(1)))
            return total

        params = [p for h in sorted(heads) for p in getattr(net, h).parameters()]
        done, _ = self._run(params, batches(rows, epochs=0), self.config.head_steps, loss_fn, forward)
        return done

    @torch.no_grad()
    def _class_mean_loss(self, images: np.ndarray, pixels: np.ndarray) -> torch.Tensor:
        """MADBAL τ_c: the segmentation phase's mean CE over labelled pixels of class c (Eq. 1)."""
        sums = torch.zeros(self.num_classes, dtype=torch.float64, device=self.device)
        counts = torch.zeros_like(sums)
        for start, out in self.forward_batches(images, ()):
            y = torch.from_numpy(pixels[start : start + len(out["logits"])].astype(np.int64)).to(self.device)
            ce = F.cross_entropy(out["logits"].float(), y, ignore_index=self.ignore_index, reduction="none")
            s, c = losses.class_mean_loss(ce, y, self.num_classes, self.ignore_index)
            sums += s
            counts += c
        return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, math.inf)).float()

    # -- prediction -------------------------------------------------------------
    @torch.no_grad()
    def forward_batches(self, images: np.ndarray, heads: tuple[str, ...] | None = None
                        ) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """Yield (start, network outputs on the device) per ``eval_batch_size`` batch, in eval mode."""
        if self.model is None:
            raise RuntimeError("Learner.predict called before fit")
        was_training = self.model.training
        self.model.eval()
        try:
            bs = self.config.eval_batch_size
            for start in range(0, len(images), bs):
                x = self._prepare(to_tensor(images[start : start + bs], self.device))
                with self._autocast():
                    out = self.model(x, heads=heads)
                yield start, out
        finally:
            self.model.train(was_training)

    def predict_batches(self, images: np.ndarray):
        """Yield (start, probabilities (B, C, H, W) float32 numpy, features (B, F)) per batch."""
        for start, out in self.forward_batches(images, ()):
            probs = torch.softmax(out["logits"].float(), dim=1)
            yield start, probs.cpu().numpy(), out["features"].float().cpu().numpy()

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        out = np.empty((len(images), self.num_classes, *images.shape[1:3]), np.float32)
        for start, probs, _ in self.predict_batches(images):
            out[start : start + len(probs)] = probs
        return out

    def predict(self, images: np.ndarray) -> np.ndarray:
        out = np.empty((len(images), *images.shape[1:3]), np.uint8)
        for start, probs, _ in self.predict_batches(images):
            out[start : start + len(probs)] = probs.argmax(1)
        return out

    def pseudo_labels(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pixels (N, H, W) uint8, confidence (N, H, W) float32): this model as an annotation
        network (mask-guided pipeline): argmax class and its probability, for another
        learner's ``fit(..., pseudo=...)``."""
        pixels = np.empty((len(images), *images.shape[1:3]), np.uint8)
        conf = np.empty((len(images), *images.shape[1:3]), np.float32)
        for start, probs, _ in self.predict_batches(images):
            pixels[start : start + len(probs)] = probs.argmax(1)
            conf[start : start + len(probs)] = probs.max(1)
        return pixels, conf


#: ``steps = "auto"``: checks in a row without progress before stopping
#: (validation checks when ``patience`` is 0, training-loss windows always)
AUTO_PATIENCE = 3


class _AutoStop:
    """A training-loss plateau: the mean loss of each window of ``every`` steps
    against the best window so far; ``patience`` windows in a row that do not
    improve on it by a relative ``tol`` stop training. Deterministic: it reads
    only the losses of a seeded run."""

    def __init__(self, every: int, tol: float, patience: int):
        self.every, self.tol, self.patience = every, tol, patience
        self.window: list[float] = []
        self.best, self.bad = math.inf, 0

    def after_step(self, loss: float) -> bool:
        """Note one step's loss; True when training should stop."""
        self.window.append(loss)
        if len(self.window) < self.every:
            return False
        mean, self.window = sum(self.window) / len(self.window), []
        if mean < self.best * (1 - self.tol):
            self.best, self.bad = mean, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


class _EarlyStopping:
    """Validation mIoU every ``every`` steps; stop after ``patience`` checks without a better one; keep the best weights."""

    def __init__(self, learner: Learner, val: tuple[np.ndarray, np.ndarray], patience: int, every: int):
        self.learner, self.net = learner, learner.model
        self.images, self.masks = val
        self.patience, self.every = patience, every
        self.best, self.best_state, self.bad = -1.0, None, 0

    def score(self) -> float:
        cm = np.zeros((self.learner.num_classes,) * 2, np.int64)
        for start, probs, _ in self.learner.predict_batches(self.images):
            cm += confusion_matrix(probs.argmax(1), self.masks[start : start + len(probs)], self.learner.num_classes,
                                   self.learner.ignore_index)
        return mean_iou(cm)

    def after_step(self, step: int, final: bool) -> bool:
        """Validate when due; True when training should stop."""
        if not final and (self.patience == 0 or step % self.every):
            return False  # without early stopping only the final model is scored
        s = self.score()
        if s > self.best:
            self.best, self.bad = s, 0
            if self.patience:
                self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        else:
            self.bad += 1
        return bool(self.patience) and self.bad >= self.patience

    def finish(self) -> float:
        if self.best_state is not None:
            self.net.load_state_dict(self.best_state)
        return self.best
