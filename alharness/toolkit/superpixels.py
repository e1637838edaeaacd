"""Superpixels of a pool, computed once per dataset and cached, with vectorised
per-superpixel aggregation.

MADBAL (§4, "Implementation Details") sets the number of superpixels per
image to the number of 16×16 squares that tile it. SLIC (scikit-image) is
the default; OpenCV's SEEDS, which the paper used, needs the opencv-contrib
build (``cv2.ximgproc``) and is used only where that is installed.

Label maps are keyed by a content hash of the pool images and the
parameters, stored under ``$ALHARNESS_CACHE`` next to the dataset cache
(written to a temporary file and renamed, so readers see a complete file or
none) and reopened memory-mapped, so every campaign and round on a node
shares one copy.

Aggregation never loops over superpixels: superpixel ids are made global
(image offsets added) and sums, counts, majorities and bounding boxes are
``np.bincount`` / ``reduceat`` calls over the flat pixels.
"""

from __future__ import annotations

import collections
import hashlib
import os
import tempfile
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from alharness.datasets.cache import cache_root
from alharness.errors import ConfigError

METHODS = ("slic", "seeds")
# Bump when the label maps change for the same inputs, so old files are not reused.
_VERSION = 1
_memo: "collections.OrderedDict[str, Superpixels]" = collections.OrderedDict()
_MEMO_SIZE = 4


def _seeds_available() -> bool:
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv is a dependency
        return False
    return hasattr(cv2, "ximgproc")


def check_method(method: str, where: str = "superpixels") -> None:
    """ConfigError unless ``method`` is a superpixel algorithm available here."""
    if method not in METHODS:
        raise ConfigError(f"{where}: unknown superpixel method {method!r}; valid choices: {', '.join(METHODS)}")
    if method == "seeds" and not _seeds_available():
        raise ConfigError(f"{where}: superpixel method 'seeds' needs OpenCV's contrib build (cv2.ximgproc), which is "
                          "not installed; valid choice here: 'slic'")


@dataclass(frozen=True)
class Superpixels:
    """Per-image superpixel label maps ``labels`` (N, H, W), ids 0..counts[i]-1 in image i.

    Global superpixel ids number every superpixel of the pool: image i's
    superpixel j is ``offsets[i] + j``.
    """

    labels: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @cached_property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])

    @cached_property
    def image_of(self) -> np.ndarray:
        """(S,) the image of each global superpixel."""
        return np.repeat(np.arange(len(self.counts)), self.counts)

    @cached_property
    def global_labels(self) -> np.ndarray:
        """(N·H·W,) global superpixel id of every pixel, flat."""
        dtype = np.int32 if len(self) < 2**31 else np.int64
        g = self.labels.astype(dtype) + self.offsets[:-1, None, None].astype(dtype)
        return g.ravel()

    @cached_property
    def sizes(self) -> np.ndarray:
        """(S,) pixels per superpixel."""
        return np.bincount(self.global_labels, minlength=len(self))

    @cached_property
    def pixel_order(self) -> tuple[np.ndarray, np.ndarray]:
        """(order, starts): flat pixel indices grouped by superpixel; superpixel s
        owns ``order[starts[s]:starts[s + 1]]``."""
        order = np.argsort(self.global_labels, kind="stable")
        if len(order) < 2**31:
            order = order.astype(np.int32)
        return order, np.concatenate([[0], np.cumsum(self.sizes)])

    def sum(self, values: np.ndarray) -> np.ndarray:
        """(S,) sum of per-pixel ``values`` (N, H, W) over each superpixel."""
        return np.bincount(self.global_labels, weights=np.asarray(values, np.float64).ravel(), minlength=len(self))

    def majority(self, labels: np.ndarray, num_labels: int) -> np.ndarray:
        """(S,) the most frequent of ``labels`` (N, H, W) ints in 0..num_labels-1 within each superpixel."""
        votes = np.bincount(self.global_labels.astype(np.int64) * num_labels + np.asarray(labels).ravel(),
                            minlength=len(self) * num_labels)
        return votes.reshape(len(self), num_labels).argmax(axis=1)

    @cached_property
    def boxes(self) -> np.ndarray:
        """(S, 4) bounding box (y0, x0, y1, x1; end exclusive) of each superpixel."""
        order, starts = self.pixel_order
        h, w = self.labels.shape[1:]
        within = order % (h * w)
        ys, xs = within // w, within % w
        first = starts[:-1]
        return np.stack([np.minimum.reduceat(ys, first), np.minimum.reduceat(xs, first),
                         np.maximum.reduceat(ys, first) + 1, np.maximum.reduceat(xs, first) + 1], axis=1)


def _segment(image: np.ndarray, n_segments: int, method: str, compactness: float) -> np.ndarray:
    from skimage.segmentation import relabel_sequential, slic

    if method == "slic":
        lab = slic(image, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
    else:
        import cv2

        h, w = image.shape[:2]
        seeds = cv2.ximgproc.createSuperpixelSEEDS(w, h, image.shape[2], n_segments, 4)
        seeds.iterate(np.ascontiguousarray(image), 4)
        lab = seeds.getLabels()
    return relabel_sequential(lab.astype(np.int32))[0]


def _segment_all(images: np.ndarray, out: np.ndarray, n_segments: int, method: str, compactness: float) -> np.ndarray:
    for i, img in enumerate(images):  # one call per image: SLIC has no batched form
        out[i] = _segment(np.asarray(img), n_segments, method, compactness)
    return out


def _content_key(images: np.ndarray, params: dict) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((images.shape, str(images.dtype), sorted(params.items()), _VERSION)).encode())
    for img in images:  # one image at a time: a memory-mapped pool is never copied whole
        h.update(np.ascontiguousarray(img).data)
    return h.hexdigest()


def compute(images: np.ndarray, size: int = 16, method: str = "slic", compactness: float = 30.0,
            cache: bool = True) -> Superpixels:
    """Superpixels of every image (N, H, W, 3) uint8: about one per ``size``×``size`` square.

    Cached per content (hash of the images and parameters) in this process and
    under ``$ALHARNESS_CACHE``; ``cache=False`` recomputes without touching either.
    """
    check_method(method)
    if not isinstance(size, int) or size < 2:
        raise ConfigError(f"superpixels: size must be an integer >= 2 (pixels per square side), got {size!r}")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ConfigError(f"superpixels: images must be (N, H, W, 3), got shape {images.shape}")
    h, w = images.shape[1:3]
    n_segments = max(1, round(h * w / size**2))
    params = {"size": size, "method": method, "compactness": float(compactness)}
    key = _content_key(images, params) if cache else ""
    if cache and key in _memo:
        _memo.move_to_end(key)
        return _memo[key]
    path = cache_root() / f"superpixels-{key}.npy"
    if cache and not path.exists():
        # Written image by image into the file itself (4 bytes a pixel: 2 GiB for 1000 images of 512×1024,
        # which an in-memory array would hold as the process's own memory), then renamed into place.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int32, shape=images.shape[:3])
            _segment_all(images, out, n_segments, method, compactness)
            out.flush()
            del out
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    if cache:
        labels = np.load(path, mmap_mode="r")
    else:
        labels = _segment_all(images, np.empty(images.shape[:3], np.int32), n_segments, method, compactness)
    counts = labels.reshape(len(labels), -1).max(axis=1).astype(np.int64) + 1
    sp = Superpixels(labels, counts)
    if cache:
        _memo[key] = sp
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return sp
