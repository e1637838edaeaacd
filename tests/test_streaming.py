"""Streaming acquisition (issue 17): strategies that override ``Strategy.score``
get the pool's outputs batch by batch; dense whole-pool arrays only under
``[resources] dense_outputs_cap_gib``."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TINY_LEARNER, tiny_benchmark_doc, tiny_spec
from alharness import register_strategy
from alharness.annotation.oracle import Oracle
from alharness.campaign.loop import TIMING_COLUMNS, run_campaign
from alharness.contract import FullMask, ScoreBatch, Strategy, within_budget
from alharness.errors import ConfigError, PluginError
from alharness.learner import LearnerConfig

SEEN: list = []  # what the in-process strategies below saw, for the tests to read


@register_strategy("test_dense_probs")
class DenseProbs(Strategy):
    """Reads ctx.probabilities (the contract before streaming)."""

    needs = frozenset({"probabilities"})

    def propose(self, ctx):
        SEEN.append(("dense", ctx.probabilities.shape))
        order = np.argsort(-ctx.probabilities.max(axis=1).mean(axis=(1, 2)), kind="stable")
        return within_budget((FullMask(int(i)) for i in order if not ctx.labels.has_full_mask[i]), ctx.quote,
                             ctx.budget_left_this_round)


@register_strategy("test_dense_feature_map")
class DenseFeatureMap(DenseProbs):
    needs = frozenset({"feature_map"})

    def propose(self, ctx):
        return []


@register_strategy("test_streamed_probs")
class StreamedProbs(DenseProbs):
    """The same selection as DenseProbs, streamed."""

    def score(self, batch: ScoreBatch):
        SEEN.append(("batch", batch.start, len(batch), batch.probabilities.shape[0]))
        return {"conf": batch.probabilities.max(axis=1).mean(axis=(1, 2)), "ids": list(batch.indices)}

    def propose(self, ctx):
        SEEN.append(("propose", ctx.probabilities, len(ctx.scores["conf"]), ctx.scores["ids"]))
        order = np.argsort(-ctx.scores["conf"], kind="stable")
        return within_budget((FullMask(int(i)) for i in order if not ctx.labels.has_full_mask[i]), ctx.quote,
                             ctx.budget_left_this_round)


@register_strategy("test_streamed_with_vertices")
class StreamedWithVertices(StreamedProbs):
    """StreamedProbs that also reads the oracle's true vertex map (an oracle experiment)."""

    needs = frozenset({"probabilities", "true_click_vertices"})
    oracle_experiment = True


@register_strategy("test_bad_scores")
class BadScores(StreamedProbs):
    def score(self, batch):
        return {"conf": np.zeros(len(batch) + 1)}


def _results(spec):
    res = run_campaign(spec)
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in res.rows], res.queries


def _learner(**over):
    return LearnerConfig(**{**TINY_LEARNER, "eval_batch_size": 5, **over})


def test_streamed_batches_and_scores_reach_propose_in_pool_order():
    SEEN.clear()
    run_campaign(tiny_spec(strategy="test_streamed_probs", strategy_process=False, learner=_learner()))
    batches = [s for s in SEEN if s[0] == "batch"]
    proposals = [s for s in SEEN if s[0] == "propose"]
    # 12 pool images in eval batches of 5, each round after round 0 (rounds = 2).
    assert [(b[1], b[2]) for b in batches] == [(0, 5), (5, 5), (10, 2)] * 2
    assert all(b[2] == b[3] for b in batches)
    assert all(p[1] is None for p in proposals)  # no dense array in a streaming strategy's context
    assert all(p[2] == 12 and p[3] == list(range(12)) for p in proposals)


@pytest.mark.parametrize("process", [False, True])
def test_streamed_selection_equals_dense(process):
    dense = _results(tiny_spec(strategy="test_dense_probs", strategy_process=False, learner=_learner()))
    streamed = _results(tiny_spec(strategy="test_streamed_probs", strategy_process=process, learner=_learner()))
    assert [(q["round"], q["image"]) for q in dense[1]] == [(q["round"], q["image"]) for q in streamed[1]]
    assert [r["miou"] for r in dense[0]] == [r["miou"] for r in streamed[0]]


def test_builtin_streaming_in_process_equals_strategy_process():
    a = _results(tiny_spec(strategy="entropy", strategy_process=False, learner=_learner()))
    b = _results(tiny_spec(strategy="entropy", strategy_process=True, learner=_learner()))
    assert a == b


def test_dense_over_the_cap_fails_before_round_0_and_charges_nothing(monkeypatch):
    charged = []
    monkeypatch.setattr(Oracle, "charge_validation", lambda self, split: charged.append(split))
    spec = tiny_spec(strategy="test_dense_probs", strategy_process=False, dense_outputs_cap_gib=1e-6,
                     dataset_params={"n_train": 12, "n_val": 2, "n_test": 6, "size": 24, "num_classes": 3, "seed": 0},
                     validation="charged")
    with pytest.raises(ConfigError) as err:
        run_campaign(spec)
    msg = str(err.value)
    assert "\n" not in msg
    # 12 images x 3 classes x 24 x 24 x 4 bytes
    assert "'test_dense_probs'" in msg and f"{12 * 3 * 24 * 24 * 4 / 2**30:.2f} GiB" in msg
    assert "Strategy.score(batch)" in msg and "dense_outputs_cap_gib = 1e-06" in msg
    assert charged == []


