"""``LearnerConfig``: the one object that says how the model is built and trained.

Validated strictly when constructed (benchmark load time): every bad value
is a ConfigError that names the field and the valid choices. The defaults
reproduce the first learner exactly (cross-entropy on pixel labels only).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from alharness.errors import ConfigError
from alharness.learner.heads import HEADS
from alharness.learner.losses import PIXEL_LOSSES
from alharness.registry import MODELS, PIPELINES, param_types, show, type_problem

_HARNESS_SET = ("num_classes", "in_channels")
IMAGE_LABEL_LOSSES = ("none", "pooled", "head")
#: the cap of ``steps = "auto"`` unless ``max_steps`` says otherwise: about 13x the
#: fixed default of 150 steps, which the reference learners were found to underfit with
AUTO_MAX_STEPS = 2000


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"learner.{name}: {value!r} is not valid; valid choices: {', '.join(map(repr, choices))}")


def _model_params(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """The model's defaults overlaid with ``params``, in name order; the
    harness-set parameters are left out (the dataset decides them)."""
    where = "learner.model_params"
    MODELS.check_params(model, params, where=where)
    MODELS.check_types(model, params, where=where)
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
    Schedule: ``steps`` (or ``"auto"``: until converged, at most ``max_steps``,
    see ``alharness.learner.learner``) or ``epochs`` (epochs > 0 wins), ``batch_size``,
    ``lr``, ``weight_decay``, ``flip``; ``labels_then_masks`` trains on image
    labels for ``weak_steps`` steps (0: ``steps``; ``"auto"``: until converged,
    the full-or-weak paper's §4.3) before the masks;
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

    # Types and ranges are checked when the config is built (_check_types).
    model: str = "tiny_unet"
    model_params: dict[str, Any] = field(default_factory=dict)
    steps: Annotated[int, Field(ge=0)] | Literal["auto"] = 150
    # steps = "auto": train until converged (see learner._AutoStop), at most max_steps
    # steps; progress is a relative gain of auto_tol in the windowed training loss.
    max_steps: Annotated[int, Field(ge=1)] = AUTO_MAX_STEPS
    auto_tol: Annotated[float, Field(ge=0, lt=1)] = 0.01
    batch_size: Annotated[int, Field(ge=1)] = 8
    lr: Annotated[float, Field(gt=0)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    flip: bool = True
    device: str = "auto"
    eval_batch_size: Annotated[int, Field(ge=1)] = 32
    loss: str = "ce"
    # Trains on every image-level label and yes/no answer a campaign bought:
    # spend the learner ignored would make weak-label strategies look worse than they are.
    image_label_loss: str = "pooled"
    weak_weight: Annotated[float, Field(ge=0)] = 1.0
    lse_r: Annotated[float, Field(gt=0)] = 5.0
    labels_then_masks: bool = False
    # labels_then_masks: steps of the image-label phase (0: ``steps``; "auto": until the
    # training loss stops improving, at most max_steps, as for steps = "auto")
    weak_steps: Annotated[int, Field(ge=0)] | Literal["auto"] = 0
    epochs: Annotated[int, Field(ge=0)] = 0
    warm_start: bool = False
    pseudo_label_threshold: Annotated[float, Field(ge=0, le=1)] = 0.0
    heads: tuple[str, ...] | str = ()
    head_steps: Annotated[int, Field(ge=0)] = 50
    # MADBAL's weight prediction block (Fig. 1); false gives uniform 1/K
    # weights, the "Averaging" ablation (Fig. 6).
    weight_prediction: bool = True
    weights_path: str = ""
    patience: Annotated[int, Field(ge=0)] = 0
    val_every: Annotated[int, Field(ge=1)] = 25
    amp: bool = True
    pipeline: str = "single"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str):
            raise ConfigError(f"learner.model must be a string (a registered model), got {show(self.model)}")
        MODELS.get(self.model)  # unknown model -> ConfigError listing the choices
        if not isinstance(self.model_params, dict):
            raise ConfigError(f"learner.model_params must be a table of the model's parameters, got {show(self.model_params)}")
        for k in _HARNESS_SET:
            if k in self.model_params:
                raise ConfigError(f"learner.model_params: {k!r} is set by the harness from the dataset")
        object.__setattr__(self, "model_params", _model_params(self.model, self.model_params))
        self._check_types()
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
        for name in ("steps", "weak_steps"):
            if getattr(self, name) == "auto" and self.epochs > 0:
                raise ConfigError(f"learner: {name} = 'auto' trains until converged; it cannot be combined with epochs > 0")
        if not isinstance(self.weights_path, str):
            raise ConfigError(f"learner.weights_path must be a path string ('' for random init), got {self.weights_path!r}")

    def _check_types(self) -> None:
        """Every field against its annotation (strict: no bool for a number,
        no float for an integer, no NaN or infinity)."""
        for name, typed in _field_types().items():
            problem = type_problem(typed, getattr(self, name))
            if problem:
                raise ConfigError(f"learner.{name} must be {problem}, got {show(getattr(self, name))}")

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
        if "auto" not in (d["steps"], d["weak_steps"]):  # the cap and tolerance only matter (and enter the id) with "auto"
            del d["max_steps"], d["auto_tol"]
        return d


@functools.cache
def _field_types() -> dict[str, Any]:
    types = param_types(LearnerConfig, dict(inspect.signature(LearnerConfig).parameters))
    types.pop("model_params", None)  # checked against the model's own signature
    return types


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
