"""The contract every segmentation model keeps, and what heads may read.

A registered factory takes ``num_classes``, ``in_channels`` and its own
keyword parameters and returns an ``nn.Module`` whose ``forward(x)`` gives a
dict with ``logits`` (B, num_classes, H, W) and ``features`` (B, F). That is
enough to train and predict.

Optional heads (classification, IoU, loss prediction, maturity) need to see
inside the network. A model that supports them subclasses
:class:`SegmentationModel`: it implements ``forward_parts`` and declares the
channel counts of what it returns, so heads are sized without a probe pass.
It also has an encoder-only pass (:meth:`SegmentationModel.forward_encoder`,
:meth:`SegmentationModel.encoder_features`) for callers that need no logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Parts:
    """One forward pass, opened up.

    ``encoder``: feature maps at increasing depth (shallow → deep);
    ``decoder``: feature maps coarse → fine, the last one being the map the
    segmentation classifier reads; ``features``: (B, F) image embedding.
    """

    logits: torch.Tensor
    features: torch.Tensor
    encoder: list[torch.Tensor]
    decoder: list[torch.Tensor]


class SegmentationModel(nn.Module):
    """Base of models that expose their inner feature maps to heads."""

    #: channels of ``Parts.encoder`` / ``Parts.decoder`` entries, and F of ``features``
    encoder_channels: tuple[int, ...] = ()
    decoder_channels: tuple[int, ...] = ()
    feature_dim: int = 0

    def forward_parts(self, x: torch.Tensor) -> Parts:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = self.forward_parts(x)
        return {"logits": parts.logits, "features": parts.features}

    def forward_encoder(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``Parts.encoder`` of ``forward_parts(x)``, without running the decoder.

        This default runs the whole ``forward_parts``. Subclasses override it
        with a pass that stops after the encoder."""
        return self.forward_parts(x).encoder

    def encoder_features(self, x: torch.Tensor) -> torch.Tensor:
        """``Parts.features`` of ``forward_parts(x)``, (B, F), from the encoder alone.

        This default is the pooled deepest encoder map, which is how every
        model here defines ``features``. A model that defines them otherwise
        overrides this method."""
        return self.forward_encoder(x)[-1].mean(dim=(2, 3))


def replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of the stem convolution for ``in_channels`` inputs (random init)."""
    if in_channels == conv.in_channels:
        return conv
    return nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation, conv.groups, conv.bias is not None)
