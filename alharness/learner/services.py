"""Prediction services: what strategies may ask the loop to compute over the pool.

Computed once per round, in batches of ``eval_batch_size``, in one forward
pass that runs only the heads some requested output needs, and shared by
every component of the strategy. Per batch only the requested outputs are
kept, reduced where a full map would be wasteful (the maturity heads give
one Jensen–Shannon map per depth rather than K full probability volumes).

=================  ==========================  =====================================
need               array                       from
=================  ==========================  =====================================
probabilities      (N, C, H, W) float32        softmax of the segmentation logits
features           (N, F) float32              pooled deepest encoder features
feature_map        (N, F, h, w) float16        the deepest encoder map that ``features``
                                               pools, at the encoder's output stride
                                               (F·h·w·2 bytes per image: 2 MB for a
                                               256×512 image through tiny_unet width 16)
model              the trained network         (eval mode; outputs a dict)
class_scores       (N, C) float32 in [0, 1]    classification head (sigmoid) if the
                                               model has one, else the LSE power mean
                                               of the pixel probabilities
iou                (N,) float32                IoU head: the image's predicted IoU score,
                                               the mean over its predicted objects
                                               (mask-guided §5, eq. (2))
loss_prediction    (N, 2, H, W) float32        loss prediction head, sigmoid;
                                               channel 0 centre, 1 boundary (MADBAL)
maturity           (N, K, H, W) float32        JS(final ‖ maturity head k) per pixel
                                               (MADBAL Eq. 4's divergence terms)
maturity_weights   (N, K, H, W) float32        W^k of MADBAL Eq. 4
=================  ==========================  =====================================
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from alharness.errors import ConfigError
from alharness.learner import losses
from alharness.learner.config import LearnerConfig

#: need → the head that provides it (None: the segmentation network itself)
SERVICES: dict[str, str | None] = {
    "probabilities": None,
    "features": None,
    "feature_map": None,
    "model": None,
    "class_scores": None,
    "iou": "iou",
    "loss_prediction": "loss_prediction",
    "maturity": "maturity",
    "maturity_weights": "maturity",
}


def heads_for(needs: Iterable[str]) -> tuple[str, ...]:
    """Heads a learner must be built with to serve ``needs``."""
    return tuple(sorted({SERVICES[n] for n in needs if SERVICES.get(n)}))


def check_needs(config: LearnerConfig, needs: Iterable[str], who: str = "the strategy") -> None:
    """ConfigError unless ``config`` builds every head that ``needs`` requires."""
    unknown = sorted(set(needs) - set(SERVICES))
    if unknown:
        raise ConfigError(f"{who} needs {unknown}; the learner provides {sorted(SERVICES)}")
    missing = sorted(set(heads_for(needs)) - set(config.model_heads))
    if missing:
        raise ConfigError(
            f"{who} needs outputs of the learner head(s) {missing}; add them to the learner, "
            f"e.g. heads = {sorted(set(config.heads) | set(missing))!r} in [learner]"
        )


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def forward_heads(config: LearnerConfig, needs: Iterable[str]) -> tuple[str, ...]:
    """What the network's forward pass computes for the array outputs in ``needs`` (``batch_outputs``)."""
    needs = frozenset(needs)
    heads = set(heads_for(sorted(needs - {"model"})))
    if "feature_map" in needs:
        heads.add("feature_map")  # not a head: the network returns the pass's deepest encoder map
    if "class_scores" in needs and "classification" in config.model_heads:
        heads.add("classification")
    return tuple(sorted(heads))


