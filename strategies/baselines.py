"""Baseline strategies: random masks and entropy-ranked masks (``fixed_proportion``
is the full-or-weak paper's baseline and lives in ``strategies.full_or_weak``)."""

from __future__ import annotations

import numpy as np

from alharness.contract import FullMask, Query, ScoreBatch, Strategy, StrategyContext
from alharness.registry import register_strategy
from alharness.toolkit import pixel_entropy, within_budget


@register_strategy("random")
class RandomMasks(Strategy):
    """Full masks for images drawn uniformly at random from the unlabelled pool."""

    def propose(self, ctx: StrategyContext) -> list[Query]:
        candidates = np.flatnonzero(~ctx.labels.has_full_mask)
        order = ctx.rng.permutation(candidates)
        return within_budget((FullMask(int(i)) for i in order), ctx.quote, ctx.budget_left_this_round)


@register_strategy("entropy")
class EntropyMasks(Strategy):
    """Full masks for the unlabelled images with the highest mean pixel entropy."""

    needs = frozenset({"probabilities"})

    def __init__(self):
        self._last: dict = {}

    def score(self, batch: ScoreBatch) -> dict:
        """Streams: each image's mean pixel entropy is all it keeps of the probabilities."""
        assert batch.probabilities is not None
        return {"entropy": pixel_entropy(batch.probabilities).mean(axis=(1, 2))}

    def propose(self, ctx: StrategyContext) -> list[Query]:
        score = self.pool_scores(ctx)["entropy"]
        candidates = np.flatnonzero(~ctx.labels.has_full_mask)
        # Stable sort on -score; ties broken by a seeded shuffle, not by index.
        shuffled = ctx.rng.permutation(candidates)
        order = shuffled[np.argsort(-score[shuffled], kind="stable")]
        chosen = within_budget((FullMask(int(i)) for i in order), ctx.quote, ctx.budget_left_this_round)
        picked = [score[q.image] for q in chosen]
        self._last = {"mean_entropy_chosen": float(np.mean(picked)) if picked else None,
                      "mean_entropy_pool": float(score[candidates].mean()) if len(candidates) else None}
        return chosen

    def diagnostics(self) -> dict:
        return dict(self._last)
