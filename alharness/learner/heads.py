"""Optional heads and the network that returns them all in one output dict.

Heads read a model's :class:`~alharness.learner.models.Parts`:

* ``classification`` — a linear layer on the pooled deepest encoder features
  (full-or-weak §4.3: "a classification head is appended at the end of the
  encoding module"). Output ``class_logits`` (B, C).
* ``iou`` — mask-guided selection §5, per predicted object: the objects are
  the connected components of each predicted class (``predicted_components``,
  the objects ``alharness.metrics.predicted_object_ious`` scores); the decoder
  maps at every resolution are average-pooled over each object's mask (the
  per-object form of the paper's global pooling), concatenated and mapped by
  one fully connected layer to that object's IoU. The layer predicts √IoU
  (Table 2's best variant: small IoUs get more resolution). Outputs
  ``object_iou`` (K,) = (√IoU)² and ``object_image`` (K,), the image of each
  object, and ``iou`` (B,), the image's IoU score, eq. (2): the mean over
  its objects. An image without a predicted object is scored as one object
  covering the whole image (global pooling, as the paper's branch reads an
  image), whose target is 1 if the image really has no object, else 0.
* ``maturity`` — MADBAL §3.1 varied-maturity heads: segmentation heads on
  up to three encoder depths (shallow, semi, almost mature), output
  ``maturity_logits`` (B, K, C, H, W); and ``maturity_weights`` (B, K, H, W),
  the weight prediction block's per-pixel weights W^k of Eq. 4 (softmax over
  k). The block learns only through the loss-prediction loss, so without the
  ``loss_prediction`` head, or with ``weight_prediction=False``, the weights
  are the uniform 1/K of the paper's "Averaging" ablation (Fig. 6: "weight
  prediction block is dropped and averaging is used instead").
* ``loss_prediction`` — MADBAL §3.1 loss prediction module: the maturity
  heads' feature maps weighted by W^k, with the endpoint (last decoder)
  features, give two logit channels (centre, boundary) per pixel, output
  ``loss_prediction`` (B, 2, H, W). Without ``maturity`` it reads the endpoint
  features only (the paper's "No maturity-awareness" ablation).

Besides heads, ``Network.forward`` may be asked for ``feature_map``: the
deepest encoder map (B, F, h, w) that ``features`` pools; no head computes
it, it is the pass's own (MADBAL reuses it for its superpixel features).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from alharness.errors import ConfigError
from alharness.learner.models.base import Parts
from alharness.metrics import object_map, predicted_object_targets

HEADS = ("classification", "iou", "loss_prediction", "maturity")
#: heads trained after the segmentation network, with it frozen (mask-guided §5, MADBAL training phase II)
FROZEN_PHASE_HEADS = frozenset({"iou", "loss_prediction", "maturity"})
_MATURITY_DEPTHS = 3
_WIDTH = 32  # channels of the maturity / loss-prediction feature maps


def _cbr(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _stacked(parts: Iterable[torch.Tensor], count: int, dim: int, concatenate: bool = False) -> torch.Tensor:
    """``torch.stack`` (``concatenate``: ``torch.cat`` of equal widths) of ``count`` ``parts``, taken one at a
    time: each is copied into its slot of the result and freed before the next is made (pass a generator),
    so no list of them lives beside the result. The same values, dtype promoted as ``torch.cat`` does; no
    autograd (for inference)."""
    it = iter(parts)
    first = next(it)
    step = first.shape[dim] if concatenate else 1
    # The layout torch.cat / torch.stack would give (e.g. channels-last, as CPU convolutions return), from
    # shapes alone: later convolutions and reductions then see the same strides, hence the same bits.
    proto = [first.to("meta")] * count
    like = torch.cat(proto, dim) if concatenate else torch.stack(proto, dim)
    out = torch.empty_strided(like.shape, like.stride(), dtype=first.dtype, device=first.device)

    def slot(k: int) -> torch.Tensor:
        return out.narrow(dim, k * step, step) if concatenate else out.select(dim, k)

    slot(0).copy_(first)
    del first
    for k, part in enumerate(it, 1):
        if part.dtype != out.dtype:  # widen what is there, as torch.cat's type promotion would (exact)
            out = out.to(torch.promote_types(out.dtype, part.dtype))
        slot(k).copy_(part)
    return out


def maturity_taps(n_stages: int) -> list[int]:
    """Encoder stages read by the maturity heads: up to three, evenly spread from shallow to deep."""
    k = min(_MATURITY_DEPTHS, n_stages)
    if k <= 1:
        return list(range(k))
    return sorted({round(i * (n_stages - 1) / (k - 1)) for i in range(k)})


def predicted_components(logits: torch.Tensor) -> torch.Tensor:
    """Objects of a prediction (B, C, H, W) → (B, H, W) int64 labels 1..K per image,
    0 = no object: the components ``alharness.metrics.object_map`` gives the
    argmax, numbered as it numbers them. An image with none is one object
    (label 1 everywhere), so every image has K ≥ 1."""
    pred = logits.detach().argmax(1).cpu().numpy()
    labels = np.ones(pred.shape, np.int64)
    for i, p in enumerate(pred):
        lab, cls = object_map(p, ignore_index=-1)
        if len(cls):
            labels[i] = lab
    return torch.from_numpy(labels).to(logits.device)


def object_iou_targets(preds: np.ndarray, masks: np.ndarray, ignore_index: int) -> np.ndarray:
    """The IoU head's targets for predictions (B, H, W) against masks, one per object
    of ``predicted_components``, concatenated image by image: each predicted
    object's IoU with its matched ground-truth object, 0 if unmatched
    (``predicted_object_ious``); an image without a predicted object has one
    target, its ``iou_score`` (1 if it has no object either, else 0)."""
    out = [predicted_object_targets(p, m, ignore_index) for p, m in zip(preds, masks)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def masked_mean(feature: torch.Tensor, objects: torch.Tensor, n: int) -> torch.Tensor:
    """Mean of a map (B, F, h, w) over each object's pixels, (n, F) float32.

    ``objects`` (B, H, W) holds global object ids 0..n-1 (-1: none) at the
    output resolution; a pixel reads the map cell it falls in, so a small
    object keeps its weight at every resolution. Vectorised: the (object,
    cell) pairs and their pixel counts, then one ``index_add_``."""
    b, f, h, w = feature.shape
    big_h, big_w = objects.shape[-2:]
    dev = feature.device
    cells = (torch.arange(big_h, device=dev) * h // big_h)[:, None] * w + (torch.arange(big_w, device=dev) * w // big_w)
    cells = (torch.arange(b, device=dev)[:, None, None] * (h * w) + cells).flatten()
    obj = objects.flatten()
    keep = obj >= 0
    pairs, counts = torch.unique(obj[keep] * (b * h * w) + cells[keep], return_counts=True)
    rows = feature.permute(0, 2, 3, 1).reshape(b * h * w, f)[pairs % (b * h * w)].float()
    sums = rows.new_zeros(n, f).index_add_(0, pairs // (b * h * w), rows * counts[:, None])
    area = torch.bincount(obj[keep], minlength=n).clamp_min(1)
    return sums / area[:, None]


class IoUHead(nn.Module):
    def __init__(self, decoder_channels: tuple[int, ...]):
        super().__init__()
        self.fc = nn.Linear(sum(decoder_channels), 1)

    @torch.no_grad()
    def start_at(self, sqrt_iou: float) -> None:
        """Predict √IoU = ``sqrt_iou`` for every object: zero weights, the bias at its logit."""
        p = min(max(sqrt_iou, 0.02), 0.98)
        self.fc.weight.zero_()
        self.fc.bias.fill_(math.log(p / (1 - p)))

    def forward(self, decoder: list[torch.Tensor], objects: torch.Tensor) -> dict[str, torch.Tensor]:
        """``objects``: (B, H, W) labels 1..K_b per image (``predicted_components``)."""
        k = objects.flatten(1).amax(1)
        first = torch.cumsum(k, 0) - k  # global id of each image's object 1
        ids = torch.where(objects > 0, objects - 1 + first[:, None, None], -1)
        n = int(k.sum())
        pooled = torch.cat([masked_mean(d, ids, n) for d in decoder], dim=1)
        obj = torch.sigmoid(self.fc(pooled.to(self.fc.weight.dtype))).squeeze(1).float() ** 2
        image = torch.repeat_interleave(torch.arange(len(k), device=k.device), k)
        score = obj.new_zeros(len(k)).index_add_(0, image, obj) / k  # eq. (2): mean over the image's objects
        return {"iou": score, "object_iou": obj, "object_image": image}


class MaturityHeads(nn.Module):
    def __init__(self, encoder_channels: tuple[int, ...], num_classes: int, weighted: bool):
        super().__init__()
        self.taps = maturity_taps(len(encoder_channels))
        self.proj = nn.ModuleList([_cbr(encoder_channels[i], _WIDTH) for i in self.taps])
        self.cls = nn.ModuleList([nn.Conv2d(_WIDTH, num_classes, 1) for _ in self.taps])
        # Weight prediction block (MADBAL Fig. 1): per-pixel weights over the K depths.
        self.weight_block = nn.Conv2d(_WIDTH * len(self.taps), len(self.taps), 1) if weighted else None

    def forward(self, encoder: list[torch.Tensor], work_size: tuple[int, int], out_size: tuple[int, int]):
        """Return (logits (B,K,C,H,W), projected maps at work_size, weights (B,K,h,w) at work_size)."""
        maps = [p(encoder[i]) for p, i in zip(self.proj, self.taps)]
        if torch.is_grad_enabled():
            logits = torch.stack([_resize(c(m), out_size) for c, m in zip(self.cls, maps)], dim=1)
            work = [_resize(m, work_size) for m in maps]
            stacked = torch.cat(work, dim=1) if self.weight_block is not None else None
        else:
            # Inference: each resized map is written into its slot of one buffer, not listed and then
            # stacked or concatenated (a second copy of every full-resolution map: with batch 8 at 512×1024,
            # 1.7 GB). The same values; autograd cannot go through writes into a buffer, so training stacks.
            logits = _stacked((_resize(c(m), out_size) for c, m in zip(self.cls, maps)), len(maps), dim=1)
            stacked = _stacked((_resize(m, work_size) for m in maps), len(maps), dim=1, concatenate=True)
            work = list(stacked.split(maps[0].shape[1], dim=1))
        if self.weight_block is not None:
            weights = torch.softmax(self.weight_block(stacked), dim=1)
        else:
            weights = work[0].new_full((work[0].shape[0], len(maps), *work_size), 1.0 / len(maps))
        return logits, work, weights


class LossPredictionHead(nn.Module):
    def __init__(self, endpoint_channels: int, n_maturity: int):
        super().__init__()
        self.endpoint = nn.Conv2d(endpoint_channels, _WIDTH, 1)
        self.body = nn.Sequential(_cbr(_WIDTH * (1 + n_maturity), _WIDTH), nn.Conv2d(_WIDTH, 2, 1))

    def forward(self, endpoint: torch.Tensor, maturity_maps: list[torch.Tensor], weights: torch.Tensor | None) -> torch.Tensor:
        def inputs():
            yield self.endpoint(endpoint)
            for k, m in enumerate(maturity_maps):
                yield m * weights[:, k : k + 1]

        if torch.is_grad_enabled():
            return self.body(torch.cat(list(inputs()), dim=1))
        # Inference: into one buffer as each input is made (see MaturityHeads.forward), not listed, then concatenated.
        return self.body(_stacked(inputs(), 1 + len(maturity_maps), dim=1, concatenate=True))


class Network(nn.Module):
    """A segmentation model plus the requested heads; ``forward`` returns one dict.

    Always: ``logits`` (B, C, H, W) and ``features`` (B, F); then, per head,
    the outputs listed in this module's docstring.
    """

    def __init__(self, base: nn.Module, num_classes: int, heads: Iterable[str] = (), model_name: str = "model",
                 weight_prediction: bool = True):
        super().__init__()
        self.base = base
        self.head_names = tuple(sorted(set(heads)))
        unknown = sorted(set(self.head_names) - set(HEADS))
        if unknown:
            raise ConfigError(f"unknown head(s) {', '.join(map(repr, unknown))}; valid choices: {', '.join(HEADS)}")
        need_parts = set(self.head_names) - {"classification"}
        if need_parts and not hasattr(base, "forward_parts"):
            raise ConfigError(
                f"model {model_name!r} cannot provide head(s) {', '.join(sorted(need_parts))}: it does not expose its "
                "feature maps (subclass alharness.learner.models.SegmentationModel and implement forward_parts)"
            )
        enc = tuple(getattr(base, "encoder_channels", ()))
        dec = tuple(getattr(base, "decoder_channels", ()))
        fdim = int(getattr(base, "feature_dim", 0))
        for head, ok, what in (("classification", fdim > 0, "feature_dim"), ("iou", bool(dec), "decoder_channels"),
                               ("loss_prediction", bool(dec), "decoder_channels"), ("maturity", bool(enc), "encoder_channels")):
            if head in self.head_names and not ok:
                raise ConfigError(f"model {model_name!r} cannot provide the {head!r} head: it declares no {what}")
        self.classification = nn.Linear(fdim, num_classes) if "classification" in self.head_names else None
        self.iou = IoUHead(dec) if "iou" in self.head_names else None
        weighted = "loss_prediction" in self.head_names and weight_prediction
        self.maturity = MaturityHeads(enc, num_classes, weighted) if "maturity" in self.head_names else None
        n_mat = len(self.maturity.taps) if self.maturity is not None else 0
        self.loss_prediction = LossPredictionHead(dec[-1], n_mat) if "loss_prediction" in self.head_names else None

    def forward(self, x: torch.Tensor, heads: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Run the model and the heads in ``heads`` (default: every head built);
        ``"feature_map"`` in ``heads`` adds the deepest encoder map to the output."""
        heads = self.head_names if heads is None else tuple(heads)
        if not heads:
            out = self.base(x)
            return {"logits": out["logits"], "features": out["features"]}
        return self.head_outputs(self.parts(x), heads)

    def encoder_features(self, x: torch.Tensor) -> torch.Tensor:
        """``features`` (B, F) of ``forward(x)``; only the encoder runs when the model
        has :meth:`~alharness.learner.models.SegmentationModel.encoder_features`."""
        if hasattr(self.base, "encoder_features"):
            return self.base.encoder_features(x)
        return self.base(x)["features"]

    def parts(self, x: torch.Tensor) -> Parts:
        """The model's forward pass, opened up (logits and features only for models without ``forward_parts``)."""
        if hasattr(self.base, "forward_parts"):
            return self.base.forward_parts(x)
        out = self.base(x)
        return Parts(out["logits"], out["features"], [], [])

    def head_outputs(self, parts: Parts, heads: Iterable[str]) -> dict[str, torch.Tensor]:
        """Head outputs on an already computed forward pass (the frozen-network phase reuses it)."""
        heads = set(heads)
        out: dict[str, torch.Tensor] = {"logits": parts.logits, "features": parts.features}
        if "feature_map" in heads:
            if not parts.encoder:
                raise ConfigError("feature_map: the model does not expose its encoder maps "
                                  "(subclass alharness.learner.models.SegmentationModel)")
            out["feature_map"] = parts.encoder[-1]
        if "classification" in heads:
            out["class_logits"] = self.classification(parts.features)
        if "iou" in heads:
            out.update(self.iou(parts.decoder, predicted_components(parts.logits)))
        if heads & {"maturity", "loss_prediction"}:
            endpoint = parts.decoder[-1] if parts.decoder else None
            maps, weights = [], None
            if self.maturity is not None:
                work = tuple(endpoint.shape[-2:]) if endpoint is not None else tuple(parts.encoder[0].shape[-2:])
                mlogits, maps, weights = self.maturity(parts.encoder, work, tuple(parts.logits.shape[-2:]))
                if "maturity" in heads:
                    out["maturity_logits"] = mlogits
                    out["maturity_weights"] = _resize(weights, tuple(parts.logits.shape[-2:]))
            if "loss_prediction" in heads:
                lp = self.loss_prediction(endpoint, maps, weights)
                out["loss_prediction"] = _resize(lp, tuple(parts.logits.shape[-2:]))
        return out
