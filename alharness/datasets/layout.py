"""What every real-layout loader shares: a list of per-image files, a
fingerprint of them for the cache key, and decoding them all into the
dataset arrays.

A loader (VOC, Cityscapes, folder) only finds the files and says how its
label values map to classes; decoding, resizing, caching and the dataset
container are the same for all of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from alharness.datasets.base import IGNORE_INDEX, SegmentationDataset
from alharness.datasets.cache import CacheWriter, cached_dataset
from alharness.datasets.imaging import NATIVE, Fit, image_size, open_image, read_labels
from alharness.datasets.polygons import PolygonCollector
from alharness.datasets.splits import split_order
from alharness.errors import ConfigError

# (image index, polygon JSON path, fit) -> adds that image's polygons
PolygonReader = Callable[[int, Path, Fit, PolygonCollector], None]


@dataclass(frozen=True)
class Record:
    """The files of one image. ``decode_labels`` reads a label file that is
    not an image (SBD's .mat); PNG labels need none."""

    image: Path
    labels: Path
    instances: Path | None = None
    polygons: Path | None = None
    decode_labels: Callable[[Path], np.ndarray] | None = None

    def paths(self) -> list[Path]:
        return [p for p in (self.image, self.labels, self.instances, self.polygons) if p is not None]


def fingerprint(records: Sequence[Record]) -> str:
    """Hash of every source file's path, size and modification time: the
    cache entry is rebuilt when a file changes, without reading any file."""
    h = hashlib.sha256()
    for r in records:
        for p in r.paths():
            try:
                st = p.stat()
            except FileNotFoundError:
                raise ConfigError(f"missing file {p}") from None
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def relabel_instances(ids: np.ndarray) -> np.ndarray:
    """Instance ids renumbered 1..K in order of their values (0 stays 0)."""
    values, inverse = np.unique(ids, return_inverse=True)
    lut = np.zeros(len(values), np.int32)
    nz = values != 0
    lut[nz] = np.arange(1, int(nz.sum()) + 1)
    return lut[inverse.reshape(ids.shape)]


def load_layout(
    kind: str,
    config: dict[str, Any],
    records: Sequence[Record],
    *,
    name: str,
    class_names: Sequence[str],
    splits: dict[str, np.ndarray],
    size: tuple[int, int] | None,
    resize: str,
    map_labels: Callable[[np.ndarray], np.ndarray],
    map_instances: Callable[[np.ndarray], np.ndarray] | None = None,
    read_polygons: PolygonReader | None = None,
    metadata: dict[str, Any] | None = None,
    per_image: dict[str, list] | None = None,
) -> SegmentationDataset:
    """Decode ``records`` once (cached under ``config`` + file fingerprint)
    into a dataset of ``size`` images (None: the images' own resolution,
    which must then be the same for all).

    Images stream into the cache one at a time (``CacheWriter.rows``): the
    builder holds one decoded image and its labels, whatever the count or
    the resolution.

    ``splits`` index ``records``; the dataset stores the records split by
    split (train, val, test), so its indices differ: ``per_image`` lists
    (one entry per record, e.g. image ids) are reordered the same way and
    added to the metadata. ``map_labels`` turns a decoded label file into
    class ids (uint8, 255 = ignore); ``map_instances`` a decoded instance
    file into instance ids (0 = none); instances are kept only when every
    record has an instance file.
    """
    order, splits = split_order(splits)
    records = [records[i] for i in order]
    metadata = {**(metadata or {}), **{k: [v[i] for i in order] for k, v in (per_image or {}).items()}}
    with_instances = map_instances is not None and all(r.instances is not None for r in records)
    with_polygons = read_polygons is not None and all(r.polygons is not None for r in records)
    full_config = {**config, "size": NATIVE if size is None else list(size), "resize": resize,
                   "files": fingerprint(records), "instances": with_instances, "polygons": with_polygons}

    def build(w: CacheWriter) -> None:
        n = len(records)
        H, W = size or image_size(records[0].image)
        images = w.rows("images", (n, H, W, 3), np.uint8)
        masks = w.rows("masks", (n, H, W), np.uint8)
        instances = w.rows("instances", (n, H, W), np.int32) if with_instances else None
        polys = PolygonCollector() if with_polygons else None
        for i, r in enumerate(records):
            img = open_image(r.image)
            if size is None and (img.height, img.width) != (H, W):
                raise ConfigError(f"{r.image}: size = {NATIVE!r} needs every image at one resolution, but it is "
                                  f"{img.width}x{img.height} and {records[0].image} is {W}x{H}; give size = [height, width]")
            src = (img.height, img.width)
            fit = Fit.plan(src, (H, W), resize)
            images[i] = fit.image(img)
            del img
            raw = (r.decode_labels or read_labels)(r.labels)
            if raw.shape[:2] != src:
                raise ConfigError(f"{r.labels}: labels are {raw.shape[1]}x{raw.shape[0]} but the image {r.image} is {src[1]}x{src[0]}")
            masks[i] = fit.labels(map_labels(raw), IGNORE_INDEX)  # padding is void
            del raw
            if instances is not None:
                instances[i] = relabel_instances(fit.labels(map_instances(read_labels(r.instances))))
            if polys is not None:
                read_polygons(i, r.polygons, fit, polys)
        w.dataset(name, tuple(class_names), splits, metadata=metadata,
                  polygons=None if polys is None else polys.build())

    return cached_dataset(kind, full_config, build)
