"""Polygon click counts from ground truth (MetaBox+ paper §3.2 and §4.1).

An annotator outlines every segment (a connected component of one class)
with a polygon. Where a dataset has no true polygons, the polygon clicks of a
segment are estimated by the Ramer–Douglas–Peucker algorithm on its contour
(scikit-image ``find_contours`` + ``approximate_polygon``, tolerance ε).

For a square box B the paper counts
  c_p(B) polygon clicks (vertices inside B), c_i(B) intersection clicks (where
  a segment contour crosses the border of B), c_b(B) = 4 box clicks and
  c_c(B) class clicks (one per segment in B).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from skimage.measure import approximate_polygon, find_contours, label


@dataclass(frozen=True)
class ImageClicks:
    """Per-image click data: a segment-id map and a map of polygon vertices."""

    segments: np.ndarray  # (H, W) int32, 0 where ignored
    vertices: np.ndarray  # (H, W) int32 count of polygon vertices at each pixel
    vertex_integral: np.ndarray  # (H+1, W+1) summed-area table of ``vertices``

    @property
    def polygon_clicks(self) -> int:
        return int(self.vertex_integral[-1, -1])

    @property
    def class_clicks(self) -> int:
        return int(len(np.unique(self.segments[self.segments > 0])))

    def box_polygon_clicks(self, y0: int, x0: int, y1: int, x1: int) -> int:
        s = self.vertex_integral
        return int(s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0])

    def box_class_clicks(self, y0: int, x0: int, y1: int, x1: int) -> int:
        seg = self.segments[y0:y1, x0:x1]
        return int(len(np.unique(seg[seg > 0])))

    def box_intersection_clicks(self, y0: int, x0: int, y1: int, x1: int) -> int:
        """Segment changes along the closed border of the box."""
        seg = self.segments
        top = seg[y0, x0:x1]
        right = seg[y0:y1, x1 - 1]
        bottom = seg[y1 - 1, x0:x1][::-1]
        left = seg[y0:y1, x0][::-1]
        ring = np.concatenate([top, right[1:], bottom[1:], left[1:-1]]) if (y1 - y0 > 1 and x1 - x0 > 1) else np.concatenate([top, right])
        if len(ring) < 2:
            return 0
        return int(np.count_nonzero(ring != np.roll(ring, 1)))


def segment_map(mask: np.ndarray, ignore_index: int) -> np.ndarray:
    """Connected components of every class (4-connectivity), numbered from 1."""
    seg = np.zeros(mask.shape, np.int32)
    offset = 0
    for c in np.unique(mask):
        if c == ignore_index:
            continue
        comp = label(mask == c, connectivity=1)
        seg[comp > 0] = comp[comp > 0] + offset
        offset += int(comp.max())
    return seg


def rdp_vertices(region: np.ndarray, epsilon: float) -> np.ndarray:
    """(K, 2) integer (y, x) vertices of the RDP-simplified contours of a binary region.

    Every contour of the region (outer border and holes) becomes a closed
    polygon; its repeated closing point is dropped.
    """
    padded = np.pad(region.astype(np.uint8), 1)
    out = []
    for contour in find_contours(padded, 0.5):
        poly = approximate_polygon(contour, tolerance=epsilon)
        if len(poly) > 1 and np.allclose(poly[0], poly[-1]):
            poly = poly[:-1]
        out.append(poly - 1)  # undo the padding
    if not out:
        return np.zeros((0, 2), np.int64)
    pts = np.rint(np.concatenate(out)).astype(np.int64)
    h, w = region.shape
    pts[:, 0] = pts[:, 0].clip(0, h - 1)
    pts[:, 1] = pts[:, 1].clip(0, w - 1)
    return pts


def image_clicks(mask: np.ndarray, ignore_index: int, epsilon: float) -> ImageClicks:
    seg = segment_map(mask, ignore_index)
    vertices = np.zeros(mask.shape, np.int32)
    for sid in range(1, int(seg.max()) + 1):
        pts = rdp_vertices(seg == sid, epsilon)
        np.add.at(vertices, (pts[:, 0], pts[:, 1]), 1)
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
    integral[1:, 1:] = vertices.cumsum(0).cumsum(1)
    return ImageClicks(segments=seg, vertices=vertices, vertex_integral=integral)


_CACHE: dict[tuple, list[ImageClicks]] = {}


def pool_clicks(masks: np.ndarray, ignore_index: int, epsilon: float) -> list[ImageClicks]:
    """Click data for every image of a pool, computed once per (pool, ε) per process."""
    key = (hashlib.sha1(np.ascontiguousarray(masks).data).hexdigest(), masks.shape, ignore_index, float(epsilon))
    if key not in _CACHE:
        _CACHE.clear()  # one pool per process at a time: bounded memory
        _CACHE[key] = [image_clicks(m, ignore_index, epsilon) for m in masks]
    return _CACHE[key]


def total_clicks(clicks: Sequence[ImageClicks]) -> tuple[int, int]:
    """(c_p(P), c_c(P)): polygon and class clicks of the whole pool."""
    return sum(c.polygon_clicks for c in clicks), sum(c.class_clicks for c in clicks)
