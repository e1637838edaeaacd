"""alharness.testing: every strategy check can fail, each for its own reason
(one deliberately broken strategy per check), a good strategy passes them
all, check_strategy reports every failure at once; and registration refuses
a strategy class without propose or outside the Strategy hierarchy."""

from __future__ import annotations

import numpy as np
import pytest

from alharness import Boxes, FullMask, ImageLabels, PluginError, Strategy, within_budget
from alharness.registry import STRATEGIES, Registry, _validate_strategy, register_strategy
from alharness.testing import STRATEGY_CHECKS, StrategyCheckError, check_strategy, parametrize_with_checks

WELL_FORMED = "check_batches_well_formed_and_within_budget"
ZERO = "check_zero_budget_proposes_nothing"
REPEATS = "check_no_repeated_queries"
CONTEXT = "check_context_unmodified"
DETERMINISM = "check_deterministic_under_seed"
PARAMS = "check_get_params_round_trips"
SOMETHING = "check_proposes_something"
NEEDS = "check_needs_declared"
STREAMING = "check_streaming_matches_dense"


def _unlabelled(ctx):
    return [int(i) for i in np.flatnonzero(~ctx.labels.has_full_mask)]


class Good(Strategy):
    """Seeded random masks within the round's allowance."""

    def __init__(self, per_round: int = 3):
        self.per_round = per_round

    def propose(self, ctx):
        order = ctx.rng.permutation(_unlabelled(ctx))[: self.per_round]
        return within_budget((FullMask(int(i)) for i in order), ctx.quote, ctx.budget_left_this_round)


# -- one broken strategy per check --------------------------------------------

class SneakyOracleNeed(Good):
    """Declares a ground-truth statistic without being an oracle experiment."""

    needs = frozenset({"true_iou"})


class Overdraw(Good):
    """Every missing mask whenever the round has any budget."""

    def propose(self, ctx):
        return [FullMask(i) for i in _unlabelled(ctx)] if ctx.budget_left_this_round > 0 else []


class OutsideThePool(Good):
    def propose(self, ctx):
        return [FullMask(len(ctx.pool) + 3)] if ctx.budget_left_this_round > 0 else []


class NotAList(Good):
    def propose(self, ctx):
        return (q for q in super().propose(ctx))  # a generator: the loop refuses it


class SpendsAtZero(Good):
    """Image labels even in a round with no budget."""

    def propose(self, ctx):
        return super().propose(ctx) or [ImageLabels(_unlabelled(ctx)[0])]


class AsksAgain(Good):
    """Asks again for a mask it bought in round 0."""

    def propose(self, ctx):
        if ctx.budget_left_this_round <= 0:
            return []
        return [FullMask(int(np.flatnonzero(ctx.labels.has_full_mask)[0]))]


class AsksTwice(Good):
    """The same mask twice in one batch."""

    def propose(self, ctx):
        if ctx.budget_left_this_round <= 0:
            return []
        i = _unlabelled(ctx)[0]
        return [FullMask(i), FullMask(i)]


class Unseeded(Good):
    """Global randomness instead of ctx.rng."""

    def propose(self, ctx):
        order = np.random.default_rng().permutation(_unlabelled(ctx))
        return within_budget((FullMask(int(i)) for i in order), ctx.quote, ctx.budget_left_this_round)


class Doubler(Good):
    """Stores a transformed parameter: built again from get_params() it differs."""

    def __init__(self, per_round: int = 1):
        self.per_round = 2 * per_round


class HidesItsParameter(Good):
    def __init__(self, per_round: int = 3):
        self._per_round = per_round  # get_params() cannot see it

    def propose(self, ctx):
        order = ctx.rng.permutation(_unlabelled(ctx))[: self._per_round]
        return within_budget((FullMask(int(i)) for i in order), ctx.quote, ctx.budget_left_this_round)


class Lazy(Good):
    def propose(self, ctx):
        return []


# Context cheats: each writes somewhere the old, fingerprint-of-a-few-fields check did not look.
class WritesPixelsThroughBase(Good):
    def propose(self, ctx):
        base = ctx.labels.pixels.base  # the read-only view's writable owner
        base[_unlabelled(ctx)[0], 0, 0] = 1
        return super().propose(ctx)


class WritesBoxesThroughBase(Good):
    """Buys boxes in round 1, then edits one through its base in round 3."""

    def propose(self, ctx):
        if ctx.round == 1:
            return [Boxes(i) for i in _unlabelled(ctx)[:10]]
        for b in ctx.labels.boxes.values():
            if len(b):
                b.base[0, 1] += 1
                break
        return super().propose(ctx)


