"""Deterministic split carving and subsetting for real layouts.

Public benchmarks publish train and val but no test labels, so the harness
reports on the official val split and carves its own validation split out
of train. Every choice is drawn from a generator derived from the dataset's
``seed``, so the same parameters always give the same images.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import Field

from alharness.datasets.base import SPLITS
from alharness.errors import ConfigError
from alharness.seeding import derive_rng

# Parameter types of the loaders (checked at benchmark load, see Registry.check_types).
Fraction = Annotated[float, Field(ge=0, lt=1)]
Limit = Annotated[int, Field(ge=1)] | None
Seed = Annotated[int, Field(ge=0)]


def check_fraction(value: Any, name: str, where: str, upper: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < upper:
        raise ConfigError(f"{where}: {name} must be a number in [0, {upper:g}), got {value!r}")
    return float(value)


def check_limit(value: Any, name: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: {name} must be a positive integer or omitted, got {value!r}")
    return value


def limit(indices: np.ndarray, max_images: int | None, seed: int, key: str) -> np.ndarray:
    """At most ``max_images`` of ``indices`` (a seeded sample, kept sorted)."""
    indices = np.asarray(indices, np.int64)
    if max_images is None or len(indices) <= max_images:
        return indices
    return np.sort(derive_rng(seed, "dataset-limit", key).choice(indices, max_images, replace=False))


def carve(indices: np.ndarray, fraction: float, seed: int, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (rest, carved) with ``round(fraction * n)``
    carved (at least one when fraction > 0 and two or more are available)."""
    indices = np.asarray(indices, np.int64)
    k = int(round(fraction * len(indices)))
    if fraction > 0 and k == 0 and len(indices) > 1:
        k = 1
    if k == 0:
        return indices, np.zeros(0, np.int64)
    picked = derive_rng(seed, "dataset-carve", key).permutation(len(indices))[:k]
    mask = np.zeros(len(indices), bool)
    mask[picked] = True
    return indices[~mask], indices[mask]


def random_splits(n: int, val_fraction: float, test_fraction: float, seed: int, key: str) -> dict[str, np.ndarray]:
    """train/val/test over 0..n-1 when a layout declares no splits."""
    rest, test = carve(np.arange(n), test_fraction, seed, f"{key}/test")
    train, val = carve(rest, val_fraction / max(1e-9, 1 - test_fraction), seed, f"{key}/val")
    return {"train": train, "val": val, "test": test}


def split_order(splits: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The order that stores train, then val, then test, and the splits as
    the contiguous ranges they become. Loaders write their arrays in this
    order so that each split can be memory-mapped on its own (see
    ``SegmentationDataset.split``); images in no split are left out."""
    order = np.concatenate([np.asarray(splits[s], np.int64) for s in SPLITS])
    bounds = np.cumsum([0] + [len(splits[s]) for s in SPLITS])
    return order, {s: np.arange(bounds[k], bounds[k + 1]) for k, s in enumerate(SPLITS)}
