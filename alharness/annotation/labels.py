"""What a campaign has bought so far: the state the learner trains from.

Pixel labels use the dataset's ignore index for "unknown"; image-level
knowledge is kept per class as positive (1), negative (0) or unknown (-1).
Strategies see it through a read-only :class:`LabelStateView`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from alharness.contract.views import NEGATIVE, POSITIVE, UNKNOWN, LabelStateView



class LabelState:
    """Mutable label state, owned by the campaign loop."""

    def __init__(self, pool_size: int, image_shape: tuple[int, int], num_classes: int, ignore_index: int):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.pixels = np.full((pool_size, *image_shape), ignore_index, np.uint8)
        self.image_labels = np.full((pool_size, num_classes), UNKNOWN, np.int8)
        self.has_full_mask = np.zeros(pool_size, bool)
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
        full-mask flags, counts, boxes). The campaign loop records it after
        every oracle answer and compares it before a strategy runs and before
        training, so a label it did not buy, written by anyone, fails the
        campaign. About 1.8 GB/s: a 1000-image 48x48 pool costs ~2 ms."""
        h = hashlib.sha256()
        for a in (self.pixels, self.image_labels, self.has_full_mask, self.counts):
            h.update(repr((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).data)
        for image in sorted(self.boxes):
            box = np.ascontiguousarray(self.boxes[image], np.int64)
            h.update(repr((int(image), box.shape)).encode())
            h.update(box.data)
        return h.hexdigest()

    def labelled_pixel_fraction(self) -> float:
        """Pixels with a class label over all pool pixels: cost_P's definition
        (MetaBox+ eq. 12; void carries no label, see costs.LabelledPixels)."""
        return float((self.pixels != self.ignore_index).mean()) if self.pixels.size else 0.0

    def view(self) -> LabelStateView:
        def ro(a: np.ndarray) -> np.ndarray:
            v = a.view()
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
