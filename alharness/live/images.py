"""The images of a live campaign: the unlabelled pool, masks labelled before
the campaign, and a labelled test folder.

Files are read and fitted to the campaign's resolution the way the folder
dataset reads them (``alharness.datasets.imaging``: the same decoding, the
same resize or crop, labels by nearest neighbour), so a live campaign on a
folder dataset's images sees exactly the pixels a simulated one sees. Masks
are PNGs of class ids, 255 for void pixels, named like their images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alharness.datasets.base import IGNORE_INDEX, SplitData
from alharness.datasets.folder import IMAGE_SUFFIXES
from alharness.datasets.imaging import Fit, open_image, read_labels
from alharness.errors import ConfigError


def list_images(directory: Path) -> dict[str, Path]:
    """Stem → image file of every image in ``directory``, sorted by stem."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such directory of images")
    found: dict[str, Path] = {}
    for p in sorted(directory.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if p.stem in found:
                raise ConfigError(f"{directory}: two images share the name {p.stem!r} ({found[p.stem].name}, {p.name})")
            found[p.stem] = p
    if not found:
        raise ConfigError(f"{directory}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return dict(sorted(found.items()))


def load_images(paths: list[Path], size: tuple[int, int], resize: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(N, H, W, 3) uint8 images fitted to ``size``, and each source's (height, width)."""
    out = np.empty((len(paths), *size, 3), np.uint8)
    sources = []
    for i, p in enumerate(paths):
        img = open_image(p)
        sources.append((img.height, img.width))
        out[i] = Fit.plan((img.height, img.width), size, resize).image(img)
    return out, sources


def read_mask(path: Path, source: tuple[int, int], size: tuple[int, int], resize: str, num_classes: int) -> np.ndarray:
    """A mask PNG as class ids fitted to ``size`` (255 stays void); refuses values outside the classes."""
    raw = read_labels(path)
    if raw.shape[:2] != source:
        raise ConfigError(f"{path}: the mask is {raw.shape[1]}x{raw.shape[0]} but its image is {source[1]}x{source[0]}")
    bad = (raw != IGNORE_INDEX) & (raw >= num_classes)
    if bad.any():
        raise ConfigError(f"{path}: holds class {int(raw[bad].max())}, but the campaign has {num_classes} classes "
                          f"(0..{num_classes - 1}; 255 for void pixels)")
    return Fit.plan(source, size, resize).labels(raw.astype(np.uint8))


def load_masks(directory: Path, stems: list[str], sources: list[tuple[int, int]], size: tuple[int, int],
               resize: str, num_classes: int, *, every: bool = False) -> dict[int, np.ndarray]:
    """Pool position → fitted mask for every ``<stem>.png`` in ``directory`` (``every``: all must exist)."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such directory of masks")
    known = set(stems)
    stray = sorted(p.name for p in directory.glob("*.png") if p.stem not in known)
    if stray:
        raise ConfigError(f"{directory}: mask {stray[0]} has no image of the same name")
    out = {}
    for i, stem in enumerate(stems):
        path = directory / f"{stem}.png"
        if path.is_file():
            out[i] = read_mask(path, sources[i], size, resize, num_classes)
        elif every:
            raise ConfigError(f"{directory}: no mask {stem}.png")
    return out


def load_test(directory: Path, num_classes: int, size: tuple[int, int], resize: str) -> SplitData:
    """A labelled test folder (``images/`` and ``masks/``, as the folder dataset has them) as a split."""
    images_dir = directory / "images"
    if not images_dir.is_dir():
        raise ConfigError(f"{directory}: a test folder needs images/ and masks/ (missing {images_dir})")
    found = list_images(images_dir)
    images, sources = load_images(list(found.values()), size, resize)
    masks = load_masks(directory / "masks", list(found), sources, size, resize, num_classes, every=True)
    return SplitData(dataset_ids=np.arange(len(found)), images=images,
                     masks=np.stack([masks[i] for i in range(len(found))]), instances=None,
                     num_classes=num_classes, ignore_index=IGNORE_INDEX)


def read_classes(given: str | None, *candidates: Path | None) -> tuple[str, ...]:
    """Class names: ``given`` (a file, or names separated by commas), else the
    first ``classes.txt`` among ``candidates`` (one name per line)."""
    if given is not None:
        path = Path(given)
        names = path.read_text().splitlines() if path.is_file() else given.split(",")
        where = str(path) if path.is_file() else "--classes"
    else:
        path = next((c / "classes.txt" for c in candidates if c is not None and (c / "classes.txt").is_file()), None)
        if path is None:
            raise ConfigError("no class names: give --classes (a file or a,b,c) or write classes.txt beside the images")
        names, where = path.read_text().splitlines(), str(path)
    names = [n.strip() for n in names if n.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"{where}: needs at least 2 distinct class names, got {names}")
    return tuple(names)
