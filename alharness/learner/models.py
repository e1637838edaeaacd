"""Segmentation models, registered by name. Every factory takes
``num_classes`` and ``in_channels`` plus its own keyword parameters and
returns a module mapping (B, in_channels, H, W) to a dict with ``logits``
(B, num_classes, H, W) and ``features`` (B, F) image embeddings."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from alharness.errors import ConfigError
from alharness.registry import register_model


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyUNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16, depth: int = 2):
        super().__init__()
        if depth < 1 or width < 1:
            raise ConfigError(f"tiny_unet: depth and width must be >= 1, got depth={depth}, width={width}")
        self.depth = depth
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_channels, chans[0])] + [_block(chans[i], chans[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))])
        self.dec = nn.ModuleList([_block(chans[i] * 2, chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:  # pad to a multiple of 2**depth, crop back at the end
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        features = x.mean(dim=(2, 3))
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], dim=1))
        return {"logits": self.head(x)[..., :h, :w], "features": features}


@register_model("tiny_unet")
def tiny_unet(num_classes: int, in_channels: int = 3, width: int = 16, depth: int = 2) -> nn.Module:
    """Small U-Net (width·2^i channels, `depth` poolings); trains on CPU in seconds at 32-64 px."""
    return TinyUNet(num_classes, in_channels, width, depth)
