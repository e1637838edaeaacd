"""Synthetic presets and their controls; the dataset cache."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from skimage.measure import regionprops

from alharness.datasets import cache
from alharness.datasets.synthetic import _class_styles
from alharness.errors import ConfigError
from alharness.registry import DATASETS
from alharness.seeding import derive_rng

SMALL = {"n_train": 6, "n_val": 2, "n_test": 4, "size": 32}
PRESETS = ["synthetic_shapes", "synthetic_street", "synthetic_cells", "synthetic_clutter"]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    cache.clear_memo()
    yield tmp_path / "cache"
    cache.clear_memo()


@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_deterministic_and_well_formed(name, fresh_cache):
    a = DATASETS.create(name, **SMALL, seed=3)
    cache.clear_memo()
    b = DATASETS.create(name, **SMALL, seed=3)  # reopened from disk
    c = DATASETS.create(name, **SMALL, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.instances, b.instances)
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (12, 32, 32, 3) and a.masks.max() < a.num_classes
    assert [len(a.splits[s]) for s in ("train", "val", "test")] == [6, 2, 4]
    assert len(set(a.class_names)) == a.num_classes
    for inst, mask in zip(a.instances, a.masks):  # ids 1..K, on labelled pixels, one class each
        ids = np.unique(inst[inst > 0])
        assert list(ids) == list(range(1, len(ids) + 1))
        for i in ids:
            assert len(np.unique(mask[inst == i])) == 1
    assert a.instances.max() > 0


def test_street_scenes_are_layered(fresh_cache):
    ds = DATASETS.create("synthetic_street", **SMALL)
    assert ds.class_names[:6] == ("sky", "building", "road", "vehicle", "person", "pole")
    for m, inst in zip(ds.masks, ds.instances):
        rows_sky = np.flatnonzero((m == 0).any(axis=1))
        rows_road = np.flatnonzero((m == 2).any(axis=1))
        assert rows_sky.max() < rows_road.min()  # sky above the road
        assert (inst[m <= 2] == 0).all()  # stuff has no instances
        assert (inst[m >= 3] > 0).all()  # every thing pixel belongs to one


def test_imbalance_makes_first_class_commoner(fresh_cache):
    kw = {**SMALL, "n_train": 40, "num_classes": 4, "objects": [4, 6], "object_size": [0.1, 0.2]}
    counts = []
    for imbalance in (1.0, 20.0):
        ds = DATASETS.create("synthetic_shapes", **kw, imbalance=imbalance, occlusion=0.0)
        per_class = np.zeros(4)
        for inst, mask in zip(ds.instances, ds.masks):
            for i in np.unique(inst[inst > 0]):
                per_class[mask[inst == i][0]] += 1
        counts.append(per_class[1:] / per_class[1:].sum())
    uniform, skewed = counts
    assert skewed[0] > 0.6 and skewed[2] < 0.1
    assert uniform.min() > 0.2


def _solidities(ds) -> list[float]:
    return [r.solidity for inst in ds.instances for r in regionprops(np.asarray(inst)) if r.area >= 6]


def test_occlusion_limit_keeps_objects_whole(fresh_cache):
    # Shapes are convex, so an object nothing covers stays nearly convex
    # (rasterised triangles reach a solidity of about 0.77); covered ones get bites.
    kw = {**SMALL, "n_train": 20, "objects": [6, 8], "object_size": [0.2, 0.35]}
    free = DATASETS.create("synthetic_shapes", **kw, occlusion=1.0)
    whole = DATASETS.create("synthetic_shapes", **kw, occlusion=0.0)
    assert sum(s < 0.7 for s in _solidities(free)) >= 5
    assert min(_solidities(whole)) > 0.7


def test_similarity_controls_pull_class_cues_together():
    rng = lambda: derive_rng(0, "t")  # noqa: E731
    apart = _class_styles(5, 0.0, 0.0, rng())
    same_colour = _class_styles(5, 1.0, 0.0, rng())
    same_texture = _class_styles(5, 0.0, 1.0, rng())
    assert len({tuple(s["color"]) for s in apart[1:]}) == 4
    assert len({tuple(s["color"]) for s in same_colour[1:]}) == 1
    assert len({(s["angle"], s["freq"]) for s in same_colour[1:]}) == 4
    assert len({(s["angle"], s["freq"]) for s in same_texture[1:]}) == 1


def test_other_controls(fresh_cache):
    ds = DATASETS.create("synthetic_cells", **SMALL, instances=False, size_distribution="loguniform",
                         count_distribution="poisson", distractors=[2, 3])
    assert ds.instances is None and ds.masks.max() == 2
    clutter = DATASETS.create("synthetic_clutter", **SMALL)
    assert clutter.instances.max(axis=(1, 2)).max() <= 2  # one or two objects, however many distractors


@pytest.mark.parametrize("params, message", [
    ({"num_classes": 1}, "num_classes must be >= 2"),
    ({"objects": [3, 1]}, "objects must be \\[min, max\\]"),
    ({"object_size": [0.2, 1.5]}, "object_size must be \\[min, max\\]"),
    ({"count_distribution": "normal"}, "count_distribution must be one of uniform, poisson"),
    ({"occlusion": 2}, "occlusion must be in \\[0, 1\\]"),
    ({"imbalance": 0.5}, "imbalance must be >= 1"),
    ({"texture_similarity": -1}, "texture_similarity must be in"),
    ({"instances": "yes"}, "instances must be true or false"),
])
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ConfigError, match=message):
        DATASETS.create("synthetic_shapes", **params)


def test_street_needs_its_stuff_classes():
    with pytest.raises(ConfigError, match="num_classes must be >= 4 \\(sky, building, road"):
        DATASETS.create("synthetic_street", num_classes=3)


def test_cache_is_reused_and_memory_mapped(fresh_cache):
    before = dict(cache.stats)
    a = DATASETS.create("synthetic_shapes", **SMALL)
    assert cache.stats["built"] == before.get("built", 0) + 1
    cache.clear_memo()
    b = DATASETS.create("synthetic_shapes", **SMALL)
    assert cache.stats["built"] == before.get("built", 0) + 1  # read from disk, not generated again
    assert isinstance(b.images, np.memmap) and not b.images.flags.writeable
    assert Path(b.metadata["cache_dir"]).parent == fresh_cache
    assert DATASETS.create("synthetic_shapes", **SMALL) is b  # same process: same object
    np.testing.assert_array_equal(a.images, b.images)
    entries = os.listdir(fresh_cache)
    assert not [e for e in entries if e.startswith(".synthetic-") and not e.endswith(".lock")]  # no temp left


def test_concurrent_builders_build_once_and_failures_leave_nothing(fresh_cache):
    builds = []

    def build(w):
        builds.append(1)
        time.sleep(0.2)
        w.empty("images", (2, 8, 8, 3), np.uint8)
        w.empty("masks", (2, 8, 8), np.uint8)
        w.dataset("t", ("a", "b"), {"train": [0], "val": [], "test": [1]})

    out = []
    threads = [threading.Thread(target=lambda: out.append(cache.cached_dataset("t", {"k": 1}, build))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(out) == 4

    def broken(w):
        w.empty("images", (2, 8, 8, 3), np.uint8)
        raise RuntimeError("decoder crashed")

    with pytest.raises(RuntimeError, match="decoder crashed"):
        cache.cached_dataset("t", {"k": 2}, broken)
    assert sorted(e for e in os.listdir(fresh_cache) if not e.endswith(".lock")) == [f"t-{cache.config_key('t', {'k': 1})}"]


def test_splits_of_a_cached_dataset_are_mapped_not_copied(fresh_cache):
    import mmap

    from alharness.datasets.base import make_pool_view

    ds = DATASETS.create("synthetic_shapes", **SMALL)
    pool = ds.split("train")
    view = make_pool_view(pool, ds.class_names)
    test = ds.split("test")
    for part, rows in ((pool, ds.splits["train"]), (test, ds.splits["test"])):
        for a, whole in ((part.images, ds.images), (part.masks, ds.masks), (part.instances, ds.instances)):
            assert isinstance(a, np.memmap) and not a.flags.writeable
            assert not np.shares_memory(a, whole)
            np.testing.assert_array_equal(a, whole[rows])
            # its buffer holds the .npy header and these rows, nothing of other splits
            assert len(a.base) <= a.nbytes + mmap.ALLOCATIONGRANULARITY
    assert isinstance(view.images, np.memmap) and not np.shares_memory(view.images, pool.images)
    np.testing.assert_array_equal(view.images, pool.images)
    # a split that is not one contiguous run is copied
    odd = type(ds)(**{**ds.__dict__, "splits": {**ds.splits, "train": np.array([0, 2, 3])}})
    part = odd.split("train")
    assert not isinstance(part.images, np.memmap) and part.images.flags.owndata
