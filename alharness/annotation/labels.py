"""What a campaign has bought so far: the state the learner trains from.

Pixel labels use the dataset's ignore index for "unknown"; image-level
knowledge is kept per class as positive (1), negative (0) or unknown (-1).
Strategies see it through a read-only :class:`LabelStateView`.

The pixel labels are N×H×W bytes, 6 GB for a Cityscapes pool at 1024×2048,
times the campaigns packed on a node. From ``ALHARNESS_LABELS_MMAP_BYTES``
(default 256 MiB) on they live in a memory-mapped file on local scratch
(``ALHARNESS_SCRATCH``, else the system's temporary directory; point it at
a local disk where /tmp is a RAM file system), so the kernel pages them out
instead of the campaign holding them in its own memory. The file has no
name: it is unlinked as it is created, and its space goes back when the
label state is dropped at the campaign's end, or when the process dies.
Nothing else changes: the arrays read and write as before, the digest and
the checkpoints see the same bytes, and the strategy process receives a
read-only copy of what the view shows, never the file: from the same
threshold on (the pool's images too) that copy is itself a nameless file on
scratch, so that it is page cache, not RAM held for the campaign's life.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

from alharness.contract.views import NEGATIVE, POSITIVE, UNKNOWN, LabelStateView

MMAP_BYTES_ENV = "ALHARNESS_LABELS_MMAP_BYTES"
SCRATCH_ENV = "ALHARNESS_SCRATCH"
DEFAULT_MMAP_BYTES = 256 * 2**20


def mmap_threshold() -> int:
    """Pixel-label size from which the labels are memory-mapped (``ALHARNESS_LABELS_MMAP_BYTES``)."""
    text = os.environ.get(MMAP_BYTES_ENV, "").strip()
    try:
        return int(text) if text else DEFAULT_MMAP_BYTES
    except ValueError:
        raise ValueError(f"{MMAP_BYTES_ENV} must be a whole number of bytes, got {text!r}") from None


def _pixel_labels(shape: tuple[int, ...], fill: int, mmap_bytes: int | None) -> np.ndarray:
    """(N, H, W) uint8 filled with ``fill``: in memory below the threshold, else
    mapped from a nameless file on scratch (freed with its last mapping)."""
    threshold = mmap_threshold() if mmap_bytes is None else mmap_bytes
    size = int(np.prod(shape, dtype=np.int64))
    if size < threshold or size == 0:
        return np.full(shape, fill, np.uint8)
    scratch = os.environ.get(SCRATCH_ENV) or None
    with tempfile.TemporaryFile(prefix="alharness-labels-", dir=scratch) as fh:  # unlinked at once
        pixels = np.memmap(fh, dtype=np.uint8, mode="w+", shape=shape)  # the map keeps the file alive
    pixels[...] = fill
    return pixels


class LabelState:
    """Mutable label state, owned by the campaign loop.

    ``mmap_bytes``: pixel-label size from which they are memory-mapped on
    scratch (None: ``ALHARNESS_LABELS_MMAP_BYTES``, default 256 MiB)."""

    def __init__(self, pool_size: int, image_shape: tuple[int, int], num_classes: int, ignore_index: int, *,
                 mmap_bytes: int | None = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.pixels = _pixel_labels((pool_size, *image_shape), ignore_index, mmap_bytes)
        self.image_labels = np.full((pool_size, num_classes), UNKNOWN, np.int8)
        self.has_full_mask = np.zeros(pool_size, bool)
        # Images bought held out (FullMask(held_out=True)): their mask is in
        # ``pixels`` for the strategy, but they are no part of the training pool.
        self.held_out = np.zeros(pool_size, bool)
        # Instances per class from labels-with-counts answers (-1: unknown).
        self.counts = np.full((pool_size, num_classes), -1, np.int16)
        # Boxes answers: image -> (K, 5) array of (class, y0, x0, y1, x1).
        self.boxes: dict[int, np.ndarray] = {}

    def set_full_mask(self, image: int, mask: np.ndarray) -> None:
        self.pixels[image] = mask
        self.has_full_mask[image] = True
        # A full mask also tells which classes are present and absent.
        # bincount, not unique: a 512x1024 mask costs ~1 ms instead of ~10.
        counts = np.bincount(np.asarray(mask).ravel(), minlength=256)
        present = counts[: self.num_classes] > 0
        self.image_labels[image] = np.where(present, POSITIVE, NEGATIVE)

    def set_held_out_mask(self, image: int, mask: np.ndarray) -> None:
        """A held-out mask: its pixels only, for the strategy to read, and the
        image marked out of the training pool. No full-mask flag and no image
        labels, so no path that trains on those (weak labels, BASIS's
        pseudo-labels, ``train_and_score``) takes it either."""
        self.pixels[image] = mask
        self.held_out[image] = True

    def set_image_labels(self, image: int, present: np.ndarray) -> None:
        self.image_labels[image] = np.where(np.asarray(present, bool), POSITIVE, NEGATIVE)

    def set_class_presence(self, image: int, cls: int, present: bool) -> None:
        self.image_labels[image, cls] = POSITIVE if present else NEGATIVE

    def set_counts(self, image: int, counts: np.ndarray) -> None:
        self.counts[image] = counts

    def set_boxes(self, image: int, boxes: np.ndarray) -> None:
        self.boxes[image] = np.array(boxes, np.int64).reshape(-1, 5)
        # Boxes cover every object, so they also say which foreground classes
        # are present and absent; they say nothing about background.
        self.image_labels[image, 1:] = NEGATIVE
        self.image_labels[image, np.unique(self.boxes[image][:, 0])] = POSITIVE

    def set_pixels(self, image: int, where, labels: np.ndarray) -> None:
        """Pixel labels for part of an image (a region slice or coordinate arrays)."""
        self.pixels[image][where] = labels
        # A labelled pixel proves its class is present in the image.
        seen = np.unique(labels[labels != self.ignore_index])
        self.image_labels[image, seen] = POSITIVE

    def digest(self) -> str:
        """SHA-256 of everything the learner trains from (pixels, image labels,
        full-mask flags, counts, boxes, held-out flags). The campaign loop records it after
        every oracle answer and compares it before a strategy runs and before
        training, so a label it did not buy, written by anyone, fails the
        campaign. About 1.8 GB/s: a 1000-image 48x48 pool costs ~2 ms."""
        h = hashlib.sha256()
        for a in (self.pixels, self.image_labels, self.has_full_mask, self.counts):
            h.update(repr((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).data)
        if self.held_out.any():  # only then: a state without held-out images keeps its digest (and checkpoints theirs)
            h.update(b"held_out")
            h.update(np.ascontiguousarray(self.held_out).data)
        for image in sorted(self.boxes):
            box = np.ascontiguousarray(self.boxes[image], np.int64)
            h.update(repr((int(image), box.shape)).encode())
            h.update(box.data)
        return h.hexdigest()

    def _labelled_per_image(self, chunk: int = 64) -> np.ndarray:
        """(N,) count of labelled pixels per image, ``chunk`` images at a time (a
        mask of the whole pool would cost N×H×W bytes of memory at once)."""
        n = len(self.pixels)
        out = np.zeros(n, np.int64)
        for i in range(0, n, chunk):
            block = self.pixels[i:i + chunk]
            out[i:i + len(block)] = np.count_nonzero((block != self.ignore_index).reshape(len(block), -1), axis=1)
        return out

    def labelled_images(self) -> np.ndarray:
        """Indices of the pool images with at least one labelled pixel."""
        return np.flatnonzero(self._labelled_per_image())

    def labelled_pixel_fraction(self) -> float:
        """Pixels with a class label over all pool pixels: cost_P's definition
        (MetaBox+ eq. 12; void carries no label, see costs.LabelledPixels)."""
        return float(self._labelled_per_image().sum() / self.pixels.size) if self.pixels.size else 0.0

    @property
    def memory_mapped(self) -> bool:
        """True when the pixel labels live in a file on scratch."""
        return isinstance(self.pixels, np.memmap)

    def view(self) -> LabelStateView:
        def ro(a: np.ndarray) -> np.ndarray:
            v = np.asarray(a).view()  # a plain array even over the memory map (pickled as a buffer, no file)
            v.setflags(write=False)
            return v

        return LabelStateView(
            pixels=ro(self.pixels),
            image_labels=ro(self.image_labels),
            has_full_mask=ro(self.has_full_mask),
            counts=ro(self.counts),
            boxes={k: ro(v) for k, v in self.boxes.items()},
            ignore_index=self.ignore_index,
        )
