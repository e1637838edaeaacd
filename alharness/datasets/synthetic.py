"""Synthetic scenes with known ground truth and the controls a researcher
turns to make data easy or hard.

Each foreground class has its own colour and stripe texture (orientation and
frequency), so a small network can learn it; colours are jittered per object
and noise is added, so it must learn from enough examples. The controls:

* ``num_classes``, ``imbalance`` (how much more often the first foreground
  class appears than the last; geometric in between);
* ``objects`` and ``count_distribution`` (objects per image, uniform or
  Poisson), ``object_size`` and ``size_distribution`` (radius as a fraction
  of the image, uniform or log-uniform: many small, few large);
* ``occlusion``: the largest fraction of a new object that may cover
  earlier ones (1 = anything goes; objects drawn later hide earlier ones);
* ``class_similarity`` (colour) and ``texture_similarity`` (stripes): at 1
  all classes share that cue, so only the other cues tell them apart;
* ``distractors``: background-labelled shapes painted like objects (clutter);
* ``instances``: whether the dataset carries instance ids.

Presets are registered as their own datasets with their own defaults, so a
benchmark's result rows show every value that produced them:
``synthetic_shapes`` (shapes on texture), ``synthetic_street`` (layered
street scenes: sky, buildings, road, then vehicles, people and poles in depth
order), ``synthetic_cells`` (many small bright cells on a dark background)
and ``synthetic_clutter`` (one or two objects among many distractors).

A configuration is generated once and cached as memory-mapped arrays (see
``cache.py``), keyed by the hash of all its parameters.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field
from skimage import draw

from alharness.datasets.base import SegmentationDataset
from alharness.datasets.cache import CacheWriter, cached_dataset
from alharness.datasets.info import describe
from alharness.errors import ConfigError
from alharness.registry import register_dataset
from alharness.seeding import derive_rng

# Bump when generation changes, so cached datasets are regenerated.
GENERATOR_VERSION = 2
LAYOUTS = ("shapes", "street", "cells")
DISTRIBUTIONS = {"count_distribution": ("uniform", "poisson"), "size_distribution": ("uniform", "loguniform")}
STREET_STUFF = ("sky", "building", "road")
STREET_THINGS = ("vehicle", "person", "pole")

# Defaults shared by every preset, in the order the parameters are listed.
_COMMON: dict[str, Any] = dict(
    n_train=64, n_val=16, n_test=32, size=48, num_classes=4,
    objects=(1, 4), object_size=(0.2, 0.5), noise=0.06, class_similarity=0.0, seed=0,
    count_distribution="uniform", size_distribution="uniform", imbalance=1.0, occlusion=1.0,
    texture_similarity=0.0, distractors=(0, 0), instances=True,
)
# Their types and ranges, checked at benchmark load (Registry.check_types);
# the cross-parameter rules (min <= max, street's classes) are _validate's.
_Count = Annotated[int, Field(ge=0)]
_Share = Annotated[float, Field(ge=0, le=1)]
MAX_IMAGES, MAX_SIZE = 1_000_000, 4096
_TYPES: dict[str, Any] = dict(
    n_train=Annotated[int, Field(ge=1, le=MAX_IMAGES)], n_val=Annotated[int, Field(ge=0, le=MAX_IMAGES)],
    n_test=Annotated[int, Field(ge=1, le=MAX_IMAGES)], size=Annotated[int, Field(ge=8, le=MAX_SIZE)],
    num_classes=Annotated[int, Field(ge=2, le=255)], objects=tuple[_Count, _Count],
    object_size=tuple[Annotated[float, Field(gt=0, le=1)], Annotated[float, Field(gt=0, le=1)]],
    noise=Annotated[float, Field(ge=0)], class_similarity=_Share, seed=Annotated[int, Field(ge=0)],
    count_distribution=Literal[DISTRIBUTIONS["count_distribution"]],
    size_distribution=Literal[DISTRIBUTIONS["size_distribution"]],
    imbalance=Annotated[float, Field(ge=1)], occlusion=_Share, texture_similarity=_Share,
    distractors=tuple[_Count, _Count], instances=bool,
)
# A generated dataset is stored whole (images, masks, instance ids: 8 bytes
# a pixel): beyond this it is a typo, not a benchmark.
MAX_BYTES = 64 * 2**30


def _class_styles(num_classes: int, similarity: float, texture_similarity: float, rng: np.random.Generator) -> list[dict]:
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
        angle, freq = float(rng.uniform(0, np.pi)), float(rng.uniform(0.25, 0.8))
        # similarity -> 1 pulls every class towards one colour (or one stripe
        # pattern), so that only the other cue tells classes apart.
        styles.append(
            {
                "color": (1 - similarity) * color + similarity * common,
                "angle": (1 - texture_similarity) * angle + texture_similarity * np.pi / 4,
                "freq": (1 - texture_similarity) * freq + texture_similarity * 0.5,
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


def _flat(pixels) -> tuple[np.ndarray, np.ndarray]:
    rr, cc = (np.ravel(a).astype(np.intp) for a in pixels)
    return rr, cc


class _Scene:
    """One image being painted: colour canvas, class mask, instance ids."""

    def __init__(self, p: dict[str, Any], styles: list[dict], rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray]):
        self.p, self.styles, self.rng = p, styles, rng
        self.yy, self.xx = grid
        s = p["size"]
        self.img = np.zeros((s, s, 3))
        self.mask = np.zeros((s, s), np.uint8)
        self.inst = np.zeros((s, s), np.int32)
        self.next_id = 1

    def classes(self, first: int) -> np.ndarray:
        return np.arange(first, self.p["num_classes"])

    def draw_class(self, first: int) -> int:
        """A foreground class in ``first``..C-1, ``imbalance`` times more
        likely for the first than for the last."""
        rng, imb, C = self.rng, self.p["imbalance"], self.p["num_classes"]
        if imb == 1.0:
            return int(rng.integers(first, C))
        k = C - first
        w = imb ** (-np.arange(k) / max(1, k - 1))
        return int(first + rng.choice(k, p=w / w.sum()))

    def draw_count(self, lo: int, hi: int) -> int:
        if self.p["count_distribution"] == "poisson":
            return int(np.clip(self.rng.poisson((lo + hi) / 2), lo, hi))
        return int(self.rng.integers(lo, hi + 1))

    def draw_radius(self, scale: float = 1.0) -> float:
        lo, hi = self.p["object_size"]
        if self.p["size_distribution"] == "loguniform":
            f = float(np.exp(self.rng.uniform(np.log(lo), np.log(hi))))
        else:
            f = float(self.rng.uniform(lo, hi))
        return f * scale * self.p["size"] / 2

    def too_hidden(self, rr: np.ndarray, cc: np.ndarray) -> bool:
        """Would this object cover more of earlier objects than allowed?"""
        occ = self.p["occlusion"]
        return occ < 1.0 and float((self.inst[rr, cc] > 0).mean()) > occ

    def paint(self, rr: np.ndarray, cc: np.ndarray, c: int, label: int | None = None, shade: np.ndarray | None = None,
              texture: float = 0.25) -> None:
        """Paint class ``c``'s look; label the pixels ``label`` (default c).
        Objects (label > 0 and not stuff) get a new instance id."""
        st = self.styles[c]
        stripes = np.sin(st["freq"] * (np.cos(st["angle"]) * self.xx[rr, cc] + np.sin(st["angle"]) * self.yy[rr, cc]))
        color = st["color"] + self.rng.normal(0, 12, size=3)
        look = color[None, :] * (1 - texture + texture * stripes[:, None])
        self.img[rr, cc] = look if shade is None else look * shade[:, None]
        self.mask[rr, cc] = c if label is None else label

    def add_instance(self, rr: np.ndarray, cc: np.ndarray) -> None:
        self.inst[rr, cc] = self.next_id
        self.next_id += 1

    def place(self, c: int, pixels_for) -> None:
        """Draw an object of class ``c`` where ``pixels_for()`` puts it,
        retrying placements that would break the occlusion limit."""
        for _ in range(1 if self.p["occlusion"] >= 1.0 else 20):
            rr, cc = pixels_for()
            if len(rr) < 4:
                return
            if not self.too_hidden(rr, cc):
                self.paint(rr, cc, c)
                self.add_instance(rr, cc)
                return

    def distractors(self) -> None:
        """Background-labelled shapes that look like objects (clutter)."""
        lo, hi = self.p["distractors"]
        if hi == 0:
            return
        s, rng = self.p["size"], self.rng
        for _ in range(int(rng.integers(lo, hi + 1))):
            c = int(rng.integers(1, self.p["num_classes"]))
            r = self.draw_radius(0.5)
            cy, cx = rng.uniform(0, s, size=2)
            rr, cc = _flat(_shape_pixels(int(rng.integers(0, 3)), cy, cx, max(1.0, r), s, rng))
            self.paint(rr, cc, c, label=0)

    def finish(self) -> np.ndarray:
        self.img += self.rng.normal(0, self.p["noise"] * 255, size=self.img.shape)
        return np.clip(self.img, 0, 255).astype(np.uint8)


def _shapes(sc: _Scene) -> None:
    s, rng = sc.p["size"], sc.rng
    # Grey background with low-frequency blotches and a per-image tint.
    sc.img[:] = sc.styles[0]["color"] + rng.normal(0, 25, size=(s, s, 1)) + rng.uniform(-20, 20, size=3)
    sc.distractors()
    for _ in range(sc.draw_count(*sc.p["objects"])):
        c = sc.draw_class(1)

        def pixels():
            r = sc.draw_radius()
            cy, cx = rng.uniform(r * 0.5, s - r * 0.5, size=2)
            return _flat(_shape_pixels(int(rng.integers(0, 3)), cy, cx, r, s, rng))

        sc.place(c, pixels)


def _street(sc: _Scene) -> None:
    """Sky, a skyline of buildings and a road (stuff, no instances), then
    things standing on the road, far ones first so near ones hide them;
    things grow towards the bottom (perspective)."""
    s, rng = sc.p["size"], sc.rng
    horizon = int(s * rng.uniform(0.35, 0.5))
    sky = np.array([140.0, 170.0, 215.0]) * (0.8 + 0.2 * np.linspace(0, 1, horizon))[:, None, None]
    sc.img[:horizon] = sky + rng.normal(0, 6, size=(horizon, s, 1))
    x = 0
    while x < s:
        w = int(rng.integers(max(2, s // 8), max(3, s // 3)))
        top = int(rng.integers(max(1, s // 20), max(2, horizon - 1)))
        rr, cc = _flat(draw.rectangle((top, x), end=(horizon - 1, min(s - 1, x + w - 1)), shape=(s, s)))
        sc.paint(rr, cc, 1)
        x += w + int(rng.integers(0, max(1, s // 10)))
    rr, cc = _flat(draw.rectangle((horizon, 0), end=(s - 1, s - 1), shape=(s, s)))
    sc.paint(rr, cc, 2, texture=0.1)
    things = []
    for _ in range(sc.draw_count(*sc.p["objects"])):
        base = float(rng.uniform(horizon + 2, s))
        things.append((base, sc.draw_class(len(STREET_STUFF))))
    for base, c in sorted(things, key=lambda t: t[0]):
        depth = 0.3 + 0.7 * (base - horizon) / max(1, s - horizon)
        kind = c - len(STREET_STUFF)

        def pixels(base=base, depth=depth, kind=kind):
            r = sc.draw_radius(depth)
            cx = float(rng.uniform(0, s))
            if kind == 0:  # vehicle: a wide box on the road
                return _flat(draw.rectangle((base - 1.2 * r, cx - 1.6 * r), end=(base, cx + 1.6 * r), shape=(s, s)))
            if kind == 1:  # person: a tall thin ellipse
                return _flat(draw.ellipse(base - 1.6 * r, cx, 1.6 * r, 0.45 * r, shape=(s, s)))
            if kind == 2:  # pole: a thin tall bar
                return _flat(draw.rectangle((base - 4 * r, cx), end=(base, cx + max(1.0, 0.2 * r)), shape=(s, s)))
            return _flat(_shape_pixels(int(rng.integers(0, 3)), base - r, cx, r, s, rng))

        sc.place(c, pixels)


def _cells(sc: _Scene) -> None:
    """Bright, centre-weighted ellipses on a dark, uneven background, like
    a fluorescence micrograph; the occlusion limit keeps cells mostly apart."""
    s, rng = sc.p["size"], sc.rng
    sc.img[:] = 25.0 + rng.normal(0, 6, size=(s, s, 1)) + rng.uniform(-5, 5, size=3)
    sc.distractors()
    for _ in range(sc.draw_count(*sc.p["objects"])):
        c = sc.draw_class(1)
        r = sc.draw_radius()
        ry, rx, rot = r * rng.uniform(0.75, 1.0), r * rng.uniform(0.75, 1.0), float(rng.uniform(0, np.pi))

        def pixels(ry=ry, rx=rx, rot=rot):
            cy, cx = rng.uniform(ry, s - ry), rng.uniform(rx, s - rx)
            rr, cc = _flat(draw.ellipse(cy, cx, ry, rx, shape=(s, s), rotation=rot))
            return rr, cc

        before = sc.next_id
        sc.place(c, pixels)
        if sc.next_id > before:  # shade the cell just drawn: brighter in the middle
            rr, cc = np.nonzero(sc.inst == before)
            cy, cx = rr.mean(), cc.mean()
            d2 = ((rr - cy) ** 2 + (cc - cx) ** 2) / max(1.0, max(ry, rx) ** 2)
            sc.img[rr, cc] *= (0.55 + 0.45 * np.clip(1 - d2, 0, 1))[:, None]


_LAYOUT_FN = {"shapes": _shapes, "street": _street, "cells": _cells}


def class_names(layout: str, num_classes: int) -> tuple[str, ...]:
    if layout == "street":
        named = STREET_STUFF + STREET_THINGS
        return tuple(named[c] if c < len(named) else f"thing_{c}" for c in range(num_classes))
    prefix = "cell_type" if layout == "cells" else "class"
    return ("background",) + tuple(f"{prefix}_{c}" for c in range(1, num_classes))


def generate(layout: str, p: dict[str, Any], images: np.ndarray, masks: np.ndarray, instances: np.ndarray | None) -> None:
    """Fill ``images``/``masks``/``instances`` (preallocated, N = n_train +
    n_val + n_test) from one generator seeded by ``p["seed"]``."""
    rng = derive_rng(p["seed"], "synthetic_shapes")
    styles = _class_styles(p["num_classes"], p["class_similarity"], p["texture_similarity"], rng)
    if layout == "street":  # asphalt is grey whatever the palette; things keep their class looks
        styles[2] = {**styles[2], "color": np.array([100.0, 100.0, 105.0])}
    s = p["size"]
    grid = tuple(np.mgrid[0:s, 0:s].astype(np.float32))
    for i in range(len(images)):
        sc = _Scene(p, styles, rng, grid)
        _LAYOUT_FN[layout](sc)
        images[i] = sc.finish()
        masks[i] = sc.mask
        if instances is not None:
            # An instance fully hidden by later objects leaves no pixels; renumber 1..K.
            ids = np.unique(sc.inst)
            ids = ids[ids > 0]
            lut = np.zeros(sc.inst.max() + 1, np.int32)
            lut[ids] = np.arange(1, len(ids) + 1)
            instances[i] = lut[sc.inst]


def _pair(v: Any, name: str, kind: type, where: str, lo: float, hi: float | None) -> tuple:
    try:
        pair = tuple(kind(x) for x in v)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or pair[0] < lo or pair[1] < pair[0] or (hi is not None and pair[1] > hi):
        bound = f"{lo} <= min <= max" + (f" <= {hi}" if hi is not None else "")
        raise ConfigError(f"{where}: {name} must be [min, max] with {bound}, got {v!r}")
    return pair


def _validate(name: str, layout: str, p: dict[str, Any]) -> dict[str, Any]:
    where = name
    unknown = sorted(set(p) - set(_COMMON))
    if unknown:
        raise ConfigError(f"{where}: no parameter {', '.join(map(repr, unknown))}; valid parameters: {', '.join(sorted(_COMMON))}")
    q = dict(p)
    min_classes = len(STREET_STUFF) + 1 if layout == "street" else 2
    if not isinstance(q["num_classes"], int) or not min_classes <= q["num_classes"] <= 255:
        what = "sky, building, road + 1 thing" if layout == "street" else "background + 1"
        raise ConfigError(f"{where}: num_classes must be >= {min_classes} ({what}) and <= 255, got {q['num_classes']}")
    if not isinstance(q["size"], int) or q["size"] < 8:
        raise ConfigError(f"{where}: size must be >= 8, got {q['size']}")
    counts = [q[k] for k in ("n_train", "n_val", "n_test")]
    if any(isinstance(v, bool) or not isinstance(v, int) for v in counts) or min(q["n_train"], q["n_test"]) < 1 or q["n_val"] < 0:
        raise ConfigError(f"{where}: n_train and n_test must be integers >= 1, n_val >= 0, got {counts}")
    if sum(counts) * q["size"] ** 2 * 8 > MAX_BYTES:
        raise ConfigError(f"{where}: {sum(counts)} images of {q['size']}x{q['size']} would take "
                          f"{sum(counts) * q['size'] ** 2 * 8 / 2**30:.0f} GiB; at most {MAX_BYTES // 2**30} GiB")
    q["objects"] = _pair(q["objects"], "objects", int, where, 0, None)
    q["distractors"] = _pair(q["distractors"], "distractors", int, where, 0, None)
    q["object_size"] = _pair(q["object_size"], "object_size", float, where, 1e-3, 1.0)
    for key, valid in DISTRIBUTIONS.items():
        if q[key] not in valid:
            raise ConfigError(f"{where}: {key} must be one of {', '.join(valid)}, got {q[key]!r}")
    for key in ("class_similarity", "texture_similarity", "occlusion"):
        if not isinstance(q[key], (int, float)) or not 0.0 <= q[key] <= 1.0:
            raise ConfigError(f"{where}: {key} must be in [0, 1], got {q[key]!r}")
    if not isinstance(q["imbalance"], (int, float)) or q["imbalance"] < 1.0:
        raise ConfigError(f"{where}: imbalance must be >= 1 (ratio of the most to the least frequent object class), got {q['imbalance']!r}")
    if not isinstance(q["noise"], (int, float)) or q["noise"] < 0:
        raise ConfigError(f"{where}: noise must be >= 0, got {q['noise']!r}")
    if not isinstance(q["instances"], bool):
        raise ConfigError(f"{where}: instances must be true or false, got {q['instances']!r}")
    q["imbalance"], q["occlusion"] = float(q["imbalance"]), float(q["occlusion"])
    return q


def _synthetic(name: str, layout: str, params: dict[str, Any]) -> SegmentationDataset:
    p = _validate(name, layout, params)
    n = p["n_train"] + p["n_val"] + p["n_test"]
    config = {"generator": layout, "version": GENERATOR_VERSION, **{k: list(v) if isinstance(v, tuple) else v for k, v in p.items()}}

    def build(w: CacheWriter) -> None:
        s = p["size"]
        images, masks = w.empty("images", (n, s, s, 3), np.uint8), w.empty("masks", (n, s, s), np.uint8)
        instances = w.empty("instances", (n, s, s), np.int32) if p["instances"] else None
        generate(layout, p, images, masks, instances)
        a, b = p["n_train"], p["n_train"] + p["n_val"]
        w.dataset(name, class_names(layout, p["num_classes"]),
                  {"train": np.arange(0, a), "val": np.arange(a, b), "test": np.arange(b, n)},
                  metadata={"generator": name, **config})

    return cached_dataset("synthetic", config, build)


def _preset(name: str, layout: str, doc: str, **overrides: Any):
    """Register a synthetic dataset whose keyword defaults are the preset's."""
    defaults = {**_COMMON, **overrides}

    def factory(**params: Any) -> SegmentationDataset:
        return _synthetic(name, layout, {**defaults, **params})

    factory.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v, annotation=_TYPES[k]) for k, v in defaults.items()]
    )
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    n = defaults["n_train"] + defaults["n_val"] + defaults["n_test"]
    register_dataset(name, description=describe(
        size=f"{n} × {defaults['size']}²", classes=defaults["num_classes"], instances=defaults["instances"],
        true_clicks=False, text=doc.split(".")[0]))(factory)
    return factory


synthetic_shapes = _preset(
    "synthetic_shapes", "shapes",
    "Textured ellipses, rectangles and triangles on a textured background (deterministic by seed).",
)
synthetic_street = _preset(
    "synthetic_street", "street",
    "Street-like layered scenes: sky, buildings, road, then vehicles, people and poles in depth order.",
    size=64, num_classes=6, objects=(3, 8), object_size=(0.08, 0.25), imbalance=4.0,
)
synthetic_cells = _preset(
    "synthetic_cells", "cells",
    "Cell-like scenes: many small bright cells on a dark background, few overlaps.",
    size=64, num_classes=3, objects=(6, 20), count_distribution="poisson", object_size=(0.06, 0.12),
    occlusion=0.1, noise=0.04,
)
synthetic_clutter = _preset(
    "synthetic_clutter", "shapes",
    "Few objects on clutter: one or two objects among many look-alike background shapes.",
    objects=(1, 2), object_size=(0.25, 0.45), distractors=(10, 20), class_similarity=0.3,
)
