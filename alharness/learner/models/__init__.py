"""Segmentation models, registered by name (``alharness list models``).

One module per family, as timm does; importing this package registers them
all (heavy libraries are imported only when a model is built).
"""

from alharness.learner.models import timm_unet, tiny_unet, torchvision_seg  # noqa: F401  (registration)
from alharness.learner.models.base import Parts, SegmentationModel

__all__ = ["Parts", "SegmentationModel"]
