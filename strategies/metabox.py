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

Streaming (``Strategy.score``): eq. (8)'s greedy takes a box from one image
without changing any other image's boxes, so each image's own greedy
sequence (at most m_q boxes) is computed where its batch is scored
(``image_boxes``) and the round's boxes are the merge of those sequences
(``merge_boxes``), exactly what the greedy over all images takes. The
entropy strategies keep those sequences only; the MetaBox ones keep each
image's MetaSeg segments and metrics (and click map), since MetaSeg's
regressor is fitted on the meta set at proposal time.

The MetaBox strategies buy their meta set M in round 0 as held-out masks
(``FullMask(held_out=True)``, at the full-mask price, counted in the
budget): MetaSeg learns on M, the segmentation network never trains on it
(§3.2: M is apart from the labelled pool), and no box is taken from it.

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

from alharness.contract import FullMask, Query, Region, ScoreBatch, Strategy, StrategyContext
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


def image_boxes(score: np.ndarray, k: int, b: int, floor: float = -np.inf) -> list[tuple[float, int, int, int]]:
    """Eq. (8) within one image: its (at most) ``k`` best non-overlapping boxes
    in the order the greedy takes them, as (score, flat index, y, x); taking a
    box removes every position within b−1 of it (entries ≤ −inf or NaN are never chosen).
    It stops at a box scoring below ``floor`` (the k-th best score found in
    other images: such a box is never among the k taken over all images)."""
    m = np.array(score, dtype=np.float64)  # our own copy: taken boxes are blanked out in it
    np.nan_to_num(m, copy=False, nan=-np.inf, posinf=np.inf, neginf=-np.inf)
    out: list[tuple[float, int, int, int]] = []
    while m.size and len(out) < k:
        j = int(np.argmax(m))
        if not np.isfinite(m.flat[j]) or m.flat[j] < floor:
            break
        y, x = divmod(j, m.shape[1])
        out.append((float(m.flat[j]), j, y, x))
        m[max(0, y - b + 1): y + b, max(0, x - b + 1): x + b] = -np.inf
    return out


def merge_boxes(per_image: list[list[tuple[float, int, int, int]]], k: int) -> list[tuple[int, int, int, float]]:
    """Eq. (8) over all images from each image's own greedy sequence
    (``image_boxes``): the k boxes the greedy over all images takes, in its
    order (highest score first; ties to the lower image, then the lower
    position). Returns (image, y, x, score), image indexing ``per_image``."""
    heap = [(-seq[0][0], i, seq[0][1], 0) for i, seq in enumerate(per_image) if seq]
    heapq.heapify(heap)
    out: list[tuple[int, int, int, float]] = []
    while heap and len(out) < k:
        neg, i, _, t = heapq.heappop(heap)
        _, _, y, x = per_image[i][t]
        out.append((i, y, x, -neg))
        if t + 1 < len(per_image[i]):
            nxt = per_image[i][t + 1]
            heapq.heappush(heap, (-nxt[0], i, nxt[1], t + 1))
    return out


class KthBest:
    """The k-th best box score found so far (a floor for ``image_boxes``): the
    images' sequences are then cut where no later box could be among the k."""

    def __init__(self, k: int):
        self.k, self._heap = k, []

    @property
    def floor(self) -> float:
        return self._heap[0] if len(self._heap) >= self.k else -np.inf

    def add(self, boxes: list[tuple[float, int, int, int]]) -> list[tuple[float, int, int, int]]:
        for v, *_ in boxes:
            if len(self._heap) < self.k:
                heapq.heappush(self._heap, v)
            elif v > self._heap[0]:
                heapq.heapreplace(self._heap, v)
        return boxes


