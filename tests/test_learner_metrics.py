"""Metrics against a straightforward reference; learner behaviour on tiny data."""

from __future__ import annotations

import numpy as np
import pytest

from alharness.annotation.labels import LabelState
from alharness.learner import Learner, LearnerConfig
from alharness.metrics import confusion_matrix, mean_iou, per_class_iou
from alharness.registry import MODELS


def _reference_iou(pred, gt, num_classes, ignore):
    out = []
    for c in range(num_classes):
        valid = gt != ignore
        inter = np.sum((pred == c) & (gt == c) & valid)
        union = np.sum(((pred == c) | (gt == c)) & valid)
        out.append(inter / union if union else np.nan)
    return np.array(out)


@pytest.mark.parametrize("seed", range(5))
def test_iou_matches_reference(seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 4, size=(3, 9, 7))
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 4, size=gt.shape)
    pred[gt == 2] = 1  # class 2 never predicted right
    cm = confusion_matrix(pred, gt, 4, 255)
    assert cm.sum() == (gt != 255).sum()
    np.testing.assert_allclose(per_class_iou(cm), _reference_iou(pred, gt, 4, 255))
    assert mean_iou(cm) == pytest.approx(np.nanmean(_reference_iou(pred, gt, 4, 255)))


def test_absent_classes_do_not_count():
    gt = np.zeros((1, 4, 4), int)
    pred = np.zeros_like(gt)
    cm = confusion_matrix(pred, gt, 3, 255)
    assert np.isnan(per_class_iou(cm)[1:]).all()
    assert mean_iou(cm) == 1.0


def _tiny_data(n=8, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 50, size=(n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        y, x = rng.integers(0, size // 2, 2)
        images[i, y : y + 6, x : x + 6] = 220
        masks[i, y : y + 6, x : x + 6] = 1
    return images, masks


def test_training_is_deterministic_and_learns():
    images, masks = _tiny_data()
    state = LabelState(len(images), images.shape[1:3], 2, 255)
    for i in range(len(images)):
        state.set_full_mask(i, masks[i])
    cfg = LearnerConfig(steps=40, batch_size=4, lr=1e-2, model_params={"width": 8, "depth": 1})
    a, b = Learner(cfg, 2, 255), Learner(cfg, 2, 255)
    fa, fb = a.fit(images, state, seed=3), b.fit(images, state, seed=3)
    assert fa == fb
    pa, pb = a.predict_proba(images), b.predict_proba(images)
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_allclose(pa.sum(axis=1), 1.0, rtol=1e-5)
    assert mean_iou(confusion_matrix(a.predict(images), masks, 2, 255)) > 0.7


def test_unknown_pixels_are_not_trained_on():
    images, masks = _tiny_data()
    state = LabelState(len(images), images.shape[1:3], 2, 255)
    cfg = LearnerConfig(steps=5, batch_size=4, model_params={"width": 4, "depth": 1})
    stats = Learner(cfg, 2, 255).fit(images, state, seed=0)
    assert stats["train_steps"] == 0 and stats["train_images"] == 0  # nothing bought, nothing trained
    state.set_full_mask(2, masks[2])
    stats = Learner(cfg, 2, 255).fit(images, state, seed=0)
    assert stats["train_images"] == 1


def test_models_are_registered_and_shape_correct():
    import torch

    assert "tiny_unet" in MODELS.names()
    model = MODELS.create("tiny_unet", num_classes=5, in_channels=3, width=4, depth=2)
    out = model(torch.zeros(2, 3, 30, 22))  # not a multiple of 4: padded and cropped back
    assert out["logits"].shape == (2, 5, 30, 22)
    assert out["features"].shape == (2, 16)
