"""BASIS: the annotation → pseudo-label → segmentation pipeline (mask-guided paper §4, Fig. 1).

An *annotation* network f_θ is trained on the strongly annotated images
(full masks) only. It pseudo-annotates the weakly labelled pool images
(those with image labels, e.g. labels-with-counts, and no full mask), and a
second *segmentation* network g_φ is trained on strong ∪ pseudo labels.

Registered as the pipeline "basis" (``[learner] pipeline = "basis"``);
"single" is one ``Learner``. Plugins add pipelines through the
``alharness.pipelines`` entry-point group. Both networks share the
learner configuration; the annotation network carries the configured heads
(the paper's IoU branch belongs to it: IoU-W-RSIS), so strategies' needs
are served by it, and the segmentation network is the one the campaign
scores. The annotation network is scored too (``annotation_miou``,
``annotation_ap50``), as in Tables 5 and 7.

Conditioning on labels-with-counts (the paper's W-RSIS feeds one class
one-hot per instance to a recurrent decoder) is applied here at
pseudo-labelling time, because the harness's models are feed-forward
semantic networks: classes the image's labels say are absent are never
predicted, and of a class with a known count only that many connected
components (the largest) are kept; the pixels of the others become unknown.

Only pool images reach ``fit``; pseudo-labels are made for pool images
only, so a test image can never be pseudo-labelled.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from alharness.annotation.labels import NEGATIVE, UNKNOWN, LabelState
from alharness.learner.config import LearnerConfig
from alharness.learner.learner import Learner
from alharness.metrics import object_map
from alharness.registry import PIPELINES, register_pipeline


def condition_on_labels(probs: np.ndarray, image_labels: np.ndarray, counts: np.ndarray,
                        ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-label of one image from class probabilities (C, H, W), conditioned on
    its image labels (C,) (1 / 0 / -1) and object counts (C,) (-1: unknown).

    Returns (pixels (H, W) uint8 with ``ignore_index`` where dropped,
    confidence (H, W) float32).
    """
    p = np.array(probs, np.float32, copy=True)
    absent = np.asarray(image_labels) == NEGATIVE
    if absent.all():  # contradictory labels: leave the prediction alone
        absent[:] = False
    p[absent] = -1.0  # never the argmax
    pixels = p.argmax(0).astype(np.uint8)
    conf = np.take_along_axis(np.asarray(probs, np.float32), pixels[None].astype(np.int64), 0)[0]
    lab, cls = object_map(pixels, ignore_index=-1)
    if len(cls):
        areas = np.bincount(lab.ravel(), minlength=len(cls) + 1)[1:]
        drop = np.zeros(len(cls) + 1, bool)
        for c in np.unique(cls):
            n = int(counts[c]) if c < len(counts) else -1
            if n < 0:
                continue
            objs = np.flatnonzero(cls == c)
            # Keep the n largest components of class c (ties: lower id first).
            order = objs[np.argsort(-areas[objs], kind="stable")]
            drop[order[n:] + 1] = True
        pixels = np.where(drop[lab], np.uint8(ignore_index), pixels).astype(np.uint8)
    return pixels, conf.astype(np.float32)


class BasisLearner:
    """Two learners, annotation and segmentation, behind the ``Learner`` interface.

    ``predict*`` and ``model`` are the segmentation network's (what the
    campaign scores); ``services`` is the annotation network (what strategy
    needs and oracle statistics are computed from); ``extra_networks()``
    names the annotation network for its own test scores.
    """

    def __init__(self, config: LearnerConfig, num_classes: int, ignore_index: int):
        self.config = config
        self.num_classes, self.ignore_index = num_classes, ignore_index
        # f_θ: strong masks only (BASIS §4); the heads (IoU branch) are its own.
        self.annotation = Learner(replace(config, pipeline="single", image_label_loss="none",
                                          labels_then_masks=False), num_classes, ignore_index)
        # g_φ: strong ∪ pseudo labels, no heads.
        self.segmentation = Learner(replace(config, pipeline="single", image_label_loss="none",
                                            labels_then_masks=False, heads=()), num_classes, ignore_index)
        self.device = self.segmentation.device
        self.pseudo_index = np.zeros(0, np.int64)  # pool positions pseudo-labelled by the last fit

    @property
    def model(self):
        return self.segmentation.model

    @property
    def services(self) -> Learner:
        return self.annotation

    def extra_networks(self) -> dict[str, Learner]:
        return {"annotation": self.annotation}

    def fit(self, images: np.ndarray, state: LabelState, seed: int, *,
            val: tuple[np.ndarray, np.ndarray] | None = None,
            pseudo: tuple[np.ndarray, np.ndarray | None] | None = None) -> dict[str, Any]:
        """Train f_θ on the strong masks, pseudo-label the weakly labelled pool
        images with it, train g_φ on both. ``images`` and ``state`` are the pool's."""
        if pseudo is not None:
            raise ValueError("BasisLearner makes its own pseudo-labels; pass pseudo=None")
        ann = self.annotation.fit(images, state, seed, val=val)
        weak = (state.image_labels != UNKNOWN).any(axis=1) & ~state.has_full_mask
        self.pseudo_index = np.flatnonzero(weak)
        pixels = np.full(state.pixels.shape, self.ignore_index, np.uint8)
        conf = np.zeros(state.pixels.shape, np.float32)
        if len(self.pseudo_index) and self.annotation.model is not None and ann["train_steps"] > 0:
            probs = self.annotation.predict_proba(images[self.pseudo_index])
            for k, i in enumerate(self.pseudo_index):
                pixels[i], conf[i] = condition_on_labels(probs[k], state.image_labels[i], state.counts[i],
                                                         self.ignore_index)
        else:
            self.pseudo_index = np.zeros(0, np.int64)
        # A different seed: g_φ is a second network, not a copy of f_θ's initialisation.
        seg = self.segmentation.fit(images, state, seed + 1, val=val, pseudo=(pixels, conf))
        return {**seg, **{f"annotation_{k}": v for k, v in ann.items() if k in ("train_steps", "final_loss", "head_steps")}}

    # -- prediction: the segmentation network -------------------------------------------------
    def forward_batches(self, images: np.ndarray, heads: tuple[str, ...] | None = None):
        return self.segmentation.forward_batches(images, heads)

    def predict_batches(self, images: np.ndarray):
        return self.segmentation.predict_batches(images)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self.segmentation.predict_proba(images)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.segmentation.predict(images)

    def pseudo_labels(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.annotation.pseudo_labels(images)


@register_pipeline("single")
def single(config: LearnerConfig, num_classes: int, ignore_index: int) -> Learner:
    """One network, trained on every label the campaign bought, is scored and serves the strategy."""
    return Learner(config, num_classes, ignore_index)


@register_pipeline("basis")
def basis(config: LearnerConfig, num_classes: int, ignore_index: int) -> BasisLearner:
    """BASIS (mask-guided §4): an annotation network pseudo-labels the weak pool, a segmentation network is scored."""
    return BasisLearner(config, num_classes, ignore_index)


def make_learner(config: LearnerConfig, num_classes: int, ignore_index: int) -> Any:
    """The learner of the registered pipeline ``config.pipeline`` (``Learner`` interface)."""
    # Pipelines have no parameters of their own: the learner configuration is theirs.
    return PIPELINES.get(config.pipeline).factory(config, num_classes, ignore_index)
