"""The IoU head per predicted object ("Mask-guided sample selection for semi-supervised instance
segmentation", §5, eq. (2)): per-object targets on hand-made masks, masked pooling, the image
score as the mean over its objects, and the head's training on a tiny pool."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alharness.learner import Learner, LearnerConfig
from alharness.learner.heads import IoUHead, object_iou_targets, predicted_components
from alharness.learner.services import pool_outputs
from alharness.metrics import iou_score, predicted_iou_score, predicted_object_ious
from test_mask_guided import _squares  # the IoU head's tiny pool there

IGN = 255


def _truth_and_prediction():
    """12×12 truth: two class-1 squares (3×3 and 4×4); prediction: the first exact,
    the second 8 of its 16 pixels plus 4 outside (IoU 8/20), and a spurious class-2 blob."""
    t = np.zeros((12, 12), np.uint8)
    t[1:4, 1:4] = 1
    t[6:10, 6:10] = 1
    p = np.zeros_like(t)
    p[1:4, 1:4] = 1
    p[6:8, 6:12] = 1  # rows 6-7, columns 6-11: 8 inside the square, 4 outside
    p[10:12, 0:2] = 2
    return t, p


def test_per_object_targets_are_the_matched_ious_and_the_score_their_mean():
    t, p = _truth_and_prediction()
    # Objects in object_map order (raster scan): the exact square, the half square, the class-2 blob (unmatched).
    np.testing.assert_allclose(predicted_object_ious(p, t, IGN), [1.0, 8 / 20, 0.0])
    assert predicted_iou_score(p, t, IGN) == pytest.approx((1 + 8 / 20 + 0) / 3)  # eq. (2) over predicted objects
    # The learner trains on exactly these, object by object, image by image; an image with no
    # predicted object is one target, 1 if it has no object either, else 0.
    empty = np.zeros_like(t)
    got = object_iou_targets(np.stack([p, empty, empty]), np.stack([t, t, empty]), IGN)
    np.testing.assert_allclose(got, [1.0, 8 / 20, 0.0, 0.0, 1.0])
    assert predicted_iou_score(empty, t, IGN) == iou_score(empty, t, IGN) == 0.0
    # Void truth pixels count for neither side: hiding the spill-over makes the second object exact-ish (8/16).
    t2 = t.copy()
    t2[6:8, 10:12] = IGN
    np.testing.assert_allclose(predicted_object_ious(p, t2, IGN), [1.0, 8 / 16, 0.0])


def test_the_head_pools_each_object_and_averages_them_per_image():
    _, p = _truth_and_prediction()
    logits = torch.from_numpy(np.eye(3, dtype=np.float32)[p]).permute(2, 0, 1)[None]
    logits = torch.cat([logits, torch.zeros_like(logits)])  # second image: background only
    objects = predicted_components(logits)
    assert objects[0].max() == 3 and bool((objects[1] == 1).all())  # no object: the whole image is one
    # One decoder map at half resolution whose channel 0 is +4 on the first square, −4 elsewhere.
    feat = torch.full((2, 1, 6, 6), -4.0)
    feat[0, 0, 0:2, 0:2] = 4.0  # cells over pixels 0-3: the first square (1:4, 1:4) lies inside
    head = IoUHead((1,))
    with torch.no_grad():
        head.fc.weight.fill_(1.0)
        head.fc.bias.zero_()
    out = head([feat], objects)
    obj = torch.sigmoid(torch.tensor([4.0, -4.0, -4.0, -4.0])) ** 2
    torch.testing.assert_close(out["object_iou"], obj)
    torch.testing.assert_close(out["object_image"], torch.tensor([0, 0, 0, 1]))
    torch.testing.assert_close(out["iou"], torch.stack([obj[:3].mean(), obj[3]]))  # eq. (2)


def test_the_head_learns_the_image_scores_on_a_tiny_pool(monkeypatch):
    from alharness.learner import learner as learner_mod
    from alharness.learner import losses

    images, masks, state = _squares(n=12)
    real, seen = losses.iou_regression_loss, []

    def spy(pred, true, weight):
        loss = real(pred, true, weight)
        seen.append(float(loss.detach()))
        return loss

    monkeypatch.setattr(learner_mod.losses, "iou_regression_loss", spy)
    cfg = dict(steps=30, batch_size=6, lr=3e-2, model_params={"width": 4, "depth": 2}, heads=["iou"], flip=False)
    errors, corr = {}, {}
    for head_steps in (1, 100):  # 1: the head's start, every object at the mean target
        seen.clear()
        lrn = Learner(LearnerConfig(**cfg, head_steps=head_steps), 2, IGN)
        lrn.fit(images, state, seed=1)
        true = np.array([predicted_iou_score(p, m, IGN) for p, m in zip(lrn.predict(images), masks)])
        pred = pool_outputs(lrn, images, {"iou"})["iou"]
        assert pred.shape == (len(images),)
        errors[head_steps] = float(np.abs(pred - true).mean())
        corr[head_steps] = float(np.corrcoef(pred, true)[0, 1])
    assert len(seen) == 100 and np.mean(seen[-20:]) < np.mean(seen[:20]), seen  # the L1 on √IoU falls
    # Same seed, same frozen segmentation: only the head differs; training it cuts its error on the
    # pool and makes its scores follow the true ones.
    assert errors[100] < 0.7 * errors[1] and corr[100] > 0.3, (errors, corr)
