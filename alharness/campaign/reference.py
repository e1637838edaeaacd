"""The full-supervision reference: every pool image's full mask, bought in round 0.

Owned by the core (not a plugin): every benchmark can ask for it. Not a competitor. Benchmarks with ``reference = true`` run it once per
(dataset, learner, seed), and the leaderboard measures the other strategies
against its final test mIoU ("cost to reach 90 % of full supervision",
metabox-plus §4 and madbal §4 report the same quantity).
"""

from __future__ import annotations

from alharness.contract.queries import FullMask, Query
from alharness.contract.strategy import Strategy, StrategyContext
from alharness.registry import register_strategy

#: The registered strategy that buys every pool mask.
REFERENCE_STRATEGY = "full_supervision"
#: Budget of reference campaigns: large enough for any pool's masks in any metric.
REFERENCE_BUDGET = 1e15


@register_strategy(REFERENCE_STRATEGY)
class FullSupervision(Strategy):
    """Reference run: full masks for the whole pool at once (leaderboards rank against it, not with it)."""

    def initial(self, ctx: StrategyContext) -> list[Query]:
        return [FullMask(i) for i in range(len(ctx.pool)) if not ctx.labels.has_full_mask[i]]

    def propose(self, ctx: StrategyContext) -> list[Query]:
        return []  # everything was bought in round 0
