"""Region strategies (MetaBox+ paper): box sums, non-overlapping selection,
MetaSeg metrics and targets, and the strategy contract."""

from __future__ import annotations

import numpy as np
import pytest

from alharness.testing import parametrize_with_checks
from strategies.metabox import box_sums, segment_iou, segment_metrics, select_boxes


def test_box_sums_equal_brute_force():
    rng = np.random.default_rng(0)
    p = rng.random((2, 13, 17))
    b = 4
    s = box_sums(p, b)
    assert s.shape == (2, 10, 14)
    for n in range(2):
        for y in range(10):
            for x in range(14):
                assert s[n, y, x] == pytest.approx(p[n, y:y + b, x:x + b].sum())


def test_selected_boxes_never_overlap_and_follow_eq_8():
    rng = np.random.default_rng(1)
    scores = list(box_sums(rng.random((3, 30, 30)), 6))
    chosen = select_boxes(scores, 12, 6)
    assert len(chosen) == 12
    vals = [s for *_, s in chosen]
    assert vals == sorted(vals, reverse=True)
    for a in range(len(chosen)):
        for c in range(a + 1, len(chosen)):
            ia, ya, xa, _ = chosen[a]
            ic, yc, xc, _ = chosen[c]
            if ia == ic:
                assert abs(ya - yc) >= 6 or abs(xa - xc) >= 6, (chosen[a], chosen[c])
    # The first pick is the global maximum.
    best = max((s.max(), i) for i, s in enumerate(scores))
    assert chosen[0][0] == best[1] and chosen[0][3] == pytest.approx(best[0])


def test_selection_skips_forbidden_boxes():
    s = np.zeros((1, 5, 5))
    s[0, 2, 2] = 10
    s[0, 0, 0] = 1
    s[0][s[0] == 10] = -np.inf  # e.g. a box holding labelled pixels
    chosen = select_boxes(s, 3, 3)
    assert all(np.isfinite(c[3]) for c in chosen)
    assert (0, 0, 0, 1.0) in chosen


def test_metaseg_metrics_and_iou_on_hand_made_predictions():
    probs = np.zeros((2, 12, 12))
    probs[0] = 0.9
    probs[1] = 0.1
    probs[1, 2:8, 2:8], probs[0, 2:8, 2:8] = 0.8, 0.2  # a predicted 6x6 square of class 1
    gt = np.zeros((12, 12), np.uint8)
    gt[2:8, 2:6] = 1  # the true object is 6x4: IoU of the square = 24 / 36
    seg, ids, feats = segment_metrics(probs)
    assert len(ids) == 2
    square = seg[4, 4]
    iou = segment_iou(seg, probs.argmax(0), gt, 255)
    assert iou[square - 1] == pytest.approx(24 / 36)
    f = feats[square - 1]
    assert f[6] == 36            # size
    assert f[8] == 20            # boundary pixels of a 6x6 square
    assert f[7] == 16            # interior
    assert f[12] == pytest.approx((2 + 7) / 2 / 12)  # centre of mass, y


@parametrize_with_checks([
    ("random_box", {"box_size": 6, "boxes_per_round": 3, "initial_images": 1}),
    ("entropy_box", {"box_size": 6, "boxes_per_round": 3, "initial_images": 1}),
    ("entropy_box_plus", {"box_size": 6, "boxes_per_round": 3, "initial_images": 1}),
    ("metabox", {"box_size": 6, "boxes_per_round": 3, "initial_images": 1, "meta_images": 1, "n_estimators": 10}),
    ("metabox_plus", {"box_size": 6, "boxes_per_round": 3, "initial_images": 1, "meta_images": 1, "n_estimators": 10}),
    ("entropy_box_true_cost", {"box_size": 6, "boxes_per_round": 3, "initial_images": 1}),
    ("metabox_true_cost", {"box_size": 6, "boxes_per_round": 3, "initial_images": 1, "meta_images": 1, "n_estimators": 10}),
])
def test_box_strategies_pass_the_strategy_checks(strategy, check):
    check(strategy)


def test_metabox_campaign_never_requeries_labelled_pixels_and_trains_on_meta_set_only(monkeypatch):
    from sklearn.ensemble import GradientBoostingRegressor

    from alharness.campaign.loop import run_campaign
    from conftest import tiny_spec

    fitted_sizes = []
    original = GradientBoostingRegressor.fit

    def spy(self, X, y, *a, **k):
        fitted_sizes.append(len(X))
        return original(self, X, y, *a, **k)

    monkeypatch.setattr(GradientBoostingRegressor, "fit", spy)
    res = run_campaign(tiny_spec(strategy="metabox", budget=80, rounds=2, strategy_process=False,  # spy in this process
                                 strategy_params={"box_size": 8, "boxes_per_round": 4, "initial_images": 1,
                                                  "meta_images": 1, "n_estimators": 10}))
    boxes = [q for q in res.queries if q["query_type"] == "region"]
    assert boxes and fitted_sizes
    seen = np.zeros((12, 24, 24), bool)
    for q in res.queries:
        if q["query_type"] in ("full_mask", "held_out_mask"):  # the initial images and the meta set
            seen[q["image"]] = True
    for q in sorted(boxes, key=lambda q: q["round"]):
        y0, x0, y1, x1 = q["box"]
        assert not seen[q["image"], y0:y1, x0:x1].any(), "a box re-queried labelled pixels"
        seen[q["image"], y0:y1, x0:x1] = True
    # The regressor saw only the meta set's segments: at most a few per round, never the pool's.
    assert max(fitted_sizes) < 30


