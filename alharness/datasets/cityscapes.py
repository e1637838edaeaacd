"""Cityscapes (fine annotations) from a user's copy on disk.

Expected layout (the official ``leftImg8bit_trainvaltest`` and
``gtFine_trainvaltest`` archives unpacked into ``root``)::

    ROOT/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
                                  /..._gtFine_instanceIds.png   (instances=true)
                                  /..._gtFine_polygons.json     (polygons=true)

Files are listed by ``torchvision.datasets.Cityscapes`` and its class table
maps the 34 label ids to the 19 train ids (everything else is ignore = 255).
Instance ids follow the Cityscapes rule: a value ≥ 1000 is
``label_id * 1000 + k`` (one object); smaller values are stuff or crowd
regions and get no instance. The polygons are what the annotators clicked,
so their vertex counts are the true click counts that cost models need.
The harness pool is Cityscapes ``train``; its test split is ``val`` (test
labels are not public) and its validation split is carved from train.

Resolution: ``size = "native"`` (the default) keeps the images at their
1024×2048; ``size = [512, 1024]`` (or any [height, width]) resamples them
(labels by nearest neighbour, polygons by the same map). Images stream into
the dataset cache one at a time, so building it holds one image in memory
(see ``alharness.datasets.layout``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from alharness.datasets.base import IGNORE_INDEX, SegmentationDataset
from alharness.datasets.imaging import Fit, ResizeMode, Size, check_resize_mode, parse_size
from alharness.datasets.info import describe
from alharness.datasets.layout import Record, load_layout
from alharness.datasets.polygons import PolygonCollector
from alharness.datasets.splits import Fraction, Limit, Seed, carve, check_fraction, check_limit, limit
from alharness.errors import ConfigError
from alharness.registry import register_dataset

_VERSION = 1
_WHERE = "dataset 'cityscapes'"


@functools.lru_cache(maxsize=1)
def class_table() -> tuple[tuple[str, ...], np.ndarray, dict[str, int]]:
    """(the 19 train-id class names, label id → train id lookup, label name →
    train id), from torchvision's table; built on first use, because
    importing torchvision (and torch) costs seconds that listing datasets
    should not pay."""
    from torchvision.datasets import Cityscapes

    lut = np.full(256, IGNORE_INDEX, np.uint8)
    by_name: dict[str, int] = {}
    names: dict[int, str] = {}
    for c in Cityscapes.classes:
        train_id = c.train_id if 0 <= c.train_id < IGNORE_INDEX else IGNORE_INDEX
        if c.id >= 0:
            lut[c.id] = train_id
        by_name[c.name] = train_id
        if train_id != IGNORE_INDEX:
            names[train_id] = c.name
    return tuple(names[i] for i in range(len(names))), lut, by_name


def _list_split(root: Path, split: str, instances: bool, polygons: bool) -> list[Record]:
    from torchvision.datasets import Cityscapes

    for sub in (root / "leftImg8bit" / split, root / "gtFine" / split):
        if not sub.is_dir():
            raise ConfigError(f"{_WHERE}: missing directory {sub} (root must hold leftImg8bit/ and gtFine/)")
    types = ["semantic"] + (["instance"] if instances else []) + (["polygon"] if polygons else [])
    tv = Cityscapes(str(root), split=split, mode="fine", target_type=types)
    records = []
    for img, targets in sorted(zip(tv.images, tv.targets)):  # listdir order is arbitrary
        t = dict(zip(types, map(Path, targets)))
        records.append(Record(image=Path(img), labels=t["semantic"], instances=t.get("instance"), polygons=t.get("polygon")))
    if not records:
        raise ConfigError(f"{_WHERE}: no *_leftImg8bit.png under {root / 'leftImg8bit' / split}")
    return records


def _labels(raw: np.ndarray) -> np.ndarray:
    return class_table()[1][np.clip(raw, 0, 255).astype(np.uint8)]


def _instances(raw: np.ndarray) -> np.ndarray:
    raw = raw.astype(np.int32)
    return np.where(raw >= 1000, raw, 0)


def _train_id_of(label: str) -> int:
    by_name = class_table()[2]
    if label in by_name:
        return by_name[label]
    if label.endswith("group") and label[: -len("group")] in by_name:  # "cargroup": a crowd of cars
        return by_name[label[: -len("group")]]
    return IGNORE_INDEX


def _read_polygons(image: int, path: Path, fit: Fit, out: PolygonCollector) -> None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{_WHERE}: cannot read polygons {path}: {exc}") from None
    for obj in doc.get("objects", []):
        if obj.get("deleted"):
            continue
        poly = np.asarray(obj.get("polygon", []), np.float32).reshape(-1, 2)
        out.add(image, obj.get("label", "?"), _train_id_of(obj.get("label", "")), fit.points(poly))


@register_dataset("cityscapes", description=describe(
    size="user data (root)", classes=19, instances=True, true_clicks="yes",
    text="Cityscapes fine, 19 train ids, instance ids, polygon clicks; test = val"))
def cityscapes(
    root: str,
    size: Size = "native",
    resize: ResizeMode = "resize",
    instances: bool = True,
    polygons: bool = True,
    val_fraction: Fraction = 0.1,
    max_train: Limit = None,
    max_test: Limit = None,
    seed: Seed = 0,
) -> SegmentationDataset:
    """Cityscapes fine: 19 train-id classes, instance ids and annotation polygons from ``root``."""
    out_hw = parse_size(size, _WHERE)
    check_resize_mode(resize, _WHERE)
    val_fraction = check_fraction(val_fraction, "val_fraction", _WHERE)
    max_train, max_test = check_limit(max_train, "max_train", _WHERE), check_limit(max_test, "max_test", _WHERE)
    for name, v in (("instances", instances), ("polygons", polygons)):
        if not isinstance(v, bool):
            raise ConfigError(f"{_WHERE}: {name} must be true or false, got {v!r}")
    if not root:
        raise ConfigError(f"{_WHERE}: root must be the directory that holds leftImg8bit/ and gtFine/")
    base = Path(root).expanduser().resolve()
    train = _list_split(base, "train", instances, polygons)
    test = _list_split(base, "val", instances, polygons)
    train = [train[k] for k in limit(np.arange(len(train)), max_train, seed, "cityscapes/train")]
    test = [test[k] for k in limit(np.arange(len(test)), max_test, seed, "cityscapes/test")]
    pool, val = carve(np.arange(len(train)), val_fraction, seed, "cityscapes/val")
    records = train + test
    config = {"loader": "cityscapes", "version": _VERSION, "root": str(base),
              "images": [str(r.image) for r in records], "split_train": pool.tolist(), "split_val": val.tolist()}
    return load_layout(
        "cityscapes", config, records, name="cityscapes", class_names=class_table()[0],
        splits={"train": pool, "val": val, "test": np.arange(len(train), len(records))},
        size=out_hw, resize=resize, map_labels=_labels,
        map_instances=_instances if instances else None,
        read_polygons=_read_polygons if polygons else None,
        metadata={"root": str(base)}, per_image={"images": [r.image.name.replace("_leftImg8bit.png", "") for r in records]},
    )
