"""The strategy plugin contract: one base class and the context it receives.

Strategies *propose* queries; the campaign loop *executes* them (oracle,
costs, budget, records), so no strategy can skip the accounting. A strategy
declares what it needs from the loop in ``needs``; the loop computes only
that.
"""

from __future__ import annotations

import abc
import inspect
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable

import numpy as np

from alharness.contract.queries import FullMask, Query
from alharness.contract.views import LabelStateView, PoolView

# What a strategy may ask the loop to compute over the pool each round
# (alharness.learner.services documents each; a test keeps the two in step).
NEEDS = frozenset({"probabilities", "features", "feature_map", "model", "class_scores", "iou", "loss_prediction",
                   "maturity", "maturity_weights"})
# Oracle-experiment needs: statistics of pool ground truth the strategy has
# NOT bought (e.g. the mask-guided paper's oracle selection by true IoU,
# Table 3). The loop computes them on the harness side
# (alharness.annotation.oracle_experiments) and hands over only the statistic, never a
# mask; only a strategy with ``oracle_experiment = True`` may declare them,
# and its rows say ``oracle_experiment = true``.
ORACLE_NEEDS = frozenset({"true_iou", "true_click_vertices"})
# Loop services (not computed over the pool): "train_and_score" trains a fresh
# model on a subset of the bought labels and returns its validation mIoU
# (alharness.campaign.scoring; needs a declared validation split).
LOOP_NEEDS = frozenset({"train_and_score"})


def unknown_needs(needs: Iterable[str]) -> str | None:
    """Why ``needs`` holds something nobody provides ("needs [...]; the loop provides ..."), or None."""
    unknown = sorted(frozenset(needs) - NEEDS - ORACLE_NEEDS - LOOP_NEEDS)
    if not unknown:
        return None
    return (f"needs {unknown}; the loop provides {sorted(NEEDS | LOOP_NEEDS)} "
            f"(and, to oracle experiments, {sorted(ORACLE_NEEDS)})")


@dataclass(frozen=True)
class StrategyContext:
    """Everything a strategy may use to choose its next batch.

    ``probabilities`` ((N, C, H, W) float32) and ``features`` ((N, F)) are
    the current model's outputs on the pool, present only if the strategy
    declared them in ``needs``; ``feature_map`` ((N, F, h, w) float16, the
    deepest encoder map that ``features`` pools) and ``model`` likewise, and the head outputs
    ``class_scores`` (N, C), ``iou`` (N,), ``loss_prediction`` (N, 2, H, W),
    ``maturity`` and ``maturity_weights`` (N, K, H, W) (see
    ``alharness.learner.services``); ``true_iou`` (N,) only for oracle
    experiments. All arrays are read-only.
    ``quote(query)`` prices a query in the enforced metric.
    """

    pool: PoolView
    labels: LabelStateView
    round: int
    rounds: int
    budget_metric: str
    budget_total: float
    budget_spent: float
    budget_left_this_round: float
    quote: Callable[[Query], float]
    rng: np.random.Generator
    initial_masks: int = 0
    probabilities: np.ndarray | None = None
    features: np.ndarray | None = None
    feature_map: np.ndarray | None = None
    model: Any = None
    class_scores: np.ndarray | None = None
    iou: np.ndarray | None = None
    loss_prediction: np.ndarray | None = None
    maturity: np.ndarray | None = None
    maturity_weights: np.ndarray | None = None
    true_iou: np.ndarray | None = None  # oracle experiments only (ORACLE_NEEDS)
    true_click_vertices: np.ndarray | None = None  # oracle experiments only: (N, H, W) true polygon vertices
    train_and_score: Callable[..., float] | None = None  # LOOP_NEEDS; alharness.campaign.scoring.TrainAndScore

    @property
    def budget_left_total(self) -> float:
        return self.budget_total - self.budget_spent


class Strategy(abc.ABC):
    """Abstract base class of annotation strategies.

    Subclasses take their parameters as keyword arguments of ``__init__``
    and only store them (validation happens at benchmark load); they must
    implement ``propose``. Register them with
    ``@alharness.register_strategy("name")``, which refuses a class without
    it; ``alharness.testing.check_strategy`` checks the rest of the contract.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    #: True for oracle experiments: the strategy may declare ORACLE_NEEDS and
    #: its results are flagged (a paper's upper-bound study, not a strategy
    #: a user could run).
    oracle_experiment: ClassVar[bool] = False
    #: True: the strategy paces its own spending, so every round after round 0
    #: may spend everything that is left (full-or-weak Alg. 2 chooses its own
    #: installments); False: the loop spreads the budget evenly over the rounds.
    paces_itself: ClassVar[bool] = False

    def initial(self, ctx: StrategyContext) -> list[Query]:
        """Round-0 batch: by default full masks for ``ctx.initial_masks`` random images."""
        n = min(ctx.initial_masks, len(ctx.pool))
        picks = ctx.rng.choice(len(ctx.pool), size=n, replace=False)
        return within_budget((FullMask(int(i)) for i in picks), ctx.quote, ctx.budget_left_this_round)

    @abc.abstractmethod
    def propose(self, ctx: StrategyContext) -> list[Query]:
        """Return the queries to buy this round (total quote <= ctx.budget_left_this_round)."""

    def diagnostics(self) -> dict[str, Any]:
        """JSON-serialisable notes about the last proposal, stored with the round row."""
        return {}

    def get_state(self) -> dict[str, Any]:
        """What the strategy keeps between rounds, for per-round checkpoints
        (alharness.campaign.checkpoint): by default every instance attribute. Must be
        picklable; override with ``set_state`` if it is not."""
        return dict(vars(self))

    def set_state(self, state: dict[str, Any]) -> None:
        """Put a ``get_state()`` result back on a freshly constructed strategy."""
        vars(self).update(state)

    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self" and hasattr(self, k)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def within_budget(queries: Iterable[Query], quote: Callable[[Query], float], budget: float) -> list[Query]:
    """Greedily keep queries, in the given order, while their total quote fits ``budget``."""
    chosen: list[Query] = []
    left = budget
    for q in queries:
        price = quote(q)
        if price <= left + 1e-9:
            chosen.append(q)
            left -= price
    return chosen
