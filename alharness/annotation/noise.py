"""Annotator noise: seeded corruption of oracle answers.

Applied by the oracle to pool answers only (the test split is never
touched). Every corrupted answer is flagged in the per-query log.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from alharness.errors import ConfigError
from alharness.contract.queries import Query
from alharness.annotation.truth import ImageTruth


# A shift of more pixels than any image is wide is a typo (and would dilate for ever).
MAX_BOUNDARY_PX = 256


@dataclass(frozen=True)
class NoiseConfig:
    """Rates of annotator mistakes; all zero means a perfect annotator.

    flip_rate: a yes/no answer is flipped with this probability.
    missing_area: image labels (and counts) omit classes covering less than
      this fraction of the image (small objects are overlooked).
    spurious_rate: each absent foreground class is wrongly reported present
      with this probability.
    boundary_px: masks and regions have each class's outline shifted by this
      many pixels, outwards or inwards at random per class.
    pixel_error_rate: a clicked pixel gets a wrong class with this probability.
    """

    flip_rate: float = 0.0
    missing_area: float = 0.0
    spurious_rate: float = 0.0
    boundary_px: int = 0
    pixel_error_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("flip_rate", "missing_area", "spurious_rate", "pixel_error_rate"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"noise.{name} must be a number in [0, 1], got {v!r}")
        px = self.boundary_px
        if isinstance(px, bool) or not isinstance(px, int) or not 0 <= px <= MAX_BOUNDARY_PX:
            raise ConfigError(f"noise.boundary_px must be an integer in 0..{MAX_BOUNDARY_PX}, got {px!r}")

    @property
    def active(self) -> bool:
        return any(v for v in asdict(self).values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Annotator:
    """Corrupts answers according to a NoiseConfig with a seeded generator."""

    def __init__(self, config: NoiseConfig, rng: np.random.Generator):
        self.config = config
        self.rng = rng
        self._by_kind: dict[str, Callable[[Query, Any, ImageTruth], Any]] = {
            "class_presence": self._yes_no,
            "image_labels": self._labels,
            "labels_with_counts": self._labels_with_counts,
            "full_mask": self._mask,
            "region": self._region,
            "pixels": self._pixels,
        }

    def corrupt(self, query: Query, answer: Any, truth: ImageTruth) -> tuple[Any, bool]:
        """(possibly corrupted answer, whether it differs from the truth)."""
        if not self.config.active or query.kind not in self._by_kind:
            return answer, False
        noisy = self._by_kind[query.kind](query, answer, truth)
        return noisy, not _same(noisy, answer)

    # -- per query type -----------------------------------------------------
    def _yes_no(self, query: Query, answer: bool, truth: ImageTruth) -> bool:
        return (not answer) if self.rng.random() < self.config.flip_rate else answer

    def _present_after_noise(self, present: np.ndarray, truth: ImageTruth) -> np.ndarray:
        out = present.copy()
        if self.config.missing_area > 0:
            area = np.bincount(truth.mask[truth.mask != truth.ignore_index].ravel(), minlength=truth.num_classes)
            small = area / truth.mask.size < self.config.missing_area
            small[0] = False  # background is not an object to overlook
            out &= ~small
        if self.config.spurious_rate > 0:
            absent = ~present
            absent[0] = False
            out |= absent & (self.rng.random(truth.num_classes) < self.config.spurious_rate)
        return out

    def _labels(self, query: Query, answer: np.ndarray, truth: ImageTruth) -> np.ndarray:
        return self._present_after_noise(answer, truth)

    def _labels_with_counts(self, query: Query, answer: tuple, truth: ImageTruth) -> tuple:
        present, counts = answer
        noisy = self._present_after_noise(present, truth)
        counts = counts.copy()
        counts[~noisy] = 0
        counts[noisy & (counts == 0)] = 1
        return noisy, counts

    def _noisy_mask(self, truth: ImageTruth) -> np.ndarray:
        mask, k = truth.mask, self.config.boundary_px
        if k == 0:
            return mask.copy()
        out = mask.copy()
        classes = [int(c) for c in truth.present_classes]
        for c in self.rng.permutation(classes):
            region = mask == c
            if self.rng.random() < 0.5:
                grown = ndimage.binary_dilation(region, iterations=k) & (mask != truth.ignore_index)
                out[grown & ~region] = c
            else:
                inner = ndimage.binary_erosion(region, iterations=k, border_value=1)
                rim = region & ~inner
                if rim.any() and (~region).any():
                    # Eroded pixels take the label of the nearest pixel outside the class.
                    _, (iy, ix) = ndimage.distance_transform_edt(region, return_indices=True)
                    out[rim] = mask[iy[rim], ix[rim]]
        return out

    def _mask(self, query: Query, answer: np.ndarray, truth: ImageTruth) -> np.ndarray:
        return self._noisy_mask(truth)

    def _region(self, query: Query, answer: np.ndarray, truth: ImageTruth) -> np.ndarray:
        y0, x0, y1, x1 = query.bounds  # type: ignore[attr-defined]
        return self._noisy_mask(truth)[y0:y1, x0:x1]

    def _pixels(self, query: Query, answer: np.ndarray, truth: ImageTruth) -> np.ndarray:
        out = answer.copy()
        wrong = self.rng.random(len(out)) < self.config.pixel_error_rate
        if wrong.any() and truth.num_classes > 1:
            shift = self.rng.integers(1, truth.num_classes, size=int(wrong.sum()))
            out[wrong] = (out[wrong].astype(np.int64) + shift) % truth.num_classes
        return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b))
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))
