"""The oracle: answers typed queries from ground truth and charges for them.

It is the only object that holds the pool's ground truth during a campaign,
and it is never handed to a strategy. A batch is checked in full before
anything is answered: a malformed query, a repeated query, a query about
an image bought held out (or holding out an image already asked about) or an
overdraft refuses the whole batch, and nothing is charged.
"""

from __future__ import annotations

from typing import Any, Sequence

from alharness.annotation.costs import CostModel, PoolInfo
from alharness.datasets.base import SplitData
from alharness.errors import DuplicateQueryError, MalformedQueryError, OverdraftError
from alharness.annotation.labels import LabelState
from alharness.annotation.ledger import Ledger
from alharness.annotation.noise import Annotator
from alharness.annotation.answers import ValidationMask, answer, record
from alharness.contract.queries import QUERY_TYPES, FullMask, Query
from alharness.annotation.truth import ImageTruth, PoolTruth

# Budgets are floats; allow for rounding in sums of many small prices.
_EPS = 1e-9


class Oracle:
    def __init__(self, pool: SplitData, cost_models: dict[str, CostModel], budget_metric: str, budget: float,
                 annotator: Annotator | None = None):
        self._pool = pool
        self._annotator = annotator
        self._truth = PoolTruth(pool)
        self.info = PoolInfo(size=len(pool), num_classes=pool.num_classes, image_shape=tuple(pool.masks.shape[1:3]))
        for model in cost_models.values():
            model.prepare(self.info)
        self.cost_models = cost_models
        self.budget_metric = budget_metric
        self.budget = float(budget)
        self.ledger = Ledger(metrics=tuple(cost_models))

    @property
    def spent(self) -> float:
        return self.ledger.total(self.budget_metric)

    def quote(self, query: Query) -> float:
        """Price of a query in the enforced metric, known before answering."""
        return self.cost_models[self.budget_metric].quote(query)

    def _costs(self, query: Query, truth: ImageTruth) -> list[float]:
        """The charge for one answer in every metric, in the ledger's order."""
        return [float(model.cost(query, truth)) for model in self.cost_models.values()]

    def charge_validation(self, split: SplitData, *, round: int = 0) -> float:
        """Buy the full masks of a validation split (held-out
        scores are paid for unless the benchmark says otherwise). Click-based
        metrics normalise them by the validation split's own clicks."""
        truth = PoolTruth(split)
        planned = [(ValidationMask(i), self._costs(ValidationMask(i), truth.image(i))) for i in range(len(split))]
        column = self.ledger.metrics.index(self.budget_metric)
        price = sum(c[column] for _, c in planned)
        if price > self.budget - self.spent + _EPS:
            raise OverdraftError("harness", planned[-1][0] if planned else None,
                                 f"the validation split's masks cost {price:g} {self.budget_metric}, more than the "
                                 f"{self.budget - self.spent:g} left of the budget; raise the budget or use validation = 'free'")
        for q, costs in planned:
            self.ledger.add(round, q, costs)
        return price

    def check(self, batch: Sequence[Any], *, strategy: str, limit: float | None = None) -> float:
        """Validate a batch; return its price in the enforced metric or raise."""
        if not isinstance(batch, (list, tuple)):
            raise MalformedQueryError(strategy, batch, f"propose() must return a list of queries, got {type(batch).__name__}")
        shape = tuple(self._pool.masks.shape[1:3])
        seen: set = set()
        asked: set = set()  # this batch's pool images
        held: set = set()  # ... and those it holds out
        price = 0.0
        for q in batch:
            if not isinstance(q, Query) or type(q).kind not in QUERY_TYPES or QUERY_TYPES[type(q).kind] is not type(q):
                raise MalformedQueryError(strategy, q, f"not a known query type (known: {', '.join(QUERY_TYPES)})")
            why = q.validate(len(self._pool), self._pool.num_classes, shape)
            if why:
                raise MalformedQueryError(strategy, q, why)
            image = int(q.image)
            if self.ledger.held_out(image):
                raise DuplicateQueryError(strategy, q, f"pool image {image} was bought held out (FullMask(held_out=True)): "
                                          "it left the training pool, so nothing more can be asked about it")
            if image in held:
                raise DuplicateQueryError(strategy, q, f"the batch holds out pool image {image} and asks about it again")
            if isinstance(q, FullMask) and q.held_out:
                if image in asked or self.ledger.asked(image):
                    raise DuplicateQueryError(strategy, q, f"pool image {image} already has labels bought for training "
                                              "(this batch or an earlier round), so it cannot be held out")
                held.add(image)
            asked.add(image)
            keys = list(q.keys())
            if any(k in seen for k in keys):
                raise DuplicateQueryError(strategy, q, "the batch asks the same thing twice")
            if self.ledger.answered(q):
                raise DuplicateQueryError(strategy, q, "this was already answered in an earlier round")
            seen.update(keys)
            price += self.quote(q)
        left = self.budget - self.spent
        if price > left + _EPS:
            raise OverdraftError(
                strategy, batch[-1] if batch else None,
                f"batch costs {price:g} {self.budget_metric} but only {left:g} of the budget {self.budget:g} is left",
            )
        if limit is not None and price > limit + _EPS:
            raise OverdraftError(
                strategy, batch[-1] if batch else None,
                f"batch costs {price:g} {self.budget_metric} but this round allows {limit:g}",
            )
        return price

    def answer(self, batch: Sequence[Query], *, strategy: str, round: int, state: LabelState, limit: float | None = None) -> None:
        """Check the whole batch, then answer every query, charge it in every
        metric and write the answer into ``state``."""
        self.check(batch, strategy=strategy, limit=limit)
        # Answer and price everything first, then record: a cost model that
        # fails on one query must not leave half a batch charged.
        # One ImageTruth per answer: the metrics share what they derive from
        # it (its memo), so each count is made once, not per metric. Priced
        # image by image (prices depend on the query alone), so that each
        # image's click maps are rebuilt at most once per batch however the
        # batch is ordered (PoolClicks keeps a bounded number of them).
        truths = [self._truth.image(int(q.image)) for q in batch]
        priced: list[list[float]] = [[] for _ in batch]
        for k in sorted(range(len(batch)), key=lambda k: int(batch[k].image)):
            priced[k] = self._costs(batch[k], truths[k])
        planned = []
        for q, truth, costs in zip(batch, truths, priced):
            ans, noisy = answer(q, truth), False
            if self._annotator is not None:
                ans, noisy = self._annotator.corrupt(q, ans, truth)
            planned.append((q, ans, costs, noisy))
        for q, ans, costs, noisy in planned:
            record(q, state, ans)
            self.ledger.add(round, q, costs, noisy)
