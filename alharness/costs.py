"""Cost models. Each registered cost model is one *metric*; every answer is
recorded in every metric of the campaign, and the budget is enforced in one.

A cost model whose price is known before the answer (``priced_in_advance``)
can be the enforced metric: the oracle must refuse an overdraft *before* it
answers. Cost models whose price depends on the answer (e.g. seconds per
instance mask) are recorded, and can be used to re-score campaigns.
"""

from __future__ import annotations

import inspect
from typing import Any

from alharness.errors import PluginError
from alharness.queries import ImageTruth, Query
from alharness.registry import COSTS, register_cost


class CostModel:
    """Base class: ``cost(query, truth)`` is the charge after answering,
    ``quote(query)`` the price a strategy may ask for beforehand."""

    name: str = ""
    unit: str = ""
    priced_in_advance: bool = True

    def cost(self, query: Query, truth: ImageTruth) -> float:
        return self.quote(query)

    def quote(self, query: Query) -> float:
        raise PluginError(f"cost model {self.name!r} cannot price {query.kind!r} before it is answered")

    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self"}

    def _unpriced(self, query: Query) -> PluginError:
        return PluginError(f"cost model {self.name!r} has no price for query type {query.kind!r}")


@register_cost("label_equivalents")
class LabelEquivalents(CostModel):
    """Class-label equivalents (full-or-weak paper, eq. 1): alpha_c per image-label set, alpha_s per mask."""

    unit = "label equivalents"

    def __init__(self, alpha_c: float = 1.0, alpha_s: float = 12.0):
        if alpha_c <= 0 or alpha_s <= 0:
            raise PluginError(f"label_equivalents: alpha_c and alpha_s must be > 0, got {alpha_c}, {alpha_s}")
        self.alpha_c = float(alpha_c)
        self.alpha_s = float(alpha_s)

    def quote(self, query: Query) -> float:
        prices = {"image_labels": self.alpha_c, "full_mask": self.alpha_s}
        if query.kind not in prices:
            raise self._unpriced(query)
        return prices[query.kind]


@register_cost("seconds")
class Seconds(CostModel):
    """Annotator seconds from the image's own ground truth (mask-guided paper, Table 1 formulas)."""

    unit = "seconds"
    priced_in_advance = False

    # Mask-guided-selection paper §3 (after Bearman et al.): verifying one class
    # takes 1 s; an instance mask takes 79 s. t_IL = (#classes) x 1 s and
    # t_Full = (#classes) x 1 s + (#instances) x 79 s, applied to each image's
    # own ground truth rather than the dataset averages.
    def __init__(self, seconds_per_class: float = 1.0, seconds_per_mask: float = 79.0):
        if seconds_per_class < 0 or seconds_per_mask < 0:
            raise PluginError("seconds: per-class and per-mask seconds must be >= 0")
        self.seconds_per_class = float(seconds_per_class)
        self.seconds_per_mask = float(seconds_per_mask)

    def cost(self, query: Query, truth: ImageTruth) -> float:
        # Every foreground class is verified once; background is not a category.
        classes = max(1, truth.num_classes - 1)
        if query.kind == "image_labels":
            return classes * self.seconds_per_class
        if query.kind == "full_mask":
            return classes * self.seconds_per_class + truth.instance_count() * self.seconds_per_mask
        raise self._unpriced(query)


def build_cost_models(config: dict[str, dict[str, Any]]) -> dict[str, CostModel]:
    """All registered metrics, each with its parameters from ``config`` (defaults otherwise)."""
    models: dict[str, CostModel] = {}
    for name in COSTS.names():
        models[name] = COSTS.create(name, **config.get(name, {}))
    return models
