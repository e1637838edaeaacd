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
from alharness.errors import PluginError

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


#: The declared outputs that are pool-sized arrays (one row per pool image):
#: what a streaming strategy receives batch by batch in ``ScoreBatch``.
ARRAY_OUTPUTS = ("probabilities", "features", "feature_map", "class_scores", "iou", "loss_prediction", "maturity",
                 "maturity_weights", "true_iou", "true_click_vertices")


@dataclass(frozen=True, kw_only=True)
class _Outputs:
    """The declared outputs, shared by the round's context and by a score batch."""

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


@dataclass(frozen=True)
class StrategyContext(_Outputs):
    """Everything a strategy may use to choose its next batch.

    ``probabilities`` ((N, C, H, W) float32) and ``features`` ((N, F)) are
    the current model's outputs on the pool, present only if the strategy
    declared them in ``needs`` and does not stream (``Strategy.score``);
    ``feature_map`` ((N, F, h, w) float16, the
    deepest encoder map that ``features`` pools) and ``model`` likewise, and the head outputs
    ``class_scores`` (N, C), ``iou`` (N,), ``loss_prediction`` (N, 2, H, W),
    ``maturity`` and ``maturity_weights`` (N, K, H, W) (see
    ``alharness.learner.services``); ``true_iou`` (N,) only for oracle
    experiments. All arrays are read-only. A streaming strategy gets none of
    the pool-sized arrays (``ARRAY_OUTPUTS``) here: ``scores`` holds what its
    ``score`` returned for every batch, concatenated (``model`` still comes here).
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
    train_and_score: Callable[..., float] | None = None  # LOOP_NEEDS; alharness.campaign.scoring.TrainAndScore
    #: a streaming strategy's per-image results this round (``Strategy.score``,
    #: concatenated over the batches); None in round 0 and for dense strategies
    scores: dict[str, Any] | None = None

    @property
    def budget_left_total(self) -> float:
        return self.budget_total - self.budget_spent


# A streaming strategy's ``score`` sees at most this many bytes of outputs per call (whole images, at least
# one): the loop cuts each eval batch into runs under it, so that the host copy of a GPU batch, the copy
# sent to the strategy process and the strategy's own temporaries stay that size (at 512x1024 with 19
# classes one image's probabilities are 40 MB, an eval batch of 8 318 MB). A streaming strategy selects
# the same for any batching (alharness.testing.check_streaming_matches_dense), so rows do not change.
SCORE_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ScoreBatch(_Outputs):
    """One batch of the pool for ``Strategy.score``: pool images ``start`` to
    ``start + len(images)``, and the declared outputs of those images only
    (each array's first axis runs over the batch). ``labels`` is the whole
    label state as bought (index it with ``indices``); ``model`` is the
    round's network where declared. All arrays are read-only."""

    pool: PoolView
    labels: LabelStateView
    round: int
    start: int
    images: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    @property
    def indices(self) -> np.ndarray:
        """The batch's pool indices."""
        return np.arange(self.start, self.start + len(self.images))

    @classmethod
    def of(cls, ctx: StrategyContext, start: int = 0, stop: int | None = None) -> "ScoreBatch":
        """Pool images ``start:stop`` of a context that holds dense outputs
        (a test's, or a dense convenience): the batch the loop would send."""
        stop = len(ctx.pool) if stop is None else min(stop, len(ctx.pool))
        arrays = {k: getattr(ctx, k)[start:stop] for k in ARRAY_OUTPUTS if getattr(ctx, k) is not None}
        return cls(pool=ctx.pool, labels=ctx.labels, round=ctx.round, start=start,
                   images=ctx.pool.images[start:stop], model=ctx.model, **arrays)


def concat_scores(parts: list[tuple[int, dict[str, Any]]], who: str = "the strategy") -> dict[str, Any]:
    """One dict of per-image results from ``score``'s per-batch ones, given as
    (batch length, checked result) in pool order: arrays concatenated on their
    first axis (read-only), anything else (lists, tuples: one item per image)
    joined into one list. PluginError if the batches disagree in keys."""
    if not parts:
        return {}
    keys = set(parts[0][1])
    for _, part in parts:
        if set(part) != keys:
            raise PluginError(f"{who}: score() returned keys {sorted(part)} for one batch and {sorted(keys)} for another")
    out: dict[str, Any] = {}
    for k in sorted(keys):
        values = [part[k] for _, part in parts]
        if all(isinstance(v, np.ndarray) for v in values):
            a = np.concatenate(values) if len(values) > 1 else np.array(values[0])
            a.setflags(write=False)
            out[k] = a
        else:
            out[k] = [x for v in values for x in v]
    return out


def check_score_result(result: Any, n: int, who: str = "the strategy") -> dict[str, Any]:
    """``score``'s return value for a batch of ``n`` images, checked: a dict of
    str -> array or sequence with one row per image (None counts as {})."""
    if result is None:
        return {}
    if not isinstance(result, dict) or not all(isinstance(k, str) for k in result):
        raise PluginError(f"{who}: score() must return a dict of per-image results, got {type(result).__name__}")
    out = {}
    for k, v in result.items():
        if not isinstance(v, (np.ndarray, list, tuple)):
            raise PluginError(f"{who}: score() returned a {type(v).__name__} for {k!r}; give an array or a list "
                              "with one entry per image of the batch")
        if len(v) != n:
            raise PluginError(f"{who}: score() returned {len(v)} rows of {k!r} for a batch of {n} images "
                              "(one per image)")
        out[k] = v
    return out


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
    #: Raise it when a change to the strategy's code changes its selections:
    #: the version enters the campaign id (where it is not None), so resume
    #: and the reference cache never serve rows of the old behaviour under
    #: the old id. None (the default) leaves ids as they were.
    version: ClassVar[int | None] = None

    def initial(self, ctx: StrategyContext) -> list[Query]:
        """Round-0 batch: by default full masks for ``ctx.initial_masks`` random images."""
        n = min(ctx.initial_masks, len(ctx.pool))
        picks = ctx.rng.choice(len(ctx.pool), size=n, replace=False)
        return within_budget((FullMask(int(i)) for i in picks), ctx.quote, ctx.budget_left_this_round)

    @abc.abstractmethod
    def propose(self, ctx: StrategyContext) -> list[Query]:
        """Return the queries to buy this round (total quote <= ctx.budget_left_this_round)."""

    def score(self, batch: ScoreBatch) -> dict[str, Any]:
        """Streaming acquisition: what to keep of one batch of the pool.

        A strategy that overrides it *streams*: each round after round 0 the
        loop calls it on every batch of ``eval_batch_size`` pool images, in
        pool order, with that batch's declared outputs only; ``propose`` then
        finds the results of every batch in ``ctx.scores`` (arrays
        concatenated on their first axis, other values as one list), and the
        context holds none of the pool-sized arrays. Return a dict of
        per-image results: one row per image of the batch (per-image scores,
        per-image top-k candidates, ...), so that memory grows with what is
        kept, not with the outputs. It must not depend on how the pool is cut
        into batches (``alharness.testing.check_streaming_matches_dense``).
        Not overridden: the strategy reads dense whole-pool arrays from the
        context, which the loop builds only under ``[resources]
        dense_outputs_cap_gib``."""
        raise NotImplementedError

    @property
    def streams(self) -> bool:
        """Whether the strategy overrides ``score`` (the loop streams it)."""
        return type(self).score is not Strategy.score

    def pool_scores(self, ctx: StrategyContext) -> dict[str, Any]:
        """``ctx.scores``; for a context built with dense outputs instead (a
        test's), ``score`` over the whole pool as one batch."""
        if ctx.scores is not None:
            return ctx.scores
        n = len(ctx.pool)
        return concat_scores([(n, check_score_result(self.score(ScoreBatch.of(ctx)), n, self.name or type(self).__name__))])

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
