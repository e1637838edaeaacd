"""Annotated polygons (e.g. Cityscapes ``_polygons.json``), stored flat.

Cost models that count *true* clicks need the polygons an annotator really
drew: each vertex was one click. Thousands of images hold hundreds of
thousands of polygons, so they live in a few flat arrays (memory-mappable
like the masks) instead of Python lists: vertex ``k`` of polygon ``p`` is
``vertices[offsets[p] + k]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from alharness.errors import ConfigError

# Arrays of a PolygonSet as they are stored in the dataset cache.
ARRAY_NAMES = ("poly_vertices", "poly_offsets", "poly_image", "poly_class", "poly_label")


class Polygon(NamedTuple):
    label: str  # the annotation's own label, e.g. "car" or "cargroup"
    class_id: int  # the dataset class it counts as (ignore index if none)
    vertices: np.ndarray  # (V, 2) float32 (x, y) in the dataset's pixel frame

    @property
    def clicks(self) -> int:
        return len(self.vertices)


@dataclass(frozen=True)
class PolygonSet:
    """Polygons of many images. ``image[p]`` is the image index of polygon
    ``p`` (the dataset's index, or the split's after :meth:`subset`);
    polygons are kept in annotation order (later ones drawn on top)."""

    vertices: np.ndarray  # (V, 2) float32
    offsets: np.ndarray  # (P + 1,) int64
    image: np.ndarray  # (P,) int32
    class_id: np.ndarray  # (P,) uint8
    label: np.ndarray  # (P,) int16, index into label_names
    label_names: tuple[str, ...]

    def __post_init__(self) -> None:
        p = len(self.image)
        if len(self.offsets) != p + 1 or len(self.class_id) != p or len(self.label) != p:
            raise ConfigError("polygons: offsets, image, class_id and label arrays disagree in length")
        if p and (self.offsets[0] != 0 or self.offsets[-1] != len(self.vertices)):
            raise ConfigError("polygons: offsets must start at 0 and end at the number of vertices")
        for a in (self.vertices, self.offsets, self.image, self.class_id, self.label):
            a.setflags(write=False)

    def __len__(self) -> int:
        return len(self.image)

    def vertex_counts(self) -> np.ndarray:
        """Clicks per polygon."""
        return np.diff(self.offsets)

    def _polygons_of(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Polygon indices of ``images`` (in that order, annotation order
        within an image) and how many each image has, by binary search
        instead of a pass over all polygons per image."""
        order = np.argsort(self.image, kind="stable")
        lo = np.searchsorted(self.image[order], images, side="left")
        hi = np.searchsorted(self.image[order], images, side="right")
        parts = [order[a:b] for a, b in zip(lo, hi)]
        keep = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        return keep, hi - lo

    def of_image(self, image: int) -> list[Polygon]:
        """The polygons of one image, in annotation order."""
        return [self[int(p)] for p in self._polygons_of(np.array([image]))[0]]

    def __getitem__(self, p: int) -> Polygon:
        a, b = int(self.offsets[p]), int(self.offsets[p + 1])
        return Polygon(self.label_names[int(self.label[p])], int(self.class_id[p]), self.vertices[a:b])

    def subset(self, images: Sequence[int] | np.ndarray) -> "PolygonSet":
        """Copies of the polygons of ``images``, re-indexed 0..len(images)-1 in
        that order (what a split hands to the oracle)."""
        images = np.asarray(images, np.int64)
        keep, per_image = self._polygons_of(images)
        verts = [self.vertices[self.offsets[p]:self.offsets[p + 1]] for p in keep]
        return PolygonSet(
            vertices=np.concatenate(verts).astype(np.float32) if verts else np.zeros((0, 2), np.float32),
            offsets=np.concatenate([[0], np.cumsum(np.diff(self.offsets)[keep])]).astype(np.int64),
            image=np.repeat(np.arange(len(images), dtype=np.int32), per_image),
            class_id=np.array(self.class_id[keep], np.uint8),
            label=np.array(self.label[keep], np.int16),
            label_names=self.label_names,
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(zip(ARRAY_NAMES, (self.vertices, self.offsets, self.image, self.class_id, self.label)))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], label_names: Iterable[str]) -> "PolygonSet":
        return cls(*(arrays[n] for n in ARRAY_NAMES), label_names=tuple(label_names))


class PolygonCollector:
    """Accumulates polygons image by image while a loader decodes files."""

    def __init__(self) -> None:
        self._verts: list[np.ndarray] = []
        self._image: list[int] = []
        self._class: list[int] = []
        self._label: list[int] = []
        self._names: dict[str, int] = {}

    def add(self, image: int, label: str, class_id: int, vertices: np.ndarray) -> None:
        self._verts.append(np.asarray(vertices, np.float32).reshape(-1, 2))
        self._image.append(image)
        self._class.append(class_id)
        self._label.append(self._names.setdefault(label, len(self._names)))

    def build(self) -> PolygonSet:
        counts = [len(v) for v in self._verts]
        return PolygonSet(
            vertices=np.concatenate(self._verts) if self._verts else np.zeros((0, 2), np.float32),
            offsets=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
            image=np.asarray(self._image, np.int32),
            class_id=np.asarray(self._class, np.uint8),
            label=np.asarray(self._label, np.int16),
            label_names=tuple(self._names),
        )
