"""Region-based active learning with square boxes (paper: metabox-plus,
"MetaBox+: A new Region Based Active Learning Method for Semantic
Segmentation using Priority Maps").

Strategies (all query ``Region`` boxes of side b):

* ``random_box``        random priority maps (RandomBox);
* ``entropy_box``       pixel entropy, eq. (3) (EntropyBox);
* ``entropy_box_plus``  entropy × estimated-click priority, eq. (9) (EntropyBox+);
* ``metabox``           1 − MetaSeg's predicted segment IoU (MetaBox);
* ``metabox_plus``      MetaSeg × estimated-click priority, eq. (9) (MetaBox+).

Box priority is the sum of the pixel priority inside the box, eq. (4)–(5),
for every box position at once (summed-area tables); joint priority is the
product of aggregated priorities, eq. (6)/(9). Labelled pixels have priority
zero, and a box that contains any labelled pixel is never proposed. Each
round takes the m_q highest-priority non-overlapping boxes over all images
not entirely labelled, eq. (8).

* ``entropy_box_true_cost``  EntropyBox+* and ``metabox_true_cost`` MetaBox+*:
  the "+" strategies with the click priority taken from the *true* polygon
  vertices (the dataset's drawn polygons where it has them, as Cityscapes
  does; else RDP on the true masks, as the click cost models count them)
  instead of the prediction's (§4, "Click estimation", Table 1 "+*"). They
  read ground truth they did not buy, so they are oracle experiments
  (``alharness.annotation.oracle_experiments``): they receive only the vertex map, and
  their rows say ``oracle_experiment = true``. The paper calls them a
  hypothetical optimum; they are an upper bound, not a usable strategy.
"""

from __future__ import annotations

import heapq
from typing import Annotated

import numpy as np
from pydantic import Field
from sklearn.ensemble import GradientBoostingRegressor

from alharness.contract import FullMask, Query, Region, Strategy, StrategyContext
from alharness.errors import ConfigError
from alharness.registry import register_strategy
from alharness.toolkit import image_clicks, pixel_entropy, predicted_segments, segment_iou, segment_metrics, within_budget


# -- eq. (4)-(5): box sums for all positions ------------------------------------

def box_sums(priority: np.ndarray, b: int) -> np.ndarray:
    """Sum of ``priority`` (…, H, W) over every b×b box: (…, H−b+1, W−b+1),
    entry [y, x] for the box with top-left corner (y, x).

    Separable running sums (cumsum, then differences b apart, along each
    axis in turn): four passes over the map, in float64 so that sums over
    large maps stay exact enough to rank boxes.
    """
    a = np.array(priority, dtype=np.float64)
    # numpy's cumsum along the row axis walks the array column by column
    # (about 12x slower on a 1024x2048 map than adding whole rows in turn).
    for i in range(1, a.shape[-2]):
        a[..., i, :] += a[..., i - 1, :]
    rows = np.empty(a.shape[:-2] + (a.shape[-2] - b + 1, a.shape[-1]))
    rows[..., 0, :] = a[..., b - 1, :]
    np.subtract(a[..., b:, :], a[..., :-b, :], out=rows[..., 1:, :])
    np.cumsum(rows, axis=-1, out=rows)
    out = np.empty(rows.shape[:-1] + (rows.shape[-1] - b + 1,))
    out[..., 0] = rows[..., b - 1]
    np.subtract(rows[..., b:], rows[..., :-b], out=out[..., 1:])
    return out


