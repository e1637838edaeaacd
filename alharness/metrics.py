"""Segmentation metrics from a confusion matrix (thin functions, tested against
a straightforward reference)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """(C, C) int64 matrix, rows = ground truth, columns = prediction; ignored pixels skipped."""
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    keep = target != ignore_index
    idx = target[keep] * num_classes + pred[keep]
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_iou(cm: np.ndarray) -> np.ndarray:
    """IoU per class; NaN where the class is neither present nor predicted."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm: np.ndarray) -> float:
    iou = per_class_iou(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0


# -- objects, the mask-guided IoU score (eq. 2) and mask AP ---------------------------------------

def object_map(class_map: np.ndarray, ignore_index: int, instances: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Foreground objects of one image: (labels (H, W) int32, 0 = no object;
    classes (K,) of objects 1..K).

    Objects are the dataset's instances where ``instances`` is given (an
    instance's class: the majority of its labelled pixels; background
    instances dropped), else the 4-connected components of each foreground
    class (class 0 is background), as ``alharness.annotation.truth`` counts objects.
    """
    from alharness.toolkit.clicks import segment_map

    class_map = np.asarray(class_map)
    valid = class_map != ignore_index
    if instances is not None:
        inst = np.where(valid, np.asarray(instances), 0).astype(np.int64)
        ids, lab = np.unique(inst, return_inverse=True)
        lab = lab.reshape(inst.shape)
        if ids[0] != 0:  # no pixel without an instance: index 0 is a real instance
            lab = lab + 1
            ids = np.concatenate([[0], ids])
    else:
        lab = segment_map(class_map, ignore_index).astype(np.int64)
    k = int(lab.max())
    if k == 0:
        return np.zeros(class_map.shape, np.int32), np.zeros(0, np.int64)
    keep = (lab > 0) & valid
    num_classes = int(class_map[valid].max()) + 1
    table = np.bincount(lab[keep] * num_classes + class_map[keep].astype(np.int64),
                        minlength=(k + 1) * num_classes).reshape(k + 1, num_classes)
    cls = table.argmax(1)
    fg = (table.sum(1) > 0) & (cls != 0)
    fg[0] = False
    # Renumber the foreground objects 1..K'.
    lut = np.zeros(k + 1, np.int32)
    lut[fg] = np.arange(1, int(fg.sum()) + 1, dtype=np.int32)
    return lut[lab], cls[fg].astype(np.int64)


def _object_overlaps(gt: np.ndarray, pred: np.ndarray, n_gt: int, n_pred: int) -> np.ndarray:
    """(n_gt, n_pred) IoU between the objects of two label maps (0 = none)."""
    inter = np.bincount(gt.ravel().astype(np.int64) * (n_pred + 1) + pred.ravel(),
                        minlength=(n_gt + 1) * (n_pred + 1)).reshape(n_gt + 1, n_pred + 1)
    area_g, area_p = inter.sum(1), inter.sum(0)
    inter = inter[1:, 1:].astype(np.float64)
    union = area_g[1:, None] + area_p[None, 1:] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _greedy_match(iou: np.ndarray, order_rows: np.ndarray | None = None, threshold: float = 0.0) -> np.ndarray:
    """One-to-one matching of rows to columns with positive IoU, or -1 per row.

    Default: pairs by decreasing IoU. With ``order_rows`` (detections by
    score, as AP does): each row in turn takes its best free column if that
    reaches ``threshold``."""
    match = np.full(iou.shape[0], -1, np.int64)
    if iou.size == 0:
        return match
    taken = np.zeros(iou.shape[1], bool)
    if order_rows is None:
        rows, cols = np.unravel_index(np.argsort(-iou, axis=None, kind="stable"), iou.shape)
        for r, c in zip(rows, cols):
            if iou[r, c] <= 0:
                break
            if match[r] < 0 and not taken[c]:
                match[r], taken[c] = c, True
        return match
    for r in order_rows:
        cand = np.where(taken, -1.0, iou[r])
        c = int(cand.argmax())
        if cand[c] >= threshold and cand[c] > 0:
            match[r], taken[c] = c, True
    return match


def _matched_overlaps(g_lab: np.ndarray, g_cls: np.ndarray, p_lab: np.ndarray, p_cls: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(n_gt, n_pred) IoU between same-class objects and the one-to-one match of
    each ground-truth object (-1: unmatched), pairs of higher IoU first."""
    iou = _object_overlaps(g_lab, p_lab, len(g_cls), len(p_cls))
    iou = np.where(g_cls[:, None] == p_cls[None, :], iou, 0.0)
    return iou, _greedy_match(iou)


def object_ious(pred: np.ndarray, target: np.ndarray, ignore_index: int,
                instances: np.ndarray | None = None) -> np.ndarray:
    """IoU (eq. 1 of the mask-guided paper) of each ground-truth object with the
    predicted object matched to it, (M,).

    Predicted objects are the 4-connected components of each predicted
    foreground class (over labelled pixels); each is matched one-to-one to a
    ground-truth object of the same class, pairs of higher IoU first; an
    unmatched ground-truth object scores 0.
    """
    target = np.asarray(target)
    pred = np.where(target == ignore_index, ignore_index, np.asarray(pred))
    g_lab, g_cls = object_map(target, ignore_index, instances)
    p_lab, p_cls = object_map(pred, ignore_index)
    if len(g_cls) == 0 or len(p_cls) == 0:
        return np.zeros(len(g_cls))
    iou, match = _matched_overlaps(g_lab, g_cls, p_lab, p_cls)
    return np.where(match >= 0, iou[np.arange(len(g_cls)), np.maximum(match, 0)], 0.0)


def predicted_object_ious(pred: np.ndarray, target: np.ndarray, ignore_index: int,
                          instances: np.ndarray | None = None) -> np.ndarray:
    """IoU of each *predicted* object with the ground-truth object matched to it, (K,);
    0 for a predicted object that matches none (the IoU head's per-object target,
    mask-guided §5).

    Predicted objects are those a prediction without ground truth has, in the
    order ``object_map(pred, -1)`` numbers them: the 4-connected components of
    each predicted foreground class over *all* pixels (so the IoU head sees
    the same objects at selection time); void pixels of ``target`` count for
    neither side of an overlap (as in ``MaskAP``). Matching as ``object_ious``.
    """
    target = np.asarray(target)
    p_lab, p_cls = object_map(np.asarray(pred), ignore_index=-1)
    g_lab, g_cls = object_map(target, ignore_index, instances)
    if len(g_cls) == 0 or len(p_cls) == 0:
        return np.zeros(len(p_cls))
    p_lab = np.where(target == ignore_index, 0, p_lab)
    iou, match = _matched_overlaps(g_lab, g_cls, p_lab, p_cls)
    out = np.zeros(len(p_cls))
    hit = match >= 0
    out[match[hit]] = iou[np.flatnonzero(hit), match[hit]]
    return out


def iou_score(pred: np.ndarray, target: np.ndarray, ignore_index: int, instances: np.ndarray | None = None) -> float:
    """The image's *IoU score*, mask-guided eq. (2): the mean of its objects' IoUs.

    An image without ground-truth objects scores 1 if nothing was predicted
    there either, else 0 (every predicted object is wrong)."""
    ious = object_ious(pred, target, ignore_index, instances)
    if len(ious):
        return float(ious.mean())
    target = np.asarray(target)
    pred = np.asarray(pred)
    predicted_fg = ((pred != 0) & (target != ignore_index)).any()
    return 0.0 if predicted_fg else 1.0


def iou_scores(preds: np.ndarray, targets: np.ndarray, ignore_index: int,
               instances: np.ndarray | None = None) -> np.ndarray:
    """Eq. (2) IoU score of every image, (N,) float64."""
    return np.array([iou_score(preds[i], targets[i], ignore_index, None if instances is None else instances[i])
                     for i in range(len(preds))], np.float64)


def predicted_object_targets(pred: np.ndarray, target: np.ndarray, ignore_index: int,
                             instances: np.ndarray | None = None) -> np.ndarray:
    """The IoU head's targets for one image, (max(K, 1),): ``predicted_object_ious``;
    an image without a predicted object is one object covering it, whose target is
    its ``iou_score`` (1 if it has no ground-truth object either, else 0)."""
    ious = predicted_object_ious(pred, target, ignore_index, instances)
    return ious if len(ious) else np.array([iou_score(pred, target, ignore_index, instances)])


def predicted_iou_score(pred: np.ndarray, target: np.ndarray, ignore_index: int,
                        instances: np.ndarray | None = None) -> float:
    """Eq. (2) over the *predicted* objects: the mean of ``predicted_object_targets``,
    what the IoU head estimates."""
    return float(predicted_object_targets(pred, target, ignore_index, instances).mean())


def predicted_objects(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instances from a semantic prediction (C, H, W): the 4-connected components
    of each predicted foreground class, scored by their mean probability of
    that class. Returns (labels (H, W), classes (K,), scores (K,))."""
    pred = probs.argmax(0)
    lab, cls = object_map(pred, ignore_index=-1)
    if len(cls) == 0:
        return lab, cls, np.zeros(0)
    conf = np.take_along_axis(probs, pred[None], 0)[0]
    sums = np.bincount(lab.ravel(), weights=conf.ravel(), minlength=len(cls) + 1)[1:]
    areas = np.bincount(lab.ravel(), minlength=len(cls) + 1)[1:]
    return lab, cls, sums / np.maximum(areas, 1)


class MaskAP:
    """Mask average precision at one IoU threshold (0.5: the mask-guided paper's
    AP, Tables 3–8), accumulated image by image, averaged over the classes
    with ground-truth objects. Per class, detections of all images are ranked
    by score; each is a true positive if it overlaps a not yet matched
    ground-truth object of its class with IoU ≥ threshold (PASCAL VOC);
    AP is the area under the interpolated precision–recall curve."""

    def __init__(self, num_classes: int, threshold: float = 0.5):
        self.num_classes, self.threshold = num_classes, threshold
        self.dets: list[list[tuple[float, bool]]] = [[] for _ in range(num_classes)]
        self.n_gt = np.zeros(num_classes, np.int64)

    def add(self, probs: np.ndarray, target: np.ndarray, ignore_index: int, instances: np.ndarray | None = None) -> None:
        """One image: class probabilities (C, H, W), its mask and instance ids (or None)."""
        g_lab, g_cls = object_map(target, ignore_index, instances)
        p_lab, p_cls, p_score = predicted_objects(probs)
        # Void pixels count for neither side (VOC ignores them).
        p_lab = np.where(np.asarray(target) == ignore_index, 0, p_lab)
        self.n_gt += np.bincount(g_cls, minlength=self.num_classes)[: self.num_classes]
        if len(p_cls) == 0:
            return
        iou = _object_overlaps(g_lab, p_lab, len(g_cls), len(p_cls)).T  # (pred, gt)
        iou = np.where(p_cls[:, None] == g_cls[None, :], iou, 0.0)
        order = np.argsort(-p_score, kind="stable")
        match = _greedy_match(iou, order_rows=order, threshold=self.threshold)
        for k in range(len(p_cls)):
            self.dets[int(p_cls[k])].append((float(p_score[k]), bool(match[k] >= 0)))

    def per_class(self) -> np.ndarray:
        """AP per class; NaN for classes without ground-truth objects (and background)."""
        ap = np.full(self.num_classes, np.nan)
        for c in range(1, self.num_classes):
            if self.n_gt[c] == 0:
                continue
            dets = sorted(self.dets[c], key=lambda d: -d[0])
            tp = np.array([d[1] for d in dets], np.float64)
            if tp.size == 0:
                ap[c] = 0.0
                continue
            ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
            recall = ctp / self.n_gt[c]
            precision = ctp / (ctp + cfp)
            # All-point interpolation (VOC 2010+): precision made monotone from the right.
            mrec = np.concatenate([[0.0], recall, [1.0]])
            mpre = np.concatenate([[0.0], precision, [0.0]])
            mpre = np.maximum.accumulate(mpre[::-1])[::-1]
            steps = np.flatnonzero(mrec[1:] != mrec[:-1])
            ap[c] = float(((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]).sum())
        return ap

    def value(self) -> float | None:
        """Mean AP over classes with ground-truth objects; None if there are none."""
        ap = self.per_class()
        return float(np.nanmean(ap)) if np.isfinite(ap).any() else None
