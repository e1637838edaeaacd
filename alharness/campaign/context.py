"""Assembling the context a strategy sees each round (shared by the campaign
loop and ``alharness.testing``): read-only views and declared outputs, never
the oracle or ground truth."""

from __future__ import annotations

from typing import Any

import numpy as np

from alharness.annotation.labels import LabelState
from alharness.annotation.oracle import Oracle
from alharness.contract.strategy import StrategyContext
from alharness.contract.views import PoolView


def make_context(pool_view: PoolView, state: LabelState, oracle: Oracle, rnd: int, rounds: int, allowance: float,
                 rng: np.random.Generator, initial_masks: int, outputs: dict[str, Any]) -> StrategyContext:
    """The context a strategy sees in round ``rnd`` (never the oracle or ground truth)."""
    return StrategyContext(
        pool=pool_view,
        labels=state.view(),
        round=rnd,
        rounds=rounds,
        budget_metric=oracle.budget_metric,
        budget_total=oracle.budget,
        budget_spent=oracle.spent,
        budget_left_this_round=allowance,
        # The enforced cost model's own method: it holds prices, not the
        # oracle, so nothing reachable from the context leads to ground truth.
        quote=oracle.cost_models[oracle.budget_metric].quote,
        rng=rng,
        initial_masks=initial_masks,
        **outputs,
    )