class UnlocksThePoolIds(Good):
    def propose(self, ctx):
        ids = ctx.pool.dataset_ids
        ids.setflags(write=True)  # it owns its memory, so numpy allows this
        ids[0] = ids[-1]
        return super().propose(ctx)


class RaisesItsAllowance(Good):
    def propose(self, ctx):
        batch = super().propose(ctx)
        object.__setattr__(ctx, "budget_left_this_round", ctx.budget_left_this_round + 100)  # past frozen=True
        return batch


class RanksWithinItsBatch(Good):
    """Streams, but ranks each image against the other images of its batch only."""

    needs = frozenset({"probabilities"})

    def score(self, batch):
        confidence = batch.probabilities.max(axis=1).mean(axis=(1, 2))
        return {"rank": np.argsort(np.argsort(confidence, kind="stable"), kind="stable")}

    def propose(self, ctx):
        rank = self.pool_scores(ctx)["rank"]
        order = [int(i) for i in np.argsort(-rank, kind="stable") if not ctx.labels.has_full_mask[i]]
        return within_budget((FullMask(i) for i in order[: self.per_round]), ctx.quote, ctx.budget_left_this_round)


class StreamsButReadsDense(Good):
    """Streams, yet its propose still reads the dense probabilities."""

    needs = frozenset({"probabilities"})

    def score(self, batch):
        return {}

    def propose(self, ctx):
        order = np.argsort(ctx.probabilities.mean(axis=(1, 2, 3)), kind="stable")
        picks = [int(i) for i in order if not ctx.labels.has_full_mask[i]][: self.per_round]
        return within_budget((FullMask(i) for i in picks), ctx.quote, ctx.budget_left_this_round)


BROKEN = [
    # (strategy, params, the check it breaks, that check's message)
    (SneakyOracleNeed, {}, NEEDS, "has not bought"),
    (Overdraw, {}, WELL_FORMED, "but the round allows"),
    (OutsideThePool, {}, WELL_FORMED, "outside the pool"),
    (NotAList, {}, WELL_FORMED, "returned generator, not a list"),
    (SpendsAtZero, {}, ZERO, "round 2: proposed 1 queries with no budget left"),
    (AsksAgain, {}, REPEATS, "already answered in an earlier round"),
    (AsksTwice, {}, REPEATS, "asks the same thing twice in one batch"),
    (Unseeded, {}, DETERMINISM, "not deterministic under a fixed seed"),
    (Doubler, {"per_round": 1}, PARAMS, "get_params() reports per_round=2 (built with 1)"),
    (Doubler, {}, PARAMS, "built again from get_params() {'per_round': 2}, it reports {'per_round': 4}"),
    (HidesItsParameter, {"per_round": 2}, PARAMS, "per_round='<missing>'"),
    (Lazy, {}, SOMETHING, "proposed nothing in any round after round 0"),
    (WritesPixelsThroughBase, {}, CONTEXT, "round 1: propose() changed ctx.labels.pixels"),
    (WritesBoxesThroughBase, {}, CONTEXT, "round 3: propose() changed ctx.labels.boxes["),
    (UnlocksThePoolIds, {}, CONTEXT, "round 1: propose() changed ctx.pool.dataset_ids"),
    (RaisesItsAllowance, {}, CONTEXT, "changed ctx.budget_left_this_round"),
    (RanksWithinItsBatch, {}, STREAMING, "streamed in batches of 1 images it proposes"),
    (StreamsButReadsDense, {}, STREAMING, "streamed in batches of 1 images: round 1: propose() raised AttributeError"),
]
# The only check that cannot fail alone: a non-empty batch at zero budget
# also costs more than the round allows.
ALSO_FAILS = {SpendsAtZero: {WELL_FORMED}}


@pytest.mark.parametrize("strategy, params, check, message", BROKEN,
                         ids=[f"{s.__name__}{'-' + ','.join(p) if p else ''}" for s, p, _, _ in BROKEN])
def test_each_check_fails_for_its_own_reason(strategy, params, check, message):
    with pytest.raises(StrategyCheckError) as err:
        check_strategy(strategy, params)
    assert set(err.value.failures) == {check} | ALSO_FAILS.get(strategy, set()), err.value
    assert message in err.value.failures[check], err.value.failures[check]
    # The check alone says the same.
    with pytest.raises(StrategyCheckError, match=strategy.__name__) as alone:
        STRATEGY_CHECKS[check](strategy, params)
    assert message in str(alone.value)


