"""Mask-guided selection ("Mask-guided sample selection for semi-supervised instance segmentation", §3): the IoU
score of eq. (2) and mask AP on hand-made masks, β-closest selection, the IoU head's
frozen training phase, and the BASIS pipeline (pseudo-labels from pool images only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alharness.campaign.loop import run_campaign
from alharness.datasets.base import PoolView
from alharness.errors import ConfigError
from alharness.annotation.labels import LabelState
from alharness.learner import Learner, LearnerConfig
from alharness.learner.pipeline import BasisLearner, condition_on_labels, make_learner
from alharness.metrics import MaskAP, iou_score, iou_scores, object_ious
from alharness.contract.queries import FullMask, LabelsWithCounts
from alharness.registry import DATASETS, STRATEGIES
from alharness.contract.strategy import StrategyContext
from alharness.testing import parametrize_with_checks
from conftest import TINY_DATASET, TINY_LEARNER, tiny_spec

IGN = 255


def _two_squares():
    """10×10: two class-1 objects, a 3×3 at the top left and a 3×3 at the bottom right."""
    t = np.zeros((10, 10), np.uint8)
    t[1:4, 1:4] = 1
    t[6:9, 6:9] = 1
    return t


# -- eq. (2) on hand-made masks ---------------------------------------------------

def test_iou_score_is_the_mean_of_object_ious():
    t = _two_squares()
    p = np.zeros_like(t)
    p[1:4, 1:4] = 1  # perfect
    p[6:9, 6:8] = 1  # 6 of 9 pixels, nothing outside: IoU 6/9
    np.testing.assert_allclose(object_ious(p, t, IGN), [1.0, 6 / 9])
    assert iou_score(p, t, IGN) == pytest.approx((1 + 6 / 9) / 2)
    # A missed object scores 0; a wrong class matches nothing.
    p2 = np.zeros_like(t)
    p2[1:4, 1:4] = 1
    p2[6:9, 6:9] = 2
    assert iou_score(p2, t, IGN) == pytest.approx(0.5)
    # Spill-over into background enlarges the union: 9 / 12.
    p3 = t.copy()
    p3[0, 1:4] = 1
    np.testing.assert_allclose(object_ious(p3, t, IGN), [9 / 12, 1.0])


def test_iou_score_uses_instances_where_the_dataset_has_them():
    # Two touching objects of one class: one connected component, two instances.
    t = np.zeros((6, 8), np.uint8)
    t[1:5, 1:7] = 1
    inst = np.zeros_like(t, np.int32)
    inst[1:5, 1:4], inst[1:5, 4:7] = 1, 2
    p = t.copy()  # predicts one blob over both
    assert iou_score(p, t, IGN) == 1.0  # without instances: one object, perfect
    # With instances: the blob (24 px) matches one 12-px instance (IoU ½), the other is missed.
    np.testing.assert_allclose(object_ious(p, t, IGN, inst), [0.5, 0.0])
    assert iou_score(p, t, IGN, inst) == pytest.approx(0.25)


def test_iou_score_ignores_void_and_handles_images_without_objects():
    t = _two_squares()
    t[0, :] = IGN
    p = t.copy()
    p[0, :] = 1  # predictions on void pixels do not count
    p[p == IGN] = 1
    assert iou_score(p, t, IGN) == 1.0
    empty = np.zeros((5, 5), np.uint8)
    assert iou_score(empty, empty, IGN) == 1.0
    fp = empty.copy()
    fp[2, 2] = 1
    assert iou_score(fp, empty, IGN) == 0.0
    np.testing.assert_allclose(iou_scores(np.stack([empty, fp]), np.stack([empty, empty]), IGN), [1.0, 0.0])


def test_mask_ap50_on_hand_made_predictions():
    t = _two_squares()
    p = np.zeros_like(t)
    p[1:4, 1:4] = 1          # TP (IoU 1)
    p[6:9, 6:7] = 1          # IoU 3/9 < 0.5: FP, and the object is missed
    probs = np.stack([1.0 - p, p]).astype(np.float64)
    probs[1][6:9, 6:7] = 0.9  # the FP scores higher than the TP
    probs[0][6:9, 6:7] = 0.1
    probs[1][1:4, 1:4] = 0.6
    probs[0][1:4, 1:4] = 0.4
    ap = MaskAP(2)
    ap.add(probs, t, IGN)
    # Ranked: FP (0.9), TP (0.6): precision 0, ½; recall 0, ½ → AP = ½·½.
    assert ap.value() == pytest.approx(0.25)
    perfect = MaskAP(2)
    perfect.add(np.stack([1.0 - t, t]).astype(float), t, IGN)
    assert perfect.value() == 1.0


# -- β-closest selection ------------------------------------------------------------

def _context(iou, has_mask=(), budget=1e9, true_iou=None):
    n = len(iou)
    images = np.zeros((n, 4, 4, 3), np.uint8)
    pool = PoolView(images=images, dataset_ids=np.arange(n), class_names=("bg", "fg"), ignore_index=IGN)
    state = LabelState(n, (4, 4), 2, IGN)
    for i in has_mask:
        state.set_full_mask(i, np.zeros((4, 4), np.uint8))
    return StrategyContext(pool=pool, labels=state.view(), round=1, rounds=1, budget_metric="label_equivalents",
                           budget_total=budget, budget_spent=0.0, budget_left_this_round=budget,
                           quote=lambda q: 12.0, rng=np.random.default_rng(0), initial_masks=2,
                           iou=np.asarray(iou, np.float32), true_iou=None if true_iou is None else np.asarray(true_iou))


def test_selection_takes_the_images_whose_score_is_closest_to_beta():
    iou = [0.05, 0.31, 0.9, 0.5, 0.27, 0.6, 0.35, 0.0]
    s = STRATEGIES.create("mask_guided", beta=0.3, images_per_round=3)
    chosen = [q.image for q in s.propose(_context(iou))]
    assert chosen == [1, 4, 6]  # |0.01|, |0.03|, |0.05|
    # Already masked images are never picked again; the budget caps the count.
    chosen = [q.image for q in STRATEGIES.create("mask_guided", beta=0.3).propose(_context(iou, has_mask=[1], budget=24))]
    assert chosen == [4, 6]
    # β = 1 picks the easiest images, β = 0 the hardest.
    assert [q.image for q in STRATEGIES.create("mask_guided", beta=1.0, images_per_round=2).propose(_context(iou))] == [2, 5]
    assert [q.image for q in STRATEGIES.create("mask_guided", beta=0.0, images_per_round=2).propose(_context(iou))] == [7, 0]
    # The oracle variant ranks by the true score, not the predicted one.
    oracle = STRATEGIES.create("mask_guided_oracle", beta=1.0, images_per_round=1)
    assert [q.image for q in oracle.propose(_context(iou, true_iou=[1.0] + [0.0] * 7))] == [0]


def test_initial_round_buys_random_masks_and_counts_for_the_rest():
    s = STRATEGIES.create("mask_guided", beta=0.5)
    ctx = _context([0.0] * 6)
    ctx = StrategyContext(**{**ctx.__dict__, "round": 0})
    batch = s.initial(ctx)
    masks = [q for q in batch if isinstance(q, FullMask)]
    weak = [q for q in batch if isinstance(q, LabelsWithCounts)]
    assert len(masks) == 2 and len(weak) == 4
    assert {q.image for q in masks} | {q.image for q in weak} == set(range(6))
    assert not STRATEGIES.create("mask_guided", weak_labels=False).initial(ctx)[2:]


@pytest.mark.parametrize("params, bad", [({"beta": 1.5}, "beta"), ({"beta": "mid"}, "beta"),
                                          ({"images_per_round": -1}, "images_per_round"),
                                          ({"weak_labels": 1}, "weak_labels")])
def test_bad_parameters_name_the_parameter(params, bad):
    with pytest.raises(ConfigError, match=bad):
        STRATEGIES.create("mask_guided", **params)


@parametrize_with_checks([("mask_guided", {"beta": 0.4}), ("mask_guided_oracle", {"beta": 0.4}), "mask_guided_random"])
def test_strategies_keep_the_plugin_contract(strategy, check):
    check(strategy)


# -- the IoU head (§5, Table 2) -----------------------------------------------------

def _squares(n=8, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        for _ in range(1 + i % 3):
            y, x = rng.integers(0, size - 4, 2)
            images[i, y : y + 4, x : x + 4] = (230, 40, 40)
            masks[i, y : y + 4, x : x + 4] = 1
    state = LabelState(n, (size, size), 2, IGN)
    for i in range(n):
        state.set_full_mask(i, masks[i])
    return images, masks, state


def test_iou_head_trains_only_after_the_segmentation_is_frozen():
    images, masks, state = _squares()
    cfg = dict(steps=8, batch_size=4, lr=1e-2, model_params={"width": 4, "depth": 2}, heads=["iou"])
    frozen = Learner(LearnerConfig(**cfg, head_steps=0), 2, IGN)
    frozen.fit(images, state, seed=5)
    trained = Learner(LearnerConfig(**cfg, head_steps=6), 2, IGN)
    assert trained.fit(images, state, seed=5)["head_steps"] == 6
    fresh = Learner(LearnerConfig(**cfg, head_steps=0), 2, IGN)._build(5)[0]
    # Without the head phase the IoU layer is still at its initialisation: the
    # segmentation phase never touched it ...
    for a, b in zip(frozen.model.iou.parameters(), fresh.iou.parameters()):
        torch.testing.assert_close(a, b.to(a.device))
    # ... the head phase trained it ...
    assert any(not torch.equal(a, b) for a, b in zip(trained.model.iou.parameters(), frozen.model.iou.parameters()))
    # ... and left every segmentation weight and batch-norm statistic as the segmentation phase made it.
    for (k, a), (_, b) in zip(frozen.model.base.state_dict().items(), trained.model.base.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)


def test_iou_head_regresses_the_eq2_score_with_l1_on_sqrt(monkeypatch):
    """The targets the head is trained on are the per-object IoUs of the frozen prediction (§5)."""
    from alharness.learner import learner as learner_mod
    from alharness.learner import losses
    from alharness.learner.heads import object_iou_targets

    images, masks, state = _squares()
    seen = []
    real = losses.iou_regression_loss

    def spy(pred, true, weight):
        seen.append(true.detach().cpu().numpy().copy())
        return real(pred, true, weight)

    monkeypatch.setattr(learner_mod.losses, "iou_regression_loss", spy)
    lrn = Learner(LearnerConfig(steps=6, batch_size=8, model_params={"width": 4, "depth": 2}, heads=["iou"],
                                head_steps=1, flip=False), 2, IGN)
    lrn.fit(images, state, seed=0)
    assert len(seen) == 1
    per_object = object_iou_targets(lrn.predict(images), masks, IGN)
    # The head phase draws a batch with replacement: every target is some predicted object's IoU.
    assert all(np.isclose(per_object, v, atol=1e-6).any() for v in seen[0])


# -- BASIS ------------------------------------------------------------------------------

def test_conditioning_drops_absent_classes_and_extra_objects():
    probs = np.zeros((3, 6, 10), np.float32)
    probs[0] = 0.5
    probs[1, 1:3, 1:3] = 0.9   # class 1 blob, 4 px
    probs[1, 1:4, 5:9] = 0.8   # class 1 blob, 12 px
    probs[2, 4:6, 0:2] = 0.7   # class 2 blob: the labels say class 2 is absent
    labels = np.array([1, 1, 0], np.int8)
    counts = np.array([-1, 1, 0], np.int16)
    pixels, conf = condition_on_labels(probs, labels, counts, IGN)
    assert (pixels[1:4, 5:9] == 1).all()            # the larger class-1 object is kept
    assert (pixels[1:3, 1:3] == IGN).all()          # the count says one object: the smaller becomes unknown
    assert (pixels[4:6, 0:2] == 0).all()            # absent class 2: background instead
    assert conf.shape == pixels.shape and conf[1, 5] == pytest.approx(0.8)


def _basis_spec(**over):
    learner = LearnerConfig(**{**TINY_LEARNER, "heads": ["iou"], "head_steps": 2, "pipeline": "basis"})
    return tiny_spec(strategy="mask_guided", strategy_params={"beta": 0.5}, learner=learner, budget=60, rounds=1, **over)


def test_basis_pseudo_labels_come_from_pool_images_only(monkeypatch):
    ds = DATASETS.create("synthetic_shapes", **TINY_DATASET)
    pool_images, test_images = ds.split("train").images, ds.split("test").images
    pseudo_inputs, fits = [], []
    real_predict, real_fit = Learner.predict_proba, BasisLearner.fit

    def spy_predict(self, images):
        if getattr(self, "_is_annotation", False):
            pseudo_inputs.append(np.array(images))
        return real_predict(self, images)

    def spy_fit(self, images, state, seed, **kw):
        self.annotation._is_annotation = True
        out = real_fit(self, images, state, seed, **kw)
        fits.append((self.pseudo_index.copy(), state.has_full_mask.copy(), out))
        return out

    monkeypatch.setattr(Learner, "predict_proba", spy_predict)
    monkeypatch.setattr(BasisLearner, "fit", spy_fit)
    rows = run_campaign(_basis_spec()).rows
    assert pseudo_inputs and fits
    for images in pseudo_inputs:
        for img in images:
            assert any(np.array_equal(img, p) for p in pool_images)
            assert not any(np.array_equal(img, t) for t in test_images)
    for index, has_mask, out in fits:
        # Pseudo-labelled: the weakly labelled pool images, never one with a bought mask.
        assert len(index) and not has_mask[index].any()
        assert out["pseudo_images"] == len(index)
    for row in rows:
        assert row["annotation_miou"] is not None and row["miou"] is not None
        assert row["n_labels_with_counts"] == len(pool_images) - 2  # IL+C for every image without an initial mask
        assert row["spent_seconds"] > 0 and row["ap50"] is not None


def test_make_learner_and_basis_config():
    cfg = LearnerConfig(**TINY_LEARNER, pipeline="basis", heads=["iou"])
    lrn = make_learner(cfg, 3, IGN)
    assert isinstance(lrn, BasisLearner) and lrn.services is lrn.annotation
    assert lrn.annotation.config.heads == ("iou",) and lrn.segmentation.config.heads == ()
    assert isinstance(make_learner(LearnerConfig(**TINY_LEARNER), 3, IGN), Learner)
    with pytest.raises(ConfigError, match="pipeline"):
        LearnerConfig(pipeline="cascade")
    # The default stays out of the campaign id, so earlier results keep theirs.
    assert "pipeline" not in LearnerConfig().to_dict() and cfg.to_dict()["pipeline"] == "basis"
