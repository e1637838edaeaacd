"""Ground truth as the oracle and the cost models see it (never a strategy)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from alharness import clicks as _clicks
from alharness.datasets.base import SplitData


class PoolTruth:
    """The annotation pool's ground truth, with pool-level aggregates that
    some cost models need (e.g. the whole pool's clicks for cost_A/B)."""

    def __init__(self, split: SplitData):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def image(self, i: int) -> "ImageTruth":
        s = self.split
        return ImageTruth(
            mask=s.masks[i],
            instances=None if s.instances is None else s.instances[i],
            num_classes=s.num_classes,
            ignore_index=s.ignore_index,
            index=i,
            pool=self,
        )

    def clicks(self, epsilon: float) -> list[_clicks.ImageClicks]:
        return _clicks.pool_clicks(self.split.masks, self.split.ignore_index, epsilon)


@dataclass(frozen=True, eq=False)
class ImageTruth:
    """Ground truth of one pool image, as the oracle and cost models see it.

    ``segments`` are the objects an annotator outlines: instance ids where the
    dataset has them, else 4-connected components of each foreground class.
    """

    mask: np.ndarray
    instances: np.ndarray | None
    num_classes: int
    ignore_index: int
    index: int = -1
    pool: "PoolTruth | None" = None

    @cached_property
    def present_classes(self) -> np.ndarray:
        valid = self.mask[self.mask != self.ignore_index]
        return np.unique(valid)

    @cached_property
    def objects(self) -> list[tuple[int, np.ndarray]]:
        """(class, boolean mask) of every foreground object."""
        from skimage.measure import label

        out: list[tuple[int, np.ndarray]] = []
        if self.instances is not None:
            for iid in np.unique(self.instances):
                if iid == 0:
                    continue
                m = self.instances == iid
                cls = np.bincount(self.mask[m][self.mask[m] != self.ignore_index], minlength=1)
                if cls.size and cls.argmax() != 0:
                    out.append((int(cls.argmax()), m))
            return out
        for c in self.present_classes:
            if c == 0:
                continue
            comp = label(self.mask == c, connectivity=1)
            out += [(int(c), comp == k) for k in range(1, comp.max() + 1)]
        return out

    def instance_count(self) -> int:
        return len(self.objects)

    def counts_per_class(self) -> np.ndarray:
        counts = np.zeros(self.num_classes, np.int64)
        for c, _ in self.objects:
            counts[c] += 1
        return counts

    @property
    def num_foreground_classes(self) -> int:
        # Class 0 is background by convention; it is not a category an
        # annotator verifies.
        return max(1, self.num_classes - 1)