def select_boxes(scores: list[np.ndarray] | np.ndarray, k: int, b: int) -> list[tuple[int, int, int, float]]:
    """Eq. (8): the k highest-scoring boxes, no two overlapping in the same image.

    ``scores[i]`` is image i's box-score map (entries ≤ −inf or NaN are never
    chosen). Greedy by score: a heap holds each image's current best box;
    taking a box removes every position within b−1 of it from that image.
    Returns (image, y, x, score) in the order taken.
    """
    maps = []
    for s in scores:
        m = np.array(s, dtype=np.float64)  # our own copy: taken boxes are blanked out in it
        np.nan_to_num(m, copy=False, nan=-np.inf, posinf=np.inf, neginf=-np.inf)
        maps.append(m)
    heap = []
    for i, m in enumerate(maps):
        if m.size:
            j = int(np.argmax(m))
            if np.isfinite(m.flat[j]):
                heap.append((-m.flat[j], i, j))
    heapq.heapify(heap)
    out: list[tuple[int, int, int, float]] = []
    while heap and len(out) < k:
        neg, i, j = heapq.heappop(heap)
        m = maps[i]
        if m.flat[j] != -neg:  # stale entry: this image's map changed since
            continue
        y, x = divmod(j, m.shape[1])
        out.append((i, y, x, -neg))
        m[max(0, y - b + 1): y + b, max(0, x - b + 1): x + b] = -np.inf
        j = int(np.argmax(m))
        if np.isfinite(m.flat[j]):
            heapq.heappush(heap, (-m.flat[j], i, j))
    return out


# -- strategies (MetaSeg's segment metrics: alharness.toolkit.metaseg) ------------

Count = Annotated[int, Field(ge=1)]  # box size, boxes per round, meta images, estimators, depth


class _BoxStrategy(Strategy):
    """Shared box machinery: initial images, priority → boxes, budget."""

    def __init__(self, box_size: Count = 8, boxes_per_round: Count = 10, initial_images: Annotated[int, Field(ge=0)] = 2):
        if box_size < 1 or boxes_per_round < 1 or initial_images < 0:
            raise ConfigError(f"{type(self).__name__}: box_size and boxes_per_round must be >= 1, initial_images >= 0")
        self.box_size = box_size
        self.boxes_per_round = boxes_per_round
        self.initial_images = initial_images
        self._diag: dict = {}

    def initial(self, ctx: StrategyContext) -> list[Query]:
        """m_init random entire images (the paper's initial labelled set)."""
        picks = ctx.rng.choice(len(ctx.pool), size=min(self.initial_images, len(ctx.pool)), replace=False)
        return within_budget((FullMask(int(i)) for i in picks), ctx.quote, ctx.budget_left_this_round)

    def pixel_priority(self, ctx: StrategyContext, images: np.ndarray) -> list[np.ndarray]:
        """Aggregated priority maps h(y, B) for the given images (eq. 5/6/9)."""
        raise NotImplementedError

    def propose(self, ctx: StrategyContext) -> list[Query]:
        b = self.box_size
        h, w = ctx.pool.image_shape
        if b > min(h, w):
            raise ConfigError(f"{self.name}: box_size {b} is larger than the {h}x{w} images")
        labelled = ctx.labels.pixels != ctx.labels.ignore_index
        images = np.flatnonzero(~labelled.reshape(len(labelled), -1).all(axis=1))  # not entirely labelled
        if len(images) == 0:
            return []
        scores = self.pixel_priority(ctx, images)
        # A box with any labelled pixel is never proposed: nothing is bought twice.
        has_label = box_sums(labelled[images].astype(np.float64), b) > 0
        scores = [np.where(hl, -np.inf, s) for s, hl in zip(scores, has_label)]
        chosen = select_boxes(scores, self.boxes_per_round, b)
        queries = [Region(int(images[i]), int(y), int(x), b) for i, y, x, _ in chosen]
        picked = within_budget(queries, ctx.quote, ctx.budget_left_this_round)
        self._diag = {"boxes": len(picked), "mean_score": float(np.mean([s for *_, s in chosen[: len(picked)]])) if picked else None}
        return picked

    def diagnostics(self) -> dict:
        return dict(self._diag)


def _masked(g: np.ndarray, ctx: StrategyContext, images: np.ndarray) -> np.ndarray:
    """Labelled pixels have priority zero (MetaBox+ §3.1)."""
    return np.where(ctx.labels.pixels[images] != ctx.labels.ignore_index, 0.0, g)


