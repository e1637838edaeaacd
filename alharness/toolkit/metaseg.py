"""MetaSeg's segment-level quality estimation on a *predicted* segmentation
(used by MetaBox+: "MetaBox+: A new Region Based Active Learning Method for
Semantic Segmentation using Priority Maps", §3.1, after Rottmann et al.,
"Prediction Error Meta Classification in Semantic Segmentation").

Segments are the connected components of each predicted class; each gets
hand-crafted dispersion and geometry metrics, and, where a mask was bought,
its IoU with the ground-truth components it overlaps (the regression target).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from alharness.toolkit.selection import pixel_entropy


def predicted_segments(pred: np.ndarray) -> np.ndarray:
    """Connected components (8-connectivity) of each predicted class, numbered from 1."""
    seg = np.zeros(pred.shape, np.int32)
    offset = 0
    for c in np.unique(pred):
        comp, n = ndimage.label(pred == c, structure=np.ones((3, 3)))
        seg[comp > 0] = comp[comp > 0] + offset
        offset += n
    return seg


def segment_metrics(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MetaSeg's hand-crafted metrics for every predicted segment of one image.

    ``probs``: (C, H, W) softmax. Returns (segment map, segment ids, features),
    features per segment: mean entropy and mean top-2 margin (over the segment,
    its interior and its boundary), size S, interior and boundary sizes,
    relative sizes S/S_bd and S_in/S_bd, fractality S_bd/√S, centre of mass
    (y, x as fractions of the image), and the mean class probabilities.
    """
    c, h, w = probs.shape
    pred = probs.argmax(0)
    seg = predicted_segments(pred)
    ids = np.arange(1, seg.max() + 1)
    ent = pixel_entropy(probs[None])[0]
    top2 = np.sort(probs, axis=0)[-2:]
    margin = top2[1] - top2[0]
    # Boundary pixels: a 4-neighbour belongs to another segment (or the image edge).
    padded = np.pad(seg, 1, mode="constant", constant_values=-1)
    inner = np.ones_like(seg, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        inner &= padded[dy:dy + h, dx:dx + w] == seg
    bd = ~inner
    lab = seg.ravel()

    def mean(v, where=None):
        weights = v.ravel() if where is None else (v * where).ravel()
        count = np.bincount(lab, weights=None if where is None else where.ravel().astype(float), minlength=len(ids) + 1)
        total = np.bincount(lab, weights=weights, minlength=len(ids) + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), 0.0)[1:]

    size = np.bincount(lab, minlength=len(ids) + 1)[1:].astype(float)
    size_in = np.bincount(lab, weights=inner.ravel().astype(float), minlength=len(ids) + 1)[1:]
    size_bd = size - size_in
    yy, xx = np.mgrid[0:h, 0:w]
    feats = [
        mean(ent), mean(ent, inner), mean(ent, bd),
        mean(margin), mean(margin, inner), mean(margin, bd),
        size, size_in, size_bd, size / np.maximum(size_bd, 1), size_in / np.maximum(size_bd, 1),
        size_bd / np.sqrt(size),
        mean(yy / h), mean(xx / w),
    ] + [mean(probs[k]) for k in range(c)]
    return seg, ids, np.stack(feats, axis=1)


def segment_iou(seg: np.ndarray, pred: np.ndarray, gt: np.ndarray, ignore_index: int) -> np.ndarray:
    """MetaSeg's target: IoU of each predicted segment K with the union K' of the
    ground-truth components of the same class that intersect K (ignored pixels left out)."""
    ids = np.arange(1, seg.max() + 1)
    out = np.zeros(len(ids))
    valid = gt != ignore_index
    gt_comp = {}
    for k in ids:
        K = (seg == k) & valid
        if not K.any():
            out[k - 1] = np.nan
            continue
        c = int(pred[seg == k][0])
        if c not in gt_comp:
            gt_comp[c] = ndimage.label(gt == c, structure=np.ones((3, 3)))[0]
        comps = np.unique(gt_comp[c][K])
        comps = comps[comps > 0]
        Kp = np.isin(gt_comp[c], comps) if len(comps) else np.zeros_like(K)
        out[k - 1] = (K & Kp).sum() / (K | Kp).sum()
    return out
