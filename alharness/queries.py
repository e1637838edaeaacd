"""Typed annotation queries and the answers the oracle gives to them.

A query knows three things about itself, so that the campaign loop never has
to special-case a query type: how to check that it is well formed, how the
oracle answers it from one image's ground truth, and how its answer is
written into the label state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from alharness.labels import LabelState


@dataclass(frozen=True)
class ImageTruth:
    """Ground truth of one pool image, as the oracle and cost models see it."""

    mask: np.ndarray
    instances: np.ndarray | None
    num_classes: int
    ignore_index: int

    def present_classes(self) -> np.ndarray:
        valid = self.mask[self.mask != self.ignore_index]
        return np.unique(valid)

    def instance_count(self) -> int:
        """Objects in the image: instance ids where present, else connected
        components of each foreground class."""
        if self.instances is not None:
            ids = np.unique(self.instances)
            return int((ids > 0).sum())
        from skimage.measure import label

        total = 0
        for c in self.present_classes():
            if c == 0:
                continue
            total += int(label(self.mask == c, connectivity=1).max())
        return total


@dataclass(frozen=True)
class Query:
    """Base of all queries. ``image`` is the position of the image in the pool."""

    image: int
    kind: ClassVar[str] = ""

    def key(self) -> tuple:
        """Identity used to refuse repeated queries."""
        return (self.kind, int(self.image))

    def validate(self, pool_size: int, num_classes: int, image_shape: tuple[int, int]) -> str | None:
        """Return why the query is malformed, or None if it is well formed."""
        if isinstance(self.image, bool) or not isinstance(self.image, (int, np.integer)):
            return f"image must be an int pool position, got {type(self.image).__name__}"
        if not 0 <= int(self.image) < pool_size:
            return f"image {self.image} is outside the pool (0..{pool_size - 1})"
        return None

    def answer(self, truth: ImageTruth) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def record(self, state: "LabelState", answer: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        """Columns for the per-query log."""
        return {"query_type": self.kind, "image": int(self.image)}


@dataclass(frozen=True)
class FullMask(Query):
    """All pixels of one image."""

    kind: ClassVar[str] = "full_mask"

    def answer(self, truth: ImageTruth) -> np.ndarray:
        return truth.mask.copy()

    def record(self, state: "LabelState", answer: np.ndarray) -> None:
        state.set_full_mask(int(self.image), answer)


@dataclass(frozen=True)
class ImageLabels(Query):
    """The set of classes present in one image (multi-hot)."""

    kind: ClassVar[str] = "image_labels"

    def answer(self, truth: ImageTruth) -> np.ndarray:
        present = np.zeros(truth.num_classes, bool)
        present[truth.present_classes()] = True
        return present

    def record(self, state: "LabelState", answer: np.ndarray) -> None:
        state.set_image_labels(int(self.image), answer)


QUERY_TYPES: dict[str, type[Query]] = {q.kind: q for q in (FullMask, ImageLabels)}
