"""Datasets: the container, the strategy-facing pool view, and built-in
generators and loaders (each registers itself when imported here)."""

from alharness.datasets.base import IGNORE_INDEX, PoolView, SegmentationDataset, SplitData
from alharness.datasets.polygons import Polygon, PolygonSet
from alharness.datasets import synthetic as _synthetic  # noqa: F401  (registers built-ins)
from alharness.datasets import voc as _voc  # noqa: F401
from alharness.datasets import cityscapes as _cityscapes  # noqa: F401
from alharness.datasets import folder as _folder  # noqa: F401
from alharness.datasets import bundled as _bundled  # noqa: F401

__all__ = ["IGNORE_INDEX", "Polygon", "PolygonSet", "PoolView", "SegmentationDataset", "SplitData"]
