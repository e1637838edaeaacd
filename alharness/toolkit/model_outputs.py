"""The learner's model outputs as a strategy author uses them.

A strategy that declares ``"model"`` in ``needs`` receives the current
network. Its documented interface:

* input: images as produced by :func:`to_tensor` ((B, 3, H, W) float, values
  centred on 0), on the network's device;
* ``model(x, heads=())`` returns a dict with ``"logits"`` (B, C, H, W) and
  ``"features"`` (B, F), the backbone's pooled features; :func:`backbone_features`
  returns the latter, and :func:`encoder_features` the same features from the
  encoder alone (the decoder is not run), which is cheaper.

Boundaries (:func:`predicted_boundary`) follow the definition the learner
trains MADBAL's loss predictor with, so a strategy and the learner agree on
which pixels are "boundary".
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


def to_tensor(images: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """(N, H, W, 3) uint8 images → the network's input, (N, 3, H, W) float32 in [-0.5, 0.5]."""
    return network_input(torch.from_numpy(np.array(images, copy=True)).to(device))


def network_input(images: torch.Tensor) -> torch.Tensor:
    """:func:`to_tensor` of images already on the device, (N, H, W, 3) uint8: the same values, bit for bit."""
    return images.permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)


def backbone_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, F): the backbone's pooled features of input ``x`` (no head is run)."""
    return model(x, heads=())["features"]


def encoder_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, F): :func:`backbone_features` of ``x`` (equal to float tolerance), computed
    by the encoder alone when the network has an encoder-only pass."""
    encode = getattr(model, "encoder_features", None)
    return encode(x) if callable(encode) else backbone_features(model, x)


def predicted_boundary(labels: torch.Tensor) -> torch.Tensor:
    """Boundary pixels of a predicted label map (B, H, W): a differing 8-neighbour.

    MADBAL's δ(x) of Eq. (4) must be known for unlabelled pixels at selection
    time, so centre and boundary are taken from the model's own segmentation;
    the loss prediction module is trained with the same definition (with
    clicked pixels a label map has almost no labelled neighbours).

    Equal to ``boundary_mask(labels, ignore_index=-1)`` for labels >= 0: with
    every pixel labelled, comparing shifted slices does the same job as its
    two max-pools (about 20x faster on 2 CPU cores)."""
    h, w = labels.shape[-2:]
    out = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):  # each neighbour pair once
        p = (..., slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
        q = (..., slice(dy, h), slice(max(0, dx), w + min(0, dx)))
        differs = labels[p] != labels[q]
        out[p] |= differs
        out[q] |= differs
    return out


def boundary_mask(target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Labelled pixels with a differently labelled 8-neighbour (MADBAL's "boundary" pixels), (B, H, W) bool."""
    t = target.unsqueeze(1).float()
    known = (target != ignore_index).unsqueeze(1).float()
    # A neighbour differs if the max or min of labelled neighbours differs from the pixel's own label.
    big = float(ignore_index) + 1.0
    hi = F.max_pool2d(torch.where(known.bool(), t, -1.0), 3, stride=1, padding=1)
    lo = -F.max_pool2d(torch.where(known.bool(), -t, -big), 3, stride=1, padding=1)
    differs = (hi != t) | (lo != t)
    return (differs & known.bool()).squeeze(1)
