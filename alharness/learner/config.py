"""``LearnerConfig``: the one object that says how the model is built and trained.

Validated strictly when constructed (benchmark load time): every bad value
is a ConfigError that names the field and the valid choices. The defaults
reproduce the first learner exactly (cross-entropy on pixel labels only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from alharness.errors import ConfigError
from alharness.learner.heads import HEADS
from alharness.learner.losses import PIXEL_LOSSES
from alharness.registry import MODELS, PIPELINES

_HARNESS_SET = ("num_classes", "in_channels")
IMAGE_LABEL_LOSSES = ("none", "pooled", "head")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"learner.{name}: {value!r} is not valid; valid choices: {', '.join(map(repr, choices))}")


def _model_params(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """The model's defaults overlaid with ``params``, in name order; the
    harness-set parameters are left out (the dataset decides them)."""
    where = "learner.model_params"
    MODELS.check_params(model, params, where=where)
    accepted = [k for k in MODELS.parameters(model) if k not in _HARNESS_SET]
    merged = {**{k: v for k, v in MODELS.defaults(model).items() if k in accepted}, **params}
    missing = sorted(set(accepted) - set(merged))
    if missing:
        raise ConfigError(f"{where}: model {model!r} needs parameter(s) {', '.join(missing)}")
    return dict(sorted(merged.items()))


@dataclass(frozen=True)
class LearnerConfig:
    """How the segmentation model is built and trained each round.

    Model: ``model``, ``model_params``, ``heads``, ``weights_path`` (a local
    state dict; random initialisation otherwise).
    Losses: ``loss`` ("ce" | "dice_ce") on pixel labels; ``image_label_loss``
    ("none" | "pooled" | "head") for image labels and yes/no answers, scaled
    by ``weak_weight``; ``lse_r`` the sharpness of the pooled loss;
    ``pseudo_label_threshold`` the confidence below which pseudo-labels are
    ignored.
    Schedule: ``steps`` or ``epochs`` (epochs > 0 wins), ``batch_size``,
    ``lr``, ``weight_decay``, ``flip``; ``labels_then_masks`` trains on image
    labels for ``weak_steps`` steps (0: ``steps``) before the masks;
    ``head_steps`` trains the IoU / loss-prediction / maturity heads with the
    network frozen (``weight_prediction = false``: MADBAL's maturity weights
    are a uniform 1/K instead of the weight prediction block's); ``warm_start`` continues from last round's weights;
    ``patience`` > 0 stops early after that many validations (every
    ``val_every`` steps) without a better validation mIoU.
    Device: ``device``, ``amp`` (bfloat16 autocast on CUDA), ``eval_batch_size``.
    Pipeline: ``pipeline``, a registered name (``alharness list pipelines``):
    "single" (one network) or "basis" (mask-guided §4: an annotation network
    on the full masks pseudo-labels the weakly labelled pool, a segmentation
    network trains on both; see ``alharness.learner.pipeline``).

    ``model_params`` holds the model's defaults overlaid with the given
    values (all but the harness-set ``num_classes`` / ``in_channels``), so a
    changed default is a different campaign id.
    """

    model: str = "tiny_unet"
    model_params: dict[str, Any] = field(default_factory=dict)
    steps: int = 150
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    flip: bool = True
    device: str = "auto"
    eval_batch_size: int = 32
    loss: str = "ce"
    # Trains on every image-level label and yes/no answer a campaign bought:
    # spend the learner ignored would make weak-label strategies look worse than they are.
    image_label_loss: str = "pooled"
    weak_weight: float = 1.0
    lse_r: float = 5.0
    labels_then_masks: bool = False
    weak_steps: int = 0
    epochs: int = 0
    warm_start: bool = False
    pseudo_label_threshold: float = 0.0
    heads: tuple[str, ...] = ()
    head_steps: int = 50
    # MADBAL's weight prediction block (Fig. 1); false gives uniform 1/K
    # weights, the "Averaging" ablation (Fig. 6).
    weight_prediction: bool = True
    weights_path: str = ""
    patience: int = 0
    val_every: int = 25
    amp: bool = True
    pipeline: str = "single"

    def __post_init__(self) -> None:
        MODELS.get(self.model)  # unknown model -> ConfigError listing the choices
        if not isinstance(self.model_params, dict):
            raise ConfigError(f"learner.model_params must be a table of the model's parameters, got {self.model_params!r}")
        for k in _HARNESS_SET:
            if k in self.model_params:
                raise ConfigError(f"learner.model_params: {k!r} is set by the harness from the dataset")
        object.__setattr__(self, "model_params", _model_params(self.model, self.model_params))
        for name in ("steps", "batch_size", "eval_batch_size", "weak_steps", "epochs", "head_steps", "patience", "val_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError(f"learner.{name} must be an integer, got {v!r}")
        for name in ("flip", "labels_then_masks", "warm_start", "amp", "weight_prediction"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"learner.{name} must be true or false, got {getattr(self, name)!r}")
        if self.steps < 0 or self.weak_steps < 0 or self.epochs < 0 or self.head_steps < 0 or self.patience < 0:
            raise ConfigError("learner: steps, weak_steps, epochs, head_steps and patience must be >= 0")
        if self.batch_size < 1 or self.eval_batch_size < 1 or self.val_every < 1:
            raise ConfigError("learner: batch_size, eval_batch_size and val_every must be >= 1")
        if self.lr <= 0:
            raise ConfigError(f"learner: lr must be > 0, got {self.lr}")
        if self.weak_weight < 0 or self.lse_r <= 0:
            raise ConfigError(f"learner: weak_weight must be >= 0 and lse_r > 0, got {self.weak_weight}, {self.lse_r}")
        if not 0.0 <= self.pseudo_label_threshold <= 1.0:
            raise ConfigError(f"learner.pseudo_label_threshold must be in [0, 1], got {self.pseudo_label_threshold}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"learner: device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        _choice("loss", self.loss, PIXEL_LOSSES)
        _choice("image_label_loss", self.image_label_loss, IMAGE_LABEL_LOSSES)
        _choice("pipeline", self.pipeline, tuple(PIPELINES.names()))
        heads = (self.heads,) if isinstance(self.heads, str) else tuple(self.heads)
        for h in heads:
            _choice("heads", h, HEADS)
        object.__setattr__(self, "heads", tuple(sorted(set(heads))))
        if self.labels_then_masks and self.image_label_loss == "none":
            raise ConfigError("learner.labels_then_masks needs image_label_loss = 'pooled' or 'head' (the loss of the first phase)")
        if not isinstance(self.weights_path, str):
            raise ConfigError(f"learner.weights_path must be a path string ('' for random init), got {self.weights_path!r}")

    @property
    def model_heads(self) -> tuple[str, ...]:
        """Heads the network is built with: those asked for, plus the classifier that ``image_label_loss="head"`` trains."""
        extra = ("classification",) if self.image_label_loss == "head" else ()
        return tuple(sorted(set(self.heads) | set(extra)))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # Added after results existed: left out at its default, so the ids of
        # earlier campaigns (and resuming them) do not change.
        if d["pipeline"] == "single":
            del d["pipeline"]
        if d["weight_prediction"]:  # likewise (MADBAL's "Averaging" ablation switch)
            del d["weight_prediction"]
        return d


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
