"""Selection helpers: uncertainty scores and greedy budget filling."""

from __future__ import annotations

import numpy as np

from alharness.contract.strategy import within_budget

__all__ = ["pixel_entropy", "within_budget"]


def pixel_entropy(probabilities: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Shannon entropy per pixel of (N, C, H, W) class probabilities → (N, H, W)."""
    p = np.clip(probabilities, eps, 1.0)
    return -(p * np.log(p)).sum(axis=1)