def _click_priority(probs: np.ndarray, ignore_index: int, epsilon: float) -> np.ndarray:
    """g2 = 1 − κ: κ = 1 at RDP vertices of the *predicted* segmentation's contours."""
    out = np.empty((len(probs), *probs.shape[2:]))
    for n, p in enumerate(probs):
        out[n] = 1.0 - (image_clicks(p.argmax(0).astype(np.uint8), ignore_index, epsilon).vertices > 0)
    return out


@register_strategy("random_box")
class RandomBox(_BoxStrategy):
    """Square regions ranked by random priority maps (MetaBox+ paper's RandomBox)."""

    def pixel_priority(self, ctx, images):
        g = _masked(ctx.rng.random((len(images), *ctx.pool.image_shape)), ctx, images)
        return list(box_sums(g, self.box_size))


@register_strategy("entropy_box")
class EntropyBox(_BoxStrategy):
    """Square regions with the highest summed pixel entropy, eq. (3)-(5) (EntropyBox)."""

    needs = frozenset({"probabilities"})

    def pixel_priority(self, ctx, images):
        return list(box_sums(_masked(pixel_entropy(ctx.probabilities[images]), ctx, images), self.box_size))


class _PlusMixin:
    epsilon: float

    def click_priority(self, ctx, images) -> np.ndarray:
        """g2 = 1 − κ over the given images, κ estimated from the prediction (§3.2)."""
        return _click_priority(ctx.probabilities[images], ctx.labels.ignore_index, self.epsilon)

    def _joint(self, h1: list[np.ndarray], ctx, images) -> list[np.ndarray]:
        # Eq. (9): product of the aggregated priorities.
        h2 = box_sums(_masked(self.click_priority(ctx, images), ctx, images), self.box_size)  # type: ignore[attr-defined]
        return [a * c for a, c in zip(h1, h2)]


class _TrueCostMixin:
    """The "+*" variants: κ from the true annotation's polygon vertices (an oracle experiment)."""

    oracle_experiment = True

    def click_priority(self, ctx, images) -> np.ndarray:
        return 1.0 - (ctx.true_click_vertices[images] > 0)


@register_strategy("entropy_box_plus")
class EntropyBoxPlus(_PlusMixin, EntropyBox):
    """Entropy × estimated-click priority, eq. (9) (EntropyBox+)."""

    def __init__(self, box_size: Count = 8, boxes_per_round: Count = 10, initial_images: Annotated[int, Field(ge=0)] = 2,
                 epsilon: Annotated[float, Field(ge=0)] = 1.0):
        super().__init__(box_size, boxes_per_round, initial_images)
        self.epsilon = epsilon

    def pixel_priority(self, ctx, images):
        return self._joint(EntropyBox.pixel_priority(self, ctx, images), ctx, images)