def batch_outputs(learner, images: np.ndarray, needs: Iterable[str], *, run_bytes: int | None = None,
                  extra_bytes_per_image: int = 0) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield (start, the requested array outputs of ``images[start:start + B]``)
    per ``eval_batch_size`` batch, in pool order (``model`` is not an array: not
    included). Without array needs the batches come without a forward pass.
    ``run_bytes``: each batch in runs of whole images of at most that many bytes
    of outputs (at least one image), each moved to the host on its own; the
    forward pass still sees the whole batch, so the values do not change;
    ``extra_bytes_per_image``: what the caller adds to each image of a run
    (the oracle statistics), counted against ``run_bytes`` too."""
    needs = frozenset(needs)
    check_needs(learner.config, needs)
    arrays = sorted(needs - {"model"})
    if not arrays:
        for start in range(0, len(images), learner.config.eval_batch_size):
            yield start, {}
        return
    has_classifier = "classification" in learner.config.model_heads
    r = learner.config.lse_r
    for start, o in learner.forward_batches(images, forward_heads(learner.config, needs)):
        # Popped: the logits are freed once softmaxed (a batch of 8 at 512x1024 with 19 classes: 318 MB).
        probs = torch.softmax(o.pop("logits").float(), dim=1)
        batch: dict[str, torch.Tensor] = {}
        if "probabilities" in needs:
            batch["probabilities"] = probs
        if "features" in needs:
            batch["features"] = o["features"]
        if "feature_map" in needs:  # float16: as large as the probabilities otherwise
            batch["feature_map"] = o["feature_map"].to(torch.float16)
        if "class_scores" in needs:
            batch["class_scores"] = (torch.sigmoid(o["class_logits"].float()) if has_classifier
                                     else losses.pooled_class_scores(probs, r))
        if "iou" in needs:
            batch["iou"] = o["iou"]
        if "loss_prediction" in needs:
            batch["loss_prediction"] = torch.sigmoid(o["loss_prediction"].float())
        if "maturity" in needs:
            # Image by image: the heads' softmax and the divergence's temporaries are each K×C×H×W (five of
            # them at once: 3 GB for a batch of 8 at 512×1024 with 19 classes and two heads).
            logits = o.pop("maturity_logits")
            batch["maturity"] = torch.cat([
                losses.js_divergence(probs[i : i + 1].unsqueeze(1), torch.softmax(logits[i : i + 1].float(), dim=2), dim=2)
                for i in range(len(logits))])
            del logits
        if "maturity_weights" in needs:
            batch["maturity_weights"] = o["maturity_weights"]
        tensors = {name: t if t.dtype == torch.float16 else t.float() for name, t in batch.items()}
        del batch, probs, o
        n = len(next(iter(tensors.values())))
        per_image = sum(t[:1].numel() * t.element_size() for t in tensors.values()) + extra_bytes_per_image
        rows = max(1, run_bytes // per_image) if run_bytes and per_image else n
        for lo in range(0, n, rows):
            yield start + lo, {name: _readonly(t[lo : lo + rows].cpu().numpy()) for name, t in tensors.items()}


def meta_network(config: LearnerConfig, num_classes: int) -> torch.nn.Module:
    """The configured network with its heads, built on PyTorch's ``meta`` device
    (shapes only, no memory, no weights): for sizing outputs and state."""
    from alharness.learner.heads import Network
    from alharness.registry import MODELS

    with torch.device("meta"):
        base = MODELS.create(config.model, num_classes=num_classes, in_channels=3, **config.model_params)
        return Network(base, num_classes, config.model_heads, model_name=config.model,
                       weight_prediction=config.weight_prediction)


def output_bytes_per_image(config: LearnerConfig, num_classes: int, image_shape: tuple[int, int],
                           needs: Iterable[str]) -> dict[str, int]:
    """Bytes per pool image of each array output in ``needs``, as ``batch_outputs``
    returns it (float32; ``feature_map`` float16), from one forward pass of the
    configured network on PyTorch's ``meta`` device: shapes only, nothing
    allocated or trained. Sizes that depend on the network (the feature
    dimension, the feature map, the maturity heads) are known before round 0."""
    arrays = sorted(set(needs) & set(SERVICES) - {"model"})
    if not arrays:
        return {}
    # Not the IoU head: it labels the prediction's objects on the CPU (no meta tensors), and its size is fixed.
    heads = (set(heads_for(arrays)) - {"iou"}) | ({"feature_map"} if "feature_map" in arrays else set())
    net = meta_network(config, num_classes)
    net.eval()
    with torch.no_grad():
        out = net(torch.empty(1, 3, *image_shape, device="meta"), heads=tuple(sorted(heads)))
    per_image = {
        "probabilities": 4 * out["logits"][0].numel(),
        "features": 4 * out["features"][0].numel(),
        "class_scores": 4 * num_classes,
        "iou": 4,
        "feature_map": 2 * out["feature_map"][0].numel() if "feature_map" in out else 0,
        "loss_prediction": 4 * out["loss_prediction"][0].numel() if "loss_prediction" in out else 0,
    }
    if "maturity_weights" in out:
        per_image["maturity"] = per_image["maturity_weights"] = 4 * out["maturity_weights"][0].numel()
    return {k: v for k, v in per_image.items() if k in arrays}


def pool_outputs(learner, images: np.ndarray, needs: Iterable[str],
                 check_size: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The requested outputs over ``images``, each computed once and read-only.
    ``check_size(bytes)``: called with the arrays' whole-pool size once the first
    batch shows it, before the rest is computed (it raises to stop)."""
    needs = frozenset(needs)
    check_needs(learner.config, needs)
    out: dict[str, Any] = {}
    if "model" in needs:
        out["model"] = learner.model
    arrays = sorted(needs - {"model"})
    if not arrays:
        return out
    n, (h, w) = len(images), images.shape[1:3]
    shapes = {"probabilities": (learner.num_classes, h, w), "class_scores": (learner.num_classes,), "iou": (),
              "loss_prediction": (2, h, w)}
    buffers: dict[str, np.ndarray] = {}
    for start, batch in batch_outputs(learner, images, arrays):
        if start == 0 and check_size is not None:
            check_size(sum(a[0].nbytes for a in batch.values() if len(a)) * n)
        for name, a in batch.items():
            if name not in buffers:
                buffers[name] = np.empty((n, *a.shape[1:]), a.dtype)
            buffers[name][start : start + len(a)] = a
    for name in arrays:
        out[name] = _readonly(buffers[name]) if name in buffers else _readonly(np.empty((0, *shapes.get(name, ())), np.float32))
    return out
