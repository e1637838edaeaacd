"""Datasets: the container, the strategy-facing pool view, and built-in generators/loaders."""

from alharness.datasets.base import IGNORE_INDEX, PoolView, SegmentationDataset, SplitData
from alharness.datasets import synthetic as _synthetic  # noqa: F401  (registers built-ins)

__all__ = ["IGNORE_INDEX", "PoolView", "SegmentationDataset", "SplitData"]
