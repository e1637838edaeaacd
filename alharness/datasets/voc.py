"""Pascal VOC 2012 segmentation from a user's copy on disk.

Expected layout (as the official tarball and ``torchvision`` lay it out)::

    ROOT/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
                          /SegmentationClass/<id>.png     palette indices, 255 = void
                          /SegmentationObject/<id>.png    optional: instance ids, 255 = void
                          /ImageSets/Segmentation/train.txt, val.txt

``root`` may also point at ``VOCdevkit`` or ``VOC2012`` itself. VOC's test
labels are not public, so the harness pool is VOC ``train``, its test split
is VOC ``val`` and its validation split is carved from train.

The augmented training set (``augmented=true``, 10 582 images with the SBD
annotations of Hariharan et al.) is read from either

* ``VOC2012/SegmentationClassAug/<id>.png`` with
  ``ImageSets/Segmentation/train_aug.txt`` (or ``trainaug.txt``), the layout
  DeepLab popularised; or
* the SBD release (``sbd_root`` = ``benchmark_RELEASE/dataset`` with ``img/``,
  ``cls/*.mat``, ``train.txt``, ``val.txt``), combined as usual: VOC train ∪
  SBD train ∪ SBD val, minus VOC val. VOC's own PNG is used where an image
  has one (it marks void borders), SBD's ``.mat`` otherwise.

Resolution: VOC images differ in size (at most 500 pixels a side), so they
are fitted to one ``size``: ``resize = "crop"`` (the default) scales each to
cover it and centre-crops; ``resize = "pad"`` keeps each at its own
resolution (scaled down only where a side exceeds ``size``) and pads the
bottom and right with black pixels labelled void (255), which no metric
scores and no cost model charges; ``size = 512, resize = "pad"`` is VOC at
its native resolution. Images stream into the dataset cache one at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alharness.datasets.base import IGNORE_INDEX, SegmentationDataset
from alharness.datasets.imaging import ResizeMode, Size, check_resize_mode, parse_size
from alharness.datasets.info import describe
from alharness.datasets.layout import Record, load_layout
from alharness.datasets.splits import Fraction, Limit, Seed, carve, check_fraction, check_limit, limit
from alharness.errors import ConfigError
from alharness.registry import register_dataset

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
_VERSION = 1
_WHERE = "dataset 'voc2012'"


def _voc_dir(root: str) -> Path:
    """The VOC2012 directory under ``root`` (which may be it or a parent)."""
    if not root:
        raise ConfigError(f"{_WHERE}: root must be the directory that holds VOCdevkit/VOC2012")
    base = Path(root).expanduser().resolve()
    for cand in (base / "VOCdevkit" / "VOC2012", base / "VOC2012", base):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise ConfigError(f"{_WHERE}: no VOC layout under {base}: expected {base / 'VOCdevkit' / 'VOC2012' / 'JPEGImages'}")


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise ConfigError(f"{_WHERE}: missing split file {path}")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _voc_split(voc: Path, image_set: str) -> list[str]:
    """Image ids of a standard VOC split, listed by torchvision's reader."""
    from torchvision.datasets import VOCSegmentation

    split_file = voc / "ImageSets" / "Segmentation" / f"{image_set}.txt"
    ids = _read_ids(split_file)  # our own check first: it names the missing file
    if voc.parent.name == "VOCdevkit" and voc.name == "VOC2012":
        tv = VOCSegmentation(voc.parent.parent, year="2012", image_set=image_set, download=False)
        ids = [Path(p).stem for p in tv.images]
    return ids