def test_every_check_has_a_broken_strategy():
    assert set(STRATEGY_CHECKS) == {check for _, _, check, _ in BROKEN}


def test_a_good_strategy_passes_every_check():
    check_strategy(Good)
    check_strategy(Good, {"per_round": 1}, seed=3)


def test_check_strategy_lists_every_failure_not_only_the_first():
    class OverdrawsAndHidesItsParameter(Overdraw, HidesItsParameter):
        pass

    with pytest.raises(StrategyCheckError) as err:
        check_strategy(OverdrawsAndHidesItsParameter, {"per_round": 2})
    assert set(err.value.failures) == {WELL_FORMED, PARAMS}
    text = str(err.value)
    assert f"failed 2 of {len(STRATEGY_CHECKS)} strategy checks" in text and "but the round allows" in text and "'<missing>'" in text


def test_a_crash_fails_every_check_that_watches_the_strategy_run_and_is_chained():
    class Crashes(Good):
        def propose(self, ctx):
            raise RuntimeError("boom")

    with pytest.raises(StrategyCheckError, match="round 1: propose\\(\\) raised RuntimeError: boom") as err:
        check_strategy(Crashes)
    assert set(err.value.failures) == {WELL_FORMED, ZERO, REPEATS, CONTEXT, DETERMINISM, SOMETHING}
    assert isinstance(err.value.__cause__, RuntimeError)
    assert str(err.value).count("boom") == 1  # one line for one reason


def test_unknown_needs_are_named():
    class WantsGradients(Good):
        needs = frozenset({"gradients"})

    with pytest.raises(StrategyCheckError, match="needs \\['gradients'\\]; the loop provides"):
        STRATEGY_CHECKS[NEEDS](WantsGradients)


@parametrize_with_checks([Good, (Good, {"per_round": 2})])
def test_parametrize_with_checks_runs_each_check_as_a_test(strategy, check):
    check(strategy)


def test_parametrize_with_checks_gives_each_pair_an_id():
    mark = parametrize_with_checks(["random", ("madbal", {"n_clusters": 2})]).mark
    ids = mark.kwargs["ids"]
    assert ids[0] == "random-check_needs_declared"
    assert f"madbal(n_clusters=2)-{SOMETHING}" in ids and len(ids) == 2 * len(STRATEGY_CHECKS)
    assert len(set(ids)) == len(ids)


# -- registration ---------------------------------------------------------------

def test_strategy_is_abstract():
    class NoPropose(Strategy):
        pass

    with pytest.raises(TypeError, match="abstract"):
        NoPropose()


def test_registering_a_strategy_without_propose_fails_at_once():
    class NoPropose(Strategy):
        """Forgot propose."""

    with pytest.raises(PluginError) as err:
        register_strategy("test_no_propose")(NoPropose)
    msg = str(err.value)
    assert "\n" not in msg and "NoPropose" in msg
    assert "does not implement propose" in msg and "must subclass alharness.Strategy and implement propose(ctx)" in msg
    assert "test_no_propose" not in STRATEGIES


def test_registering_a_class_outside_the_strategy_hierarchy_fails():
    class Lookalike:
        def propose(self, ctx):
            return []

    with pytest.raises(PluginError, match="Lookalike does not subclass alharness.Strategy; a strategy must subclass"):
        register_strategy("test_lookalike")(Lookalike)

    def factory():
        return Good()

    with pytest.raises(PluginError, match="factory is not a class; a strategy must subclass alharness.Strategy"):
        register_strategy("test_factory")(factory)
    assert "test_lookalike" not in STRATEGIES and "test_factory" not in STRATEGIES


def test_an_entry_point_object_goes_through_the_same_validation(monkeypatch):
    class NoPropose(Strategy):
        pass

    class EntryPoint:
        name, value = "broken", "pkg:NoPropose"

        def load(self):
            return NoPropose

    import importlib.metadata

    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [EntryPoint()] if group == "alharness.test-strategies" else real(group=group))
    reg = Registry("strategy", "alharness.test-strategies", validate=_validate_strategy)
    with pytest.raises(PluginError, match="strategy 'broken': class .*NoPropose does not implement propose"):
        reg.names()


def test_other_registries_accept_factory_functions():
    reg = Registry("widget", "alharness.test-widgets")

    @reg.register("knob")
    def knob(size: int = 3):
        """Turns."""
        return size

    assert reg.create("knob", size=4) == 4