def test_true_cost_statistic_is_the_charged_click_count_of_the_truth():
    """"+*" variants rank by the true polygon vertices, counted as the click cost model counts them."""
    from alharness.toolkit.clicks import image_clicks
    from alharness.annotation.costs import build_cost_models
    from alharness.annotation.oracle_experiments import oracle_outputs
    from alharness.registry import DATASETS
    from conftest import TINY_DATASET

    pool = DATASETS.create("synthetic_shapes", **TINY_DATASET).split("train")
    for eps in (1.0, 4.0):
        models = build_cost_models({"cost_a": {"epsilon": eps}, "cost_b": {"epsilon": eps}, "clicks": {"epsilon": eps}})
        out = oracle_outputs(None, pool.images, pool, {"true_click_vertices"}, models)["true_click_vertices"]
        expected = np.stack([image_clicks(m, pool.ignore_index, eps).vertices for m in pool.masks])
        assert np.array_equal(out, expected) and not out.flags.writeable
    coarse, fine = out, oracle_outputs(None, pool.images, pool, {"true_click_vertices"}, build_cost_models({}))["true_click_vertices"]
    assert coarse.sum() < fine.sum()  # a larger RDP tolerance: fewer vertices, as charged


def test_true_cost_variant_ranks_boxes_by_the_true_vertices():
    from alharness.datasets.base import PoolView
    from alharness.annotation.labels import LabelState
    from alharness.registry import STRATEGIES
    from alharness.contract.strategy import StrategyContext

    # Uniform entropy everywhere: eq. (9) then ranks by the click priority alone.
    probs = np.full((1, 2, 12, 12), 0.5, np.float32)
    vertices = np.zeros((1, 12, 12), np.float32)
    vertices[0, 1:5, 1:5] = 1  # the true annotation is expensive in the top-left corner only
    ctx = StrategyContext(pool=PoolView(images=np.zeros((1, 12, 12, 3), np.uint8), dataset_ids=np.arange(1),
                                        class_names=("a", "b"), ignore_index=255),
                          labels=LabelState(1, (12, 12), 2, 255).view(), round=1, rounds=1, budget_metric="pixels",
                          budget_total=1.0, budget_spent=0.0, budget_left_this_round=1.0, quote=lambda q: 0.0,
                          rng=np.random.default_rng(0), probabilities=probs, true_click_vertices=vertices)
    s = STRATEGIES.create("entropy_box_true_cost", box_size=6, boxes_per_round=1)
    (q,) = s.propose(ctx)
    y0, x0, y1, x1 = q.bounds
    assert not vertices[0, y0:y1, x0:x1].any()  # the cheapest box by true clicks


def test_true_cost_variants_are_flagged_oracle_experiments():
    from alharness.campaign.loop import run_campaign
    from alharness.registry import STRATEGIES
    from conftest import tiny_spec

    res = run_campaign(tiny_spec(strategy="entropy_box_true_cost", budget=80, rounds=1,
                                 strategy_params={"box_size": 6, "boxes_per_round": 3, "initial_images": 1}))
    assert all(r["oracle_experiment"] for r in res.rows)
    assert any(q["query_type"] == "region" for q in res.queries)
    plain = run_campaign(tiny_spec(strategy="entropy_box_plus", budget=80, rounds=1,
                                   strategy_params={"box_size": 6, "boxes_per_round": 3, "initial_images": 1}))
    assert not any(r["oracle_experiment"] for r in plain.rows)
    assert STRATEGIES.create("metabox_true_cost").oracle_experiment


def test_the_kth_best_floor_cuts_no_box_the_greedy_takes():
    """Streamed eq. (8): each image's sequence cut at the k-th best score seen so far
    (select_boxes) merges to the same boxes as the uncut sequences, ties included."""
    from strategies.metabox import image_boxes, merge_boxes

    rng = np.random.default_rng(3)
    for trial in range(20):
        maps = [np.round(rng.random((9, 11)), 1) for _ in range(6)]  # coarse values: many ties
        k, b = int(rng.integers(1, 12)), int(rng.integers(1, 4))
        uncut = merge_boxes([image_boxes(m, k, b) for m in maps], k)
        assert select_boxes(maps, k, b) == uncut
