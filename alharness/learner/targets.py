"""What to train on: the label state (plus optional pseudo-labels) as training targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alharness.annotation.labels import UNKNOWN, LabelState


@dataclass(frozen=True)
class TrainingSet:
    """Pool images to train on and their targets, aligned row by row.

    ``pixels`` (n, H, W) uint8, ignore index where unknown; ``image_labels``
    (n, C) int8 (1 / 0 / -1); ``has_pixels`` (n,) whether a row has any
    known pixel; ``n_pseudo`` rows that got pseudo-labelled pixels.
    """

    index: np.ndarray
    pixels: np.ndarray
    image_labels: np.ndarray
    has_pixels: np.ndarray
    n_pseudo: int

    def __len__(self) -> int:
        return len(self.index)


def merge_pseudo(pixels: np.ndarray, pseudo: np.ndarray, confidence: np.ndarray | None, threshold: float,
                 ignore_index: int) -> np.ndarray:
    """Pixel targets where bought labels win and pseudo-labels fill the unknown pixels
    whose confidence reaches ``threshold`` (the BASIS pipeline of the mask-guided
    paper: the segmentation network trains on strong labels ∪ pseudo-labels)."""
    if pseudo.shape != pixels.shape:
        raise ValueError(f"pseudo-labels have shape {pseudo.shape}, the pool's pixel labels {pixels.shape}")
    use = (pixels == ignore_index) & (pseudo != ignore_index)
    if confidence is not None:
        if confidence.shape != pixels.shape:
            raise ValueError(f"pseudo-label confidence has shape {confidence.shape}, expected {pixels.shape}")
        use &= confidence >= threshold
    return np.where(use, pseudo, pixels).astype(np.uint8)


def training_set(state: LabelState, use_image_labels: bool,
                 pseudo: tuple[np.ndarray, np.ndarray | None] | None = None, threshold: float = 0.0) -> TrainingSet:
    """Every pool image with a known pixel (bought or confident pseudo-label) and,
    if ``use_image_labels``, every image with a known image-level label; never
    an image bought held out (``FullMask(held_out=True)``: its mask is for the
    strategy alone), whatever its pseudo-labels."""
    pixels = state.pixels
    pseudo_rows = np.zeros(len(pixels), bool)
    if pseudo is not None:
        merged = merge_pseudo(state.pixels, np.asarray(pseudo[0]), None if pseudo[1] is None else np.asarray(pseudo[1]),
                              threshold, state.ignore_index)
        pseudo_rows = ((merged != state.pixels).reshape(len(merged), -1)).any(axis=1)
        pixels = merged
    has_pixels = (pixels != state.ignore_index).reshape(len(pixels), -1).any(axis=1)
    has_labels = (state.image_labels != UNKNOWN).any(axis=1) if use_image_labels else np.zeros(len(pixels), bool)
    train = ~state.held_out
    index = np.flatnonzero((has_pixels | has_labels) & train)
    n_pseudo = int((pseudo_rows & train).sum())
    labels = state.image_labels[index] if use_image_labels else np.full((len(index), state.num_classes), UNKNOWN, np.int8)
    # A full mask already labels every pixel; its implied image labels would
    # only count the same annotation twice.
    labels = np.where(state.has_full_mask[index][:, None], np.int8(UNKNOWN), labels)
    return TrainingSet(index=index, pixels=pixels[index], image_labels=labels, has_pixels=has_pixels[index],
                       n_pseudo=n_pseudo)
