"""Decode or generate a dataset once per configuration, then reopen it as
memory-mapped ``.npy`` files.

Why files and ``mmap`` rather than Ray's object store: every campaign builds
its dataset inside its own Ray worker. Opened with ``np.load(mmap_mode="r")``
the arrays are pages of the OS page cache, which all processes on a node
share, so a node holds a dataset once however many workers use it, and a
worker that touches only a few images reads only those pages.

Layout: ``$ALHARNESS_CACHE/<kind>-<hash>/`` (default
``~/.cache/alharness/datasets``) holds one ``.npy`` per array and
``meta.json``. The directory is written under a temporary name and renamed
into place in one step, so a reader sees a complete entry or none; a lock
file makes concurrent workers wait for one builder instead of all decoding
the same files.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from alharness.datasets.base import SPLITS, SegmentationDataset
from alharness.datasets.polygons import ARRAY_NAMES as POLYGON_ARRAYS, PolygonSet

from alharness.cache_root import CACHE_ENV, cache_root  # noqa: F401  (re-exported: the datasets' cache API)
# Bump when the on-disk layout changes, so old entries are not misread.
FORMAT_VERSION = 1

# How often this process built or reopened an entry (tests and diagnostics).
stats: collections.Counter[str] = collections.Counter()
_MEMO_SIZE = 8
_memo: "collections.OrderedDict[tuple[str, str], SegmentationDataset]" = collections.OrderedDict()


def config_key(kind: str, config: dict[str, Any]) -> str:
    blob = json.dumps({"kind": kind, "format": FORMAT_VERSION, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class RowWriter:
    """An ``.npy`` file of ``shape`` written one row (image) at a time with
    ``rows[i] = row``: each row goes to the file at its offset as it comes,
    and nothing of the file is mapped or kept here, so decoding a dataset of
    any size holds one image at a time (a writable memory map would keep
    every written page in the builder's resident memory until it closes).
    Rows never written read back as zeros."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any):
        self.shape, self.dtype = tuple(int(v) for v in shape), np.dtype(dtype)
        self._row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        self._fh = open(path, "wb")
        np.lib.format.write_array_header_1_0(
            self._fh, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape})
        self._fh.flush()
        self._start = self._fh.tell()
        self._fh.truncate(self._start + self._row_bytes * self.shape[0])

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, i: int, row: np.ndarray) -> None:
        if not 0 <= int(i) < self.shape[0]:
            raise IndexError(f"row {i} outside 0..{self.shape[0] - 1}")
        row = np.ascontiguousarray(row, self.dtype)
        if row.shape != self.shape[1:]:
            raise ValueError(f"row of shape {row.shape}, expected {self.shape[1:]}")
        os.pwrite(self._fh.fileno(), row.data, self._start + int(i) * self._row_bytes)

    def close(self) -> None:
        self._fh.close()


class CacheWriter:
    """What a builder fills: arrays (written straight into the temporary
    entry, so a large dataset is never held twice in memory) and metadata.
    ``rows`` streams images into a file one at a time (real layouts);
    ``empty`` maps the whole array (generators that fill it in place)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.meta: dict[str, Any] = {}
        self._open: list[np.memmap | RowWriter] = []

    def empty(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A writable array backed by the entry's ``name.npy``, zero-filled."""
        a = np.lib.format.open_memmap(self.directory / f"{name}.npy", mode="w+", dtype=dtype, shape=tuple(shape))
        self._open.append(a)
        return a

    def rows(self, name: str, shape: tuple[int, ...], dtype: Any) -> RowWriter:
        """The entry's ``name.npy``, written one row at a time (see ``RowWriter``)."""
        w = RowWriter(self.directory / f"{name}.npy", shape, dtype)
        self._open.append(w)
        return w

    def put(self, name: str, array: np.ndarray) -> None:
        np.save(self.directory / f"{name}.npy", np.ascontiguousarray(array))

    def dataset(self, name: str, class_names: tuple[str, ...] | list[str], splits: dict[str, Any],
                metadata: dict[str, Any] | None = None, polygons: PolygonSet | None = None,
                ignore_index: int = 255) -> None:
        """Record everything except the image/mask/instance arrays."""
        for s in SPLITS:
            self.put(f"split_{s}", np.asarray(splits[s], np.int64))
        if polygons is not None:
            for k, a in polygons.arrays().items():
                self.put(k, a)
        self.meta.update(name=name, class_names=list(class_names), ignore_index=ignore_index,
                         metadata=metadata or {}, polygon_labels=None if polygons is None else list(polygons.label_names))

    def close(self) -> None:
        for a in self._open:
            a.close() if isinstance(a, RowWriter) else a.flush()
        self._open.clear()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone still keeps readers safe
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build_entry(final: Path, kind: str, config: dict[str, Any], build: Callable[[CacheWriter], None]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    writer = CacheWriter(tmp)
    try:
        build(writer)
        writer.close()
        missing = [k for k in ("name", "class_names") if k not in writer.meta]
        if missing or not (tmp / "images.npy").exists() or not (tmp / "masks.npy").exists():
            raise RuntimeError(f"dataset builder for {kind!r} did not write images, masks and dataset()")
        (tmp / "meta.json").write_text(json.dumps({**writer.meta, "kind": kind, "config": config}, indent=1, default=str))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "meta.json").exists():  # not a lost race: a real failure
                raise
        stats["built"] += 1
    finally:
        writer.close()  # a builder that failed half-way leaves no open file behind
        shutil.rmtree(tmp, ignore_errors=True)


def _load(array_path: Path) -> np.ndarray:
    return np.load(array_path, mmap_mode="r", allow_pickle=False)


def _open_entry(final: Path) -> SegmentationDataset:
    meta = json.loads((final / "meta.json").read_text())
    arr = {p.stem: _load(p) for p in final.glob("*.npy")}
    polygons = None
    if meta.get("polygon_labels") is not None:
        polygons = PolygonSet.from_arrays({k: arr[k] for k in POLYGON_ARRAYS}, meta["polygon_labels"])
    stats["opened"] += 1
    return SegmentationDataset(
        name=meta["name"],
        images=arr["images"],
        masks=arr["masks"],
        instances=arr.get("instances"),
        class_names=tuple(meta["class_names"]),
        splits={s: arr[f"split_{s}"] for s in SPLITS},
        ignore_index=int(meta["ignore_index"]),
        metadata={**meta["metadata"], "cache_dir": str(final)},
        polygons=polygons,
    )


def cached_dataset(kind: str, config: dict[str, Any], build: Callable[[CacheWriter], None]) -> SegmentationDataset:
    """The dataset for (``kind``, ``config``): from this process's memo, else
    from the disk cache, else built once by ``build`` and cached.

    ``config`` must hold everything the arrays depend on (parameters, a
    loader version, a fingerprint of the source files), since its hash is
    the only thing that tells entries apart.
    """
    root = cache_root()
    key = config_key(kind, config)
    memo_key = (str(root), f"{kind}-{key}")
    if memo_key in _memo:
        _memo.move_to_end(memo_key)
        return _memo[memo_key]
    final = root / f"{kind}-{key}"
    if not (final / "meta.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root / f".{kind}-{key}.lock"):
            if not (final / "meta.json").exists():
                _build_entry(final, kind, config, build)
    ds = _open_entry(final)
    _memo[memo_key] = ds
    while len(_memo) > _MEMO_SIZE:
        _memo.popitem(last=False)
    return ds


def clear_memo() -> None:
    """Forget datasets opened in this process (the disk cache stays)."""
    _memo.clear()
