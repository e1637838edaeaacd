"""The generic oracle-experiment mechanism: only a strategy flagged as an oracle
experiment may ask for ground-truth statistics it did not buy; it receives the
statistic alone (never masks), and every row says whether it came from one."""

from __future__ import annotations

import numpy as np
import pytest

from alharness.campaign.loop import run_campaign
from alharness.datasets.base import SegmentationDataset, SplitData
from alharness.errors import PluginError
from alharness.learner import LearnerConfig
from alharness.metrics import iou_scores
from alharness.annotation.oracle import Oracle
from alharness.contract.queries import FullMask
from alharness.registry import DATASETS, register_strategy
from alharness.contract.strategy import Strategy
from alharness.testing import StrategyCheckError, check_strategy
from conftest import TINY_DATASET, TINY_LEARNER, tiny_spec
from strategies.mask_guided import MaskGuidedOracle
from test_fairness import _reachable

SEEN: list = []


@register_strategy("test_sneaky_true_iou")
class Sneaky(Strategy):
    """An ordinary strategy that declares the oracle need (must be refused)."""

    needs = frozenset({"true_iou"})

    def propose(self, ctx):
        return [FullMask(int(np.argmax(ctx.true_iou)))]


@register_strategy("test_oracle_spy")
class OracleSpy(MaskGuidedOracle):
    """The oracle experiment, recording what it was given (test only)."""

    def propose(self, ctx):
        SEEN.append(ctx)
        return super().propose(ctx)


def test_ordinary_strategy_cannot_declare_an_oracle_need():
    with pytest.raises(PluginError, match="oracle_experiment"):
        run_campaign(tiny_spec(strategy="test_sneaky_true_iou", rounds=1))
    with pytest.raises(StrategyCheckError, match="has not bought"):
        check_strategy("test_sneaky_true_iou")


def test_oracle_experiment_gets_the_true_iou_score_only_and_is_flagged():
    SEEN.clear()
    rows = run_campaign(tiny_spec(strategy="test_oracle_spy", strategy_params={"beta": 0.5}, rounds=2,
                                  strategy_process=False)).rows  # the spy records in this process
    assert len(SEEN) == 2 and all(r["oracle_experiment"] is True for r in rows)
    ds = DATASETS.create("synthetic_shapes", **TINY_DATASET)
    pool = ds.split("train")
    for ctx in SEEN:
        # It streams: the statistic reaches propose through its score(), never as a whole-pool context array.
        t = ctx.scores["true_iou"]
        assert ctx.true_iou is None
        assert t.shape == (len(pool),) and not t.flags.writeable and ((t >= 0) & (t <= 1)).all()
        # Nothing but the statistic: no split, dataset or oracle, nothing sharing memory with truth.
        objs = _reachable(ctx)
        assert not {type(o) for o in objs} & {SegmentationDataset, SplitData, Oracle}
        for a in (o for o in objs if isinstance(o, np.ndarray)):
            assert not np.shares_memory(a, ds.masks) and not np.shares_memory(a, ds.instances)
    ordinary = run_campaign(tiny_spec(rounds=1)).rows
    assert all(r["oracle_experiment"] is False for r in ordinary)


def test_true_iou_is_eq2_of_the_current_prediction_against_the_pool_truth():
    """The harness computes the statistic from the model the strategy's round sees."""
    from alharness.learner import Learner
    from alharness.annotation.oracle_experiments import oracle_outputs

    ds = DATASETS.create("synthetic_shapes", **TINY_DATASET)
    pool = ds.split("train")
    from alharness.annotation.labels import LabelState

    state = LabelState(len(pool), pool.masks.shape[1:], ds.num_classes, ds.ignore_index)
    for i in range(4):
        state.set_full_mask(i, pool.masks[i])
    lrn = Learner(LearnerConfig(**TINY_LEARNER), ds.num_classes, ds.ignore_index)
    lrn.fit(pool.images, state, seed=0)
    out = oracle_outputs(lrn, pool.images, pool, {"true_iou", "probabilities"})
    assert set(out) == {"true_iou"}
    np.testing.assert_allclose(out["true_iou"], iou_scores(lrn.predict(pool.images), pool.masks, ds.ignore_index,
                                                           pool.instances), rtol=1e-6)
