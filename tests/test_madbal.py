"""MADBAL (issue 10): Eqs. (4)-(8) on hand-made tensors, superpixels, selection budgets, ablations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alharness.toolkit import superpixels as S
from alharness.campaign.context import make_context
from alharness.campaign.loop import run_campaign
from alharness.annotation.costs import build_cost_models
from alharness.datasets.base import make_pool_view
from alharness.errors import ConfigError
from alharness.annotation.labels import LabelState
from alharness.learner import Learner, LearnerConfig, losses
from alharness.learner.services import pool_outputs
from alharness.annotation.oracle import Oracle
from alharness.registry import DATASETS, STRATEGIES
from alharness.seeding import derive_rng
from alharness.testing import parametrize_with_checks
from strategies import madbal as M

from conftest import TINY_DATASET, tiny_spec

VARIANTS = ["madbal", "madbal_averaging", "madbal_no_maturity", "madbal_vanilla", "madbal_random_clusters",
            "madbal_no_breakdown", "pixel_entropy", "random_pixels"]


# -- Eq. (4) ----------------------------------------------------------------------

def test_eq4_pixel_uncertainty_by_hand():
    # Two pixels, two classes, K = 2 maturity heads.
    p = np.array([[[[0.5, 0.9]], [[0.5, 0.1]]]], np.float32)          # (1, C=2, 1, 2)
    js = np.array([[[[0.2, 0.0]], [[0.4, 0.1]]]], np.float32)         # (1, K=2, 1, 2)
    w = np.array([[[[0.25, 0.5]], [[0.75, 0.5]]]], np.float32)
    lp = np.array([[[[0.1, 0.3]], [[0.8, 0.6]]]], np.float32)         # σ(centre), σ(boundary)
    boundary = np.array([[[True, False]]])
    h = np.array([np.log(2), -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))])
    mix = np.array([0.25 * 0.2 + 0.75 * 0.4, 0.5 * 0.0 + 0.5 * 0.1])
    factor = np.exp(np.array([0.8, 0.3]))  # pixel 0 on a boundary reads channel 1, pixel 1 channel 0
    got = M.pixel_uncertainty(p, js, w, lp, boundary)[0, 0]
    np.testing.assert_allclose(got, (h + mix) * factor, rtol=1e-5)
    # "Averaging": W = 1/K; "No maturity-awareness": no JS terms; "Vanilla": entropy alone.
    np.testing.assert_allclose(M.pixel_uncertainty(p, js, None, lp, boundary)[0, 0], (h + js[0, :, 0].mean(0)) * factor, rtol=1e-5)
    np.testing.assert_allclose(M.pixel_uncertainty(p, None, None, lp, boundary)[0, 0], h * factor, rtol=1e-5)
    np.testing.assert_allclose(M.pixel_uncertainty(p)[0, 0], h, rtol=1e-5)


def test_boundary_is_where_the_prediction_changes():
    probs = np.zeros((1, 2, 4, 4), np.float32)
    probs[0, 0] = 1.0
    probs[0, :, :, 2:] = [[[0.0]], [[1.0]]]  # right half predicted class 1
    b = M.boundary_of(probs)[0]
    assert b[:, 1:3].all() and not b[:, 0].any() and not b[:, 3].any()


# -- Eqs. (5)-(8) ----------------------------------------------------------------

def test_eq5_to_eq8_by_hand():
    dominant = np.array([0, 0, 1, 2, 2, 2])
    clusters = np.array([0, 0, 0, 1, 1, 1])
    p = M.cluster_class_probability(dominant, clusters, 2, 3)
    np.testing.assert_allclose(p, [[2 / 3, 1 / 3, 0], [0, 0, 1]])
    mean_u = np.array([1.0, 2.0, 3.0, 0.5, 1.5, 1.0])
    u_s = M.superpixel_uncertainty(mean_u, dominant, clusters, p)
    np.testing.assert_allclose(u_s, mean_u * np.exp(-np.array([2 / 3, 2 / 3, 1 / 3, 1, 1, 1])))
    # The rare class in cluster 0 (one superpixel of three) is worth more than its frequent neighbour.
    assert u_s[2] / mean_u[2] > u_s[0] / mean_u[0]
    u_cl = M.cluster_uncertainty(u_s, clusters, 3)
    np.testing.assert_allclose(u_cl, [u_s[:3].mean(), u_s[3:].mean(), 0.0])
    np.testing.assert_array_equal(M.cluster_budgets(np.array([3.0, 1.0]), 10), [8, 3])      # ⌈7.5⌉, ⌈2.5⌉
    np.testing.assert_array_equal(M.cluster_budgets(np.array([3.0, 7.0]), 10), [3, 7])      # exact shares stay exact
    np.testing.assert_array_equal(M.cluster_budgets(np.zeros(2), 5), [3, 3])
    # Per image: at most the total, the least uncertain cluster gives back the ceilings' excess; caps hold.
    np.testing.assert_array_equal(M.image_budgets(np.array([3.0, 1.0]), 10, np.array([99, 99])), [8, 2])
    np.testing.assert_array_equal(M.image_budgets(np.array([3.0, 1.0]), 10, np.array([5, 99])), [5, 3])


def test_top_per_image_skips_labelled_and_orders_best_first():
    scores = np.array([[[0.1, 0.9], [0.5, 0.7]], [[1.0, 1.0], [0.0, 0.2]]])
    cand = np.array([[[True, False], [True, True]], [[True, True], [False, False]]])
    got = M.top_per_image(scores, cand, 2)
    assert got[0].tolist() == [3, 2] and got[1].tolist() == [0, 1]
    assert [len(g) for g in M.top_per_image(scores, cand, 9)] == [3, 2]


def test_image_level_takes_the_best_pixel_of_each_top_superpixel_then_the_next():
    # Pixels 0-3 in superpixel 0, 4-7 in superpixel 1 (flat order grouped by superpixel).
    order, starts = np.arange(8), np.array([0, 4, 8])
    u = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.2, 0.8, 0.4])
    unl = np.ones(8, bool)
    unl[1] = False  # labelled: never picked
    assert M._best_pixels(np.array([1, 0]), 2, order, starts, unl, u).tolist() == [6, 3]
    assert M._best_pixels(np.array([1, 0]), 5, order, starts, unl, u).tolist() == [6, 3, 7, 2, 4]


# -- superpixels --------------------------------------------------------------------

def _pool(n=6, size=32, seed=0):
    ds = DATASETS.create("synthetic_shapes", n_train=n, n_val=0, n_test=2, size=size, num_classes=3, seed=seed)
    return ds, ds.split("train")


def test_superpixels_aggregation_matches_loops_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ALHARNESS_CACHE", str(tmp_path))
    _, pool = _pool(size=48)
    images = np.asarray(pool.images)
    sp = S.compute(images)
    assert list(tmp_path.glob("superpixels-*.npy")), "label maps are cached on disk"
    # About one superpixel per 16x16 square (9 for 48x48), ids 0..n-1 in every image.
    assert 3 <= sp.counts.mean() <= 12
    for i in range(len(images)):
        assert set(np.unique(sp.labels[i])) == set(range(sp.counts[i]))
    values = np.random.default_rng(0).random(images.shape[:3])
    classes = np.random.default_rng(1).integers(0, 3, images.shape[:3])
    sums, major, boxes = sp.sum(values), sp.majority(classes, 3), sp.boxes
    for i in range(len(images)):
        for j in range(sp.counts[i]):
            g = sp.offsets[i] + j
            m = sp.labels[i] == j
            assert sums[g] == pytest.approx(values[i][m].sum())
            assert major[g] == np.bincount(classes[i][m], minlength=3).argmax()
            ys, xs = np.nonzero(m)
            assert boxes[g].tolist() == [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
    S._memo.clear()
    again = S.compute(images)
    assert isinstance(again.labels, np.memmap)  # reopened from the cache file, not recomputed
    np.testing.assert_array_equal(again.labels, sp.labels)
    with pytest.raises(ConfigError, match="valid choices"):
        S.compute(images, method="felzenszwalb")


# -- selection ------------------------------------------------------------------------

def _context(strategy, rnd=1, labelled=None, allowance=50.0):
    ds, pool = _pool(n=6, size=32)
    view = make_pool_view(pool, ds.class_names)
    state = LabelState(len(pool), view.image_shape, ds.num_classes, ds.ignore_index)
    for image, ys, xs in labelled or []:
        state.set_pixels(image, (np.array(ys), np.array(xs)), pool.masks[image][ys, xs])
    state.set_full_mask(5, pool.masks[5])
    cfg = LearnerConfig(steps=4, batch_size=4, model_params={"width": 4, "depth": 2}, heads=["maturity", "loss_prediction"],
                        head_steps=3)
    learner = Learner(cfg, ds.num_classes, ds.ignore_index)
    learner.fit(view.images, state, seed=0)
    oracle = Oracle(pool, build_cost_models({}), "pixels", 1.0)
    outputs = pool_outputs(learner, view.images, strategy.needs)
    return make_context(view, state, oracle, rnd, 3, allowance, derive_rng(0, "t", rnd), 0, outputs), pool


def test_madbal_respects_image_and_cluster_budgets_and_never_requeries():
    strat = STRATEGIES.create("madbal", pixels_per_image=7, n_clusters=3, superpixel_size=8)
    labelled = [(0, list(range(32)), list(range(32))), (1, [0, 5, 9], [3, 3, 3])]
    ctx, pool = _context(strat, labelled=labelled)
    batch = strat.propose(ctx)
    assert batch and all(q.kind == "pixels" for q in batch)
    sp = S.compute(np.asarray(ctx.pool.images), 8)
    seen = set()
    for q in batch:
        assert len(q.coords) <= 7                                            # per-image budget
        for y, x in q.coords:
            assert ctx.labels.pixels[q.image, y, x] == ctx.labels.ignore_index  # never a labelled pixel
            assert (q.image, y, x) not in seen
            seen.add((q.image, y, x))
        clusters = strat.last_clusters[sp.offsets[q.image] + sp.labels[q.image][tuple(np.array(q.coords).T)]]
        per_cluster = np.bincount(clusters, minlength=3)
        budget = strat.last_budgets[q.image]
        for k, n in enumerate(per_cluster):                                   # per-cluster budget, Eq. (8)
            assert n <= budget.get(k, 0)
        assert sum(budget.values()) <= 7
    assert 5 not in {q.image for q in batch}                                  # fully labelled image
    assert all(len(q.coords) == 7 for q in batch)                             # plenty of pixels left everywhere else
    # The next round never asks again for what this one asked.
    again = strat.propose(ctx)
    assert not seen & {(q.image, y, x) for q in again for y, x in q.coords}


@pytest.mark.parametrize("name", ["madbal_random_clusters", "madbal_no_breakdown", "pixel_entropy", "random_pixels"])
def test_variants_pick_per_image_within_budget(name):
    strat = STRATEGIES.create(name, pixels_per_image=5, n_clusters=2, superpixel_size=8)
    ctx, _ = _context(strat, labelled=[(2, [1, 2], [1, 2])])
    batch = strat.propose(ctx)
    assert sorted(q.image for q in batch) == [0, 1, 2, 3, 4]
    for q in batch:
        assert len(q.coords) == 5 and len(set(q.coords)) == 5
        assert all(ctx.labels.pixels[q.image, y, x] == ctx.labels.ignore_index for y, x in q.coords)


def test_no_breakdown_takes_the_most_uncertain_pixels():
    strat = STRATEGIES.create("pixel_entropy", pixels_per_image=4)
    ctx, _ = _context(strat)
    h = M.pixel_entropy(ctx.probabilities)
    for q in strat.propose(ctx):
        picked = np.array([h[q.image, y, x] for y, x in q.coords])
        assert picked.min() >= np.sort(h[q.image].ravel())[-4] - 1e-6


def test_initial_round_buys_random_pixels_in_every_image_and_round_budget_binds():
    strat = STRATEGIES.create("madbal", initial_pixels=6)
    ctx, _ = _context(strat, rnd=0)
    batch = strat.initial(ctx)
    assert len(batch) == 5 and all(len(q.coords) == 6 for q in batch)  # image 5 has a full mask
    one_image = 6 / (6 * 32 * 32) + 1e-12
    strat = STRATEGIES.create("random_pixels", pixels_per_image=6)
    ctx, _ = _context(strat, allowance=one_image)
    assert len(strat.propose(ctx)) == 1


@parametrize_with_checks([(name, {"n_clusters": 2} if name not in ("pixel_entropy", "random_pixels") else {}) for name in VARIANTS])
def test_variants_pass_the_strategy_checks(strategy, check):
    check(strategy)


def test_bad_parameters_name_the_choices():
    with pytest.raises(ConfigError, match="valid choices: madbal, averaged"):
        STRATEGIES.create("madbal", uncertainty="maximal")
    with pytest.raises(ConfigError, match="valid choices: clusters"):
        STRATEGIES.create("madbal", breakdown="grid")
    with pytest.raises(ConfigError, match="pixels_per_image"):
        STRATEGIES.create("pixel_entropy", pixels_per_image=0)
    with pytest.raises(ConfigError, match="has no parameter 'uncertainty'"):
        STRATEGIES.create("madbal_vanilla", uncertainty="madbal")


def test_madbal_campaign_counts_clicks_per_pixel():
    spec = tiny_spec(strategy="madbal", strategy_params={"pixels_per_image": 3, "initial_pixels": 4, "n_clusters": 2},
                     budget_metric="pixels", budget=0.05, rounds=2, initial_masks=0,
                     learner=LearnerConfig(steps=4, batch_size=4, model_params={"width": 4, "depth": 1},
                                           heads=["maturity", "loss_prediction"], head_steps=2))
    rows = run_campaign(spec).rows
    n = TINY_DATASET["n_train"]
    assert [r["spent_clicks"] for r in rows] == [4 * n, 7 * n, 10 * n]
    assert rows[-1]["labelled_pixel_fraction"] == pytest.approx(10 / 24**2)


# -- learner parts MADBAL relies on --------------------------------------------------

def test_eq3_lambdas_and_averaging_network():
    assert losses.MADBAL_LAMBDAS == (1.0, 1.0, 0.05, 0.1, 0.15)
    assert losses.maturity_lambdas(3) == (0.05, 0.1, 0.15)
    assert losses.maturity_lambdas(2) == (0.05, 0.15)
    ds, pool = _pool(n=4, size=16)
    cfg = LearnerConfig(steps=2, batch_size=2, model_params={"width": 4, "depth": 2}, heads=["maturity", "loss_prediction"],
                        head_steps=2, weight_prediction=False)
    learner = Learner(cfg, 3, ds.ignore_index)
    state = LabelState(4, (16, 16), 3, ds.ignore_index)
    state.set_full_mask(0, pool.masks[0])
    learner.fit(np.asarray(pool.images), state, seed=0)
    assert learner.model.maturity.weight_block is None
    w = pool_outputs(learner, np.asarray(pool.images), {"maturity_weights"})["maturity_weights"]
    np.testing.assert_allclose(w, 1.0 / w.shape[1])
    with pytest.raises(ConfigError, match="weight_prediction"):
        LearnerConfig(weight_prediction="yes")


def test_loss_prediction_regions_can_come_from_the_prediction():
    target = torch.tensor([[[0, 255, 0, 255]]])
    pixel_ce = torch.tensor([[[1.0, 0.0, 0.1, 0.0]]])
    tau = torch.tensor([0.5, 0.5])
    boundary = torch.tensor([[[True, True, False, False]]])
    # Pixel 0 (label 1, on the predicted boundary) trains channel 1 only; pixel 2 (label 0) channel 0 only.
    lp = torch.tensor([[[[9.0, 0.0, -9.0, 0.0]], [[9.0, 0.0, 0.0, 0.0]]]])
    assert losses.loss_prediction_loss(lp, pixel_ce, target, tau, 255, boundary=boundary) < 1e-3
    lp_wrong = lp.clone()
    lp_wrong[0, 0, 0, 2] = 9.0
    assert losses.loss_prediction_loss(lp_wrong, pixel_ce, target, tau, 255, boundary=boundary) > 5
