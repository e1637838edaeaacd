"""Full-or-weak annotations (Gamazo Tejero et al.): how much of the budget
goes to masks and how much to image labels.

* ``full_or_weak_gp``: Alg. 2. Round 0 buys the initial strategy (C0, S0)
  (§4.3: 8 % of the pool each); every later round t builds utility samples
  by Alg. 1 (train-and-score on subsets of the bought labels and masks,
  scored on the declared validation split), fits the GP of eqs. (4)-(5)
  to all samples so far, and buys the (ΔC, ΔS) of eq. (7) on random images.
  The number of installments T is the benchmark's ``rounds`` (paper: 8).
* ``estimated_best_fixed`` (§4.2): spends the initial budget B0 on a design
  set, scores every fixed proportion on subsets of it, then keeps the best.
* ``fixed_proportion``: the paper's fixed-share baseline (50 %, ..., 95 % via
  ``mask_fraction``; ``initial_fraction`` gives it the same B0).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import Field

from alharness.contract import FullMask, ImageLabels, Query, Strategy, StrategyContext, check_fraction
from alharness.errors import ConfigError
from alharness.registry import register_strategy
from alharness.toolkit import Decision, StrategyGrid, allocation_step, within_budget

PAPER_PROPORTIONS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


@register_strategy("fixed_proportion")
class FixedProportion(Strategy):
    """A fixed share of each round's budget on masks for random images, the rest on image labels."""

    version = 2  # 2: the cumulative mask share kept within one mask price of the nominal (was rounded down per round)

    def __init__(self, mask_fraction: Annotated[float, Field(ge=0, le=1)] = 0.5,
                 initial_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0):
        if not 0.0 <= mask_fraction <= 1.0:
            raise ConfigError(f"fixed_proportion: mask_fraction must be in [0, 1], got {mask_fraction}")
        if not 0.0 <= initial_fraction <= 1.0:
            raise ConfigError(f"fixed_proportion: initial_fraction must be in [0, 1], got {initial_fraction}")
        self.mask_fraction = mask_fraction
        # > 0: round 0 spends B0, the price of that fraction of the pool in both
        # labels and masks (the full-or-weak GP's initial strategy, §4.3), at
        # this proportion; 0: round 0 buys the benchmark's initial masks.
        self.initial_fraction = initial_fraction
        self._base: tuple[float, float] | None = None  # (spend, mask spend) before the first spend at the proportion
        self._last: dict[str, Any] = {}

    def initial(self, ctx: StrategyContext) -> list[Query]:
        if self.initial_fraction <= 0:
            return super().initial(ctx)
        return self.spend(ctx, min(initial_budget(ctx, self.initial_fraction), ctx.budget_left_this_round))

    def propose(self, ctx: StrategyContext) -> list[Query]:
        return self.spend(ctx, ctx.budget_left_this_round)

    def spend(self, ctx: StrategyContext, budget: float) -> list[Query]:
        """Masks for random images and image labels for others within ``budget``, keeping the
        cumulative mask share at ``mask_fraction``.

        The share is that of everything spent since this strategy's first
        spend at its proportion (round 0 with ``initial_fraction``, else the
        first round after the initial masks). Rounding the masks down in each
        round would miss the share by up to a mask per round (at B = 400 the
        nominal 50 % spent 39 % on masks); instead each round buys the masks
        that bring the cumulative mask spend nearest to ``mask_fraction`` of
        the cumulative spend this round completes, so the share stays within
        one mask price of the nominal ("Full or Weak annotations?", §4.2: the
        policies are named by the percentage of the budget dedicated to
        segmentation annotations).
        """
        spent, mask_spent = _spend_so_far(ctx)
        if self._base is None:
            self._base = (spent, mask_spent)
        spent -= self._base[0]
        mask_spent -= self._base[1]
        no_mask = ctx.rng.permutation(np.flatnonzero(~ctx.labels.has_full_mask & ~ctx.labels.has_image_labels))
        masks: list[Query] = []
        if len(no_mask):
            price = ctx.quote(FullMask(int(no_mask[0])))
            # Nearest whole number of masks to the cumulative target (half a mask of slack).
            target = self.mask_fraction * (spent + budget) - mask_spent
            masks = within_budget((FullMask(int(i)) for i in no_mask), ctx.quote,
                                  min(budget, max(0.0, target + 0.5 * price)))
        masked = {q.image for q in masks}
        mask_cost = sum(ctx.quote(q) for q in masks)
        # Image labels only for images that have neither labels nor a mask (a
        # mask already tells which classes are present).
        unlabelled = ctx.rng.permutation(np.flatnonzero(~ctx.labels.has_image_labels))
        labels = within_budget(
            (ImageLabels(int(i)) for i in unlabelled if int(i) not in masked), ctx.quote, budget - mask_cost
        )
        total = spent + mask_cost + sum(ctx.quote(q) for q in labels)
        self._last = {"mask_fraction": self.mask_fraction, "mask_spend": mask_spent + mask_cost, "spend": total,
                      "mask_share": (mask_spent + mask_cost) / total if total > 0 else None}
        return masks + labels

    def diagnostics(self) -> dict[str, Any]:
        """The cumulative mask share achieved with this round's purchase (``mask_share``) against the nominal."""
        return dict(self._last)


