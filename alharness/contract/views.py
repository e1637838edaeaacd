"""Read-only views a strategy receives: the pool without ground truth, and
the label state as bought so far.

Image-level knowledge in the label state is kept per class as
``POSITIVE`` (1), ``NEGATIVE`` (0) or ``UNKNOWN`` (-1); unknown pixel labels
hold the dataset's ``ignore_index``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNKNOWN, NEGATIVE, POSITIVE = -1, 0, 1


@dataclass(frozen=True)
class PoolView:
    """What a strategy may see of the annotation pool: images, ids and
    metadata, and no ground truth. ``images`` is read-only and shares no
    memory with the dataset or the split (a copy, or its own memory map of
    the pool's rows of the cache file), so nothing reachable from it leads to
    masks or to other splits."""

    images: np.ndarray
    dataset_ids: np.ndarray
    class_names: tuple[str, ...]
    ignore_index: int

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.images.shape[1:3])  # type: ignore[return-value]


@dataclass(frozen=True)
class LabelStateView:
    """Read-only view of the label state for strategies."""

    pixels: np.ndarray
    image_labels: np.ndarray
    has_full_mask: np.ndarray
    counts: np.ndarray
    boxes: dict
    ignore_index: int

    @property
    def has_image_labels(self) -> np.ndarray:
        """Images whose every class is known (positive or negative)."""
        return (self.image_labels != UNKNOWN).all(axis=1)
