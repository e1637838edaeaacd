"""Stable helpers for strategy authors, built on the contract.

Import what you need from here (``from alharness.toolkit import
pixel_entropy, within_budget``); submodules load on first use, so a strategy
that needs no torch helper does not pay for importing torch.

* :mod:`~alharness.toolkit.selection`: ``pixel_entropy``, ``within_budget``
* :mod:`~alharness.toolkit.superpixels`: SLIC / SEEDS superpixels of the pool, cached on disk
* :mod:`~alharness.toolkit.clicks`: polygon click estimates (RDP vertices) of a mask,
  e.g. the current prediction (MetaBox+ §3.2)
* :mod:`~alharness.toolkit.metaseg`: MetaSeg segment metrics and segment IoU
* :mod:`~alharness.toolkit.model_outputs`: the network's input convention,
  its documented feature output and predicted boundaries
* :mod:`~alharness.toolkit.allocation`: the full-or-weak GP allocation step
  (Gaussian-process surface, expected improvement, Pareto front)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "pixel_entropy": "selection",
    "within_budget": "selection",
    "Superpixels": "superpixels",
    "compute_superpixels": ("superpixels", "compute"),
    "check_superpixel_method": ("superpixels", "check_method"),
    "ImageClicks": "clicks",
    "image_clicks": "clicks",
    "predicted_segments": "metaseg",
    "segment_metrics": "metaseg",
    "segment_iou": "metaseg",
    "to_tensor": "model_outputs",
    "backbone_features": "model_outputs",
    "encoder_features": "model_outputs",
    "predicted_boundary": "model_outputs",
    "Decision": "allocation",
    "StrategyGrid": "allocation",
    "allocation_step": "allocation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'alharness.toolkit' has no attribute {name!r}")
    module, attr = (target, name) if isinstance(target, str) else target
    value = getattr(importlib.import_module(f"alharness.toolkit.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
