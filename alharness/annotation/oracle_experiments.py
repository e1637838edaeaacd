"""Oracle experiments: statistics of pool ground truth a strategy did not buy.

Some papers study an upper bound by letting the selection read the truth
(mask-guided selection, Table 3: images chosen by their *true* IoU score;
MetaBox+ "+*": boxes ranked by their true click cost). Such a strategy sets
``oracle_experiment = True`` and declares a need from
``alharness.contract.strategy.ORACLE_NEEDS``. The campaign loop, which holds the pool
split on the harness side, computes exactly that statistic with a function
registered here and hands the strategy the resulting array only: no mask,
no instance map, no oracle object. Ordinary strategies are refused these
needs at campaign start, and every row carries ``oracle_experiment`` so
reports can flag such results.

Add a statistic by registering ``fn(learner, images, truth, cost_models=None, rows=slice(None), **_) -> np.ndarray``
(the statistic of pool images ``rows`` only: a streamed batch's)
under a new need name in ``ORACLE_SERVICES`` and the same name in
``ORACLE_NEEDS`` (and a ``StrategyContext`` field).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from alharness.toolkit.clicks import pool_clicks
from alharness.datasets.base import SplitData
from alharness.errors import PluginError
from alharness.metrics import iou_scores
from alharness.contract.strategy import ORACLE_NEEDS


def _true_iou(learner, images: np.ndarray, truth: SplitData, rows: slice = slice(None), **_) -> np.ndarray:
    """Mask-guided eq. (2) on the truth: per pool image, the mean IoU of its
    objects (instances where the dataset has them) with the current model's
    prediction, the statistic the paper's oracle selects by (§6.2.1)."""
    return iou_scores(learner.predict(images[rows]), truth.masks[rows], truth.ignore_index,
                      None if truth.instances is None else truth.instances[rows])


def _true_click_vertices(learner, images: np.ndarray, truth: SplitData, cost_models=None, rows: slice = slice(None),
                         **_) -> np.ndarray:
    """MetaBox+ "+*" (§4, Table 1): per pool pixel, the number of polygon
    vertices of the *true* annotation there: the dataset's drawn polygons
    where it has them (Cityscapes), else RDP on the true masks, exactly as the
    campaign's click cost model counts them (its ε and ``true_polygons``), so
    the "true costs" the strategy ranks by are the costs it is charged."""
    click_models = [m for m in (cost_models or {}).values() if hasattr(m, "epsilon") and hasattr(m, "true_polygons")]
    model = min(click_models, key=lambda m: m.name != "cost_a") if click_models else None
    epsilon, true_polygons = (model.epsilon, model.true_polygons) if model is not None else (1.0, True)
    # Computed once per pool (the click cost models share the cache); one batch's rows taken.
    per_image = pool_clicks(truth.masks, truth.ignore_index, epsilon, truth.polygons if true_polygons else None)
    return np.stack([c.vertices for c in per_image[rows]])


#: oracle need → function(learner serving the strategy, pool images, pool truth, cost_models=..., rows=slice)
#: → array (one row per pool image in ``rows``)
ORACLE_SERVICES: dict[str, Callable[..., np.ndarray]] = {
    "true_iou": _true_iou,
    "true_click_vertices": _true_click_vertices,
}


def check_oracle_needs(strategy: Any, needs: Iterable[str], name: str) -> frozenset[str]:
    """The oracle needs in ``needs``; PluginError if the strategy is not an oracle experiment."""
    wanted = frozenset(needs) & ORACLE_NEEDS
    if wanted and not getattr(strategy, "oracle_experiment", False):
        raise PluginError(
            f"strategy {name!r} needs {sorted(wanted)}, ground truth it has not bought; only an oracle experiment "
            "(a strategy class with oracle_experiment = True, flagged in its results) may declare that"
        )
    return wanted


def oracle_bytes_per_image(needs: Iterable[str], image_shape: tuple[int, int]) -> int:
    """Bytes per pool image of the oracle statistics in ``needs``, as ``oracle_outputs``
    returns them (float32): one score per image for ``true_iou``, one value per
    pixel for ``true_click_vertices``."""
    h, w = image_shape
    sizes = {"true_iou": 4, "true_click_vertices": 4 * h * w}
    return sum(b for k, b in sizes.items() if k in set(needs))


def oracle_outputs(learner, images: np.ndarray, truth: SplitData, needs: Iterable[str],
                   cost_models: dict[str, Any] | None = None, rows: slice = slice(None)) -> dict[str, np.ndarray]:
    """The requested oracle statistics over the pool images ``rows`` (default:
    all; a streamed batch's otherwise), each read-only (``cost_models``: the
    campaign's, for statistics about what answers cost)."""
    out = {}
    for need in sorted(frozenset(needs) & ORACLE_NEEDS):
        a = np.asarray(ORACLE_SERVICES[need](learner, images, truth, cost_models=cost_models, rows=rows), np.float32)
        a.setflags(write=False)
        out[need] = a
    return out
