"""MADBAL (issue 10): Eqs. (4)-(8) on hand-made tensors, superpixels, selection budgets, ablations;
the superpixel-feature paths (issue 20): the encoder-only pass, the per-patch reference, the encoder map."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from alharness.toolkit import superpixels as S
from alharness.campaign.context import make_context
from alharness.campaign.loop import run_campaign
from alharness.annotation.costs import build_cost_models
from alharness.datasets.base import SplitData, make_pool_view
from alharness.errors import ConfigError
from alharness.annotation.labels import LabelState
from alharness.learner import Learner, LearnerConfig, losses
from alharness.learner.heads import HEADS, Network
from alharness.learner.services import pool_outputs
from alharness.annotation.oracle import Oracle
from alharness.registry import DATASETS, MODELS, STRATEGIES
from alharness.seeding import derive_rng
from alharness.testing import parametrize_with_checks
from alharness.toolkit import backbone_features, encoder_features, to_tensor
from alharness.toolkit.model_outputs import boundary_mask, predicted_boundary
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


def test_predicted_labels_and_boundary_match_their_references():
    rng = np.random.default_rng(0)
    probs = rng.integers(0, 3, (5, 4, 9, 7)).astype(np.float32)  # many ties: the first maximum wins
    np.testing.assert_array_equal(M.predicted_labels(probs), probs.argmax(axis=1))
    for shape in ((1, 1, 1), (2, 1, 6), (2, 6, 1), (3, 9, 7)):
        labels = torch.from_numpy(rng.integers(0, 3, shape))
        assert torch.equal(predicted_boundary(labels), boundary_mask(labels, ignore_index=-1)), shape


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
    with pytest.raises(ConfigError, match="valid choices: encoder_map, patches"):
        STRATEGIES.create("madbal", cluster_features="vgg16")


def test_madbal_campaign_counts_clicks_per_pixel():
    spec = tiny_spec(strategy="madbal", strategy_params={"pixels_per_image": 3, "initial_pixels": 4, "n_clusters": 2},
                     budget_metric="pixels", budget=0.05, rounds=2, initial_masks=0,
                     learner=LearnerConfig(steps=4, batch_size=4, model_params={"width": 4, "depth": 1},
                                           heads=["maturity", "loss_prediction"], head_steps=2))
    rows = run_campaign(spec).rows
    n = TINY_DATASET["n_train"]
    assert [r["spent_clicks"] for r in rows] == [4 * n, 7 * n, 10 * n]
    assert rows[-1]["labelled_pixel_fraction"] == pytest.approx(10 / 24**2)


# -- superpixel features (issue 20) ------------------------------------------------------

ENCODER_MODELS = {
    "tiny_unet": {"width": 4, "depth": 2},
    "unet_timm": {"encoder": "resnet10t", "decoder_width": 8},
    "lraspp_mobilenet_v3_large": {},
    "deeplabv3_resnet50": {},
}


@pytest.mark.parametrize("name", ENCODER_MODELS)
def test_the_encoder_only_pass_gives_the_forward_pass_features(name):
    torch.manual_seed(0)
    base = MODELS.create(name, num_classes=3, in_channels=3, **ENCODER_MODELS[name])
    net = Network(base, 3, HEADS).eval()
    x = torch.randn(2, 3, 34, 30)  # not a multiple of any stride (tiny_unet pads)
    with torch.no_grad():
        parts = base.forward_parts(x)
        maps = base.forward_encoder(x)
        assert [m.shape for m in maps] == [m.shape for m in parts.encoder]
        for a, b in zip(maps, parts.encoder):
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(encoder_features(net, x), backbone_features(net, x))
        torch.testing.assert_close(net(x, heads=("feature_map",))["feature_map"], parts.encoder[-1])


def test_encoder_features_fall_back_to_the_forward_pass_without_one():
    class Plain(torch.nn.Module):  # only the minimal model contract: logits + features
        def forward(self, x):
            return {"logits": x[:, :2], "features": x.mean(dim=(2, 3))}

    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(encoder_features(Network(Plain(), 2), x), x.mean(dim=(2, 3)))


def test_per_patch_features_and_selections_equal_the_whole_network_reference(monkeypatch):
    strat = STRATEGIES.create("madbal", pixels_per_image=5, n_clusters=3, superpixel_size=8, cluster_features="patches")
    ctx, _ = _context(strat, labelled=[(1, [0, 5], [3, 3])])
    images = np.asarray(ctx.pool.images)
    sp = S.compute(images, 8)
    reference = M.superpixel_features(ctx.model, images, sp, 16, batch=2048, encoder_only=False)
    np.testing.assert_allclose(M.superpixel_features(ctx.model, images, sp, 16), reference, atol=1e-5)
    new = strat.propose(dataclasses.replace(ctx, rng=derive_rng(0, "same")))
    old_strat = STRATEGIES.create("madbal", pixels_per_image=5, n_clusters=3, superpixel_size=8, cluster_features="patches")
    monkeypatch.setattr(M, "superpixel_features", functools.partial(M.superpixel_features, batch=2048, encoder_only=False))
    old = old_strat.propose(dataclasses.replace(ctx, rng=derive_rng(0, "same")))
    assert new == old
    np.testing.assert_array_equal(strat.last_clusters, old_strat.last_clusters)
    assert strat.last_budgets == old_strat.last_budgets


def test_services_keep_the_deepest_encoder_map_in_float16():
    _, pool = _pool(n=4, size=32)
    state = LabelState(4, (32, 32), 3, 255)
    state.set_full_mask(0, pool.masks[0])
    learner = Learner(LearnerConfig(steps=2, batch_size=2, model_params={"width": 4, "depth": 2}), 3, 255)
    learner.fit(np.asarray(pool.images), state, seed=0)
    out = pool_outputs(learner, np.asarray(pool.images), {"feature_map", "features"})
    fmap = out["feature_map"]
    assert fmap.dtype == np.float16 and fmap.shape == (4, 16, 8, 8) and not fmap.flags.writeable
    np.testing.assert_allclose(fmap.astype(np.float32).mean(axis=(2, 3)), out["features"], atol=2e-3)


# Hand-made pool: three vertical stripes of flat colour, the model confident on the first,
# hesitant on the second, lost on the third (each stripe has its own dominant class).
_STRIPE_COLOURS = ((200, 40, 40), (40, 200, 40), (40, 40, 200))
_STRIPE_PROBS = ((0.98, 0.01, 0.01), (0.1, 0.8, 0.1), (0.33, 0.33, 0.34))


def _striped_context(n=3, h=48, w=144):
    third = w // 3
    images = np.zeros((n, h, w, 3), np.uint8)
    probs = np.zeros((n, 3, h, w), np.float32)
    for k, (colour, p) in enumerate(zip(_STRIPE_COLOURS, _STRIPE_PROBS)):
        images[:, :, k * third : (k + 1) * third] = colour
        probs[:, :, :, k * third : (k + 1) * third] = np.array(p, np.float32)[None, :, None, None]
    masks = probs.argmax(axis=1).astype(np.uint8)
    split = SplitData(dataset_ids=np.arange(n), images=images, masks=masks, instances=None, num_classes=3, ignore_index=255)
    state = LabelState(n, (h, w), 3, 255)
    state.set_full_mask(0, masks[0])
    # A briefly trained network, so that its features tell the colours apart (a random one barely does).
    learner = Learner(LearnerConfig(steps=20, batch_size=2, model_params={"width": 8, "depth": 2}), 3, 255)
    learner.fit(images, state, seed=0)
    outputs = pool_outputs(learner, images, {"model", "feature_map"})
    probs.setflags(write=False)
    outputs["probabilities"] = probs  # hand-made, not the network's
    oracle = Oracle(split, build_cost_models({}), "pixels", 1.0)
    ctx = make_context(make_pool_view(split, ("a", "b", "c")), LabelState(n, (h, w), 3, 255), oracle, 1, 3, 50.0,
                       derive_rng(0, "stripes"), 0, outputs)
    return ctx, third


def _stripe_summary(strat, batch, ctx, third):
    """Stripes ranked by their cluster's uncertainty (Eq. 7), each image's budget per stripe (Eq. 8), picks per stripe."""
    sp = S.compute(np.asarray(ctx.pool.images), 8)
    stripe_of_sp = ((sp.boxes[:, 1] + sp.boxes[:, 3]) // 2) // third
    clusters = strat.last_clusters
    # Each cluster is named by the stripe most of its superpixels lie in.
    stripe_of = {c: int(np.bincount(stripe_of_sp[clusters == c]).argmax()) for c in np.unique(clusters)}
    u_cl = strat.diagnostics()["cluster_uncertainty"]
    ranked = [stripe_of[c] for c in sorted(stripe_of, key=lambda c: -u_cl[c])]
    budgets = [{stripe_of[c]: b for c, b in per_image.items() if b} for per_image in strat.last_budgets]
    picks = {q.image: np.bincount([x // third for _, x in q.coords], minlength=3).tolist() for q in batch}
    return ranked, budgets, picks


def test_hand_made_case_gives_the_same_top_clusters_on_every_feature_path(monkeypatch):
    ctx, third = _striped_context()

    def run(features):
        strat = STRATEGIES.create("madbal_vanilla", pixels_per_image=6, n_clusters=3, superpixel_size=8,
                                  cluster_features=features)
        return _stripe_summary(strat, strat.propose(dataclasses.replace(ctx, rng=derive_rng(0, "k"))), ctx, third)

    runs = {"encoder map": run("encoder_map"), "encoder per patch": run("patches")}
    monkeypatch.setattr(M, "superpixel_features", functools.partial(M.superpixel_features, encoder_only=False))
    runs["whole network per patch"] = run("patches")
    # Entropies 1.10, 0.64, 0.11: Eq. (8) gives ⌈3.6⌉, ⌈2.1⌉, ⌈0.4⌉ of 6 pixels, and the ceilings'
    # excess of 2 comes back from the least uncertain clusters: 4, 2 and 0 pixels per image.
    for label, (ranked, budgets, picks) in runs.items():
        assert ranked == [2, 1, 0], label
        assert budgets == [{2: 4, 1: 2}] * 3, label
    # A patch sees its flat colour only: the picks follow the budgets exactly. On the encoder map a
    # superpixel by a stripe's edge also sees the next stripe and may join its cluster, where Eq. (6)
    # favours it as a rare class: picks may move to the edge of the neighbouring stripe.
    assert runs["encoder per patch"][2] == runs["whole network per patch"][2] == {i: [0, 2, 4] for i in range(3)}
    assert all(sum(p) == 6 and p[0] == 0 for p in runs["encoder map"][2].values())


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


# -- memory at scale (issue 17) ----------------------------------------------------------

def test_uniform_picks_drawn_block_by_block_are_those_of_one_pool_sized_draw():
    # 40 images: more than one block of uniform scores; some pixels already labelled.
    ds, pool = _pool(n=40, size=16)
    view = make_pool_view(pool, ds.class_names)
    state = LabelState(len(pool), view.image_shape, ds.num_classes, ds.ignore_index)
    for i in range(0, 40, 3):
        state.set_pixels(i, (np.arange(16), np.arange(16)), pool.masks[i][np.arange(16), np.arange(16)])
    oracle = Oracle(pool, build_cost_models({}), "pixels", 1.0)
    strat = STRATEGIES.create("random_pixels", initial_pixels=5)
    ctx = make_context(view, state, oracle, 0, 3, 1e9, derive_rng(0, "t", 0), 0, {})
    got = {q.image: [tuple(c) for c in q.coords] for q in strat.initial(ctx)}
    scores = derive_rng(0, "t", 0).random((40, 16, 16), dtype=np.float32)
    want = M.top_per_image(scores, state.pixels == ds.ignore_index, 5)
    assert got == {i: [(int(p // 16), int(p % 16)) for p in want[i]] for i in range(40)}


def test_pixels_asked_for_are_kept_sparse_and_a_former_mask_state_is_read():
    strat = STRATEGIES.create("random_pixels", initial_pixels=3)
    ctx, _ = _context(strat, rnd=0)
    asked = {(q.image, *c) for q in strat.initial(ctx) for c in q.coords}
    n, h, w = ctx.labels.pixels.shape
    assert strat._asked.dtype == np.int64 and len(strat._asked) == len(asked)  # indices, not an (N, H, W) mask
    mask = np.zeros((n, h, w), bool)
    for i, y, x in asked:
        mask[i, y, x] = True
    old = STRATEGIES.create("random_pixels", initial_pixels=3)
    old.set_state({**strat.get_state(), "_asked": mask, "_asked_shape": None})  # a checkpoint of the former layout
    cand_new, cand_old = strat._candidate_rows(ctx.labels, 0, n), old._candidate_rows(ctx.labels, 0, n)
    np.testing.assert_array_equal(cand_new, cand_old)
    assert not cand_new[mask].any()


def test_superpixels_are_written_to_their_cache_file_and_read_back_memory_mapped(tmp_path, monkeypatch):
    monkeypatch.setenv("ALHARNESS_CACHE", str(tmp_path))
    _, pool = _pool(size=32)
    images = np.asarray(pool.images)
    S._memo.clear()
    first = S.compute(images)
    assert isinstance(first.labels, np.memmap)  # not the process's own memory, even when first computed
    np.testing.assert_array_equal(first.labels, S.compute(images, cache=False).labels)
    assert not list(tmp_path.glob(".superpixels-*")), "no temporary file left behind"


@pytest.mark.parametrize("weighted", [True, False])
def test_heads_in_inference_give_the_training_path_outputs_bit_for_bit(weighted):
    # Inference writes each full-resolution map into one buffer instead of stacking a list (memory);
    # the values, and the layout later convolutions see, must not change.
    torch.manual_seed(0)
    base = MODELS.create("tiny_unet", num_classes=5, in_channels=3, width=4, depth=2)
    net = Network(base, 5, ("maturity", "loss_prediction"), weight_prediction=weighted).eval()
    x = torch.rand(3, 3, 40, 72) - 0.5
    heads = ("loss_prediction", "maturity")
    with torch.enable_grad():
        ref = {k: v.detach() for k, v in net(x, heads=heads).items()}
    with torch.no_grad():
        got = net(x, heads=heads)
    assert set(got) == set(ref)
    for k in ref:
        assert torch.equal(got[k], ref[k]), k
        assert got[k].stride() == ref[k].stride(), k
