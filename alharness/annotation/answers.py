"""How the oracle answers each kind of query from one image's ground truth,
and how the answer is written into the label state.

The query values themselves (``alharness.contract.queries``) carry no
ground-truth code; the two functions here dispatch on their type, so the
oracle and the campaign loop never special-case one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatch
from typing import Any, Iterable

import numpy as np

from alharness.annotation.labels import LabelState
from alharness.annotation.truth import ImageTruth
from alharness.contract.queries import Boxes, ClassPresence, FullMask, ImageLabels, LabelsWithCounts, Pixels, Query, Region


@dataclass(frozen=True)
class ValidationMask(FullMask):
    """The full mask of a *validation* image (``image`` indexes the val split),
    bought by the harness when a benchmark charges its validation split.
    Priced like a full mask; never accepted from a strategy."""

    def keys(self) -> Iterable[tuple]:
        return [("validation_mask", int(self.image))]

    @property
    def log_kind(self) -> str:
        return "validation_mask"


def _present(truth: ImageTruth) -> np.ndarray:
    present = np.zeros(truth.num_classes, bool)
    present[truth.present_classes] = True
    return present


@singledispatch
def answer(query: Query, truth: ImageTruth) -> Any:
    """The true answer to ``query`` on the image whose ground truth is ``truth``."""
    raise TypeError(f"no answer for query type {type(query).__name__}")


@answer.register
def _(query: FullMask, truth: ImageTruth) -> np.ndarray:
    return truth.mask.copy()


@answer.register
def _(query: ImageLabels, truth: ImageTruth) -> np.ndarray:
    return _present(truth)


@answer.register
def _(query: ClassPresence, truth: ImageTruth) -> bool:
    return bool(np.isin(int(query.cls), truth.present_classes))


@answer.register
def _(query: LabelsWithCounts, truth: ImageTruth) -> tuple[np.ndarray, np.ndarray]:
    return _present(truth), truth.counts_per_class()


@answer.register
def _(query: Boxes, truth: ImageTruth) -> np.ndarray:
    rows = []
    for c, m in truth.objects:
        ys, xs = np.nonzero(m)
        rows.append((c, ys.min(), xs.min(), ys.max() + 1, xs.max() + 1))
    return np.array(rows, np.int64).reshape(-1, 5)


@answer.register
def _(query: Region, truth: ImageTruth) -> np.ndarray:
    y0, x0, y1, x1 = query.bounds
    return truth.mask[y0:y1, x0:x1].copy()


@answer.register
def _(query: Pixels, truth: ImageTruth) -> np.ndarray:
    return truth.mask[query.pixel_index].copy()


@singledispatch
def record(query: Query, state: LabelState, answer: Any) -> None:
    """Write ``answer`` (to ``query``) into the label state."""
    raise TypeError(f"no way to record query type {type(query).__name__}")


@record.register
def _(query: FullMask, state: LabelState, answer: np.ndarray) -> None:
    if query.held_out:
        state.set_held_out_mask(int(query.image), answer)
    else:
        state.set_full_mask(int(query.image), answer)


@record.register
def _(query: ImageLabels, state: LabelState, answer: np.ndarray) -> None:
    state.set_image_labels(int(query.image), answer)


@record.register
def _(query: ClassPresence, state: LabelState, answer: bool) -> None:
    state.set_class_presence(int(query.image), int(query.cls), bool(answer))


@record.register
def _(query: LabelsWithCounts, state: LabelState, answer: tuple[np.ndarray, np.ndarray]) -> None:
    present, counts = answer
    state.set_image_labels(int(query.image), present)
    state.set_counts(int(query.image), counts)


@record.register
def _(query: Boxes, state: LabelState, answer: np.ndarray) -> None:
    state.set_boxes(int(query.image), answer)


@record.register
def _(query: Region, state: LabelState, answer: np.ndarray) -> None:
    y0, x0, y1, x1 = query.bounds
    state.set_pixels(int(query.image), (slice(y0, y1), slice(x0, x1)), answer)


@record.register
def _(query: Pixels, state: LabelState, answer: np.ndarray) -> None:
    state.set_pixels(int(query.image), query.pixel_index, answer)
