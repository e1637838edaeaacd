"""Mask-guided sample selection (Bellver et al., "Mask-guided sample selection
for semi-supervised instance segmentation", §3).

An annotation network with an IoU branch (§5; the learner's ``iou`` head:
decoder maps at every resolution average-pooled over each predicted object,
concatenated, one fully connected layer, L1 on √IoU, trained after the
segmentation with it frozen) predicts each pool image's *IoU score*, the
mean of its predicted objects' IoUs (eq. 2). The oracle's true score is
``alharness.metrics.iou_score``, the mean over the ground-truth objects (a
missed object counts 0); the head estimates the mean over the predicted
objects (a spurious one counts 0): with labels-with-counts the paper's
W-RSIS predicts as many objects as there are, and the two coincide. §6.2: with N images strongly annotated at random first,
the next N′ images to annotate are those whose IoU score is closest to a
preset value β ∈ [0, 1] (Tables 3–4: mid-range β beats random).

* ``mask_guided``: β-closest by the *predicted* IoU score (Table 4).
* ``mask_guided_oracle``: β-closest by the *true* IoU score of the current
  prediction (Table 3, the paper's oracle experiment). It reads ground
  truth it has not bought, through the harness's oracle-experiment
  mechanism (alharness.annotation.oracle_experiments): it receives only the per-image
  score, and its rows carry ``oracle_experiment = true``.
* ``mask_guided_random``: the paper's "Random subset" row in the same
  protocol (same initial masks, same weak labels, N′ random images).

Protocol: round 0 buys full masks for ``initial_masks`` random images and,
with ``weak_labels`` (default), labels-with-counts (IL+C) for every other
pool image: the BASIS pipeline (``[learner] pipeline = "basis"``) needs
them to pseudo-label the weak pool, and the paper charges them (Table 6:
IL+C for the images not strongly annotated). ``rounds = 1`` is the paper's
one-shot protocol (N random, then N′ selected); more rounds iterate the
selection, each round on the model retrained with everything bought so far.
N′ per round is ``images_per_round`` (0: as many masks as the round's budget
buys).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import Field

from alharness.contract import FullMask, LabelsWithCounts, Query, ScoreBatch, Strategy, StrategyContext
from alharness.errors import ConfigError
from alharness.registry import register_strategy
from alharness.toolkit import within_budget


class _BetaSelection(Strategy):
    """Shared protocol: initial random masks (+ IL+C for the rest), then masks in ``_order``."""

    def __init__(self, beta: Annotated[float, Field(ge=0, le=1)] = 0.5, images_per_round: Annotated[int, Field(ge=0)] = 0,
                 weak_labels: bool = True):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta <= 1.0:
            raise ConfigError(f"{self.name}: beta must be a number in [0, 1] (an IoU score), got {beta!r}")
        if isinstance(images_per_round, bool) or not isinstance(images_per_round, int) or images_per_round < 0:
            raise ConfigError(f"{self.name}: images_per_round must be an integer >= 0 (0: as many as the budget "
                              f"allows), got {images_per_round!r}")
        if not isinstance(weak_labels, bool):
            raise ConfigError(f"{self.name}: weak_labels must be true or false, got {weak_labels!r}")
        self.beta = float(beta)
        self.images_per_round = images_per_round
        self.weak_labels = weak_labels
        self._last: dict[str, Any] = {}

    def initial(self, ctx: StrategyContext) -> list[Query]:
        masks = super().initial(ctx)
        if not self.weak_labels:
            return masks
        left = ctx.budget_left_this_round - sum(ctx.quote(q) for q in masks)
        masked = {q.image for q in masks}
        weak = (LabelsWithCounts(i) for i in range(len(ctx.pool))
                if i not in masked and not ctx.labels.has_image_labels[i])
        return masks + within_budget(weak, ctx.quote, left)

    def _scores(self, ctx: StrategyContext) -> np.ndarray | None:
        """Per-image score the selection ranks by (None: random order)."""
        raise NotImplementedError

    def propose(self, ctx: StrategyContext) -> list[Query]:
        candidates = np.flatnonzero(~ctx.labels.has_full_mask)
        # Ties (and the random baseline) are broken by a seeded shuffle, not by index.
        shuffled = ctx.rng.permutation(candidates)
        score = self._scores(ctx)
        if score is None:
            order = shuffled
        else:
            order = shuffled[np.argsort(np.abs(score[shuffled] - self.beta), kind="stable")]
        if self.images_per_round:
            order = order[: self.images_per_round]
        chosen = within_budget((FullMask(int(i)) for i in order), ctx.quote, ctx.budget_left_this_round)
        picked = np.array([q.image for q in chosen], np.int64)
        self._last = {"n_selected": len(chosen)}
        if score is not None and len(candidates):
            self._last.update({
                "beta": self.beta,
                "mean_score_selected": float(score[picked].mean()) if len(picked) else None,
                "mean_abs_score_minus_beta": float(np.abs(score[picked] - self.beta).mean()) if len(picked) else None,
                "mean_score_pool": float(score[candidates].mean()),
            })
        return chosen

    def diagnostics(self) -> dict[str, Any]:
        return dict(self._last)


@register_strategy("mask_guided")
class MaskGuided(_BetaSelection):
    """Full masks for the images whose *predicted* IoU score (eq. 2, IoU head) is closest to beta (Table 4)."""

    needs = frozenset({"iou"})
    version = 2  # 2: the IoU head predicts per predicted object, the image's score is their mean (eq. 2); was one per image

    def score(self, batch: ScoreBatch) -> dict:
        """Streams: the predicted IoU score of each image."""
        assert batch.iou is not None
        return {"iou": np.asarray(batch.iou, np.float64)}

    def _scores(self, ctx: StrategyContext) -> np.ndarray:
        return self.pool_scores(ctx)["iou"]


@register_strategy("mask_guided_oracle")
class MaskGuidedOracle(_BetaSelection):
    """Oracle experiment (Table 3): full masks for the images whose *true* IoU score is closest to beta."""

    needs = frozenset({"true_iou"})
    oracle_experiment = True

    def score(self, batch: ScoreBatch) -> dict:
        """Streams: the true IoU score of each image (the oracle experiment's statistic)."""
        assert batch.true_iou is not None
        return {"true_iou": np.asarray(batch.true_iou, np.float64)}

    def _scores(self, ctx: StrategyContext) -> np.ndarray:
        return self.pool_scores(ctx)["true_iou"]


@register_strategy("mask_guided_random")
class MaskGuidedRandom(_BetaSelection):
    """The paper's "Random subset" baseline in the mask-guided protocol (random images, same weak labels)."""

    def __init__(self, images_per_round: Annotated[int, Field(ge=0)] = 0, weak_labels: bool = True):
        super().__init__(0.5, images_per_round, weak_labels)

    def _scores(self, ctx: StrategyContext) -> None:
        return None
