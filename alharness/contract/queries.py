"""Typed annotation queries: the values a strategy proposes.

A query knows, about itself: whether it is well formed, the atomic keys that
identify what it asks (so that nothing is bought twice), the pixels it
reveals and its row in the query log. How the oracle answers it from ground
truth and writes the answer into the label state lives on the harness side
(``alharness.annotation.answers``), so importing the contract loads no
ground-truth type.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Iterable

import numpy as np


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


@dataclass(frozen=True)
class Query:
    """Base of all queries. ``image`` is the position of the image in the pool."""

    image: int
    kind: ClassVar[str] = ""

    def keys(self) -> Iterable[tuple]:
        """Atomic identities of what this query buys; none may be bought twice."""
        return [(self.kind, int(self.image))]

    def validate(self, pool_size: int, num_classes: int, image_shape: tuple[int, int]) -> str | None:
        """Return why the query is malformed, or None if it is well formed."""
        if not _is_int(self.image):
            return f"image must be an int pool position, got {type(self.image).__name__}"
        if not 0 <= int(self.image) < pool_size:
            return f"image {self.image} is outside the pool (0..{pool_size - 1})"
        return None

    def area(self, image_shape: tuple[int, int]) -> int:
        """Pixels whose labels this query reveals (0 for image-level queries)."""
        return 0

    @property
    def log_kind(self) -> str:
        """The query type as logged and counted (``kind`` unless a subclass says otherwise)."""
        return self.kind

    def describe(self) -> dict:
        """Columns for the per-query log."""
        return {"query_type": self.log_kind, "image": int(self.image), "cls": None, "box": None, "pixels": None}


HELD_OUT_MASK = "held_out_mask"  # the logged query type of FullMask(held_out=True)


@dataclass(frozen=True)
class FullMask(Query):
    """All pixels of one image.

    ``held_out=True`` buys the mask *held out*: priced and charged exactly
    like a full mask (same ``kind``), written into the label state for the
    strategy to read, but the image leaves the training pool: the learner
    never trains on it and the oracle refuses every later query on it (e.g.
    MetaBox+'s meta set M, on which MetaSeg learns segment IoUs of images the
    network has not fitted, MetaBox+ paper §3.2). It shares the full mask's
    key, so an image is bought either for training or held out, never both;
    it is logged and counted as ``held_out_mask`` (``HELD_OUT_MASK``), not
    as a full mask.
    """

    held_out: bool = False
    kind: ClassVar[str] = "full_mask"

    def keys(self) -> Iterable[tuple]:
        # The mask's own key, plus a mark the oracle finds when the image is asked again.
        return [*super().keys(), *([("held_out", int(self.image))] if self.held_out else [])]

    def validate(self, pool_size: int, num_classes: int, image_shape: tuple[int, int]) -> str | None:
        if not isinstance(self.held_out, (bool, np.bool_)):
            return f"held_out must be a bool, got {type(self.held_out).__name__}"
        return super().validate(pool_size, num_classes, image_shape)

    def area(self, image_shape: tuple[int, int]) -> int:
        return int(image_shape[0] * image_shape[1])

    @property
    def log_kind(self) -> str:
        return HELD_OUT_MASK if self.held_out else self.kind


@dataclass(frozen=True)
class ImageLabels(Query):
    """The set of classes present in one image (multi-hot)."""

    kind: ClassVar[str] = "image_labels"


@dataclass(frozen=True)
class ClassPresence(Query):
    """Is class ``cls`` present in the image? Yes/no (binary-user-feedback paper)."""

    cls: int = 0
    kind: ClassVar[str] = "class_presence"

    def keys(self) -> Iterable[tuple]:
        return [(self.kind, int(self.image), int(self.cls))]

    def validate(self, pool_size: int, num_classes: int, image_shape: tuple[int, int]) -> str | None:
        why = super().validate(pool_size, num_classes, image_shape)
        if why:
            return why
        if not _is_int(self.cls) or not 0 <= int(self.cls) < num_classes:
            return f"cls must be an int class id in 0..{num_classes - 1}, got {self.cls!r}"
        return None

    def describe(self) -> dict:
        return {**super().describe(), "cls": int(self.cls)}


@dataclass(frozen=True)
class LabelsWithCounts(Query):
    """Classes present and the number of instances of each (IL+C, mask-guided paper)."""

    kind: ClassVar[str] = "labels_with_counts"


@dataclass(frozen=True)
class Boxes(Query):
    """Class and bounding box (y0, x0, y1, x1; end exclusive) of every object in the image."""

    kind: ClassVar[str] = "boxes"


@dataclass(frozen=True)
class Region(Query):
    """Labels of every pixel inside the square box with top-left (y, x) and side ``size`` (MetaBox+ paper)."""

    y: int = 0
    x: int = 0
    size: int = 1
    kind: ClassVar[str] = "region"

    def keys(self) -> Iterable[tuple]:
        return [(self.kind, int(self.image), int(self.y), int(self.x), int(self.size))]

    def validate(self, pool_size: int, num_classes: int, image_shape: tuple[int, int]) -> str | None:
        why = super().validate(pool_size, num_classes, image_shape)
        if why:
            return why
        if not all(_is_int(v) for v in (self.y, self.x, self.size)):
            return "y, x and size must be ints"
        h, w = image_shape
        if self.size < 1 or self.y < 0 or self.x < 0 or self.y + self.size > h or self.x + self.size > w:
            return f"box y={self.y}, x={self.x}, size={self.size} does not lie inside the {h}x{w} image"
        return None

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        return int(self.y), int(self.x), int(self.y) + int(self.size), int(self.x) + int(self.size)

    def area(self, image_shape: tuple[int, int]) -> int:
        return int(self.size) ** 2

    def describe(self) -> dict:
        return {**super().describe(), "box": list(self.bounds)}


@dataclass(frozen=True)
class Pixels(Query):
    """Labels at the given pixel coordinates ((y, x) pairs; MADBAL paper)."""

    coords: tuple[tuple[int, int], ...] = ()
    kind: ClassVar[str] = "pixels"

    def keys(self) -> Iterable[tuple]:
        # One key per pixel: asking an already-labelled pixel again is a repeat.
        return [(self.kind, int(self.image), int(y), int(x)) for y, x in self.coords]

    def validate(self, pool_size: int, num_classes: int, image_shape: tuple[int, int]) -> str | None:
        why = super().validate(pool_size, num_classes, image_shape)
        if why:
            return why
        if not isinstance(self.coords, tuple) or not self.coords:
            return "coords must be a non-empty tuple of (y, x) pairs"
        h, w = image_shape
        for p in self.coords:
            if not (isinstance(p, tuple) and len(p) == 2 and all(_is_int(v) for v in p)):
                return f"coords must be (y, x) int pairs, got {p!r}"
            if not (0 <= p[0] < h and 0 <= p[1] < w):
                return f"pixel {p} lies outside the {h}x{w} image"
        if len(set(self.coords)) != len(self.coords):
            return "coords repeat a pixel"
        return None

    @cached_property
    def pixel_index(self) -> tuple[np.ndarray, np.ndarray]:
        """The coordinates as (rows, columns) index arrays."""
        arr = np.asarray(self.coords, np.int64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    def area(self, image_shape: tuple[int, int]) -> int:
        return len(self.coords)

    def describe(self) -> dict:
        return {**super().describe(), "pixels": [[int(y), int(x)] for y, x in self.coords]}


QUERY_TYPES: dict[str, type[Query]] = {
    q.kind: q for q in (FullMask, ImageLabels, ClassPresence, LabelsWithCounts, Boxes, Region, Pixels)
}
