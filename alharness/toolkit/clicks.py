"""Polygon click counts from ground truth (MetaBox+ paper §3.2 and §4.1).

An annotator outlines every segment (a connected component of one class)
with a polygon. Where a dataset has no true polygons, the polygon clicks of a
segment are estimated by the Ramer–Douglas–Peucker algorithm on its contours
(OpenCV: ``findContours`` for the outer border and holes, ``approxPolyDP``
with tolerance ε in pixels; both in C, which makes a 500-image pool of
512x1024 masks take seconds rather than minutes).

For a square box B the paper counts
  c_p(B) polygon clicks (vertices inside B), c_i(B) intersection clicks (where
  a segment contour crosses the border of B), c_b(B) = 4 box clicks and
  c_c(B) class clicks (one per segment in B).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from collections.abc import Sequence

import numpy as np
import cv2
from scipy import ndimage
from skimage.measure import label


@dataclass(frozen=True)
class ImageClicks:
    """Per-image click data: a segment-id map and a map of polygon vertices."""

    # Stored compactly (5-6 bytes per pixel, was 16: int32 ids, int32 vertex
    # map, int64 table), and PoolClicks keeps only a bounded number of them.
    segments: np.ndarray  # (H, W) segment ids in the smallest unsigned dtype that holds them, 0 where ignored
    vertex_integral: np.ndarray  # (H+1, W+1) int32 summed-area table of the per-pixel vertex counts
    polygons: int | None = None  # true polygon count, where the dataset has polygons
    # Class of each segment (index k: segment k; index 0 unused), so that
    # objects per class need no second pass over the mask.
    segment_classes: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of the per-pixel maps."""
        return self.segments.nbytes + self.vertex_integral.nbytes

    @property
    def vertices(self) -> np.ndarray:
        """(H, W) int32 count of polygon vertices at each pixel (rebuilt from the table)."""
        return np.diff(np.diff(self.vertex_integral, axis=0), axis=1)

    @property
    def polygon_clicks(self) -> int:
        return int(self.vertex_integral[-1, -1])

    @cached_property
    def class_clicks(self) -> int:
        # Cached: every full-mask answer asks it once per click metric.
        if self.polygons is not None:
            return self.polygons  # one class click per drawn polygon
        return int(len(np.unique(self.segments[self.segments > 0])))

    def box_polygon_clicks(self, y0: int, x0: int, y1: int, x1: int) -> int:
        s = self.vertex_integral
        return int(s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0])

    def box_class_clicks(self, y0: int, x0: int, y1: int, x1: int) -> int:
        # Distinct segment ids > 0 in the box; a histogram of the ids is a
        # few times faster than sorting them (np.unique).
        seen = np.bincount(self.segments[y0:y1, x0:x1].ravel())
        return int(np.count_nonzero(seen[1:]))

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
    """Connected components of every class (4-connectivity), numbered from 1;
    0 where the mask is ignored. One labelling pass: ``label`` separates
    regions of different value."""
    shifted = mask.astype(np.int32) + 1
    shifted[mask == ignore_index] = 0
    return label(shifted, background=0, connectivity=1).astype(np.int32)