def select_boxes(scores: list[np.ndarray] | np.ndarray, k: int, b: int) -> list[tuple[int, int, int, float]]:
    """Eq. (8): the k highest-scoring boxes, no two overlapping in the same image.

    ``scores[i]`` is image i's box-score map (entries ≤ −inf or NaN are never
    chosen). Greedy by score over all images; as taking a box changes only
    its own image, that is the merge of each image's own greedy sequence.
    Returns (image, y, x, score) in the order taken.
    """
    best = KthBest(k)
    return merge_boxes([best.add(image_boxes(s, k, b, best.floor)) for s in scores], k)


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

    def _check_size(self, shape: tuple[int, int]) -> None:
        h, w = shape
        if self.box_size > min(h, w):
            raise ConfigError(f"{self.name}: box_size {self.box_size} is larger than the {h}x{w} images")

    def _boxes(self, score: np.ndarray, labelled: np.ndarray, best: KthBest) -> list[tuple[float, int, int, int]]:
        """One image's greedy boxes from its box-score map, cut at ``best``'s floor;
        a box with any labelled pixel is never proposed: nothing is bought twice."""
        has_label = box_sums(labelled.astype(np.float64), self.box_size) > 0
        return best.add(image_boxes(np.where(has_label, -np.inf, score), self.boxes_per_round, self.box_size,
                                    best.floor))

    def image_boxes(self, ctx: StrategyContext, images: np.ndarray) -> list[list[tuple[float, int, int, int]]]:
        """Each given image's greedy box sequence (``image_boxes``), from ``pixel_priority``."""
        labelled = ctx.labels.pixels[images] != ctx.labels.ignore_index
        best = KthBest(self.boxes_per_round)
        return [self._boxes(sc, lab, best) for sc, lab in zip(self.pixel_priority(ctx, images), labelled)]

    def propose(self, ctx: StrategyContext) -> list[Query]:
        b = self.box_size
        self._check_size(ctx.pool.image_shape)
        images = self._candidates(ctx)
        if len(images) == 0:
            return []
        chosen = merge_boxes(self.image_boxes(ctx, images), self.boxes_per_round)
        queries = [Region(int(images[i]), int(y), int(x), b) for i, y, x, _ in chosen]
        picked = within_budget(queries, ctx.quote, ctx.budget_left_this_round)
        self._diag = {"boxes": len(picked), "mean_score": float(np.mean([s for *_, s in chosen[: len(picked)]])) if picked else None}
        return picked

    def _candidates(self, ctx: StrategyContext) -> np.ndarray:
        """The images a box may be taken from: those not entirely labelled."""
        labelled = ctx.labels.pixels != ctx.labels.ignore_index
        return np.flatnonzero(~labelled.reshape(len(labelled), -1).all(axis=1))

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


class _Streamed:
    """Box strategies that stream: each image of a batch is reduced to what its
    proposal needs (``keep``; by default its greedy box sequence) where the
    batch is scored, and ``image_boxes`` reads those at proposal time."""

    def score(self, batch: ScoreBatch) -> dict:
        self._check_size(batch.pool.image_shape)
        if batch.start == 0 or self._best is None:  # a round's first batch
            self._best = KthBest(self.boxes_per_round)
        labelled = batch.labels.pixels[batch.indices] != batch.labels.ignore_index
        return {"kept": [None if lab.all() and not self._keep_labelled(int(i)) else self.keep(batch, n, lab)
                         for n, (i, lab) in enumerate(zip(batch.indices, labelled))]}

    _best: KthBest | None = None  # the round's k-th best box score so far, over the batches scored

    def _keep_labelled(self, image: int) -> bool:
        return False  # an entirely labelled image has no box left to propose

    def keep(self, batch: ScoreBatch, n: int, labelled: np.ndarray):
        """What the proposal needs of batch image ``n`` (``labelled``: its labelled pixels)."""
        return self._boxes(self.image_priority(batch, n, labelled), labelled, self._best)

    def image_boxes(self, ctx, images):
        kept = self.pool_scores(ctx)["kept"]
        return [kept[i] for i in images]


@register_strategy("random_box")
class RandomBox(_BoxStrategy):
    """Square regions ranked by random priority maps (MetaBox+ paper's RandomBox)."""

    def pixel_priority(self, ctx, images):
        g = _masked(ctx.rng.random((len(images), *ctx.pool.image_shape)), ctx, images)
        return list(box_sums(g, self.box_size))


@register_strategy("entropy_box")
class EntropyBox(_Streamed, _BoxStrategy):
    """Square regions with the highest summed pixel entropy, eq. (3)-(5) (EntropyBox)."""

    needs = frozenset({"probabilities"})

    def image_priority(self, batch, n, labelled):
        return box_sums(np.where(labelled, 0.0, pixel_entropy(batch.probabilities[n:n + 1])[0]), self.box_size)


class _PlusMixin:
    epsilon: float

    def image_click_priority(self, batch, n) -> np.ndarray:
        """g2 = 1 − κ of batch image ``n``, κ estimated from the prediction (§3.2)."""
        return _click_priority(batch.probabilities[n:n + 1], batch.labels.ignore_index, self.epsilon)[0]

    def _joint(self, h1: np.ndarray, g2: np.ndarray, labelled: np.ndarray) -> np.ndarray:
        # Eq. (9): product of the aggregated priorities.
        return h1 * box_sums(np.where(labelled, 0.0, g2), self.box_size)  # type: ignore[attr-defined]


class _TrueCostMixin:
    """The "+*" variants: κ from the true annotation's polygon vertices (an oracle experiment)."""

    oracle_experiment = True

    def image_click_priority(self, batch, n) -> np.ndarray:
        return 1.0 - (batch.true_click_vertices[n] > 0)


@register_strategy("entropy_box_plus")
class EntropyBoxPlus(_PlusMixin, EntropyBox):
    """Entropy × estimated-click priority, eq. (9) (EntropyBox+)."""

    def __init__(self, box_size: Count = 8, boxes_per_round: Count = 10, initial_images: Annotated[int, Field(ge=0)] = 2,
                 epsilon: Annotated[float, Field(ge=0)] = 1.0):
        super().__init__(box_size, boxes_per_round, initial_images)
        self.epsilon = epsilon

    def image_priority(self, batch, n, labelled):
        return self._joint(EntropyBox.image_priority(self, batch, n, labelled), self.image_click_priority(batch, n),
                           labelled)


