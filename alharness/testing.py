"""Conformance checks for strategy plugins (like scikit-learn's check_estimator).

Plugin authors run ``check_strategy("my_strategy")`` (or pass the class) in
their own tests; alharness runs it on every registered strategy.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from alharness.campaign.context import make_context
from alharness.learner.services import pool_outputs
from alharness.annotation.costs import build_cost_models
from alharness.datasets.base import make_pool_view
from alharness.errors import QueryRefused
from alharness.annotation.labels import LabelState
from alharness.learner import Learner, LearnerConfig
from alharness.learner.services import heads_for
from alharness.annotation.oracle import Oracle
from alharness.annotation.oracle_experiments import check_oracle_needs, oracle_outputs
from alharness.registry import DATASETS, STRATEGIES
from alharness.seeding import derive_rng
from alharness.campaign.scoring import loop_outputs
from alharness.contract.strategy import LOOP_NEEDS, ORACLE_NEEDS, Strategy


class StrategyCheckError(AssertionError):
    """A strategy broke the plugin contract."""


def _fingerprint(obj: Any) -> str:
    h = hashlib.sha256()
    for name in sorted(vars(obj)):
        v = getattr(obj, name)
        if isinstance(v, np.ndarray):
            h.update(name.encode() + v.tobytes())
    return h.hexdigest()


class _Setup:
    """A tiny pool with a few bought masks and a briefly trained model."""

    def __init__(self, seed: int, budget: float, needs: frozenset[str] = frozenset()):
        # A validation split only for strategies that score on one (train_and_score).
        n_val = 4 if "train_and_score" in needs else 0
        ds = DATASETS.create("synthetic_shapes", n_train=16, n_val=n_val, n_test=4, size=24, num_classes=3, seed=seed)
        pool = ds.split("train")
        self.pool_view = make_pool_view(pool, ds.class_names)
        self.pool = pool  # harness side: oracle experiments' statistics only
        self.oracle = Oracle(pool, build_cost_models({}), "label_equivalents", budget)
        self.state = LabelState(len(pool), self.pool_view.image_shape, ds.num_classes, ds.ignore_index)
        # Built with whatever heads the strategy's needs require.
        config = LearnerConfig(steps=3, batch_size=4, model_params={"width": 4, "depth": 1},
                               heads=list(heads_for(needs)), head_steps=2)
        self.learner = Learner(config, ds.num_classes, ds.ignore_index)
        self.services = loop_outputs(needs, config, self.pool_view.images, self.state,
                                     ds.split("val") if n_val else None, "free" if n_val else "none",
                                     ds.num_classes, ds.ignore_index)
        self.seed = seed

    def context(self, strategy: Strategy, rnd: int, allowance: float):
        if rnd > 0:
            self.learner.fit(self.pool_view.images, self.state, seed=self.seed)
        needs = frozenset(strategy.needs)
        outputs = pool_outputs(self.learner, self.pool_view.images, needs - ORACLE_NEEDS - LOOP_NEEDS) if rnd > 0 else {}
        outputs.update(self.services)
        if rnd > 0 and needs & ORACLE_NEEDS:
            outputs.update(oracle_outputs(self.learner, self.pool_view.images, self.pool, needs, self.oracle.cost_models))
        return make_context(self.pool_view, self.state, self.oracle, rnd, 3, allowance,
                            derive_rng(self.seed, "check", rnd), 2, outputs)


def check_strategy(strategy: str | type[Strategy], params: dict[str, Any] | None = None, *, seed: int = 0) -> None:
    """Raise StrategyCheckError unless the strategy respects the plugin contract:
    its batches are well formed and within the round's budget (including a
    zero budget), it never repeats an answered query, it is deterministic
    under a seed, and it does not modify its context."""
    params = params or {}
    if isinstance(strategy, str):
        make = lambda: STRATEGIES.create(strategy, **params)  # noqa: E731
        label = strategy
    else:
        make = lambda: strategy(**params)  # noqa: E731
        label = strategy.__name__
    budget = 200.0
    strat = make()
    try:  # only an oracle experiment may declare ground-truth statistics
        check_oracle_needs(strat, frozenset(strat.needs), label)
    except Exception as exc:
        raise StrategyCheckError(str(exc)) from exc
    setup = _Setup(seed, budget, frozenset(strat.needs))
    batches = []
    for rnd, allowance in enumerate([48.0, 30.0, 0.0, 40.0]):
        ctx = setup.context(strat, rnd, allowance)
        before = (_fingerprint(ctx.pool), _fingerprint(ctx.labels), ctx.budget_spent, ctx.budget_left_this_round)
        batch = strat.initial(ctx) if rnd == 0 else strat.propose(ctx)
        after = (_fingerprint(ctx.pool), _fingerprint(ctx.labels), ctx.budget_spent, ctx.budget_left_this_round)
        if before != after:
            raise StrategyCheckError(f"{label}: round {rnd}: the strategy modified its context")
        if allowance == 0.0 and batch:
            raise StrategyCheckError(f"{label}: round {rnd}: proposed {len(batch)} queries with no budget left this round")
        try:
            setup.oracle.answer(batch, strategy=label, round=rnd, state=setup.state, limit=allowance)
        except QueryRefused as exc:
            raise StrategyCheckError(f"{label}: round {rnd}: {exc}") from exc
        if rnd == 3:
            # Determinism: a fresh instance in the same state, same seed.
            twin_setup = _Setup(seed, budget, frozenset(strat.needs))
            twin = make()
            for r, (b, a) in enumerate(zip(batches, [48.0, 30.0, 0.0])):
                twin_ctx = twin_setup.context(twin, r, a)
                again = twin.initial(twin_ctx) if r == 0 else twin.propose(twin_ctx)
                if list(again) != list(b):
                    raise StrategyCheckError(f"{label}: round {r}: not deterministic under a fixed seed ({again[:3]} vs {b[:3]})")
                twin_setup.oracle.answer(again, strategy=label, round=r, state=twin_setup.state, limit=a)
        batches.append(list(batch))
    if not any(batches[1:]):
        raise StrategyCheckError(f"{label}: proposed nothing in any round although budget was available")