def segment_classes(segments: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Class of every segment of ``segments`` (index k: segment k; 0 for index 0).

    A segment has one class, so any of its pixels tells it; writing every
    pixel's class at its segment id does that in one pass."""
    out = np.zeros(int(segments.max(initial=0)) + 1, np.int64)
    out[segments.ravel()] = mask.ravel()
    out[0] = 0
    return out


def rdp_vertices(region: np.ndarray, epsilon: float) -> np.ndarray:
    """(K, 2) integer (y, x) vertices of the RDP-simplified contours of a binary region.

    Every contour of the region (outer border and each hole) is one closed
    polygon.
    """
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros((0, 2), np.int64)
    pts = np.concatenate([cv2.approxPolyDP(c, float(epsilon), True).reshape(-1, 2) for c in contours])
    return pts[:, ::-1].astype(np.int64)  # OpenCV points are (x, y)


def _integral(vertices: np.ndarray) -> np.ndarray:
    # int32: an image's vertex total is far below 2**31.
    integral = np.zeros((vertices.shape[0] + 1, vertices.shape[1] + 1), np.int32)
    np.cumsum(vertices, axis=0, dtype=np.int32, out=integral[1:, 1:])
    np.cumsum(integral[1:, 1:], axis=1, dtype=np.int32, out=integral[1:, 1:])
    return integral


def _compact(ids: np.ndarray) -> np.ndarray:
    """Non-negative ids in the smallest unsigned dtype that holds them."""
    return ids.astype(np.min_scalar_type(int(ids.max(initial=0))), copy=False)


def image_clicks_from_polygons(mask: np.ndarray, ignore_index: int, polygons) -> ImageClicks:
    """True clicks: every vertex an annotator placed (e.g. Cityscapes
    ``_polygons.json``) instead of the RDP estimate. Segments still come from
    the mask (for intersection and per-box class clicks)."""
    h, w = mask.shape
    vertices = np.zeros(mask.shape, np.int32)
    drawn = [p for p in polygons if p.class_id != ignore_index]
    if drawn:
        xy = np.concatenate([p.vertices for p in drawn])
        ys = np.rint(xy[:, 1]).astype(np.int64).clip(0, h - 1)
        xs = np.rint(xy[:, 0]).astype(np.int64).clip(0, w - 1)
        np.add.at(vertices, (ys, xs), 1)
    seg = segment_map(mask, ignore_index)
    return ImageClicks(segments=_compact(seg), vertex_integral=_integral(vertices), polygons=len(drawn),
                       segment_classes=segment_classes(seg, mask))


def image_clicks(mask: np.ndarray, ignore_index: int, epsilon: float) -> ImageClicks:
    seg = segment_map(mask, ignore_index)
    vertices = np.zeros(mask.shape, np.int32)
    # Contours are traced on each segment's bounding box only, not the whole image.
    for sid, box in enumerate(ndimage.find_objects(seg), start=1):
        if box is None:
            continue
        pts = rdp_vertices(seg[box] == sid, epsilon)
        np.add.at(vertices, (pts[:, 0] + box[0].start, pts[:, 1] + box[1].start), 1)
    return ImageClicks(segments=_compact(seg), vertex_integral=_integral(vertices),
                       segment_classes=segment_classes(seg, mask))


#: Bytes of per-image click maps a pool keeps at once (least recently used
#: dropped first; ``ALHARNESS_CLICK_MAPS_BYTES`` overrides); the pool-wide
#: counts are kept for every image regardless. A batch is priced image by
#: image, so each image's maps are rebuilt at most once per batch (about 20 ms
#: at 512×1024) whatever this holds; what it keeps beyond the batch only helps
#: when later rounds ask again in the same images, and is held as the campaign's
#: own memory (it was 1 GiB, which perf_memory found in metabox_plus's memory
#: before round 1). An image's maps at 512×1024 are about 2.5 MiB: 100 fit.
CLICK_MAPS_BYTES = 256 << 20
CLICK_MAPS_ENV = "ALHARNESS_CLICK_MAPS_BYTES"


def click_maps_bytes() -> int:
    text = os.environ.get(CLICK_MAPS_ENV, "").strip()
    try:
        return int(text) if text else CLICK_MAPS_BYTES
    except ValueError:
        raise ValueError(f"{CLICK_MAPS_ENV} must be a whole number of bytes, got {text!r}") from None


class PoolClicks(Sequence):
    """Click data of a pool's images: ``pool[i]`` is image i's ImageClicks.

    One pass over the pool keeps each image's scalar counts (c_p, c_c) and
    segment classes, which full-mask answers and the pool totals need; the
    per-pixel maps (for boxes) are rebuilt on demand and at most
    ``click_maps_bytes()`` of them kept. Keeping every image's maps cost 5-16
    bytes per pool pixel for the campaign's life (issue 17)."""

    def __init__(self, masks: np.ndarray, ignore_index: int, epsilon: float, polygons=None,
                 maps_bytes: int | None = None):
        self._masks, self._ignore, self._epsilon, self._polygons = masks, ignore_index, float(epsilon), polygons
        self._maps: OrderedDict[int, ImageClicks] = OrderedDict()
        self._maps_bytes, self._held = click_maps_bytes() if maps_bytes is None else int(maps_bytes), 0
        n = len(masks)
        self._polygon_clicks = np.zeros(n, np.int64)
        self._class_clicks = np.zeros(n, np.int64)
        self._segment_classes: list[np.ndarray | None] = [None] * n
        for i in range(n):
            ic = self._compute(i)
            self._polygon_clicks[i], self._class_clicks[i] = ic.polygon_clicks, ic.class_clicks
            self._segment_classes[i] = None if ic.segment_classes is None else _compact(ic.segment_classes)
            self._keep(i, ic)

    def _compute(self, i: int) -> ImageClicks:
        if self._polygons is not None:
            return image_clicks_from_polygons(self._masks[i], self._ignore, self._polygons.of_image(i))
        return image_clicks(self._masks[i], self._ignore, self._epsilon)

    def _keep(self, i: int, ic: ImageClicks) -> None:
        self._maps[i] = ic
        self._held += ic.nbytes
        while self._held > self._maps_bytes and len(self._maps) > 1:
            _, old = self._maps.popitem(last=False)
            self._held -= old.nbytes

    def __len__(self) -> int:
        return len(self._polygon_clicks)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        if i in self._maps:
            self._maps.move_to_end(i)
            return self._maps[i]
        ic = self._compute(i)
        self._keep(i, ic)
        return ic

    def polygon_clicks(self, i: int) -> int:
        """c_p of image i's full mask, without its maps."""
        return int(self._polygon_clicks[i])

    def class_clicks(self, i: int) -> int:
        """c_c of image i's full mask, without its maps."""
        return int(self._class_clicks[i])

    def segment_classes(self, i: int) -> np.ndarray | None:
        return self._segment_classes[i]

    @property
    def held_bytes(self) -> int:
        """Bytes of per-image maps kept now (at most ``maps_bytes``, or one image's)."""
        return self._held

    @property
    def totals(self) -> tuple[int, int]:
        """(c_p(P), c_c(P)): polygon and class clicks of the whole pool."""
        return int(self._polygon_clicks.sum()), int(self._class_clicks.sum())


_CACHE: dict[tuple, PoolClicks] = {}


def pool_clicks(masks: np.ndarray, ignore_index: int, epsilon: float, polygons=None) -> PoolClicks:
    """Click data for every image of a pool, computed once per (pool, ε) per
    process. With ``polygons`` (a PolygonSet indexed like ``masks``) the true
    vertex counts replace the RDP estimate."""
    key = (hashlib.sha1(np.ascontiguousarray(masks).data).hexdigest(), masks.shape, ignore_index, float(epsilon),
           polygons is not None)
    if key not in _CACHE:
        _CACHE.clear()  # one pool per process at a time: bounded memory
        _CACHE[key] = PoolClicks(masks, ignore_index, epsilon, polygons)
    return _CACHE[key]