@register_strategy("metabox")
class MetaBox(_Streamed, _BoxStrategy):
    """1 − MetaSeg-predicted segment IoU (gradient boosting on segment metrics, trained on a fixed meta set) (MetaBox).

    The meta set M is bought in round 0 as held-out masks
    (``FullMask(held_out=True)``): charged at the full-mask price, in every
    cost metric, out of round 0's budget, but never trained on, so MetaSeg
    learns segment IoUs on images the network has not fitted (MetaBox+ paper
    §3.2); no box is ever taken from them. The m_init initial images are
    ordinary training masks."""

    needs = frozenset({"probabilities"})
    version = 2  # 2: the meta set is bought held out (1: as training masks, so the network trained on it)

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
        """m_init random images (training masks) plus the fixed meta set M of
        n_meta images, bought held out; both charged at the full-mask price."""
        n = min(self.initial_images + self.meta_images, len(ctx.pool))
        picks = [int(i) for i in ctx.rng.choice(len(ctx.pool), size=n, replace=False)]
        queries = [FullMask(i, held_out=k >= self.initial_images) for k, i in enumerate(picks)]
        chosen = within_budget(queries, ctx.quote, ctx.budget_left_this_round)
        self.meta_set = tuple(q.image for q in chosen if q.held_out)
        return chosen

    def _candidates(self, ctx):
        # M is held out: the oracle refuses any query on it (even a box of its void pixels).
        return np.setdiff1d(super()._candidates(ctx), np.asarray(self.meta_set, np.int64))

    # Streamed: MetaSeg's regressor is fitted on the meta set at proposal time, so
    # each image keeps its segment map and metrics (and the meta set's images
    # their segments' true IoU), not its box sequence.
    def _keep_labelled(self, image: int) -> bool:
        return image in self.meta_set

    def keep(self, batch, n, labelled):
        probs = batch.probabilities[n]
        seg, _, feats = segment_metrics(probs)
        kept = {"seg": seg.astype(np.min_scalar_type(int(seg.max()))), "feats": feats, "g2": self._g2(batch, n)}
        i = int(batch.indices[n])
        if i in self.meta_set:  # its held-out mask is in the label state's pixels
            iou = segment_iou(seg, probs.argmax(0), batch.labels.pixels[i], batch.labels.ignore_index)
            keep = np.isfinite(iou)
            kept["meta"] = (feats[keep], iou[keep])
        return kept

    def _g2(self, batch, n) -> np.ndarray | None:
        return None  # no click priority (the "+" variants keep theirs)

    def fit_meta(self, ctx) -> GradientBoostingRegressor:
        """Train MetaSeg on the meta set only (steps 1-3 of §3.2)."""
        if not self.meta_set:
            raise ConfigError(f"{self.name}: the meta set has no bought masks; raise the round-0 budget")
        kept = self.pool_scores(ctx)["kept"]
        X, y = zip(*(kept[i]["meta"] for i in self.meta_set))
        reg = GradientBoostingRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                        learning_rate=self.learning_rate, random_state=int(ctx.rng.integers(2**31)))
        reg.fit(np.concatenate(X), np.concatenate(y))
        return reg

    def image_boxes(self, ctx, images):
        reg = self.fit_meta(ctx)
        kept = self.pool_scores(ctx)["kept"]
        best = KthBest(self.boxes_per_round)
        out = []
        for i in images:
            k = kept[i]
            # q(y): predicted IoU painted on each predicted segment (steps 4-6).
            q = np.concatenate([[0.0], np.clip(reg.predict(k["feats"]), 0.0, 1.0)])[k["seg"]]
            labelled = ctx.labels.pixels[i] != ctx.labels.ignore_index
            out.append(self._boxes(self._priority(box_sums(np.where(labelled, 0.0, 1.0 - q), self.box_size),
                                                  k["g2"], labelled), labelled, best))
        return out

    def _priority(self, h1: np.ndarray, g2: np.ndarray | None, labelled: np.ndarray) -> np.ndarray:
        return h1


@register_strategy("metabox_plus")
class MetaBoxPlus(_PlusMixin, MetaBox):
    """MetaSeg × estimated-click priority, eq. (9) (MetaBox+)."""

    def __init__(self, box_size: Count = 8, boxes_per_round: Count = 10, initial_images: Annotated[int, Field(ge=0)] = 2,
                 meta_images: Count = 2, n_estimators: Count = 100, max_depth: Count = 4,
                 learning_rate: Annotated[float, Field(gt=0)] = 0.1, epsilon: Annotated[float, Field(ge=0)] = 1.0):
        super().__init__(box_size, boxes_per_round, initial_images, meta_images, n_estimators, max_depth, learning_rate)
        self.epsilon = epsilon

    def _g2(self, batch, n):
        return self.image_click_priority(batch, n) == 1.0  # kept as a bool map: 1 − κ is 0 or 1

    def _priority(self, h1, g2, labelled):
        return self._joint(h1, g2.astype(np.float64), labelled)


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
