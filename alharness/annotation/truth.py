"""Ground truth as the oracle and the cost models see it (never a strategy)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from alharness.toolkit import clicks as _clicks
from alharness.datasets.base import SplitData


class PoolTruth:
    """The annotation pool's ground truth, with pool-level aggregates that
    some cost models need (e.g. the whole pool's clicks for cost_A/B)."""

    def __init__(self, split: SplitData):
        self.split = split
        self._clicks: dict[tuple, _clicks.PoolClicks] = {}
        self._counts: dict[int, np.ndarray] = {}
        self._present: dict[int, np.ndarray] = {}
        self._labelled: dict[int, int] = {}

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

    def object_counts(self, i: int) -> np.ndarray:
        """Objects per class in image ``i`` (cached: cost models ask per answer)."""
        if i not in self._counts:
            s = self.split
            classes = self._segment_classes(i) if s.instances is None else None
            if classes is not None:
                self._counts[i] = _counts_of_segments(classes, s.num_classes)
            else:
                self._counts[i] = _object_counts(s.masks[i], None if s.instances is None else s.instances[i],
                                                 s.num_classes, s.ignore_index)
        return self._counts[i]

    def _segment_classes(self, i: int) -> np.ndarray | None:
        """Image ``i``'s segment classes from click data already computed (any
        epsilon: segments do not depend on it), else None. Labelling the
        segments again would cost more than every cost metric together."""
        known = (pool.segment_classes(i) for pool in self._clicks.values())
        return next((c for c in known if c is not None), None)

    def labelled_pixels(self, i: int) -> int:
        """Pixels of image ``i`` that carry a class (void excluded)."""
        if i not in self._labelled:
            m = self.split.masks[i]
            self._labelled[i] = int(m.size - np.count_nonzero(m == self.split.ignore_index))
        return self._labelled[i]

    def present_classes(self, i: int) -> np.ndarray:
        if i not in self._present:
            m = self.split.masks[i]
            counts = np.bincount(m.ravel(), minlength=256)
            counts[self.split.ignore_index] = 0
            self._present[i] = np.flatnonzero(counts)
        return self._present[i]

    def clicks(self, epsilon: float, true_polygons: bool = True) -> _clicks.PoolClicks:
        """Per-image click data (counted once per pool and ε; per-pixel maps
        rebuilt on demand): the dataset's true polygons where it has them
        (and ``true_polygons``), else RDP."""
        polygons = self.split.polygons if true_polygons else None
        key = (epsilon, polygons is not None)
        if key not in self._clicks:
            self._clicks[key] = _clicks.pool_clicks(self.split.masks, self.split.ignore_index, epsilon, polygons)
        return self._clicks[key]

    def click_totals(self, epsilon: float, true_polygons: bool = True) -> tuple[int, int]:
        """(c_p(P), c_c(P)) of the whole pool."""
        return self.clicks(epsilon, true_polygons).totals


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
    # Results that several cost models derive from the same answer (click
    # counts), kept for this one answer so that each is computed once.
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def present_classes(self) -> np.ndarray:
        if self.pool is not None:
            return self.pool.present_classes(self.index)
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
        return int(self.counts_per_class().sum())

    def counts_per_class(self) -> np.ndarray:
        if self.pool is not None:
            return self.pool.object_counts(self.index)
        return _object_counts(self.mask, self.instances, self.num_classes, self.ignore_index)

    @property
    def num_foreground_classes(self) -> int:
        # Class 0 is background by convention; it is not a category an
        # annotator verifies.
        return max(1, self.num_classes - 1)

    def labelled_pixels(self) -> int:
        """Pixels of the image that carry a class (void excluded)."""
        if self.pool is not None:
            return self.pool.labelled_pixels(self.index)
        return int(self.mask.size - np.count_nonzero(self.mask == self.ignore_index))


def _counts_of_segments(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Foreground objects per class, given the class of every segment (index 0 unused)."""
    cls = classes[1:]
    return np.bincount(cls[cls != 0], minlength=num_classes)[:num_classes]


def _object_counts(mask: np.ndarray, instances: np.ndarray | None, num_classes: int, ignore_index: int) -> np.ndarray:
    """Foreground objects per class: instances (by majority class) where the
    dataset has them, else 4-connected components of each class."""
    counts = np.zeros(num_classes, np.int64)
    if instances is not None:
        keep = (instances > 0) & (mask != ignore_index)
        if keep.any():
            inst, cls = instances[keep].astype(np.int64), mask[keep].astype(np.int64)
            table = np.bincount(inst * num_classes + cls, minlength=(inst.max() + 1) * num_classes)
            table = table.reshape(-1, num_classes)
            has = table.sum(1) > 0
            major = table[has].argmax(1)
            counts += np.bincount(major[major != 0], minlength=num_classes)
        return counts
    seg = _clicks.segment_map(mask, ignore_index)
    if seg.max() == 0:
        return counts
    return _counts_of_segments(_clicks.segment_classes(seg, mask), num_classes)
