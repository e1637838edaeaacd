"""Real data that ships in installed wheels: loads offline, tiles correctly,
runs a campaign; and `alharness list datasets`."""

from __future__ import annotations

import importlib.metadata
import socket

import numpy as np
import pytest

from alharness.datasets import bundled, cache
from alharness.errors import ConfigError
from alharness.registry import DATASETS


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a bundled dataset tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    cache.clear_memo()
    yield
    cache.clear_memo()


def test_dsb2018_nuclei_loads_offline_and_tiles_the_whole_image(offline):
    import tifffile

    ds = DATASETS.create("dsb2018_nuclei")
    assert ds.class_names == ("background", "nucleus")
    assert ds.images.shape == (64, 64, 64, 3) and ds.instances is not None
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [40, 8, 16]
    assert sorted(np.concatenate([ds.splits[s] for s in ("train", "val", "test")])) == list(range(64))
    path, _ = bundled.packaged_file(*bundled.STARDIST, "stardist/data/images/mask2d.tif", "t")
    source = tifffile.imread(path)
    assert len(np.unique(source)) - 1 == 125 == ds.metadata["instances_in_source"]
    origins = ds.metadata["tile_origin"]
    assert sorted(map(tuple, origins)) == [(y, x) for y in range(0, 512, 64) for x in range(0, 512, 64)]
    for k in (0, 41, 63):
        y, x = origins[k]
        np.testing.assert_array_equal(ds.masks[k], (source[y:y + 64, x:x + 64] > 0).astype(np.uint8))
    assert [list(ds.splits[s][[0, -1]]) for s in ("train", "val", "test")] == [[0, 39], [40, 47], [48, 63]]
    for inst, mask in zip(ds.instances, ds.masks):
        assert ((inst > 0) == (mask == 1)).all()
        ids = np.unique(inst[inst > 0])
        assert list(ids) == list(range(1, len(ids) + 1))
    assert 0.1 < ds.masks.mean() < 0.4  # nuclei cover about a fifth of the image


def test_scratch_assay_loads_offline_split_by_frame(offline):
    ds = DATASETS.create("scratch_assay", tile=96)
    assert ds.class_names == ("background", "cytoplasm", "nucleus")
    per_frame = 2 * 6  # 210 // 96 rows, 576 // 96 columns
    assert ds.images.shape == (10 * per_frame, 96, 96, 3)
    frame = np.array(ds.metadata["frame_of_tile"])
    assert set(frame[ds.splits["val"]]) == {7} and set(frame[ds.splits["test"]]) == {8, 9}
    assert set(frame[ds.splits["train"]]) == set(range(7))
    counts = np.bincount(ds.masks.ravel(), minlength=3)
    assert counts.min() > 0
    for inst, mask in zip(ds.instances[:24], ds.masks[:24]):
        for i in np.unique(inst[inst > 0]):  # an instance is one class: a nucleus or a cytoplasm
            assert len(np.unique(mask[inst == i])) == 1
    nuclei = DATASETS.create("scratch_assay", tile=96, targets="nuclei", channels="nuclear")
    assert nuclei.class_names == ("background", "nucleus") and nuclei.masks.max() == 1
    assert (nuclei.images[..., 0] == nuclei.images[..., 2]).all()


def test_missing_wheel_says_how_to_install(monkeypatch):
    real = importlib.metadata.distribution

    def distribution(name):
        if name == "stardist":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(ConfigError, match="pip install --no-deps stardist==0.9.2"):
        DATASETS.create("dsb2018_nuclei")


def test_bundled_parameters_are_checked():
    with pytest.raises(ConfigError, match="tile must be an integer in 16..512"):
        DATASETS.create("dsb2018_nuclei", tile=8)
    with pytest.raises(ConfigError, match="val_frames and test_frames overlap"):
        DATASETS.create("scratch_assay", val_frames=[8], test_frames=[8, 9])
    with pytest.raises(ConfigError, match="targets must be one of nuclei\\+cytoplasm, nuclei"):
        DATASETS.create("scratch_assay", targets="cells")


def test_a_campaign_runs_on_the_nuclei_tiles():
    from alharness.campaign.loop import run_campaign
    from conftest import tiny_spec

    spec = tiny_spec(dataset="dsb2018_nuclei", dataset_params={"tile": 32}, budget=40)
    result = run_campaign(spec)
    assert result.rows[-1]["miou"] > 0
    assert result.rows[0]["p_dataset_tile"] == 32


def test_list_datasets_shows_size_classes_instances_and_clicks(capsys):
    from alharness.cli import main

    assert main(["list", "datasets"]) == 0
    out = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    for name in ("synthetic_shapes", "synthetic_street", "synthetic_cells", "synthetic_clutter",
                 "voc2012", "cityscapes", "folder", "dsb2018_nuclei", "scratch_assay"):
        assert name in out
    assert "19 classes" in out["cityscapes"] and "true clicks: yes" in out["cityscapes"]
    assert "64 × 64² tiles" in out["dsb2018_nuclei"] and "instances: yes" in out["dsb2018_nuclei"]
    assert "112 × 48²" in out["synthetic_shapes"] and "true clicks: no" in out["synthetic_shapes"]
