"""Train a segmentation model on what a campaign bought, and predict with it.

This first learner trains on pixel labels (full or partial masks, unknown
pixels ignored); image-level labels are kept in the label state for later
weak-label losses but not used here.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from alharness.errors import ConfigError
from alharness.labels import LabelState
from alharness.registry import MODELS

_HARNESS_SET = ("num_classes", "in_channels")


@dataclass(frozen=True)
class LearnerConfig:
    """How the segmentation model is built and trained each round."""

    model: str = "tiny_unet"
    model_params: dict[str, Any] = field(default_factory=dict)
    steps: int = 150
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    flip: bool = True
    device: str = "auto"
    eval_batch_size: int = 32

    def __post_init__(self) -> None:
        MODELS.get(self.model)  # unknown model -> ConfigError listing the choices
        for k in _HARNESS_SET:
            if k in self.model_params:
                raise ConfigError(f"learner.model_params: {k!r} is set by the harness from the dataset")
        MODELS.check_params(self.model, self.model_params, where="learner.model_params")
        if self.steps < 0 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("learner: steps must be >= 0, batch_size and eval_batch_size >= 1")
        if self.lr <= 0:
            raise ConfigError(f"learner: lr must be > 0, got {self.lr}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"learner: device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.array(images, copy=True)).to(device)
    return x.permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)


class Learner:
    """Builds the model from scratch each ``fit`` (as the papers do) and predicts."""

    def __init__(self, config: LearnerConfig, num_classes: int, ignore_index: int):
        self.config = config
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = resolve_device(config.device)
        self.model: torch.nn.Module | None = None

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _build(self, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        model = MODELS.create(self.config.model, num_classes=self.num_classes, in_channels=3, **self.config.model_params)
        model = model.to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        return model

    def fit(self, images: np.ndarray, state: LabelState, seed: int) -> dict[str, Any]:
        """Train a fresh model on every pool image with at least one labelled pixel."""
        self.model = self._build(seed)
        labelled = np.flatnonzero((state.pixels != state.ignore_index).reshape(len(state.pixels), -1).any(axis=1))
        if len(labelled) == 0 or self.config.steps == 0:
            self.model.eval()
            return {"train_steps": 0, "train_images": int(len(labelled)), "final_loss": float("nan")}
        gen = torch.Generator().manual_seed(seed)
        x_all = _to_tensor(images[labelled], self.device)
        y_all = torch.from_numpy(state.pixels[labelled].astype(np.int64)).to(self.device)
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.config.lr, total_steps=self.config.steps, pct_start=0.1)
        self.model.train()
        loss_value = float("nan")
        for _ in range(self.config.steps):
            idx = torch.randint(len(labelled), (min(self.config.batch_size, len(labelled)),), generator=gen)
            x, y = x_all[idx.to(self.device)], y_all[idx.to(self.device)]
            if self.config.flip:
                flip = torch.rand(len(idx), generator=gen) < 0.5
                flip = flip.to(self.device)
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                y = torch.where(flip[:, None, None], y.flip(-1), y)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                logits = self.model(x)["logits"]
                loss = F.cross_entropy(logits.float(), y, ignore_index=self.ignore_index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_value = float(loss.detach())
        self.model.eval()
        return {"train_steps": self.config.steps, "train_images": int(len(labelled)), "final_loss": loss_value}

    @torch.no_grad()
    def predict_batches(self, images: np.ndarray):
        """Yield (start, probabilities (B, C, H, W) float32 numpy, features (B, F)) per batch."""
        if self.model is None:
            raise RuntimeError("Learner.predict called before fit")
        bs = self.config.eval_batch_size
        for start in range(0, len(images), bs):
            x = _to_tensor(images[start : start + bs], self.device)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                out = self.model(x)
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
