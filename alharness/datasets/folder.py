"""A user's own images and PNG masks in a plain folder.

Expected layout::

    ROOT/images/<stem>.{png,jpg,jpeg,tif,tiff,bmp}
    ROOT/masks/<stem>.png          class ids 0..C-1 (grey or palette PNG);
                                   ``ignore_value`` marks void pixels
    ROOT/instances/<stem>.png      optional: instance ids (uint16 PNG, 0 = none)
    ROOT/classes.txt               one class name per line (or the ``classes`` parameter)
    ROOT/splits/{train,val,test}.txt   optional: stems, one per line

Without ``splits/``, images are split at random (seeded) by ``val_fraction``
and ``test_fraction``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from alharness.datasets.base import IGNORE_INDEX, SPLITS, SegmentationDataset
from alharness.datasets.imaging import ResizeMode, Size, check_resize_mode, parse_size
from alharness.datasets.info import describe
from alharness.datasets.layout import Record, load_layout
from alharness.datasets.splits import Fraction, Seed, check_fraction, random_splits
from alharness.errors import ConfigError
from alharness.registry import register_dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_VERSION = 1
_WHERE = "dataset 'folder'"


def _class_names(root: Path, classes: list[str] | None) -> tuple[str, ...]:
    if classes is not None:
        if not (isinstance(classes, (list, tuple)) and len(classes) >= 2 and all(isinstance(c, str) and c for c in classes)):
            raise ConfigError(f"{_WHERE}: classes must be a list of at least 2 names, got {classes!r}")
        return tuple(classes)
    path = root / "classes.txt"
    if not path.is_file():
        raise ConfigError(f"{_WHERE}: give classes = [...] or write {path} (one class name per line)")
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if len(names) < 2:
        raise ConfigError(f"{_WHERE}: {path} names {len(names)} class(es); at least 2 are needed")
    return names


def _images(root: Path) -> dict[str, Path]:
    d = root / "images"
    if not d.is_dir():
        raise ConfigError(f"{_WHERE}: missing directory {d} (expected images/ and masks/ under root)")
    found = {p.stem: p for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not found:
        raise ConfigError(f"{_WHERE}: no images ({', '.join(IMAGE_SUFFIXES)}) in {d}")
    return found


def _declared_splits(root: Path, stems: list[str]) -> dict[str, np.ndarray] | None:
    d = root / "splits"
    if not d.is_dir():
        return None
    index = {s: i for i, s in enumerate(stems)}
    out = {}
    for s in SPLITS:
        f = d / f"{s}.txt"
        listed = [line.strip() for line in f.read_text().splitlines() if line.strip()] if f.is_file() else []
        if s != "val" and not listed:
            raise ConfigError(f"{_WHERE}: {f} is missing or empty (splits/ must list train and test stems)")
        unknown = [x for x in listed if x not in index]
        if unknown:
            raise ConfigError(f"{_WHERE}: {f} lists {unknown[:3]} with no image in {root / 'images'}")
        out[s] = np.array([index[x] for x in listed], np.int64)
    return out


@register_dataset("folder", description=describe(
    size="user data (root)", classes="user", instances="if instances/", true_clicks=False,
    text="Your images/ and masks/ PNGs with a class list"))
def folder(
    root: str,
    classes: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=2)] | None = None,
    size: Size = 256,
    resize: ResizeMode = "crop",
    ignore_value: Annotated[int, Field(ge=0, le=65535)] = IGNORE_INDEX,
    val_fraction: Fraction = 0.1,
    test_fraction: Fraction = 0.2,
    seed: Seed = 0,
) -> SegmentationDataset:
    """Images and PNG masks from ``root`` (images/, masks/, optional instances/, classes.txt, splits/)."""
    out_hw = parse_size(size, _WHERE)
    check_resize_mode(resize, _WHERE)
    val_fraction = check_fraction(val_fraction, "val_fraction", _WHERE)
    test_fraction = check_fraction(test_fraction, "test_fraction", _WHERE)
    if val_fraction + test_fraction >= 1:
        raise ConfigError(f"{_WHERE}: val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction:g}")
    if isinstance(ignore_value, bool) or not isinstance(ignore_value, int) or not 0 <= ignore_value <= 65535:
        raise ConfigError(f"{_WHERE}: ignore_value must be an integer pixel value in 0..65535, got {ignore_value!r}")
    if not root:
        raise ConfigError(f"{_WHERE}: root must be the directory that holds images/ and masks/")
    base = Path(root).expanduser().resolve()
    names = _class_names(base, classes)
    images = _images(base)
    stems = list(images)
    inst_dir = base / "instances"
    records = [
        Record(image=images[s], labels=base / "masks" / f"{s}.png",
               instances=(inst_dir / f"{s}.png") if (inst_dir / f"{s}.png").is_file() else None)
        for s in stems
    ]
    splits = _declared_splits(base, stems) or random_splits(len(stems), val_fraction, test_fraction, seed, "folder")

    def to_classes(raw: np.ndarray) -> np.ndarray:
        void = raw == ignore_value
        bad = ~void & (raw >= len(names))
        if bad.any():
            raise ConfigError(f"{_WHERE}: a mask holds value {int(raw[bad].max())} but only {len(names)} classes are named "
                              f"({', '.join(names)}); void pixels must be {ignore_value}")
        return np.where(void, IGNORE_INDEX, raw).astype(np.uint8)

    config = {"loader": "folder", "version": _VERSION, "root": str(base), "classes": list(names), "stems": stems,
              "ignore_value": ignore_value, "splits": {k: v.tolist() for k, v in splits.items()}}
    return load_layout(
        "folder", config, records, name="folder", class_names=names, splits=splits, size=out_hw, resize=resize,
        map_labels=to_classes, map_instances=lambda raw: raw.astype(np.int32),
        metadata={"root": str(base)}, per_image={"stems": stems},
    )
