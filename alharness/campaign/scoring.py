"""The ``train_and_score`` loop service: train a fresh model on part of what
a campaign bought and score it on the declared validation split.

Strategies that estimate the utility of an allocation from held-out scores
(full-or-weak paper, Alg. 1) declare ``needs = {"train_and_score"}`` and get
``ctx.train_and_score``. It refuses any image the campaign has not bought a
label of, it never sees the test split (the campaign hands it the val split
only), and what it holds is the bought label state, the pool images and the
validation split — no pool ground truth. Validation must be declared in the
benchmark (``validation = "charged"`` or ``"free"``; see the fairness rules in docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np

from alharness.annotation.labels import UNKNOWN, LabelState
from alharness.campaign.evaluation import evaluate_arrays
from alharness.errors import ConfigError, QueryRefused
from alharness.learner import Learner, LearnerConfig


class UnboughtDataError(QueryRefused):
    """train_and_score was asked to train on labels the campaign has not bought."""


class TrainAndScore:
    """``ctx.train_and_score(masks, labels, seed, steps=None) -> validation mIoU``.

    ``masks``: pool images whose bought full masks to train on; ``labels``:
    pool images whose bought image-level labels to train on (weak
    supervision only, even where a mask was bought). A fresh model is trained
    with the campaign's learner configuration (``steps`` overrides its step
    count, e.g. for cheaper utility samples) and scored on the validation split.
    """

    def __init__(self, config: LearnerConfig, pool_images: np.ndarray, state: LabelState,
                 val_images: np.ndarray, val_masks: np.ndarray, num_classes: int, ignore_index: int):
        if len(val_images) == 0:
            raise ConfigError("train_and_score needs a non-empty validation split")
        # Early stopping inside a utility sample would need a second held-out
        # split: the validation split is what the sample is scored on.
        self._config = dataclasses.replace(config, patience=0, warm_start=False)
        self._images = pool_images
        self._state = state  # the loop's label state: holds only what was bought
        self._val_images = np.array(val_images, copy=True)
        self._val_masks = np.array(val_masks, copy=True)
        self._num_classes = num_classes
        self._ignore = ignore_index
        self.calls = 0

    def _subset(self, masks: Iterable[int], labels: Iterable[int]) -> LabelState:
        st = self._state
        sub = LabelState(len(st.pixels), st.pixels.shape[1:], self._num_classes, self._ignore)
        masks = [int(i) for i in masks]
        labels = [int(i) for i in labels]
        for i in masks + labels:
            if not 0 <= i < len(st.pixels):
                raise UnboughtDataError("train_and_score", i, f"image {i} is outside the pool (0..{len(st.pixels) - 1})")
        for i in masks:
            if not st.has_full_mask[i]:
                raise UnboughtDataError("train_and_score", i, f"no full mask was bought for pool image {i}")
            sub.set_full_mask(i, st.pixels[i])
        for i in labels:
            if (st.image_labels[i] == UNKNOWN).any():
                raise UnboughtDataError("train_and_score", i, f"no image-level labels were bought for pool image {i}")
            if i not in masks:
                sub.image_labels[i] = st.image_labels[i]
        return sub

    def __call__(self, masks: Iterable[int], labels: Iterable[int], seed: int, steps: int | None = None) -> float:
        sub = self._subset(masks, labels)
        config = self._config if steps is None else dataclasses.replace(self._config, steps=int(steps), epochs=0)
        learner = Learner(config, self._num_classes, self._ignore)
        learner.fit(self._images, sub, seed=int(seed))
        self.calls += 1
        miou, _, _ = evaluate_arrays(learner, self._val_images, self._val_masks, None, self._num_classes, self._ignore)
        return float(miou)


def loop_outputs(needs: Iterable[str], config: LearnerConfig, pool_images: np.ndarray, state: LabelState,
                 val_split, validation: str, num_classes: int, ignore_index: int, who: str = "the strategy") -> dict:
    """The loop services a strategy declared (``LOOP_NEEDS``), built once per campaign."""
    if "train_and_score" not in set(needs):
        return {}
    if validation not in ("charged", "free") or val_split is None:
        raise ConfigError(f"{who} needs train_and_score, which scores on the validation split: set [benchmark] "
                          f"validation = 'charged' (its masks are bought) or 'free'; got validation = {validation!r}")
    return {"train_and_score": TrainAndScore(config, pool_images, state, val_split.images, val_split.masks,
                                             num_classes, ignore_index)}
