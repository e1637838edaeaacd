"""Dataset container and the views that keep ground truth away from strategies."""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from alharness.contract.views import PoolView
from alharness.datasets.polygons import PolygonSet
from alharness.errors import ConfigError

IGNORE_INDEX = 255
SPLITS = ("train", "val", "test")


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of ``a`` as a new array that owns its memory (one copy,
    also when ``a`` is memory-mapped)."""
    out = np.empty((len(idx), *a.shape[1:]), a.dtype)
    np.take(a, idx, axis=0, out=out)
    return _readonly(out)


def _file_rows(a: np.ndarray, start: int, stop: int) -> np.ndarray | None:
    """Rows ``start:stop`` of a memory-mapped ``.npy`` array as a new
    read-only memory map of just those bytes (None if ``a`` is not one).

    It shares the OS page cache with every other process that maps the file,
    so a split costs no private memory, and it has no Python link to the
    whole array: its buffer covers these rows and, because maps start on a
    page boundary, at most one page before them (for the first rows, which
    hold the train split, that page is the file header).
    """
    if not (isinstance(a, np.memmap) and a.filename and isinstance(a.base, mmap.mmap)
            and a.flags.c_contiguous and stop > start):
        return None
    row = a.itemsize * math.prod(a.shape[1:])
    return np.memmap(a.filename, dtype=a.dtype, mode="r", offset=a.offset + start * row, shape=(stop - start, *a.shape[1:]))


def _rows(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of ``a`` that share nothing with the rest of ``a``:
    mapped from the cache file when they are one contiguous run, else copied."""
    if len(idx) and (np.diff(idx) == 1).all():
        view = _file_rows(a, int(idx[0]), int(idx[-1]) + 1)
        if view is not None:
            return view
    return _take(a, idx)


def _max_label(masks: np.ndarray, ignore_index: int, chunk: int = 64) -> int:
    """Largest non-ignored label, a few images at a time: a memory-mapped
    dataset may be far larger than RAM, and a boolean index of all of it
    would be read into memory at once."""
    top = -1
    for i in range(0, len(masks), chunk):
        m = np.asarray(masks[i:i + chunk])
        v = m[m != ignore_index]
        if v.size:
            top = max(top, int(v.max()))
    return top


@dataclass(frozen=True)
class SegmentationDataset:
    """Images with per-pixel class ids (and optional instance ids), split into
    ``train`` (the annotation pool), ``val`` and ``test``.

    ``images``: (N, H, W, 3) uint8; ``masks``: (N, H, W) uint8 with
    ``ignore_index`` for void pixels; ``instances``: (N, H, W) int32 with 0 for
    "no instance", or None; ``polygons``: the polygons annotators drew (one
    vertex per click), where the source has them, or None. Arrays may be
    read-only memory maps of the dataset cache.
    """

    name: str
    images: np.ndarray
    masks: np.ndarray
    class_names: tuple[str, ...]
    splits: Mapping[str, np.ndarray]
    instances: np.ndarray | None = None
    ignore_index: int = IGNORE_INDEX
    metadata: Mapping[str, object] = field(default_factory=dict)
    polygons: PolygonSet | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ConfigError(f"dataset {self.name!r}: images must be (N, H, W, 3) uint8, got {self.images.shape} {self.images.dtype}")
        if self.masks.shape != self.images.shape[:3]:
            raise ConfigError(f"dataset {self.name!r}: masks shape {self.masks.shape} does not match images {self.images.shape[:3]}")
        if self.instances is not None and self.instances.shape != self.masks.shape:
            raise ConfigError(f"dataset {self.name!r}: instances shape {self.instances.shape} does not match masks")
        for split in SPLITS:
            if split not in self.splits:
                raise ConfigError(f"dataset {self.name!r} has no {split!r} split")
            idx = np.asarray(self.splits[split])
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ConfigError(f"dataset {self.name!r}: split {split!r} indexes outside 0..{n - 1}")
        if len(self.splits["train"]) == 0 or len(self.splits["test"]) == 0:
            raise ConfigError(f"dataset {self.name!r}: train and test splits must be non-empty")
        top = _max_label(self.masks, self.ignore_index)
        if top >= len(self.class_names):
            raise ConfigError(f"dataset {self.name!r}: mask holds class {top} but only {len(self.class_names)} classes are named")
        if self.polygons is not None and len(self.polygons) and int(self.polygons.image.max()) >= n:
            raise ConfigError(f"dataset {self.name!r}: polygons refer to images outside 0..{n - 1}")
        for a in (self.images, self.masks, self.instances):
            if a is not None:
                _readonly(a)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.images.shape[1:3])  # type: ignore[return-value]

    def split(self, name: str) -> "SplitData":
        """One split's arrays, never views into the whole dataset: copies, or,
        for a memory-mapped dataset whose split is a contiguous run (the
        built-in loaders write train, val, test in that order), new memory
        maps of just that run, which cost no private memory per worker."""
        idx = np.asarray(self.splits[name])
        return SplitData(
            dataset_ids=_readonly(idx.copy()),
            images=_rows(self.images, idx),
            masks=_rows(self.masks, idx),
            instances=None if self.instances is None else _rows(self.instances, idx),
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            polygons=None if self.polygons is None else self.polygons.subset(idx),
        )


@dataclass(frozen=True)
class SplitData:
    """One split's images and ground truth. Held by the oracle and the
    evaluator, never handed to a strategy."""

    dataset_ids: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    instances: np.ndarray | None
    num_classes: int
    ignore_index: int
    polygons: PolygonSet | None = None  # indexed by position in this split

    def __len__(self) -> int:
        return len(self.images)


def make_pool_view(split: SplitData, class_names: tuple[str, ...]) -> PoolView:
    """The strategy's view of the pool ``split``: its images (read-only, sharing
    no memory with the dataset or the split: a copy, or its own memory map of
    the pool's rows of the cache file), ids and metadata; no ground truth."""
    return PoolView(
        images=_readonly(_rows(split.images, np.arange(len(split.images)))),
        dataset_ids=_readonly(np.array(split.dataset_ids, copy=True)),
        class_names=tuple(class_names),
        ignore_index=split.ignore_index,
    )
