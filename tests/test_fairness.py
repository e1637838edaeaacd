"""The fairness contract: strategies see only what they bought, never the test
split; the oracle refuses overdrafts, repeats and malformed batches and
charges nothing for them; the learner trains only on what the ledger holds.

The context tests run the strategy in process (``strategy_process = false``)
so that the test can hold the very context it was given; a strategy process
gets a copy of the same context (tests/test_hostile_plugin.py tries every
route out of it)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from alharness import FullMask, ImageLabels, Query
from alharness.campaign.loop import run_campaign
from alharness.annotation.costs import build_cost_models
from alharness.datasets.base import SegmentationDataset, SplitData
from alharness.errors import DuplicateQueryError, MalformedQueryError, OverdraftError
from alharness.annotation.labels import LabelState
from alharness.annotation.oracle import Oracle
from alharness.registry import DATASETS, STRATEGIES, register_strategy
from alharness.contract.strategy import Strategy
from conftest import TINY_DATASET, tiny_spec

CAPTURED: list = []


@register_strategy("test_spy")
class Spy(Strategy):
    """Records every context it is given (test only)."""

    needs = frozenset({"probabilities", "features", "model"})

    def propose(self, ctx):
        CAPTURED.append(ctx)
        return [FullMask(int(i)) for i in np.flatnonzero(~ctx.labels.has_full_mask)[:1]]


def _reachable(root, limit=200_000):
    """Every object reachable from ``root`` by attributes, containers, bound
    methods and closures (modules and function globals excluded)."""
    seen, stack, out = set(), [root], []
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type, str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(obj))
        out.append(obj)
        if isinstance(obj, np.ndarray):
            if obj.base is not None:
                stack.append(obj.base)
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        if isinstance(obj, types.MethodType):
            stack.append(obj.__self__)
        if isinstance(obj, types.FunctionType) and obj.__closure__:
            stack.extend(c.cell_contents for c in obj.__closure__)
        if hasattr(obj, "__dict__"):
            stack.append(vars(obj))
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                stack.append(getattr(obj, slot))
        if hasattr(obj, "__dataclass_fields__"):
            stack.extend(getattr(obj, f) for f in obj.__dataclass_fields__)
    return out


def test_strategy_cannot_reach_ground_truth_or_test_split():
    CAPTURED.clear()
    run_campaign(tiny_spec(strategy="test_spy", rounds=2, strategy_process=False))
    assert len(CAPTURED) == 2
    ds = DATASETS.create("synthetic_shapes", **TINY_DATASET)
    test_idx, train_idx = ds.splits["test"], ds.splits["train"]
    for ctx in CAPTURED:
        objs = _reachable(ctx)
        kinds = {type(o) for o in objs}
        assert not kinds & {SegmentationDataset, SplitData, Oracle}, kinds & {SegmentationDataset, SplitData, Oracle}
        arrays = [o for o in objs if isinstance(o, np.ndarray)]
        assert arrays, "the walk found no arrays at all (broken test)"
        for a in arrays:
            assert not np.shares_memory(a, ds.masks), "an array in the context shares memory with ground-truth masks"
            assert not np.shares_memory(a, ds.images), "an array in the context shares memory with the dataset (incl. test split)"
            assert ds.instances is None or not np.shares_memory(a, ds.instances)
        # Pixel labels visible to the strategy are exactly what was bought.
        bought = ctx.labels.has_full_mask
        gt = ds.masks[train_idx]
        assert np.array_equal(ctx.labels.pixels[bought], gt[bought])
        assert (ctx.labels.pixels[~bought] == ds.ignore_index).all()
        # The pool holds train images only, as copies.
        assert np.array_equal(ctx.pool.images, ds.images[train_idx])
        assert len(ctx.pool) == len(train_idx) and len(test_idx) > 0
        assert ctx.probabilities.shape[0] == len(train_idx)


def test_context_arrays_are_read_only():
    CAPTURED.clear()
    run_campaign(tiny_spec(strategy="test_spy", rounds=1, strategy_process=False))
    ctx = CAPTURED[0]
    for a in (ctx.pool.images, ctx.labels.pixels, ctx.labels.has_full_mask, ctx.probabilities, ctx.features):
        with pytest.raises(ValueError):
            a.reshape(-1)[0] = 0


@pytest.fixture()
def oracle_state():
    ds = DATASETS.create("synthetic_shapes", **TINY_DATASET)
    pool = ds.split("train")
    oracle = Oracle(pool, build_cost_models({}), "label_equivalents", budget=30)
    state = LabelState(len(pool), pool.masks.shape[1:], ds.num_classes, ds.ignore_index)
    return oracle, state, pool


def _snapshot(oracle, state):
    return (len(oracle.ledger), oracle.ledger.totals(), state.pixels.copy(), state.image_labels.copy())


def _unchanged(before, oracle, state):
    n, totals, pixels, labels = before
    assert len(oracle.ledger) == n
    assert oracle.ledger.totals() == totals
    assert np.array_equal(state.pixels, pixels) and np.array_equal(state.image_labels, labels)


def test_oracle_answers_from_ground_truth_and_charges_every_metric(oracle_state):
    oracle, state, pool = oracle_state
    oracle.answer([FullMask(3), ImageLabels(4)], strategy="s", round=1, state=state)
    assert np.array_equal(state.pixels[3], pool.masks[3])
    present = np.zeros(pool.num_classes, bool)
    present[np.unique(pool.masks[4])] = True
    assert np.array_equal(state.image_labels[4] == 1, present)
    assert oracle.ledger.total("label_equivalents") == 13
    assert oracle.ledger.total("seconds") > 0
    assert set(oracle.ledger.totals()) == set(build_cost_models({}))


def test_overdraft_is_refused_and_nothing_charged(oracle_state):
    oracle, state, _ = oracle_state
    oracle.answer([FullMask(0)], strategy="s", round=0, state=state)
    before = _snapshot(oracle, state)
    with pytest.raises(OverdraftError) as err:
        oracle.answer([FullMask(1), FullMask(2)], strategy="greedy_strategy", round=1, state=state)  # 24 > 18 left
    assert "greedy_strategy" in str(err.value) and "FullMask" in str(err.value)
    _unchanged(before, oracle, state)
    with pytest.raises(OverdraftError, match="this round allows"):
        oracle.answer([FullMask(1)], strategy="s", round=1, state=state, limit=5)
    _unchanged(before, oracle, state)


def test_repeated_queries_are_refused_and_nothing_charged(oracle_state):
    oracle, state, _ = oracle_state
    oracle.answer([ImageLabels(2)], strategy="s", round=0, state=state)
    before = _snapshot(oracle, state)
    with pytest.raises(DuplicateQueryError, match="already answered") as err:
        oracle.answer([FullMask(5), ImageLabels(2)], strategy="repeater", round=1, state=state)
    assert "repeater" in str(err.value) and "ImageLabels(image=2)" in str(err.value)
    with pytest.raises(DuplicateQueryError, match="twice"):
        oracle.answer([FullMask(5), FullMask(5)], strategy="s", round=1, state=state)
    _unchanged(before, oracle, state)


class _Rogue(Query):
    kind = "full_mask"  # pretends to be a known type


@pytest.mark.parametrize(
    "batch, why",
    [
        ([FullMask(99)], "outside the pool"),
        ([FullMask(-1)], "outside the pool"),
        ([FullMask("3")], "must be an int"),
        ([FullMask(2.0)], "must be an int"),
        ([FullMask(True)], "must be an int"),
        (["FullMask(1)"], "not a known query type"),
        ([_Rogue(1)], "not a known query type"),
        (FullMask(1), "must return a list"),
    ],
)
def test_malformed_batches_are_refused_and_nothing_charged(oracle_state, batch, why):
    oracle, state, _ = oracle_state
    before = _snapshot(oracle, state)
    with pytest.raises(MalformedQueryError, match=why) as err:
        oracle.answer([ImageLabels(0)] + batch if isinstance(batch, list) else batch, strategy="sloppy", round=1, state=state)
    assert "sloppy" in str(err.value)
    _unchanged(before, oracle, state)


@pytest.mark.parametrize("strategy, error", [("test_overdraw", OverdraftError), ("test_repeat", DuplicateQueryError)])
def test_campaign_stops_a_cheating_strategy(strategy, error):
    with pytest.raises(error, match=strategy):
        run_campaign(tiny_spec(strategy=strategy, rounds=2))


def test_test_plugins_are_discovered_through_entry_points():
    assert {"test_always_fails", "test_overdraw", "test_repeat"} <= set(STRATEGIES.names())
    assert STRATEGIES.get("test_overdraw").origin.startswith("alharness_testplugins")


# -- the learner trains only on what the ledger holds -------------------------------
def test_labels_written_outside_the_oracle_fail_the_campaign():
    from alharness.campaign.loop import run_round, setup_campaign
    from alharness.campaign.state import LabelStateError

    setup, state = setup_campaign(tiny_spec(rounds=2))
    try:
        run_round(setup, state, 0)
        unbought = int(np.flatnonzero(~state.labels.has_full_mask)[0])
        state.labels.pixels[unbought] = 1  # e.g. a learner pipeline pseudo-labelling in place
        with pytest.raises(LabelStateError, match="changed outside the oracle .before round 1's proposal."):
            run_round(setup, state, 1)
    finally:
        state.strategy.close()


def test_the_ledger_and_the_label_state_are_checked_together():
    """A label state whose full masks are not the ledger's is refused even when its digest was refreshed."""
    from alharness.campaign.loop import run_round, setup_campaign
    from alharness.campaign.state import LabelStateError

    setup, state = setup_campaign(tiny_spec(rounds=2, strategy_process=False))
    try:
        run_round(setup, state, 0)
        state.labels.has_full_mask[int(np.flatnonzero(~state.labels.has_full_mask)[0])] = True
        state.record_labels()
        with pytest.raises(LabelStateError, match="but the ledger bought 2"):
            run_round(setup, state, 1)
    finally:
        state.strategy.close()


def test_a_failed_label_check_is_a_failed_record_without_rows():
    from alharness.execution.execute import execute

    out = execute(tiny_spec(strategy="hostile_write_base", rounds=1, strategy_process=False))
    assert out["record"]["status"] == "failed" and out["rows"] == []
    assert "LabelStateError: the label state changed outside the oracle" in out["record"]["error"]
