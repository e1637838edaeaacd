"""Scoring a campaign's model on the test split (the harness's side only:
no strategy and no loop service ever sees the test split)."""

from __future__ import annotations

from typing import Any

import numpy as np

from alharness.datasets.base import SplitData
from alharness.learner import Learner
from alharness.metrics import MaskAP, confusion_matrix, mean_iou, per_class_iou


def evaluate(learner: Learner, test: SplitData) -> tuple[float, list[float], float | None]:
    """Test mIoU, per-class IoU and, on datasets with instances, mask AP at IoU 0.5
    (instances: connected components of each predicted class)."""
    return evaluate_arrays(learner, test.images, test.masks, test.instances, test.num_classes, test.ignore_index)


def evaluate_arrays(learner: Learner, images: np.ndarray, masks: np.ndarray, instances: np.ndarray | None,
                    num_classes: int, ignore_index: int) -> tuple[float, list[float], float | None]:
    """``evaluate`` on a split's arrays (no mask AP without ``instances``)."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    ap = MaskAP(num_classes, 0.5) if instances is not None else None
    for start, probs, _ in learner.predict_batches(images):
        pred = probs.argmax(1)
        cm += confusion_matrix(pred, masks[start : start + len(pred)], num_classes, ignore_index)
        if ap is not None:
            for k in range(len(pred)):
                ap.add(probs[k], masks[start + k], ignore_index, instances[start + k])
    return mean_iou(cm), [float(v) for v in per_class_iou(cm)], None if ap is None else ap.value()


def evaluate_extra_networks(learner: Learner, test: SplitData) -> dict[str, Any]:
    """``<name>_miou`` and ``<name>_ap50`` of each network the learner scores
    besides its main one (``extra_networks()``, e.g. BASIS's annotation network)."""
    scores: dict[str, Any] = {}
    for name, net in learner.extra_networks().items():
        scores[f"{name}_miou"], _, scores[f"{name}_ap50"] = evaluate(net, test)
    return scores
