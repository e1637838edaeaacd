"""MADBAL: maturity-aware, hierarchical pixel selection (paper: madbal,
"Maturity-Aware Active Learning for Semantic Segmentation with
Hierarchically-Adaptive Sample Assessment", §3.2), its Fig. 6 ablations and
two pixel baselines. All query ``Pixels``; the budget is a number of pixels
per image per round (paper: 10 for VOC, 20 for Cityscapes), and round 0 buys
``initial_pixels`` random pixels per image (§4, "Implementation Details").

One implementation, registered under several names (parameters
``uncertainty`` and ``breakdown`` fixed):

=========================  ==============  ================  ==========================
name                       uncertainty     breakdown         paper
=========================  ==============  ================  ==========================
``madbal``                 ``madbal``      ``clusters``      MADBAL, Eq. (4)–(8)
``madbal_averaging``       ``averaged``    ``clusters``      Fig. 6 "Averaging"
``madbal_no_maturity``     ``no_maturity`` ``clusters``      Fig. 6 "No maturity-awareness"
``madbal_vanilla``         ``entropy``     ``clusters``      Fig. 6 "Vanilla"
``madbal_random_clusters`` ``madbal``      ``random_clusters`` Fig. 6 "Random dist-breakdown"
``madbal_no_breakdown``    ``madbal``      ``none``          Fig. 6 "No dist-breakdown"
``pixel_entropy``          ``entropy``     ``none``          PixelPick-like top-k entropy
``random_pixels``          ``random``      ``none``          random pixels per image
=========================  ==============  ================  ==========================

Hierarchy (§3.2): pixel uncertainty u(x), Eq. (4) → superpixels (SLIC,
about one per 16×16 square, cached per dataset; ``alharness.toolkit.superpixels``)
with their dominant predicted label → K-means clusters of superpixel
features → class probability per cluster Eq. (5), superpixel uncertainty
Eq. (6), cluster uncertainty Eq. (7), cluster budget Eq. (8) → per image,
the top superpixels of each cluster and their highest-uncertainty pixels.

Superpixel features. The paper (§4, "Implementation Details") crops each
superpixel's minimal bounding box, resizes it to 16×16 and passes it
through a pretrained VGG16. ``cluster_features = "patches"`` does that with
the trained network's encoder (its pooled deepest map). The default,
``"encoder_map"``, RoI-aligns each box on the deepest encoder map the round's
prediction pass already computed (the ``feature_map`` need) and averages it:
no network pass at selection time. The features then describe the box at
the map's resolution and include the context of the encoder's receptive
field, where a patch sees only its box, rescaled; the tests check that both
give the same top clusters on a hand-made case.

Streaming (``Strategy.score``): each batch of the pool is reduced where it
is scored to what the selection needs. Without a breakdown that is each
image's chosen pixels (top-k of Eq. 4 per image); with one, per-superpixel
statistics: the number of unlabelled pixels, their mean u(x), the dominant
predicted label, the RoI feature (``encoder_map``) and the superpixel's
``pixels_per_image`` most uncertain unlabelled pixels, the most any cluster
budget can take from one superpixel. Clustering and Eqs. (5)-(8) then run
on those at proposal time. ``random_pixels`` reads no model output and does
not stream; ``cluster_features = "patches"`` computes its features at
proposal time, from the model and the pool images.

The network parts the ablations remove are the learner's to build:
"Averaging" wants ``weight_prediction = false`` in ``[learner]`` (uniform
1/K weights in the loss prediction module too), "No maturity-awareness"
``heads = ["loss_prediction"]`` (a loss predictor reading the endpoint
features only). The strategies use whatever network they get and report in
their diagnostics whether it had a weight prediction block and whether its
loss predictor read the maturity heads.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field
from sklearn.cluster import KMeans

from alharness.contract import Pixels, Query, ScoreBatch, Strategy, StrategyContext, check_choice, check_int
from alharness.registry import register_strategy
from alharness.toolkit import (Superpixels, backbone_features, check_superpixel_method, compute_superpixels,
                               encoder_features, pixel_entropy, predicted_boundary, to_tensor, within_budget)

UNCERTAINTIES = ("madbal", "averaged", "no_maturity", "entropy", "random")
BREAKDOWNS = ("clusters", "random_clusters", "none")
CLUSTER_FEATURES = ("encoder_map", "patches")  # see "Superpixel features" above
# Images per block when computing pixel uncertainty: small blocks keep the
# temporaries in cache and reused by the allocator (4 ran 2-3x faster than 64).
_CHUNK = 4
_RANDOM_BLOCK = 16  # images per block of uniform scores (``Madbal._random_picks``)


# -- Eq. (4): pixel level ---------------------------------------------------------

def pixel_uncertainty(probabilities: np.ndarray, js: np.ndarray | None = None, weights: np.ndarray | float | None = None,
                      loss_score: np.ndarray | None = None, boundary: np.ndarray | None = None) -> np.ndarray:
    """MADBAL Eq. (4), (N, H, W):

    u(x) = (H(Ŷ_x) + Σ_k W^k_x JS(Ŷ_x, Ŷ^k_x)) · [(1 − δ(x)) e^{σ(Ŷ_{L−b})} + δ(x) e^{σ(Ŷ_{L−c})}].

    ``probabilities`` (N, C, H, W) of the final head; ``js`` (N, K, H, W) the
    Jensen–Shannon divergences to the K maturity heads (None: no JS terms);
    ``weights`` W^k (N, K, H, W), or a scalar (1/K for "Averaging");
    ``loss_score`` (N, 2, H, W) σ of the loss prediction channels (0 centre,
    1 boundary; None: factor 1); ``boundary`` (N, H, W) bool, 1 − δ(x).
    """
    u = pixel_entropy(probabilities).astype(np.float32)
    if js is not None:
        w = (1.0 / js.shape[1]) if weights is None else weights
        u += (w * js).sum(axis=1)
    if loss_score is not None:
        if boundary is None:
            raise ValueError("pixel_uncertainty: loss_score needs the boundary map (1 - delta(x))")
        u *= np.exp(np.where(boundary, loss_score[:, 1], loss_score[:, 0]))
    return u


def predicted_labels(probabilities: np.ndarray) -> np.ndarray:
    """(N, H, W) int16 predicted class, the first of equal maxima (as ``argmax(axis=1)``)."""
    n, c = probabilities.shape[:2]
    out = np.zeros((n, *probabilities.shape[2:]), np.int16)
    for a in range(0, n, _CHUNK):
        # One contiguous pass per class: numpy's argmax over the strided class axis was ~2x slower.
        p, idx = probabilities[a : a + _CHUNK], out[a : a + _CHUNK]
        best = p[:, 0].copy()
        for k in range(1, c):
            idx[p[:, k] > best] = k
            np.maximum(best, p[:, k], out=best)
    return out


def boundary_of(probabilities: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """1 − δ(x): pixels whose predicted class differs from an 8-neighbour's (the
    definition the learner trains the loss predictor's channels with);
    ``labels``: :func:`predicted_labels` of ``probabilities`` if already known."""
    pred = predicted_labels(probabilities) if labels is None else labels
    return predicted_boundary(torch.from_numpy(np.ascontiguousarray(pred))).numpy()


# -- Eqs. (5)-(8): superpixel and cluster level ------------------------------------

def cluster_class_probability(dominant: np.ndarray, clusters: np.ndarray, n_clusters: int, num_classes: int) -> np.ndarray:
    """Eq. (5): P_{cl_k}(C_i) = |{s ∈ cl_k : Do(s) = C_i}| / |{s ∈ cl_k}|, as (K, C)."""
    counts = np.bincount(clusters * num_classes + dominant, minlength=n_clusters * num_classes)
    counts = counts.reshape(n_clusters, num_classes).astype(np.float64)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def superpixel_uncertainty(mean_u: np.ndarray, dominant: np.ndarray, clusters: np.ndarray, p_cluster: np.ndarray) -> np.ndarray:
    """Eq. (6): u(s) = mean_{x ∈ s} u(x) · exp(−P_{cl_k}(Do(s))), s ∈ cl_k."""
    return mean_u * np.exp(-p_cluster[clusters, dominant])


def cluster_uncertainty(u_s: np.ndarray, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """Eq. (7): u(cl_k) = mean of u(s) over the superpixels of cl_k (0 for an empty cluster)."""
    sums = np.bincount(clusters, weights=u_s, minlength=n_clusters)
    return sums / np.maximum(np.bincount(clusters, minlength=n_clusters), 1)


def cluster_budgets(u_cl: np.ndarray, total: int) -> np.ndarray:
    """Eq. (8): B_{cl_k} = ⌈u(cl_k) / Σ_j u(cl_j) · B_t⌉ (equal shares if every u is 0)."""
    u_cl = np.asarray(u_cl, np.float64)
    s = u_cl.sum()
    share = u_cl / s if s > 0 else np.full(len(u_cl), 1.0 / max(len(u_cl), 1))
    # The tolerance keeps an exact share such as 0.3 · 10 from rounding up to 4.
    return np.ceil(share * total - 1e-9).astype(np.int64)


def image_budgets(u_cl: np.ndarray, total: int, available: np.ndarray) -> np.ndarray:
    """Eq. (8) within one image over the clusters present in it, each capped by its
    unlabelled pixels; the ceilings' excess over ``total`` is taken back from
    the least uncertain clusters first, so the image gets at most ``total``."""
    b = np.minimum(cluster_budgets(u_cl, total), available)
    excess = int(b.sum()) - total
    for k in np.argsort(u_cl, kind="stable"):
        if excess <= 0:
            break
        d = min(excess, int(b[k]))
        b[k] -= d
        excess -= d
    return b


def top_per_image(scores: np.ndarray, candidates: np.ndarray, k: int) -> list[np.ndarray]:
    """Per image, the flat indices (within the image) of its ``k`` highest ``scores``
    (N, H, W) among ``candidates`` (bool), best first; ties go to the lower index."""
    n = len(scores)
    flat = np.where(candidates, scores, -np.inf).reshape(n, -1).astype(np.float64)
    k = min(k, flat.shape[1])
    if k == 0:
        return [np.empty(0, np.int64) for _ in range(n)]
    part = np.argpartition(-flat, k - 1, axis=1)[:, :k]
    out = []
    for i in range(n):
        idx = part[i][np.isfinite(flat[i, part[i]])]
        out.append(idx[np.lexsort((idx, -flat[i, idx]))])
    return out


def superpixel_features(model: torch.nn.Module, images: np.ndarray, sp: Superpixels, patch: int,
                        batch: int = 256, encoder_only: bool = True) -> np.ndarray:
    """(S, F): each superpixel's minimal bounding box, resized to ``patch``×``patch``
    (RoI-Align, one call per block of images) and passed through the network's
    backbone (its pooled ``features``), as MADBAL §4 does with VGG16.

    The features are the pooled deepest encoder map, so only the encoder runs
    (:func:`~alharness.toolkit.encoder_features`); ``encoder_only=False`` is
    the reference path, the whole network per patch (same features to float
    tolerance, several times slower)."""
    from torchvision.ops import roi_align

    device = next(model.parameters()).device
    out: np.ndarray | None = None
    with torch.no_grad():
        for a in range(0, len(images), 16):
            b = min(a + 16, len(images))
            x = to_tensor(images[a:b], device)
            lo, hi = int(sp.offsets[a]), int(sp.offsets[b])
            patches = roi_align(x, _rois(sp, a, lo, hi).to(device), output_size=patch, spatial_scale=1.0,
                                sampling_ratio=2, aligned=True)
            for c in range(0, len(patches), batch):
                f = _patch_features(model, patches[c : c + batch], encoder_only)
                if out is None:
                    out = np.empty((len(sp), f.shape[1]), np.float32)
                out[lo + c : lo + c + len(f)] = f
    return out if out is not None else np.empty((0, 0), np.float32)


def map_features(feature_map: np.ndarray, sp: Superpixels, image_shape: tuple[int, int]) -> np.ndarray:
    """(S, F): the average of the deepest encoder map of its image (``feature_map``
    (N, F, h, w), the prediction pass's) over each superpixel's minimal
    bounding box: RoI-Align to one bin, sampled bilinearly about once per map
    cell of the box (``sampling_ratio=0``)."""
    from torchvision.ops import roi_align

    n, f, h, w = feature_map.shape
    sy, sx = h / image_shape[0], w / image_shape[1]
    out = np.empty((len(sp), f), np.float32)
    for a in range(0, n, 16):
        b = min(a + 16, n)
        lo, hi = int(sp.offsets[a]), int(sp.offsets[b])
        x = torch.from_numpy(np.asarray(feature_map[a:b], np.float32))
        rois = _rois(sp, a, lo, hi, sy, sx)
        out[lo:hi] = roi_align(x, rois, output_size=1, spatial_scale=1.0, sampling_ratio=0, aligned=True)[:, :, 0, 0].numpy()
    return out


def _rois(sp: Superpixels, first_image: int, lo: int, hi: int, sy: float = 1.0, sx: float = 1.0) -> torch.Tensor:
    """RoI-Align boxes (batch index, x0, y0, x1, y1) of superpixels lo..hi, scaled by (sy, sx)."""
    box = sp.boxes[lo:hi].astype(np.float32) * np.array([sy, sx, sy, sx], np.float32)
    index = (sp.image_of[lo:hi] - first_image).astype(np.float32)[:, None]
    return torch.from_numpy(np.concatenate([index, box[:, [1, 0, 3, 2]]], axis=1))


def _patch_features(model: torch.nn.Module, x: torch.Tensor, encoder_only: bool) -> np.ndarray:
    if not encoder_only:
        return backbone_features(model, x).float().cpu().numpy()
    # channels_last: the convolutions on these small patches ran faster so on 2 CPU cores.
    return encoder_features(model, x.contiguous(memory_format=torch.channels_last)).float().cpu().numpy()


def _needs(uncertainty: str, breakdown: str, cluster_features: str = "encoder_map") -> frozenset[str]:
    needs = {"random": set(), "entropy": {"probabilities"}, "no_maturity": {"probabilities", "loss_prediction"},
             "averaged": {"probabilities", "maturity", "loss_prediction"},
             "madbal": {"probabilities", "maturity", "maturity_weights", "loss_prediction"}}[uncertainty]
    if breakdown != "none":
        needs |= {"probabilities"}  # dominant labels, Eq. (5)
    if breakdown == "clusters":
        needs |= {"model"}  # superpixel features from the backbone (and the network notes)
        if cluster_features == "encoder_map":
            needs |= {"feature_map"}
    return frozenset(needs)



@register_strategy("madbal")
class Madbal(Strategy):
    """MADBAL: maturity-aware pixel uncertainty, superpixel clusters, per-cluster pixel budgets (Eq. 4-8)."""

    needs = _needs("madbal", "clusters")

    def __init__(self, pixels_per_image: Annotated[int, Field(ge=1)] = 10, initial_pixels: Annotated[int, Field(ge=0)] = 10,
                 n_clusters: Annotated[int, Field(ge=1)] = 10, superpixel_size: Annotated[int, Field(ge=2)] = 16,
                 superpixel_method: str = "slic", patch_size: Annotated[int, Field(ge=2)] = 16,
                 uncertainty: str = "madbal", breakdown: str = "clusters", cluster_features: str = "encoder_map"):
        check_choice("madbal", "uncertainty", uncertainty, UNCERTAINTIES)
        check_choice("madbal", "breakdown", breakdown, BREAKDOWNS)
        check_superpixel_method(superpixel_method, where="madbal: superpixel_method")
        check_choice("madbal", "cluster_features", cluster_features, CLUSTER_FEATURES)
        self.pixels_per_image = check_int("madbal", "pixels_per_image", pixels_per_image, 1)
        self.initial_pixels = check_int("madbal", "initial_pixels", initial_pixels, 0)
        self.n_clusters = check_int("madbal", "n_clusters", n_clusters, 1)
        self.superpixel_size = check_int("madbal", "superpixel_size", superpixel_size, 2)
        self.patch_size = check_int("madbal", "patch_size", patch_size, 2)
        self.superpixel_method = superpixel_method
        self.uncertainty = uncertainty
        self.breakdown = breakdown
        self.cluster_features = cluster_features
        self.needs = _needs(uncertainty, breakdown, cluster_features)  # what this configuration reads (instance-level)
        # Pool-flat indices (sorted) of the pixels this campaign asked for: a 255 answer stays "unknown" in the
        # label state, so the label state alone cannot tell them apart. A few per image per round, not a mask.
        self._asked = np.empty(0, np.int64)
        self._asked_shape: tuple[int, ...] | None = None
        self._last: dict[str, Any] = {}
        #: the last hierarchical selection: global superpixel clusters and, per
        #: image, {cluster: pixel budget} (Eq. 8), for diagnostics and tests
        self.last_clusters: np.ndarray | None = None
        self.last_budgets: list[dict[int, int]] = []

    @property
    def streams(self) -> bool:
        """Every configuration that reads model outputs streams (``random`` reads none)."""
        return self.uncertainty != "random"

    # -- round 0 ----------------------------------------------------------------
    def initial(self, ctx: StrategyContext) -> list[Query]:
        """Round 0: ``initial_pixels`` random pixels in every image (§4)."""
        picks = self._random_picks(ctx, self.initial_pixels)["picks"]
        return self._queries(ctx, picks, [np.zeros(len(p)) for p in picks])

    def _random_picks(self, ctx: StrategyContext, k: int) -> dict[str, list[np.ndarray]]:
        """Each image's ``k`` unlabelled pixels of highest uniform score u(x), and their u, drawn block by block
        of images: the same draws as one (N, H, W) array (a generator's stream does not depend on how it is
        split), without the pool-sized scores (4 bytes a pixel, 8 more in ``top_per_image``)."""
        picks: list[np.ndarray] = []
        values: list[np.ndarray] = []
        n = len(ctx.pool)
        for a in range(0, n, _RANDOM_BLOCK):
            b = min(a + _RANDOM_BLOCK, n)
            u = ctx.rng.random((b - a, *ctx.pool.image_shape), dtype=np.float32)
            block = top_per_image(u, self._candidate_rows(ctx.labels, a, b), k)
            picks += block
            values += [u[i].ravel()[p] for i, p in enumerate(block)]
        return {"picks": picks, "values": values}

    # -- later rounds, streamed ---------------------------------------------------
    def score(self, batch: ScoreBatch) -> dict[str, Any]:
        """Per image of the batch: its picks (no breakdown) or its superpixels' statistics."""
        a, b = batch.start, batch.start + len(batch)
        cand = self._candidate_rows(batch.labels, a, b)
        pred = predicted_labels(batch.probabilities) if self._labelled_by_model else None
        return self._reduce(batch, cand, pred, self._pixel_uncertainty(batch, pred, len(batch)))

    @property
    def _labelled_by_model(self) -> bool:
        # Predicted labels once: δ(x) of Eq. (4) and Do(s) of Eq. (5) both read them.
        return self.breakdown != "none" or self.uncertainty in ("madbal", "averaged", "no_maturity")

    def _reduce(self, batch: ScoreBatch, cand: np.ndarray, pred: np.ndarray | None, u: np.ndarray) -> dict[str, Any]:
        """What the selection keeps of the batch's images, given their candidates, predicted labels and u(x)."""
        a, b = batch.start, batch.start + len(batch)
        if self.breakdown == "none":
            picks = top_per_image(u, cand, self.pixels_per_image)
            flat_u = u.reshape(len(u), -1)
            return {"picks": picks, "values": [flat_u[n, p] for n, p in enumerate(picks)]}
        full = _superpixels(batch.pool.images, self.superpixel_size, self.superpixel_method)
        sp = Superpixels(labels=full.labels[a:b], counts=full.counts[a:b])  # the batch's, numbered from 0
        unl = cand.ravel()
        ids = sp.global_labels.astype(np.intp)
        n_unl = np.bincount(ids, weights=unl, minlength=len(sp))
        mean_u = np.bincount(ids, weights=np.where(unl, u.ravel(), 0.0), minlength=len(sp)) / np.maximum(n_unl, 1)
        dominant = sp.majority(pred, batch.pool.num_classes)
        feats = map_features(batch.feature_map, sp, batch.pool.image_shape) if self._map_features else None
        # Each superpixel's pixels_per_image most uncertain unlabelled pixels (ties: lower
        # index first), the most any cluster budget takes from it (_best_pixels' order).
        flat_u = u.ravel()
        px = np.flatnonzero(unl)
        px = px[np.lexsort((px, -flat_u[px], ids[px]))]
        owner = ids[px]
        rank = np.arange(len(px)) - np.searchsorted(owner, owner)
        px, owner = px[rank < self.pixels_per_image], owner[rank < self.pixels_per_image]
        counts = np.bincount(owner, minlength=len(sp))
        cut = np.searchsorted(owner, sp.offsets)  # each image's kept pixels
        rows = [slice(int(sp.offsets[n]), int(sp.offsets[n + 1])) for n in range(len(batch))]
        cuts = [slice(int(cut[n]), int(cut[n + 1])) for n in range(len(batch))]
        return {"n_unl": [n_unl[r] for r in rows], "mean_u": [mean_u[r] for r in rows],
                "dominant": [dominant[r] for r in rows], "feats": [None if feats is None else feats[r] for r in rows],
                "top_counts": [counts[r] for r in rows],
                "tops": [px[c].astype(np.int64) + a * u[0].size for c in cuts],  # pool-flat pixel indices
                "top_u": [flat_u[px[c]] for c in cuts]}

    @property
    def _map_features(self) -> bool:
        return self.breakdown == "clusters" and self.cluster_features == "encoder_map"

    def _candidate_rows(self, labels, a: int, b: int) -> np.ndarray:
        """(b - a, H, W): the pixels of images a..b-1 that are unlabelled and were never asked for."""
        shape = tuple(labels.pixels.shape)
        if isinstance(self._asked, np.ndarray) and self._asked.dtype == bool:  # a checkpoint's former (N, H, W) mask
            self._asked, self._asked_shape = np.flatnonzero(self._asked).astype(np.int64), tuple(self._asked.shape)
        if self._asked_shape != shape:
            self._asked, self._asked_shape = np.empty(0, np.int64), shape
        cand = labels.pixels[a:b] == labels.ignore_index
        hw = int(np.prod(shape[1:]))
        lo, hi = np.searchsorted(self._asked, [a * hw, b * hw])
        cand.reshape(-1)[self._asked[lo:hi] - a * hw] = False
        return cand

    # -- later rounds -------------------------------------------------------------
    def propose(self, ctx: StrategyContext) -> list[Query]:
        if self.streams:
            scores = self.pool_scores(ctx)
        elif self.breakdown == "none":  # random u(x): the pixel baseline, drawn block by block
            scores = self._random_picks(ctx, self.pixels_per_image)
        else:  # random u(x), drawn over the whole pool from the round's generator
            pred = predicted_labels(ctx.probabilities) if self._labelled_by_model else None
            u = self._pixel_uncertainty(ctx, pred)
            scores = self._reduce(ScoreBatch.of(ctx), self._candidates(ctx), pred, u)
        self._last = {"uncertainty": self.uncertainty, "breakdown": self.breakdown}
        if ctx.model is not None or "loss_prediction" in self.needs:
            self._last.update(self._network_notes(ctx))
        if self.breakdown == "none":
            return self._queries(ctx, scores["picks"], scores["values"])
        return self._queries(ctx, *self._hierarchical(ctx, scores))

    def _candidates(self, ctx: StrategyContext) -> np.ndarray:
        return self._candidate_rows(ctx.labels, 0, len(ctx.labels.pixels))

    def _pixel_uncertainty(self, ctx: StrategyContext | ScoreBatch, pred: np.ndarray | None,
                           n: int | None = None) -> np.ndarray:
        """Eq. (4) over the context's pool (or a batch's ``n`` images)."""
        n = len(ctx.pool) if n is None else n
        if self.uncertainty == "random":
            return ctx.rng.random((n, *ctx.pool.image_shape), dtype=np.float32)
        out = np.empty((n, *ctx.pool.image_shape), np.float32)
        for a in range(0, n, _CHUNK):
            s = slice(a, min(a + _CHUNK, n))
            probs = ctx.probabilities[s]
            js = weights = loss_score = boundary = None
            if self.uncertainty in ("madbal", "averaged"):
                js = ctx.maturity[s]
                weights = ctx.maturity_weights[s] if self.uncertainty == "madbal" else None
            if self.uncertainty in ("madbal", "averaged", "no_maturity"):
                loss_score, boundary = ctx.loss_prediction[s], boundary_of(probs, pred[s])
            out[s] = pixel_uncertainty(probs, js, weights, loss_score, boundary)
        return out

    def _network_notes(self, ctx: StrategyContext) -> dict[str, Any]:
        model = ctx.model
        if model is None:
            return {}
        mat = getattr(model, "maturity", None)
        lp = getattr(model, "loss_prediction", None)
        return {"weight_prediction_block": bool(mat is not None and mat.weight_block is not None),
                "loss_prediction_reads_maturity": bool(lp is not None and mat is not None)}

    def _hierarchical(self, ctx: StrategyContext, scores: dict[str, Any]) -> tuple[list, list]:
        """Eqs. (5)-(8) and the image level of §3.2 on the superpixel statistics ``score`` kept."""
        n_unl, mean_u, dominant = (np.concatenate(scores[k]) for k in ("n_unl", "mean_u", "dominant"))
        tops, top_u = np.concatenate(scores["tops"]), np.concatenate(scores["top_u"])
        top_starts = np.concatenate([[0], np.cumsum(np.concatenate(scores["top_counts"]))])
        n_sp = len(n_unl)
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in scores["n_unl"]])])
        k = min(self.n_clusters, n_sp)
        if self.breakdown == "random_clusters":
            clusters = ctx.rng.integers(0, k, n_sp)
        else:
            if self.cluster_features == "encoder_map":
                feats = np.concatenate(scores["feats"])
            else:
                feats = superpixel_features(ctx.model, np.asarray(ctx.pool.images),
                                            _superpixels(ctx.pool.images, self.superpixel_size, self.superpixel_method),
                                            self.patch_size)
            seed = int(ctx.rng.integers(2**31 - 1))
            clusters = KMeans(n_clusters=k, n_init=1, max_iter=100, random_state=seed).fit_predict(feats.astype(np.float32))
        p_cl = cluster_class_probability(dominant, clusters, k, ctx.pool.num_classes)
        u_s = superpixel_uncertainty(mean_u, dominant, clusters, p_cl)
        has = n_unl > 0
        u_cl = cluster_uncertainty(u_s[has], clusters[has], k)
        hw = int(np.prod(ctx.pool.image_shape))
        picks, values, budgets = [], [], []
        for i in range(len(ctx.pool)):
            s_i = np.arange(offsets[i], offsets[i + 1])[has[offsets[i] : offsets[i + 1]]]
            present, inverse = np.unique(clusters[s_i], return_inverse=True)
            avail = np.bincount(inverse, weights=n_unl[s_i], minlength=len(present)).astype(np.int64)
            b = image_budgets(u_cl[present], self.pixels_per_image, avail)
            budgets.append(dict(zip(present.tolist(), b.tolist())))
            chosen, chosen_u = [], []
            for j, bk in enumerate(b):
                if bk == 0:
                    continue
                s_k = s_i[inverse == j]
                s_k = s_k[np.lexsort((s_k, -u_s[s_k]))][:bk]
                px, pu = _best_kept_pixels(s_k, int(bk), top_starts, tops, top_u)
                chosen.append(px)
                chosen_u.append(pu)
            picks.append(np.concatenate(chosen) - i * hw if chosen else np.empty(0, np.int64))
            values.append(np.concatenate(chosen_u) if chosen_u else np.empty(0, np.float32))
        used = np.bincount(clusters[has], minlength=k)
        self._last.update({"clusters": k, "superpixels": n_sp, "superpixels_per_cluster": used.tolist(),
                           "cluster_uncertainty": [round(float(v), 6) for v in u_cl],
                           "cluster_budget_share": [round(float(v), 4) for v in cluster_budgets(u_cl, 1000) / 1000]})
        self.last_clusters, self.last_budgets = clusters, budgets
        return picks, values

    def _queries(self, ctx: StrategyContext, picks: list[np.ndarray], scores: list[np.ndarray]) -> list[Query]:
        w = ctx.pool.image_shape[1]
        # Images whose picks are the most uncertain first, in case the round cannot pay for every image.
        total = np.array([float(np.sum(s)) for s in scores])
        order = np.lexsort((np.arange(len(picks)), -total))
        queries = (Pixels(int(i), tuple((int(p // w), int(p % w)) for p in picks[i])) for i in order if len(picks[i]))
        chosen = within_budget(queries, ctx.quote, ctx.budget_left_this_round)
        hw = int(np.prod(ctx.pool.image_shape))
        if self._asked_shape is None:  # (``_candidate_rows`` sets it; a subclass's selection might not have asked)
            self._asked_shape = tuple(ctx.labels.pixels.shape)
        if chosen:
            flat = [q.image * hw + np.asarray(q.coords, np.int64) @ np.array([w, 1], np.int64) for q in chosen]
            self._asked = np.union1d(self._asked, np.concatenate(flat))
        self._last["pixels"] = int(sum(len(q.coords) for q in chosen))
        self._last["images"] = len(chosen)
        return chosen

    def diagnostics(self) -> dict[str, Any]:
        return dict(self._last)


_SP_MEMO: list = []  # [(images, size, method, superpixels)]: the last pool's


def _superpixels(images: np.ndarray, size: int, method: str) -> Superpixels:
    """The pool's superpixels, computed (or read from the cache) once per pool in
    this process rather than once per streamed batch. The memo holds the images
    array itself, so a later pool is never mistaken for it (one pool kept)."""
    if not (_SP_MEMO and _SP_MEMO[0][0] is images and _SP_MEMO[0][1:3] == (size, method)):
        _SP_MEMO[:] = [(images, size, method, compute_superpixels(np.asarray(images), size, method))]
    return _SP_MEMO[0][3]


def _best_kept_pixels(sps: np.ndarray, b: int, starts: np.ndarray, tops: np.ndarray,
                      top_u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_best_pixels`` on what ``score`` kept: superpixel s's most uncertain
    unlabelled pixels are ``tops[starts[s]:starts[s + 1]]`` in order (their u in
    ``top_u``). Returns the ``b`` pixels and their u."""
    per = b if b > len(sps) else 1
    firsts = starts[sps]
    n = np.minimum(starts[sps + 1] - firsts, per)
    pos = np.repeat(np.arange(len(sps)), n)
    rank = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    take = np.lexsort((pos, rank))[:b]
    idx = firsts[pos[take]] + rank[take]
    return tops[idx].astype(np.int64), top_u[idx]


def _best_pixels(sps: np.ndarray, b: int, order: np.ndarray, starts: np.ndarray, unlabelled: np.ndarray,
                 u: np.ndarray) -> np.ndarray:
    """``b`` flat pixels from superpixels ``sps`` (most uncertain first): the
    highest-u unlabelled pixel of each, then the second of each, … (each of
    ``sps`` holds an unlabelled pixel, so ``b`` <= len(sps) always fills)."""
    per = b if b > len(sps) else 1
    ranked = []
    for pos, s in enumerate(sps):
        px = order[starts[s] : starts[s + 1]]
        px = px[unlabelled[px]]
        top = px[np.lexsort((px, -u[px]))][:per]
        ranked.append(np.stack([np.arange(len(top)), np.full(len(top), pos), top], axis=1))
    r = np.concatenate(ranked)
    r = r[np.lexsort((r[:, 1], r[:, 0]))][:b]
    return r[:, 2].astype(np.int64)


def _register_variant(name: str, cls_name: str, doc: str, uncertainty: str, breakdown: str) -> type[Madbal]:
    """Register ``Madbal`` with ``uncertainty`` and ``breakdown`` fixed under ``name``."""
    params = [p for p in inspect.signature(Madbal.__init__).parameters.values() if p.name not in ("uncertainty", "breakdown")]

    def __init__(self, **kwargs):
        Madbal.__init__(self, uncertainty=uncertainty, breakdown=breakdown, **kwargs)

    __init__.__signature__ = inspect.Signature(params)  # the registry's parameter list
    cls = type(cls_name, (Madbal,), {"__init__": __init__, "__doc__": doc, "__module__": __name__,
                                     "__qualname__": cls_name, "needs": _needs(uncertainty, breakdown)})
    return register_strategy(name)(cls)


# Fig. 6 ablations and the pixel baselines: name, class, uncertainty, breakdown, description.
_VARIANT_TABLE = """
madbal_averaging        MadbalAveraging      averaged     clusters         MADBAL ablation 'Averaging' (Fig. 6): uniform 1/K instead of the weight maps in Eq. 4.
madbal_no_maturity      MadbalNoMaturity     no_maturity  clusters         MADBAL ablation 'No maturity-awareness' (Fig. 6): Eq. 4 without the Jensen-Shannon terms.
madbal_vanilla          MadbalVanilla        entropy      clusters         MADBAL ablation 'Vanilla' (Fig. 6): entropy only, with the distribution breakdown.
madbal_random_clusters  MadbalRandomClusters madbal       random_clusters  MADBAL ablation 'Random dist-breakdown' (Fig. 6): superpixels in random clusters.
madbal_no_breakdown     MadbalNoBreakdown    madbal       none             MADBAL ablation 'No dist-breakdown' (Fig. 6): the N most uncertain pixels (Eq. 4) per image.
pixel_entropy           PixelEntropy         entropy      none             Pixel baseline (PixelPick-like): the N highest-entropy unlabelled pixels per image.
random_pixels           RandomPixels         random       none             Pixel baseline: N random unlabelled pixels per image.
"""
VARIANTS = {row[0]: tuple(row[1:]) for row in (line.split(None, 4) for line in _VARIANT_TABLE.strip().splitlines())}
for _name, (_cls, _unc, _brk, _doc) in VARIANTS.items():
    globals()[_cls] = _register_variant(_name, _cls, _doc, _unc, _brk)
