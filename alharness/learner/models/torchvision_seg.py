"""torchvision's DeepLabV3 and LR-ASPP, opened up so heads can read inside.

The torchvision modules are used as they are (same layers, same random
initialisation); only the forward pass is re-walked stage by stage to
collect the encoder maps that maturity and loss-prediction heads need.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from alharness.learner.models.base import Parts, SegmentationModel, replace_first_conv
from alharness.registry import register_model


class DeepLabV3(SegmentationModel):
    """torchvision DeepLabV3 (ResNet backbone, output stride 8, ASPP head)."""

    def __init__(self, net: nn.Module, in_channels: int):
        super().__init__()
        net.backbone.conv1 = replace_first_conv(net.backbone.conv1, in_channels)
        self.backbone = net.backbone  # IntermediateLayerGetter: conv1 … layer4
        self.classifier = net.classifier  # ASPP, 3×3 conv–BN–ReLU, 1×1 classifier
        self.encoder_channels = tuple(self.backbone[f"layer{i}"][-1].conv3.out_channels for i in range(1, 5))
        self.decoder_channels = (self.classifier[1].out_channels,)
        self.feature_dim = self.encoder_channels[-1]

    def forward_encoder(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ResNet stages' outputs (layer1 … layer4), without the ASPP head."""
        encoder = []
        y = x
        for name, module in self.backbone.items():
            y = module(y)
            if name.startswith("layer"):
                encoder.append(y)
        return encoder

    def forward_parts(self, x: torch.Tensor) -> Parts:
        encoder = self.forward_encoder(x)
        y = final = encoder[-1]
        for layer in list(self.classifier)[:-1]:  # DeepLabHead cannot be sliced
            final = layer(final)
        logits = F.interpolate(self.classifier[-1](final), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return Parts(logits=logits, features=y.mean(dim=(2, 3)), encoder=encoder, decoder=[final])


class LRASPP(SegmentationModel):
    """torchvision LR-ASPP on MobileNetV3-Large."""

    def __init__(self, net: nn.Module, in_channels: int):
        super().__init__()
        stem = net.backbone["0"]
        stem[0] = replace_first_conv(stem[0], in_channels)
        self.backbone = net.backbone  # IntermediateLayerGetter over MobileNetV3 blocks "0" … "16"
        self.head = net.classifier
        names = list(self.backbone.keys())
        self.low_name = next(k for k, v in self.backbone.return_layers.items() if v == "low")
        # Encoder maps: the last block before each stride change, and the last block.
        stride_blocks = [i for i, b in enumerate(self.backbone.values()) if getattr(b, "_is_cn", False)]
        self.tap_names = [names[i - 1] for i in stride_blocks if i > 0] + [names[-1]]
        self.encoder_channels = tuple(self.backbone[n].out_channels for n in self.tap_names)
        self.decoder_channels = (self.head.cbr[0].out_channels,)
        self.feature_dim = self.encoder_channels[-1]

    def forward_encoder(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The MobileNetV3 taps, without the LR-ASPP head."""
        return self._backbone(x)[0]

    def _backbone(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The encoder taps and the head's low-level input."""
        encoder, low = [], None
        y = x
        for name, module in self.backbone.items():
            y = module(y)
            if name in self.tap_names:
                encoder.append(y)
            if name == self.low_name:
                low = y
        return encoder, low

    def forward_parts(self, x: torch.Tensor) -> Parts:
        encoder, low = self._backbone(x)
        y = encoder[-1]  # the last block is the last tap
        # LRASPPHead.forward, kept open to return its high-branch map.
        high = self.head.cbr(y) * self.head.scale(y)
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        out = self.head.low_classifier(low) + self.head.high_classifier(high)
        logits = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return Parts(logits=logits, features=y.mean(dim=(2, 3)), encoder=encoder, decoder=[high])


@register_model("deeplabv3_resnet50")
def deeplabv3_resnet50(num_classes: int, in_channels: int = 3) -> nn.Module:
    """torchvision DeepLabV3, ResNet-50 backbone (about 7.5 s per 256² batch-4 training step on 2 CPU cores)."""
    from torchvision.models.segmentation import deeplabv3_resnet50 as build

    return DeepLabV3(build(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False), in_channels)


@register_model("deeplabv3_resnet101")
def deeplabv3_resnet101(num_classes: int, in_channels: int = 3) -> nn.Module:
    """torchvision DeepLabV3, ResNet-101 backbone (the binary-feedback paper's backbone depth)."""
    from torchvision.models.segmentation import deeplabv3_resnet101 as build

    return DeepLabV3(build(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False), in_channels)


@register_model("lraspp_mobilenet_v3_large")
def lraspp_mobilenet_v3_large(num_classes: int, in_channels: int = 3) -> nn.Module:
    """torchvision LR-ASPP, MobileNetV3-Large backbone (about 0.8 s per 256² batch-4 training step on 2 CPU cores)."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large as build

    return LRASPP(build(weights=None, weights_backbone=None, num_classes=num_classes), in_channels)
