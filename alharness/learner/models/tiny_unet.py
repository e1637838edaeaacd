"""``tiny_unet``: a small U-Net for tests and CPU benchmarks."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from alharness.errors import ConfigError
from alharness.learner.models.base import Parts, SegmentationModel
from alharness.registry import register_model


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """Two 3×3 conv–BN–ReLU layers (the U-Net building block)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyUNet(SegmentationModel):
    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16, depth: int = 2):
        super().__init__()
        if depth < 1 or width < 1:
            raise ConfigError(f"tiny_unet: depth and width must be >= 1, got depth={depth}, width={width}")
        self.depth = depth
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([conv_block(in_channels, chans[0])] + [conv_block(chans[i], chans[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))])
        self.dec = nn.ModuleList([conv_block(chans[i] * 2, chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], num_classes, 1)
        self.encoder_channels = tuple(chans)
        self.decoder_channels = tuple(reversed(chans[:-1]))
        self.feature_dim = chans[-1]

    def forward_parts(self, x: torch.Tensor) -> Parts:
        h, w = x.shape[-2:]
        skips, ph, pw = self._encode(x)
        x = skips[-1]
        decoder = []
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], dim=1))
            decoder.append(x)
        features = skips[-1].mean(dim=(2, 3))
        if ph or pw:  # heads must not see the padding either
            skips, decoder = _crop(skips, h, w, h + ph), _crop(decoder, h, w, h + ph)
        return Parts(logits=self.head(x)[..., :h, :w], features=features, encoder=skips, decoder=decoder)

    def forward_encoder(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``Parts.encoder`` without the decoder."""
        h, w = x.shape[-2:]
        skips, ph, pw = self._encode(x)
        return _crop(skips, h, w, h + ph) if ph or pw else skips

    def encoder_features(self, x: torch.Tensor) -> torch.Tensor:
        """``Parts.features`` without the decoder (pooled over the padded deepest map, as ``forward_parts``)."""
        return self._encode(x)[0][-1].mean(dim=(2, 3))

    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], int, int]:
        """The encoder maps of ``x`` padded to a multiple of 2**depth, and the padding (bottom, right)."""
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:  # pad to a multiple of 2**depth, crop back at the end
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        return skips, ph, pw


def _crop(maps: list[torch.Tensor], h: int, w: int, padded_h: int) -> list[torch.Tensor]:
    """Crop padded maps back to the input's extent at each map's own scale."""
    return [m[..., : -(-h // (padded_h // m.shape[-2])), : -(-w // (padded_h // m.shape[-2]))] for m in maps]


@register_model("tiny_unet")
def tiny_unet(num_classes: int, in_channels: int = 3, width: int = 16, depth: int = 2) -> nn.Module:
    """Small U-Net (width·2^i channels, `depth` poolings); trains on CPU in seconds at 32-64 px."""
    return TinyUNet(num_classes, in_channels, width, depth)