def test_streaming_strategy_ignores_the_cap():
    rows, _ = _results(tiny_spec(strategy="test_streamed_probs", strategy_process=False, dense_outputs_cap_gib=1e-6,
                                 learner=_learner()))
    assert len(rows) == 3


def test_dense_size_that_depends_on_the_network_is_known_before_round_0(monkeypatch):
    """The feature map's size shows only through the network: a forward pass on the
    meta device sizes it before anything is bought (round 0 never runs)."""
    from alharness.learner.services import output_bytes_per_image

    rounds = []
    monkeypatch.setattr(DenseFeatureMap, "initial", lambda self, ctx: rounds.append(ctx.round) or [])
    spec = tiny_spec(strategy="test_dense_feature_map", strategy_process=False, dense_outputs_cap_gib=1e-9)
    with pytest.raises(ConfigError, match="test_dense_feature_map.*feature_map.*dense_outputs_cap_gib") as err:
        run_campaign(spec)
    assert rounds == []
    per_image = output_bytes_per_image(spec.learner, 3, (24, 24), {"feature_map"})["feature_map"]
    assert per_image > 0 and f"{12 * per_image / 2**30:.2f} GiB" in str(err.value)
    # The size is that of the array the loop builds (under a cap it fits).
    seen = []
    monkeypatch.setattr(DenseFeatureMap, "propose", lambda self, ctx: seen.append(ctx.feature_map[0].nbytes) or [])
    run_campaign(tiny_spec(strategy="test_dense_feature_map", strategy_process=False, rounds=1))
    assert seen == [per_image]


def test_a_batch_result_without_one_row_per_image_fails_the_campaign():
    with pytest.raises(PluginError, match="3 rows of 'conf' for a batch of 2 images"):
        run_campaign(tiny_spec(strategy="test_bad_scores", strategy_process=False,
                               learner=_learner(eval_batch_size=2)))


def test_cap_is_a_resource_key_and_leaves_ids_unchanged(tmp_path):
    from alharness.execution.benchmark import parse_benchmark

    doc = tiny_benchmark_doc(strategies=("entropy",), seeds=(0,))
    base = parse_benchmark(doc, "t")
    doc["resources"] = {"dense_outputs_cap_gib": 0.5}
    capped = parse_benchmark(doc, "t")
    assert capped.specs[0].dense_outputs_cap_gib == 0.5
    assert [s.campaign_id for s in capped.specs] == [s.campaign_id for s in base.specs]
    for bad in (0, -1.0, "2", True):
        doc["resources"] = {"dense_outputs_cap_gib": bad}
        with pytest.raises(ConfigError, match="dense_outputs_cap_gib"):
            parse_benchmark(doc, "t")


def test_every_builtin_strategy_that_reads_pool_sized_outputs_streams():
    """So that no built-in strategy needs the dense cap. The named check
    check_streaming_matches_dense runs on every one of them where its module's
    tests parametrise the strategy checks (test_campaign, test_binary_feedback,
    test_metabox, test_mask_guided, test_madbal, test_full_or_weak)."""
    from alharness.contract import ARRAY_OUTPUTS
    from alharness.registry import STRATEGIES

    dense, streaming = [], []
    for name in STRATEGIES.names():
        if not STRATEGIES.get(name).factory.__module__.startswith(("strategies.", "alharness.")):
            continue  # a test's or a plugin package's
        strategy = STRATEGIES.create(name)
        if strategy.needs & set(ARRAY_OUTPUTS):
            (streaming if strategy.streams else dense).append(name)
    assert dense == []
    assert {"entropy", "binary_ee", "binary_lp", "binary_ilp", "entropy_box", "metabox_plus", "metabox_true_cost",
            "madbal", "pixel_entropy", "mask_guided", "mask_guided_oracle"} <= set(streaming)


@pytest.mark.parametrize("process", [False, True])
def test_an_eval_batch_over_the_chunk_size_is_scored_in_runs_with_the_same_result(process, monkeypatch):
    from alharness.campaign import loop

    whole = _results(tiny_spec(strategy="entropy", strategy_process=process, learner=_learner()))
    SEEN.clear()
    # One image's probabilities here: 3 classes x 24 x 24 x 4 bytes; a chunk of two images' worth.
    monkeypatch.setattr(loop, "SCORE_CHUNK_BYTES", 2 * 3 * 24 * 24 * 4)
    run_campaign(tiny_spec(strategy="test_streamed_probs", strategy_process=False, learner=_learner()))
    batches = [(b[1], b[2]) for b in SEEN if b[0] == "batch"]
    assert batches == [(0, 2), (2, 2), (4, 1), (5, 2), (7, 2), (9, 1), (10, 2)] * 2
    assert _results(tiny_spec(strategy="entropy", strategy_process=process, learner=_learner())) == whole


def test_a_run_counts_the_oracle_statistics_it_carries_against_the_chunk_size(monkeypatch):
    from alharness.campaign import loop

    SEEN.clear()
    # One image: 3 x 24 x 24 float32 probabilities + a 24 x 24 float32 vertex map; a chunk of two such images.
    monkeypatch.setattr(loop, "SCORE_CHUNK_BYTES", 2 * (3 + 1) * 24 * 24 * 4)
    run_campaign(tiny_spec(strategy="test_streamed_with_vertices", strategy_process=False, learner=_learner()))
    batches = [(b[1], b[2]) for b in SEEN if b[0] == "batch"]
    assert batches == [(0, 2), (2, 2), (4, 1), (5, 2), (7, 2), (9, 1), (10, 2)] * 2
