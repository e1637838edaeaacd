"""Baseline strategies: random masks, entropy-ranked masks, fixed mask/label proportion."""

from __future__ import annotations

import numpy as np

from alharness.errors import ConfigError
from alharness.queries import FullMask, ImageLabels, Query
from alharness.registry import register_strategy
from alharness.strategy import Strategy, StrategyContext, pixel_entropy, within_budget


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

    def propose(self, ctx: StrategyContext) -> list[Query]:
        assert ctx.probabilities is not None
        score = pixel_entropy(ctx.probabilities).mean(axis=(1, 2))
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


@register_strategy("fixed_proportion")
class FixedProportion(Strategy):
    """A fixed share of each round's budget on masks for random images, the rest on image labels."""

    def __init__(self, mask_fraction: float = 0.5, initial_fraction: float = 0.0):
        if not 0.0 <= mask_fraction <= 1.0:
            raise ConfigError(f"fixed_proportion: mask_fraction must be in [0, 1], got {mask_fraction}")
        if not 0.0 <= initial_fraction <= 1.0:
            raise ConfigError(f"fixed_proportion: initial_fraction must be in [0, 1], got {initial_fraction}")
        self.mask_fraction = mask_fraction
        # > 0: round 0 spends B0, the price of that fraction of the pool in both
        # labels and masks (the full-or-weak GP's initial strategy, §4.3), at
        # this proportion; 0: round 0 buys the benchmark's initial masks.
        self.initial_fraction = initial_fraction

    def initial(self, ctx: StrategyContext) -> list[Query]:
        if self.initial_fraction <= 0:
            return super().initial(ctx)
        return self.spend(ctx, min(initial_budget(ctx, self.initial_fraction), ctx.budget_left_this_round))

    def propose(self, ctx: StrategyContext) -> list[Query]:
        return self.spend(ctx, ctx.budget_left_this_round)

    def spend(self, ctx: StrategyContext, budget: float) -> list[Query]:
        """``mask_fraction`` of ``budget`` on masks for random images, the rest on image labels for others."""
        no_mask = ctx.rng.permutation(np.flatnonzero(~ctx.labels.has_full_mask & ~ctx.labels.has_image_labels))
        masks = within_budget((FullMask(int(i)) for i in no_mask), ctx.quote, budget * self.mask_fraction)
        masked = {q.image for q in masks}
        left = budget - sum(ctx.quote(q) for q in masks)
        # Image labels only for images that have neither labels nor a mask (a
        # mask already tells which classes are present).
        unlabelled = ctx.rng.permutation(np.flatnonzero(~ctx.labels.has_image_labels))
        labels = within_budget(
            (ImageLabels(int(i)) for i in unlabelled if int(i) not in masked), ctx.quote, left
        )
        return masks + labels


def initial_budget(ctx: StrategyContext, fraction: float) -> float:
    """B0 of the full-or-weak paper (§4.3): the price of labels and masks for ``fraction`` of the pool each."""
    n0 = max(1, int(round(fraction * len(ctx.pool))))
    return n0 * (ctx.quote(ImageLabels(0)) + ctx.quote(FullMask(0)))
