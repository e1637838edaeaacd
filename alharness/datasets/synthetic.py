"""Synthetic scenes: textured shapes on a textured background.

Each foreground class has its own colour and stripe texture (orientation and
frequency), so a small network can learn it, but colours are jittered per
object and noise is added, so it must learn from enough examples. Shapes
(ellipse, rectangle, triangle) are drawn in random order, so later objects
occlude earlier ones; every object gets its own instance id.
"""

from __future__ import annotations

import functools
import json

import numpy as np
from skimage import draw

from alharness.datasets.base import SegmentationDataset
from alharness.errors import ConfigError
from alharness.registry import register_dataset
from alharness.seeding import derive_rng


def _class_styles(num_classes: int, similarity: float, rng: np.random.Generator) -> list[dict]:
    styles = []
    common = np.array([150.0, 150.0, 150.0])
    # Evenly spaced hues keep classes apart; the background is grey-ish.
    for c in range(num_classes):
        if c == 0:
            styles.append({"color": np.array([110.0, 110.0, 110.0]), "angle": 0.0, "freq": 0.0})
            continue
        hue = (c - 1) / max(1, num_classes - 1)
        color = 255 * np.array(
            [0.5 + 0.4 * np.cos(2 * np.pi * (hue + k / 3)) for k in range(3)]
        )
        # similarity -> 1 pulls every class towards one colour, so that only
        # the stripe texture tells classes apart (harder to learn).
        styles.append(
            {
                "color": (1 - similarity) * color + similarity * common,
                "angle": float(rng.uniform(0, np.pi)),
                "freq": float(rng.uniform(0.25, 0.8)),
            }
        )
    return styles


def _shape_pixels(kind: int, cy: float, cx: float, r: float, size: int, rng: np.random.Generator):
    if kind == 0:
        ry, rx = r * rng.uniform(0.6, 1.0), r * rng.uniform(0.6, 1.0)
        return draw.ellipse(cy, cx, ry, rx, shape=(size, size), rotation=rng.uniform(0, np.pi))
    if kind == 1:
        h, w = r * rng.uniform(0.7, 1.3), r * rng.uniform(0.7, 1.3)
        return draw.rectangle((max(0, cy - h), max(0, cx - w)), end=(min(size - 1, cy + h), min(size - 1, cx + w)), shape=(size, size))
    angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.3, 0.3, 3)
    return draw.polygon(cy + r * 1.2 * np.sin(angles), cx + r * 1.2 * np.cos(angles), shape=(size, size))


def generate_scenes(
    n: int,
    size: int,
    num_classes: int,
    objects: tuple[int, int],
    object_size: tuple[float, float],
    noise: float,
    rng: np.random.Generator,
    styles: list[dict],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    instances = np.zeros((n, size, size), np.int32)
    for i in range(n):
        # Grey background with low-frequency blotches and a per-image tint.
        img = styles[0]["color"] + rng.normal(0, 25, size=(size, size, 1)) + rng.uniform(-20, 20, size=3)
        for k in range(int(rng.integers(objects[0], objects[1] + 1))):
            c = int(rng.integers(1, num_classes))
            r = rng.uniform(*object_size) * size / 2
            cy, cx = rng.uniform(r * 0.5, size - r * 0.5, size=2)
            rr, cc = (np.ravel(a).astype(np.intp) for a in _shape_pixels(int(rng.integers(0, 3)), cy, cx, r, size, rng))
            if len(rr) < 4:
                continue
            st = styles[c]
            stripes = np.sin(st["freq"] * (np.cos(st["angle"]) * xx[rr, cc] + np.sin(st["angle"]) * yy[rr, cc]))
            color = st["color"] + rng.normal(0, 12, size=3)
            img[rr, cc] = color[None, :] * (0.75 + 0.25 * stripes[:, None])
            masks[i, rr, cc] = c
            instances[i, rr, cc] = k + 1
        img += rng.normal(0, noise * 255, size=img.shape)
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    # An instance fully hidden by later objects leaves no pixels; renumber 1..K.
    for i in range(n):
        ids = np.unique(instances[i])
        ids = ids[ids > 0]
        lut = np.zeros(instances[i].max() + 1, np.int32)
        lut[ids] = np.arange(1, len(ids) + 1)
        instances[i] = lut[instances[i]]
    return images, masks, instances


@functools.lru_cache(maxsize=8)
def _cached(key: str) -> SegmentationDataset:
    p = json.loads(key)
    rng = derive_rng(p["seed"], "synthetic_shapes")
    styles = _class_styles(p["num_classes"], p["class_similarity"], rng)
    n_total = p["n_train"] + p["n_val"] + p["n_test"]
    images, masks, instances = generate_scenes(
        n_total, p["size"], p["num_classes"], tuple(p["objects"]), tuple(p["object_size"]), p["noise"], rng, styles
    )
    a, b = p["n_train"], p["n_train"] + p["n_val"]
    names = ("background",) + tuple(f"class_{c}" for c in range(1, p["num_classes"]))
    return SegmentationDataset(
        name="synthetic_shapes",
        images=images,
        masks=masks,
        instances=instances,
        class_names=names,
        splits={"train": np.arange(0, a), "val": np.arange(a, b), "test": np.arange(b, n_total)},
        metadata={"generator": "synthetic_shapes", **p},
    )


@register_dataset("synthetic_shapes")
def synthetic_shapes(
    n_train: int = 64,
    n_val: int = 16,
    n_test: int = 32,
    size: int = 48,
    num_classes: int = 4,
    objects: tuple[int, int] | list[int] = (1, 4),
    object_size: tuple[float, float] | list[float] = (0.2, 0.5),
    noise: float = 0.06,
    class_similarity: float = 0.0,
    seed: int = 0,
) -> SegmentationDataset:
    """Textured ellipses, rectangles and triangles on a textured background (deterministic by seed)."""
    if num_classes < 2:
        raise ConfigError(f"synthetic_shapes: num_classes must be >= 2 (background + 1), got {num_classes}")
    if size < 8:
        raise ConfigError(f"synthetic_shapes: size must be >= 8, got {size}")
    if min(n_train, n_test) < 1 or n_val < 0:
        raise ConfigError("synthetic_shapes: n_train and n_test must be >= 1, n_val >= 0")
    objects = tuple(int(v) for v in objects)
    object_size = tuple(float(v) for v in object_size)
    if len(objects) != 2 or objects[0] < 0 or objects[1] < objects[0]:
        raise ConfigError(f"synthetic_shapes: objects must be [min, max] with 0 <= min <= max, got {list(objects)}")
    if len(object_size) != 2 or not 0 < object_size[0] <= object_size[1] <= 1:
        raise ConfigError(f"synthetic_shapes: object_size must be [min, max] fractions in (0, 1], got {list(object_size)}")
    if not 0.0 <= class_similarity <= 1.0:
        raise ConfigError(f"synthetic_shapes: class_similarity must be in [0, 1], got {class_similarity}")
    key = json.dumps(
        dict(n_train=n_train, n_val=n_val, n_test=n_test, size=size, num_classes=num_classes,
             objects=list(objects), object_size=list(object_size), noise=noise,
             class_similarity=class_similarity, seed=seed),
        sort_keys=True,
    )
    return _cached(key)