def _spend_so_far(ctx: StrategyContext) -> tuple[float, float]:
    """(everything spent, the part spent on masks), in the enforced metric."""
    masked = np.flatnonzero(ctx.labels.has_full_mask)
    return ctx.budget_spent, float(sum(ctx.quote(FullMask(int(i))) for i in masked))


def initial_budget(ctx: StrategyContext, fraction: float) -> float:
    """B0 of the full-or-weak paper (§4.3): the price of labels and masks for ``fraction`` of the pool each."""
    n0 = max(1, int(round(fraction * len(ctx.pool))))
    return n0 * (ctx.quote(ImageLabels(0)) + ctx.quote(FullMask(0)))


def bought_sets(ctx: StrategyContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T_c, T_s, free): images with bought image labels only, with a bought mask, with neither."""
    masks = ctx.labels.has_full_mask
    labels = ctx.labels.has_image_labels & ~masks
    return np.flatnonzero(labels), np.flatnonzero(masks), np.flatnonzero(~labels & ~masks)


def buy(ctx: StrategyContext, n_labels: int, n_masks: int, budget: float) -> list[Query]:
    """Masks for ``n_masks`` and labels for ``n_labels`` other random images with neither, within ``budget``."""
    _, _, free = bought_sets(ctx)
    order = ctx.rng.permutation(free)
    n_masks = min(n_masks, len(order))
    queries = [FullMask(int(i)) for i in order[:n_masks]]
    queries += [ImageLabels(int(i)) for i in order[n_masks : n_masks + n_labels]]
    return within_budget(queries, ctx.quote, budget)


def _need_service(ctx: StrategyContext, who: str) -> None:
    if ctx.train_and_score is None:
        raise ConfigError(f"{who} needs ctx.train_and_score (declare needs = {{'train_and_score'}} and a validation split)")


@register_strategy("full_or_weak_gp")
class FullOrWeakGP(Strategy):
    """GP expected-improvement allocation of masks vs image labels (full-or-weak Alg. 2 with Alg. 1 samples)."""

    needs = frozenset({"train_and_score"})
    paces_itself = True  # eq. (7) chooses each installment's size

    def __init__(self, initial_fraction: Annotated[float, Field(gt=0, le=1)] = 0.08, samples: Annotated[int, Field(ge=1)] = 8,
                 gp_iters: Annotated[int, Field(ge=1)] = 100, score_steps: Annotated[int, Field(ge=0)] = 0):
        check_fraction("full_or_weak_gp", "initial_fraction", initial_fraction, include_zero=False)
        if not isinstance(samples, int) or samples < 1:
            raise ConfigError(f"full_or_weak_gp: samples (M per round, Alg. 1) must be an integer >= 1, got {samples!r}")
        if not isinstance(gp_iters, int) or gp_iters < 1:
            raise ConfigError(f"full_or_weak_gp: gp_iters must be an integer >= 1, got {gp_iters!r}")
        if not isinstance(score_steps, int) or score_steps < 0:
            raise ConfigError(f"full_or_weak_gp: score_steps must be an integer >= 0 (0: the learner's steps), got {score_steps!r}")
        self.initial_fraction = initial_fraction
        self.samples = samples
        self.gp_iters = gp_iters
        self.score_steps = score_steps
        self._c: list[int] = []
        self._s: list[int] = []
        self._y: list[float] = []
        self._last: dict[str, Any] = {}

    def initial(self, ctx: StrategyContext) -> list[Query]:
        """(C0, S0): labels and masks for ``initial_fraction`` of the pool each (§4.3)."""
        n0 = max(1, int(round(self.initial_fraction * len(ctx.pool))))
        return buy(ctx, n0, n0, ctx.budget_left_this_round)

    def utility_samples(self, ctx: StrategyContext, t_c: np.ndarray, t_s: np.ndarray) -> float:
        """Alg. 1: M samples ((C', S'), m(T'_c, T'_s)), the first with all the data; returns m* (§3.3)."""
        steps = self.score_steps or None
        m_star = 0.0
        for k in range(self.samples):
            if k == 0:
                sub_c, sub_s = t_c, t_s
            else:
                sub_c = ctx.rng.choice(t_c, size=int(ctx.rng.integers(0, len(t_c) + 1)), replace=False)
                sub_s = ctx.rng.choice(t_s, size=int(ctx.rng.integers(0, len(t_s) + 1)), replace=False)
            score = ctx.train_and_score(masks=sub_s, labels=sub_c, seed=int(ctx.rng.integers(2**31)), steps=steps)
            if k == 0:
                m_star = score
            self._c.append(len(sub_c))
            self._s.append(len(sub_s))
            self._y.append(score)
        return m_star

    def propose(self, ctx: StrategyContext) -> list[Query]:
        _need_service(ctx, "full_or_weak_gp")
        budget = ctx.budget_left_this_round
        t_c, t_s, free = bought_sets(ctx)
        price_c, price_s = ctx.quote(ImageLabels(0)), ctx.quote(FullMask(0))
        if budget < min(price_c, price_s) - 1e-9 or len(free) == 0:
            self._last = {"skipped": "nothing affordable left"}
            return []
        T, t = ctx.rounds, ctx.round - 1  # round 1 is Alg. 2's t = 0
        m_star = self.utility_samples(ctx, t_c, t_s)
        grid = StrategyGrid(c0=len(t_c), s0=len(t_s), c_max=len(t_c) + len(free), s_max=len(t_s) + len(free),
                            alpha_c=price_c, alpha_s=price_s, budget_left=budget,
                            total_max=len(t_c) + len(t_s) + len(free))
        n = float(len(ctx.pool))
        decision: Decision = allocation_step(self._c, self._s, self._y, m_star, grid, T, min(t, T - 1),
                                             scale=(n, n), iters=self.gp_iters)
        self._last = {**decision.diagnostics(), "C": len(t_c), "S": len(t_s), "samples": len(self._y)}
        return buy(ctx, decision.delta_c, decision.delta_s, budget)

    def diagnostics(self) -> dict[str, Any]:
        return dict(self._last)


@register_strategy("estimated_best_fixed")
class EstimatedBestFixed(Strategy):
    """Scores every fixed proportion with the initial budget B0, then spends the rest at the best one (§4.2)."""

    needs = frozenset({"train_and_score"})
    version = 2  # 2: spends the rest at the best share through one FixedProportion of version 2

    def __init__(self, initial_fraction: Annotated[float, Field(gt=0, le=1)] = 0.08,
                 proportions: Annotated[tuple[Annotated[float, Field(ge=0, le=1)], ...], Field(min_length=1)] = PAPER_PROPORTIONS,
                 repeats: Annotated[int, Field(ge=1)] = 1, score_steps: Annotated[int, Field(ge=0)] = 0):
        check_fraction("estimated_best_fixed", "initial_fraction", initial_fraction, include_zero=False)
        props = tuple(float(p) for p in proportions)
        if not props or any(not 0.0 <= p <= 1.0 for p in props):
            raise ConfigError(f"estimated_best_fixed: proportions must be a non-empty list of mask shares in [0, 1], got {proportions!r}")
        if not isinstance(repeats, int) or repeats < 1:
            raise ConfigError(f"estimated_best_fixed: repeats must be an integer >= 1, got {repeats!r}")
        if not isinstance(score_steps, int) or score_steps < 0:
            raise ConfigError(f"estimated_best_fixed: score_steps must be an integer >= 0, got {score_steps!r}")
        self.initial_fraction = initial_fraction
        self.proportions = props
        self.repeats = repeats
        self.score_steps = score_steps
        self._design_budget = 0.0
        self._best: float | None = None
        self._fixed: FixedProportion | None = None
        self._last: dict[str, Any] = {}

    def initial(self, ctx: StrategyContext) -> list[Query]:
        """Spend B0 on a design set from which every proportion's sub-budget b can be drawn.

        b is the largest sub-budget with p_max b of masks and (1 - p_min) b of
        labels inside B0: b = B0 / (p_max + 1 - p_min).
        """
        b0 = min(initial_budget(ctx, self.initial_fraction), ctx.budget_left_this_round)
        price_c, price_s = ctx.quote(ImageLabels(0)), ctx.quote(FullMask(0))
        self._design_budget = b0 / (max(self.proportions) + 1.0 - min(self.proportions))
        n_s = int(max(self.proportions) * self._design_budget / price_s + 1e-9)
        n_c = int((1.0 - min(self.proportions)) * self._design_budget / price_c + 1e-9)
        return buy(ctx, n_c, n_s, b0)

    def propose(self, ctx: StrategyContext) -> list[Query]:
        if self._best is None:
            _need_service(ctx, "estimated_best_fixed")
            self._best = self._choose(ctx)
            # One instance for the rest of the campaign: its mask share is
            # cumulative over the spend after the design set.
            self._fixed = FixedProportion(self._best)
        return self._fixed.spend(ctx, ctx.budget_left_this_round)

    def _choose(self, ctx: StrategyContext) -> float:
        t_c, t_s, _ = bought_sets(ctx)
        price_c, price_s = ctx.quote(ImageLabels(0)), ctx.quote(FullMask(0))
        b = self._design_budget
        scores = {}
        for p in self.proportions:
            n_s = min(len(t_s), int(p * b / price_s + 1e-9))
            n_c = min(len(t_c), int((1.0 - p) * b / price_c + 1e-9))
            runs = [ctx.train_and_score(masks=ctx.rng.choice(t_s, n_s, replace=False),
                                        labels=ctx.rng.choice(t_c, n_c, replace=False),
                                        seed=int(ctx.rng.integers(2**31)), steps=self.score_steps or None)
                    for _ in range(self.repeats)]
            scores[p] = float(np.mean(runs))
        best = max(self.proportions, key=lambda p: (scores[p], p))
        self._last = {"design_budget": b, "scores": {str(p): v for p, v in scores.items()}, "chosen": best}
        return best

    def diagnostics(self) -> dict[str, Any]:
        spent = self._fixed.diagnostics() if self._fixed is not None else {}
        return {**self._last, **spent, "chosen": self._best}


@register_strategy("allocation_point")
class AllocationPoint(Strategy):
    """Buys exactly ``labels`` image-label sets and ``masks`` masks on random images in round 0, then nothing:
    one point (C, S) of the budget-performance surface (Fig. 6; ``alharness surface``)."""

    def __init__(self, labels: Annotated[int, Field(ge=0)] = 0, masks: Annotated[int, Field(ge=0)] = 0):
        for name, v in (("labels", labels), ("masks", masks)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"allocation_point: {name} must be an integer >= 0, got {v!r}")
        self.labels = labels
        self.masks = masks

    def initial(self, ctx: StrategyContext) -> list[Query]:
        return buy(ctx, self.labels, self.masks, ctx.budget_left_this_round)

    def propose(self, ctx: StrategyContext) -> list[Query]:
        return []