def _read_sbd_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    try:
        return np.asarray(loadmat(path)["GTcls"][0]["Segmentation"][0])
    except (OSError, KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{_WHERE}: cannot read SBD labels from {path}: {exc}") from None


def _augmented(voc: Path, val_ids: set[str], sbd_root: str | None) -> tuple[list[str], dict[str, Path]]:
    """Training ids and label file of each image of the augmented set."""
    seg = voc / "ImageSets" / "Segmentation"
    aug_dir = voc / "SegmentationClassAug"
    for name in ("train_aug.txt", "trainaug.txt"):
        if aug_dir.is_dir() and (seg / name).is_file():
            ids = [i for i in _read_ids(seg / name) if i not in val_ids]
            return ids, {i: aug_dir / f"{i}.png" for i in ids}
    if sbd_root is None:
        raise ConfigError(
            f"{_WHERE}: augmented=true needs {aug_dir} with {seg / 'train_aug.txt'}, "
            f"or sbd_root pointing at SBD's benchmark_RELEASE/dataset (img/, cls/, train.txt, val.txt)"
        )
    from torchvision.datasets import SBDataset

    sbd = Path(sbd_root).expanduser().resolve()
    labels: dict[str, Path] = {}
    for s in ("train", "val"):
        if not (sbd / f"{s}.txt").is_file() or not (sbd / "cls").is_dir():
            raise ConfigError(f"{_WHERE}: sbd_root {sbd} lacks {s}.txt or cls/ (expected benchmark_RELEASE/dataset)")
        tv = SBDataset(sbd, image_set=s, mode="segmentation", download=False)
        labels.update({Path(mat).stem: Path(mat) for mat in tv.masks})
    labels.update({i: voc / "SegmentationClass" / f"{i}.png" for i in _voc_split(voc, "train")})
    for i in labels:  # VOC's own PNG where there is one: it marks void borders
        if (voc / "SegmentationClass" / f"{i}.png").is_file():
            labels[i] = voc / "SegmentationClass" / f"{i}.png"
    return sorted(i for i in labels if i not in val_ids), labels


def _voc_labels(raw: np.ndarray) -> np.ndarray:
    out = raw.astype(np.uint8)
    out[(raw > len(VOC_CLASSES) - 1) & (raw != IGNORE_INDEX)] = IGNORE_INDEX
    return out


def _voc_instances(raw: np.ndarray) -> np.ndarray:
    return np.where(raw == IGNORE_INDEX, 0, raw).astype(np.int32)


@register_dataset("voc2012", description=describe(
    size="user data (root)", classes=len(VOC_CLASSES), instances="if SegmentationObject/", true_clicks=False,
    text="Pascal VOC 2012 (+ SBD augmented train) from a local copy; test = VOC val"))
def voc2012(
    root: str,
    size: Size = 256,
    resize: ResizeMode = "crop",
    augmented: bool = False,
    sbd_root: str | None = None,
    val_fraction: Fraction = 0.1,
    max_train: Limit = None,
    max_test: Limit = None,
    seed: Seed = 0,
) -> SegmentationDataset:
    """Pascal VOC 2012 segmentation (21 classes, void = 255) from ``root``."""
    out_hw = parse_size(size, _WHERE)
    check_resize_mode(resize, _WHERE)
    val_fraction = check_fraction(val_fraction, "val_fraction", _WHERE)
    max_train, max_test = check_limit(max_train, "max_train", _WHERE), check_limit(max_test, "max_test", _WHERE)
    if not isinstance(augmented, bool):
        raise ConfigError(f"{_WHERE}: augmented must be true or false, got {augmented!r}")
    voc = _voc_dir(root)
    test_ids = _voc_split(voc, "val")
    if augmented:
        train_ids, label_of = _augmented(voc, set(test_ids), sbd_root)
    else:
        train_ids = _voc_split(voc, "train")
        label_of = {i: voc / "SegmentationClass" / f"{i}.png" for i in train_ids}
    label_of.update({i: voc / "SegmentationClass" / f"{i}.png" for i in test_ids})

    train_ids = [train_ids[k] for k in limit(np.arange(len(train_ids)), max_train, seed, "voc/train")]
    test_ids = [test_ids[k] for k in limit(np.arange(len(test_ids)), max_test, seed, "voc/test")]
    ids = train_ids + test_ids
    objects = voc / "SegmentationObject"
    records = [
        Record(
            image=voc / "JPEGImages" / f"{i}.jpg",
            labels=label_of[i],
            decode_labels=_read_sbd_mat if label_of[i].suffix == ".mat" else None,
            instances=(objects / f"{i}.png") if (objects / f"{i}.png").is_file() else None,
        )
        for i in ids
    ]
    train, val = carve(np.arange(len(train_ids)), val_fraction, seed, "voc/val")
    config = {"loader": "voc2012", "version": _VERSION, "root": str(voc), "augmented": augmented,
              "ids": ids, "split_train": train.tolist(), "split_val": val.tolist()}
    return load_layout(
        "voc2012", config, records, name="voc2012", class_names=VOC_CLASSES,
        splits={"train": train, "val": val, "test": np.arange(len(train_ids), len(ids))},
        size=out_hw, resize=resize, map_labels=_voc_labels, map_instances=_voc_instances,
        metadata={"root": str(voc), "augmented": augmented}, per_image={"image_ids": ids},
    )