@register_strategy("metabox")
class MetaBox(_BoxStrategy):
    """1 − MetaSeg-predicted segment IoU (gradient boosting on segment metrics, trained on a fixed meta set) (MetaBox)."""

    needs = frozenset({"probabilities"})

    def __init__(self, box_size: Count = 8, boxes_per_round: Count = 10, initial_images: Annotated[int, Field(ge=0)] = 2,
                 meta_images: Count = 2, n_estimators: Count = 100, max_depth: Count = 4,
                 learning_rate: Annotated[float, Field(gt=0)] = 0.1):
        super().__init__(box_size, boxes_per_round, initial_images)
        if meta_images < 1:
            raise ConfigError(f"{type(self).__name__}: meta_images must be >= 1 (MetaSeg needs labelled data)")
        self.meta_images = meta_images
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.meta_set: tuple[int, ...] = ()

    def initial(self, ctx):
        """m_init random images plus the fixed meta set M of n_meta images (both charged)."""
        n = min(self.initial_images + self.meta_images, len(ctx.pool))
        picks = [int(i) for i in ctx.rng.choice(len(ctx.pool), size=n, replace=False)]
        chosen = within_budget((FullMask(i) for i in picks), ctx.quote, ctx.budget_left_this_round)
        self.meta_set = tuple(q.image for q in chosen[-self.meta_images:]) if len(chosen) > self.initial_images else ()
        return chosen

    def fit_meta(self, ctx) -> GradientBoostingRegressor:
        """Train MetaSeg on the meta set only (steps 1-3 of §3.2)."""
        if not self.meta_set or not all(ctx.labels.has_full_mask[i] for i in self.meta_set):
            raise ConfigError(f"{self.name}: the meta set has no bought masks; raise the round-0 budget")
        X, y = [], []
        for i in self.meta_set:
            probs = ctx.probabilities[i]
            seg, _, feats = segment_metrics(probs)
            iou = segment_iou(seg, probs.argmax(0), ctx.labels.pixels[i], ctx.labels.ignore_index)
            keep = np.isfinite(iou)
            X.append(feats[keep])
            y.append(iou[keep])
        reg = GradientBoostingRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                        learning_rate=self.learning_rate, random_state=int(ctx.rng.integers(2**31)))
        reg.fit(np.concatenate(X), np.concatenate(y))
        return reg

    def quality_maps(self, ctx, images, reg) -> np.ndarray:
        """q(y): predicted IoU painted on each predicted segment (steps 4-6)."""
        q = np.empty((len(images), *ctx.pool.image_shape))
        for n, i in enumerate(images):
            seg, _, feats = segment_metrics(ctx.probabilities[i])
            pred_iou = np.clip(reg.predict(feats), 0.0, 1.0)
            q[n] = np.concatenate([[0.0], pred_iou])[seg]
        return q

    def pixel_priority(self, ctx, images):
        reg = self.fit_meta(ctx)
        g1 = _masked(1.0 - self.quality_maps(ctx, images, reg), ctx, images)
        return list(box_sums(g1, self.box_size))


@register_strategy("metabox_plus")
class MetaBoxPlus(_PlusMixin, MetaBox):
    """MetaSeg × estimated-click priority, eq. (9) (MetaBox+)."""

    def __init__(self, box_size: Count = 8, boxes_per_round: Count = 10, initial_images: Annotated[int, Field(ge=0)] = 2,
                 meta_images: Count = 2, n_estimators: Count = 100, max_depth: Count = 4,
                 learning_rate: Annotated[float, Field(gt=0)] = 0.1, epsilon: Annotated[float, Field(ge=0)] = 1.0):
        super().__init__(box_size, boxes_per_round, initial_images, meta_images, n_estimators, max_depth, learning_rate)
        self.epsilon = epsilon

    def pixel_priority(self, ctx, images):
        return self._joint(MetaBox.pixel_priority(self, ctx, images), ctx, images)


@register_strategy("entropy_box_true_cost")
class EntropyBoxTrueCost(_TrueCostMixin, EntropyBoxPlus):
    """EntropyBox+* (oracle experiment): entropy × click priority from the true polygon vertices."""

    needs = frozenset({"probabilities", "true_click_vertices"})

    def __init__(self, box_size: Count = 8, boxes_per_round: Count = 10, initial_images: Annotated[int, Field(ge=0)] = 2):
        _BoxStrategy.__init__(self, box_size, boxes_per_round, initial_images)  # no ε: the truth's vertices are used


@register_strategy("metabox_true_cost")
class MetaBoxTrueCost(_TrueCostMixin, MetaBoxPlus):
    """MetaBox+* (oracle experiment): MetaSeg × click priority from the true polygon vertices."""

    needs = frozenset({"probabilities", "true_click_vertices"})

    def __init__(self, box_size: Count = 8, boxes_per_round: Count = 10, initial_images: Annotated[int, Field(ge=0)] = 2,
                 meta_images: Count = 2, n_estimators: Count = 100, max_depth: Count = 4,
                 learning_rate: Annotated[float, Field(gt=0)] = 0.1):
        MetaBox.__init__(self, box_size, boxes_per_round, initial_images, meta_images, n_estimators, max_depth, learning_rate)
