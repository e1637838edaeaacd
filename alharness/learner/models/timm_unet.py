"""``unet_timm``: any timm encoder (``features_only=True``) with a light decoder.

The decoder is FPN-like: each encoder stage is projected to ``decoder_width``
channels, merged top-down (upsample + add, as in a U-Net's skip path but
with additions instead of concatenations to stay light), refined by one
3×3 conv–BN–ReLU per level, and classified at the finest stage; logits are
upsampled to the input size. timm is imported when a model is built, so
listing models stays fast.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from alharness.errors import ConfigError
from alharness.learner.models.base import Parts, SegmentationModel
from alharness.registry import register_model


def _cbr(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TimmUNet(SegmentationModel):
    def __init__(self, num_classes: int, in_channels: int, encoder: str, decoder_width: int, encoder_params: dict[str, Any]):
        super().__init__()
        import timm

        if not timm.is_model(encoder):
            raise ConfigError(f"unet_timm: unknown timm encoder {encoder!r} (see timm.list_models())")
        if decoder_width < 1:
            raise ConfigError(f"unet_timm: decoder_width must be >= 1, got {decoder_width}")
        try:
            # Random initialisation: weights come only from the learner's weights_path.
            self.encoder = timm.create_model(encoder, pretrained=False, features_only=True, in_chans=in_channels, **encoder_params)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"unet_timm: timm could not build encoder {encoder!r} with {encoder_params}: {exc}") from None
        chans = list(self.encoder.feature_info.channels())
        self.lateral = nn.ModuleList([nn.Conv2d(c, decoder_width, 1) for c in chans])
        self.refine = nn.ModuleList([_cbr(decoder_width, decoder_width, 3) for _ in chans])
        self.head = nn.Conv2d(decoder_width, num_classes, 1)
        self.encoder_channels = tuple(chans)
        self.decoder_channels = (decoder_width,) * len(chans)
        self.feature_dim = chans[-1]

    def forward_encoder(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The timm encoder's stages, without the decoder."""
        return list(self.encoder(x))

    def forward_parts(self, x: torch.Tensor) -> Parts:
        stages = self.encoder(x)
        y = None
        decoder = []
        for i in reversed(range(len(stages))):
            lat = self.lateral[i](stages[i])
            y = lat if y is None else lat + F.interpolate(y, size=lat.shape[-2:], mode="bilinear", align_corners=False)
            y = self.refine[i](y)
            decoder.append(y)
        logits = F.interpolate(self.head(y), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return Parts(logits=logits, features=stages[-1].mean(dim=(2, 3)), encoder=list(stages), decoder=decoder)


@register_model("unet_timm")
def unet_timm(num_classes: int, in_channels: int = 3, encoder: str = "resnet18", decoder_width: int = 64,
              encoder_params: dict[str, Any] | None = None) -> nn.Module:
    """Any timm encoder (features_only) + light FPN/U-Net decoder; `encoder` names the timm model."""
    return TimmUNet(num_classes, in_channels, encoder, decoder_width, dict(encoder_params or {}))
