"""Real layouts on disk (VOC, Cityscapes, a plain folder), built tiny here
and loaded through the registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alharness.datasets import cache
from alharness.datasets.base import IGNORE_INDEX
from alharness.errors import ConfigError
from alharness.registry import DATASETS

H, W = 30, 40


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    cache.clear_memo()
    yield
    cache.clear_memo()


def _rgb(seed: int, h: int = H, w: int = W) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _palette_png(a: np.ndarray, path: Path) -> None:
    img = Image.fromarray(a.astype(np.uint8), mode="P")
    img.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    img.save(path)


def _voc_truth(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Class and object masks of image k: two boxes with 255 borders."""
    cls, obj = np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)
    for j, (y, x, c) in enumerate([(3, 4, 1 + k % 20), (15, 22, 1 + (k + 7) % 20)]):
        for a, v in ((cls, c), (obj, j + 1)):
            a[y - 1:y + 11, x - 1:x + 13] = IGNORE_INDEX  # VOC's void border
            a[y:y + 10, x:x + 12] = v
    return cls, obj


def write_voc(root: Path, train: list[str], val: list[str], objects: bool = True) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(train + val):
        _rgb(k).save(voc / "JPEGImages" / f"{i}.jpg")
        cls, obj = _voc_truth(k)
        _palette_png(cls, voc / "SegmentationClass" / f"{i}.png")
        if objects:
            _palette_png(obj, voc / "SegmentationObject" / f"{i}.png")
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(train) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(val) + "\n")
    return voc


TRAIN = [f"2007_00000{i}" for i in range(1, 6)]
VAL = ["2008_000001", "2008_000002"]


def test_voc_loads_ids_classes_void_and_instances(tmp_path):
    voc = write_voc(tmp_path, TRAIN, VAL)
    ds = DATASETS.create("voc2012", root=str(tmp_path), size=[H, W], resize="resize", val_fraction=0.2)
    assert ds.class_names[0] == "background" and ds.class_names[15] == "person" and ds.num_classes == 21
    assert ds.images.shape == (7, H, W, 3)
    ids = ds.metadata["image_ids"]  # stored split by split: pool, carved val, then test
    assert sorted(ids[:5]) == TRAIN and ids[5:] == VAL
    assert [list(ds.splits[s]) for s in ("train", "val", "test")] == [[0, 1, 2, 3], [4], [5, 6]]
    for k, i in enumerate(ids):
        cls, obj = _voc_truth((TRAIN + VAL).index(i))
        np.testing.assert_array_equal(ds.masks[k], cls)  # palette indices, 255 kept as ignore
        np.testing.assert_array_equal(ds.instances[k], np.where(obj == IGNORE_INDEX, 0, obj))
        np.testing.assert_array_equal(ds.images[k], np.asarray(Image.open(voc / "JPEGImages" / f"{i}.jpg")))
    assert ds.polygons is None
    # root may also be the VOC2012 directory itself
    cache.clear_memo()
    same = DATASETS.create("voc2012", root=str(voc), size=[H, W], resize="resize", val_fraction=0.2)
    np.testing.assert_array_equal(same.masks, ds.masks)


def test_voc_resize_crop_and_limits(tmp_path):
    write_voc(tmp_path, TRAIN, VAL, objects=False)
    ds = DATASETS.create("voc2012", root=str(tmp_path), size=16, max_train=3, max_test=1, val_fraction=0.0)
    assert ds.images.shape == (4, 16, 16, 3) and ds.instances is None
    assert set(np.unique(ds.masks)) <= set(range(21)) | {IGNORE_INDEX}
    assert len(ds.splits["train"]) == 3 and len(ds.splits["test"]) == 1 and len(ds.splits["val"]) == 0


def test_voc_augmented_from_segmentation_class_aug(tmp_path):
    voc = write_voc(tmp_path, TRAIN, VAL)
    (voc / "SegmentationClassAug").mkdir()
    extra = ["2009_000001", "2009_000002"]
    for k, i in enumerate(extra):
        _rgb(50 + k).save(voc / "JPEGImages" / f"{i}.jpg")
        Image.fromarray(np.full((H, W), 3, np.uint8)).save(voc / "SegmentationClassAug" / f"{i}.png")
    for k, i in enumerate(TRAIN + VAL):
        Image.fromarray(_voc_truth(k)[0]).save(voc / "SegmentationClassAug" / f"{i}.png")
    (voc / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(TRAIN + extra + VAL[:1]) + "\n")
    ds = DATASETS.create("voc2012", root=str(tmp_path), size=[H, W], resize="resize", augmented=True, val_fraction=0.0)
    ids = ds.metadata["image_ids"]
    assert ids[:7] == TRAIN + extra and ids[7:] == VAL  # val images never leak into the pool
    assert (ds.masks[5] == 3).all() and ds.instances is None  # augmented images have no object masks


def test_voc_augmented_from_sbd_release(tmp_path):
    from scipy.io import savemat

    write_voc(tmp_path, TRAIN, VAL)
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    (sbd / "img").mkdir(parents=True)
    (sbd / "cls").mkdir()
    sbd_ids = ["2009_000003", VAL[0], TRAIN[0]]  # one of them is VOC val, one VOC train
    for k, i in enumerate(sbd_ids):
        seg = np.full((H, W), 5 + k, np.uint8)
        savemat(sbd / "cls" / f"{i}.mat", {"GTcls": {"Segmentation": seg, "CategoriesPresent": np.array([5 + k])}})
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    _rgb(99).save(voc / "JPEGImages" / "2009_000003.jpg")
    (sbd / "train.txt").write_text("2009_000003\n" + VAL[0] + "\n")
    (sbd / "val.txt").write_text(TRAIN[0] + "\n")
    ds = DATASETS.create("voc2012", root=str(tmp_path), size=[H, W], resize="resize", augmented=True,
                         sbd_root=str(sbd), val_fraction=0.0)
    ids = ds.metadata["image_ids"]
    assert ids == sorted(TRAIN + ["2009_000003"]) + VAL
    k = ids.index("2009_000003")
    assert (ds.masks[k] == 5).all()  # from SBD's .mat
    np.testing.assert_array_equal(ds.masks[ids.index(TRAIN[0])], _voc_truth(0)[0])  # VOC's own PNG wins


def test_voc_errors_name_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="VOCdevkit/VOC2012/JPEGImages"):
        DATASETS.create("voc2012", root=str(tmp_path))
    voc = write_voc(tmp_path, TRAIN, VAL)
    (voc / "SegmentationClass" / f"{TRAIN[2]}.png").unlink()
    with pytest.raises(ConfigError, match=f"missing file .*SegmentationClass/{TRAIN[2]}.png"):
        DATASETS.create("voc2012", root=str(tmp_path))
    with pytest.raises(ConfigError, match="train_aug.txt"):
        DATASETS.create("voc2012", root=str(tmp_path), augmented=True)
    with pytest.raises(ConfigError, match="resize must be one of resize, crop"):
        DATASETS.create("voc2012", root=str(tmp_path), resize="stretch")
    (voc / "ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(ConfigError, match="missing split file .*val.txt"):
        DATASETS.create("voc2012", root=str(tmp_path))


# -- Cityscapes -------------------------------------------------------------

CITY_H, CITY_W = 32, 64


def _city_image(root: Path, split: str, city: str, base: str, cars: int) -> dict:
    """One Cityscapes image: road at the bottom, ``cars`` cars, a person, a
    license plate (ignored) and unlabeled sky; returns the expected arrays."""
    img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    _rgb(len(base) + cars, CITY_H, CITY_W).save(img_dir / f"{base}_leftImg8bit.png")
    label = np.zeros((CITY_H, CITY_W), np.uint8)  # 0 = unlabeled
    label[16:] = 7  # road
    inst = label.astype(np.uint16)
    objects = [{"label": "road", "polygon": [[0, 16], [63, 16], [63, 31], [0, 31]]}]
    for k in range(cars):
        x = 4 + 14 * k
        label[18:26, x:x + 10] = 26  # car
        inst[18:26, x:x + 10] = 26000 + k
        objects.append({"label": "car", "polygon": [[x, 18], [x + 9, 18], [x + 9, 25], [x + 4, 26], [x, 25]]})
    label[4:14, 50:54] = 24  # person
    inst[4:14, 50:54] = 24000
    label[27:29, 5:9] = 34  # license plate: no train id
    objects += [
        {"label": "person", "polygon": [[50, 4], [53, 4], [53, 13], [50, 13]]},
        {"label": "cargroup", "polygon": [[40, 20], [60, 20], [60, 28]]},
        {"label": "out of roi", "polygon": [[0, 0], [3, 0], [3, 3]]},
        {"label": "car", "polygon": [[1, 1], [2, 2], [1, 2]], "deleted": 1},
    ]
    Image.fromarray(label).save(gt_dir / f"{base}_gtFine_labelIds.png")
    Image.fromarray(inst).save(gt_dir / f"{base}_gtFine_instanceIds.png")  # uint16 (Pillow refuses int32)
    (gt_dir / f"{base}_gtFine_polygons.json").write_text(
        json.dumps({"imgHeight": CITY_H, "imgWidth": CITY_W, "objects": objects}))
    return {"label": label, "inst": inst, "objects": [o for o in objects if not o.get("deleted")]}


def write_cityscapes(root: Path) -> dict[str, dict]:
    return {
        "aachen_000000_000019": _city_image(root, "train", "aachen", "aachen_000000_000019", 2),
        "aachen_000001_000019": _city_image(root, "train", "aachen", "aachen_000001_000019", 1),
        "bochum_000000_000313": _city_image(root, "train", "bochum", "bochum_000000_000313", 3),
        "frankfurt_000000_000294": _city_image(root, "val", "frankfurt", "frankfurt_000000_000294", 2),
    }


def test_cityscapes_train_ids_instances_and_polygons(tmp_path):
    truth = write_cityscapes(tmp_path)
    ds = DATASETS.create("cityscapes", root=str(tmp_path), size=[CITY_H, CITY_W], val_fraction=0.0)
    assert ds.num_classes == 19
    assert ds.class_names[0] == "road" and ds.class_names[13] == "car" and ds.class_names[11] == "person"
    names = ds.metadata["images"]
    assert names == sorted(truth)  # val_fraction=0: train in file order, then the test split
    np.testing.assert_array_equal(ds.splits["test"], [3])
    for k, base in enumerate(names):
        t = truth[base]
        m = ds.masks[k]
        assert (m[t["label"] == 7] == 0).all() and (m[t["label"] == 26] == 13).all() and (m[t["label"] == 24] == 11).all()
        assert (m[t["label"] == 0] == IGNORE_INDEX).all() and (m[t["label"] == 34] == IGNORE_INDEX).all()
        inst = ds.instances[k]
        assert (inst[t["inst"] < 1000] == 0).all()  # stuff has no instance
        assert len(np.unique(inst[inst > 0])) == len(np.unique(t["inst"][t["inst"] >= 1000]))
        # polygons: annotation order, one vertex per click, train ids, crowd and void mapped
        polys = ds.polygons.of_image(k)
        assert [p.label for p in polys] == [o["label"] for o in t["objects"]]
        assert [p.clicks for p in polys] == [len(o["polygon"]) for o in t["objects"]]
        by_label = {p.label: p.class_id for p in polys}
        assert by_label["road"] == 0 and by_label["cargroup"] == 13 and by_label["out of roi"] == IGNORE_INDEX
        np.testing.assert_allclose(polys[0].vertices, np.array(t["objects"][0]["polygon"], np.float32))
    # The oracle's split copy carries its own polygons, re-indexed.
    test = ds.split("test")
    assert [p.clicks for p in test.polygons.of_image(0)] == [p.clicks for p in ds.polygons.of_image(3)]
    assert (test.polygons.image == 0).all()


def test_cityscapes_resizes_polygons_with_the_image(tmp_path):
    write_cityscapes(tmp_path)
    ds = DATASETS.create("cityscapes", root=str(tmp_path), size=[16, 32], polygons=True, instances=False)
    assert ds.images.shape[1:3] == (16, 32) and ds.instances is None
    road = ds.polygons.of_image(0)[0]
    np.testing.assert_allclose(road.vertices, np.array([[0, 16], [63, 16], [63, 31], [0, 31]]) / 2)
    assert ds.polygons.vertex_counts().sum() == sum(len(p.vertices) for i in range(4) for p in ds.polygons.of_image(i))


def test_cityscapes_errors(tmp_path):
    with pytest.raises(ConfigError, match="missing directory .*leftImg8bit/train"):
        DATASETS.create("cityscapes", root=str(tmp_path))
    write_cityscapes(tmp_path)
    next((tmp_path / "gtFine" / "train").rglob("*_polygons.json")).unlink()
    with pytest.raises(ConfigError, match="missing file .*_gtFine_polygons.json"):
        DATASETS.create("cityscapes", root=str(tmp_path))
    DATASETS.create("cityscapes", root=str(tmp_path), polygons=False)  # fine without them


# -- plain folder -------------------------------------------------------------

def write_folder(root: Path, n: int = 6, splits: bool = False) -> None:
    for d in ("images", "masks", "instances"):
        (root / d).mkdir(parents=True)
    for k in range(n):
        _rgb(k).save(root / "images" / f"img{k}.png")
        m = np.full((H, W), 0, np.uint8)
        m[5:15, 5:20] = 1 + k % 2
        m[0, :] = 9  # void value used by this user
        Image.fromarray(m).save(root / "masks" / f"img{k}.png")
        inst = np.zeros((H, W), np.uint16)
        inst[5:15, 5:20] = 300 + k
        Image.fromarray(inst).save(root / "instances" / f"img{k}.png")
    (root / "classes.txt").write_text("background\nleaf\nstem\n")
    if splits:
        (root / "splits").mkdir()
        (root / "splits" / "train.txt").write_text("img0\nimg1\nimg2\n")
        (root / "splits" / "val.txt").write_text("img3\n")
        (root / "splits" / "test.txt").write_text("img4\nimg5\n")


def test_folder_with_class_list_void_value_and_instances(tmp_path):
    write_folder(tmp_path)
    ds = DATASETS.create("folder", root=str(tmp_path), size=[H, W], resize="resize", ignore_value=9,
                         val_fraction=0.2, test_fraction=0.3)
    assert ds.class_names == ("background", "leaf", "stem")
    assert (ds.masks[:, 0, :] == IGNORE_INDEX).all() and set(np.unique(ds.masks)) == {0, 1, 2, IGNORE_INDEX}
    assert ds.instances.max() == 1  # renumbered 1..K per image
    sizes = [len(ds.splits[s]) for s in ("train", "val", "test")]
    assert sum(sizes) == 6 and sizes[2] == 2 and sizes[1] == 1
    with pytest.raises(ConfigError, match="a mask holds value 9 but only 3 classes"):
        cache.clear_memo()
        DATASETS.create("folder", root=str(tmp_path), size=[H, W], resize="resize", seed=1)


def test_folder_declared_splits_and_class_parameter(tmp_path):
    write_folder(tmp_path, splits=True)
    ds = DATASETS.create("folder", root=str(tmp_path), classes=["bg", "a", "b"], size=16, ignore_value=9)
    assert ds.class_names == ("bg", "a", "b") and ds.images.shape == (6, 16, 16, 3)
    assert ds.metadata["stems"] == [f"img{k}" for k in range(6)]
    assert [list(ds.splits[s]) for s in ("train", "val", "test")] == [[0, 1, 2], [3], [4, 5]]
    (tmp_path / "masks" / "img2.png").unlink()
    with pytest.raises(ConfigError, match="missing file .*masks/img2.png"):
        DATASETS.create("folder", root=str(tmp_path), size=16, ignore_value=9)


def test_real_layout_cache_follows_the_files(tmp_path):
    write_folder(tmp_path, splits=True)
    before = cache.stats["built"]
    kw = dict(root=str(tmp_path), size=16, ignore_value=9)
    DATASETS.create("folder", **kw)
    cache.clear_memo()
    DATASETS.create("folder", **kw)
    assert cache.stats["built"] == before + 1  # decoded once
    m = np.zeros((H, W), np.uint8)
    Image.fromarray(m).save(tmp_path / "masks" / "img0.png")  # a source file changes
    cache.clear_memo()
    ds = DATASETS.create("folder", **kw)
    assert cache.stats["built"] == before + 2 and (ds.masks[0] == 0).all()


def test_true_polygon_clicks_replace_the_rdp_estimate(tmp_path):
    """Cityscapes polygons: the oracle's clicks metric counts the vertices annotators drew."""
    from alharness.annotation.costs import build_cost_models
    from alharness.annotation.labels import LabelState
    from alharness.annotation.oracle import Oracle
    from alharness.contract.queries import FullMask

    write_cityscapes(tmp_path)
    ds = DATASETS.create("cityscapes", root=str(tmp_path), polygons=True)
    pool = ds.split("train")
    drawn = [p for p in pool.polygons.of_image(0) if p.class_id != pool.ignore_index]
    true_clicks = sum(p.clicks for p in drawn) + len(drawn)  # polygon + class clicks
    oracle = Oracle(pool, build_cost_models({}), "label_equivalents", 1e9)
    state = LabelState(len(pool), pool.masks.shape[1:], ds.num_classes, ds.ignore_index)
    oracle.answer([FullMask(0)], strategy="s", round=0, state=state)
    assert list(oracle.ledger)[-1].costs["clicks"] == true_clicks
    estimate = Oracle(pool, build_cost_models({"clicks": {"true_polygons": False}}), "label_equivalents", 1e9)
    estimate.answer([FullMask(0)], strategy="s", round=0, state=LabelState(len(pool), pool.masks.shape[1:], ds.num_classes, 255))
    assert list(estimate.ledger)[-1].costs["clicks"] != true_clicks


# -- native resolutions and bounded decoding ----------------------------------------

def _large_city(root: Path, split: str, base: str, h: int, w: int, k: int) -> np.ndarray:
    """A Cityscapes image at h x w (smooth, so its PNG is quick to write): road
    below the middle, one car; returns its label ids."""
    city = base.split("_")[0]
    img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    ramp = (np.arange(w, dtype=np.uint16)[None, :] * 255 // w).astype(np.uint8)
    rgb = np.stack([np.broadcast_to(ramp, (h, w)), np.full((h, w), 40 * k % 256, np.uint8),
                    np.broadcast_to(ramp.T[: min(h, w)].mean().astype(np.uint8), (h, w))], axis=-1)
    Image.fromarray(rgb).save(img_dir / f"{base}_leftImg8bit.png", compress_level=1)
    label = np.zeros((h, w), np.uint8)
    label[h // 2:] = 7  # road
    y0, x0 = h // 2 + 4 * k, w // 4 + 8 * k
    label[y0:y0 + h // 8, x0:x0 + w // 8] = 26  # car
    inst = label.astype(np.uint16)
    inst[label == 26] = 26000
    Image.fromarray(label).save(gt_dir / f"{base}_gtFine_labelIds.png", compress_level=1)
    Image.fromarray(inst).save(gt_dir / f"{base}_gtFine_instanceIds.png", compress_level=1)
    poly = [[x0, y0], [x0 + w // 8, y0], [x0 + w // 8, y0 + h // 8]]
    (gt_dir / f"{base}_gtFine_polygons.json").write_text(json.dumps({"objects": [{"label": "car", "polygon": poly}]}))
    return label


def write_large_cityscapes(root: Path, n_train: int, h: int, w: int) -> list[np.ndarray]:
    labels = [_large_city(root, "train", f"aachen_{k:06d}_000019", h, w, k) for k in range(n_train)]
    return labels + [_large_city(root, "val", "frankfurt_000000_000294", h, w, n_train)]


def test_cityscapes_is_native_by_default_and_half_with_size(tmp_path):
    labels = write_large_cityscapes(tmp_path, 2, 1024, 2048)
    ds = DATASETS.create("cityscapes", root=str(tmp_path), val_fraction=0.0)
    assert ds.images.shape == (3, 1024, 2048, 3) and ds.masks.shape == (3, 1024, 2048)
    road, car = 0, 13  # train ids
    expect = [np.where(lab == 26, car, np.where(lab == 7, road, IGNORE_INDEX)) for lab in labels]
    for k in range(3):
        np.testing.assert_array_equal(ds.masks[k], expect[k])  # not resampled
    assert ds.polygons.of_image(0)[0].vertices[1].tolist() == [2048 // 4 + 2048 // 8, 1024 // 2]
    half = DATASETS.create("cityscapes", root=str(tmp_path), size=[512, 1024], val_fraction=0.0)
    assert half.images.shape == (3, 512, 1024, 3)
    for k in range(3):
        np.testing.assert_array_equal(half.masks[k], expect[k][1::2, 1::2])  # nearest neighbour
    np.testing.assert_allclose(half.polygons.of_image(0)[0].vertices, ds.polygons.of_image(0)[0].vertices / 2)


def _build_peak(root: Path, size) -> tuple[int, int]:
    """Peak of the Python-tracked allocations (numpy arrays included) while
    building the dataset of ``root``, and the cache's bytes."""
    import tracemalloc

    cache.clear_memo()
    tracemalloc.start()
    try:
        ds = DATASETS.create("cityscapes", root=str(root), size=size, val_fraction=0.0, polygons=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, ds.images.nbytes + ds.masks.nbytes + ds.instances.nbytes


@pytest.mark.parametrize("size", ["native", [256, 512]])
def test_decoding_holds_one_image_whatever_the_count(tmp_path, size):
    few, many = tmp_path / "few", tmp_path / "many"
    write_large_cityscapes(few, 1, 512, 1024)
    write_large_cityscapes(many, 7, 512, 1024)
    peak_few, bytes_few = _build_peak(few, size)
    peak_many, bytes_many = _build_peak(many, size)
    one_image = bytes_few // 2  # 2 images in `few`: 512 x 1024 x (3 + 1 + 4) bytes each
    assert bytes_many == 4 * bytes_few
    assert peak_many < peak_few + one_image // 4, (peak_few, peak_many)  # the count adds nothing
    # per-image temporaries (decoded labels, instance renumbering), a constant few images' worth
    assert peak_many < 6 * one_image < bytes_many, (peak_many / one_image)


def test_the_row_writer_streams_and_reads_back_as_npy(tmp_path):
    from alharness.datasets.cache import RowWriter

    w = RowWriter(tmp_path / "a.npy", (3, 4, 5), np.int32)
    w[2] = np.full((4, 5), 7)
    w[0] = np.arange(20).reshape(4, 5)
    assert str(tmp_path / "a.npy") not in Path("/proc/self/maps").read_text()  # written, never mapped
    with pytest.raises(ValueError, match="expected"):
        w[1] = np.zeros((5, 4))
    with pytest.raises(IndexError):
        w[3] = np.zeros((4, 5))
    w.close()
    a = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert a.shape == (3, 4, 5) and a.dtype == np.int32
    np.testing.assert_array_equal(a[0], np.arange(20).reshape(4, 5))
    assert not a[1].any() and (a[2] == 7).all()


def _voc_sized(root: Path, shapes: list[tuple[int, int]]) -> Path:
    """A VOC layout whose images have the given (h, w); labels: class k+1 everywhere but a void border."""
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    ids = [f"2007_{k:06d}" for k in range(len(shapes))]
    for k, (i, (h, w)) in enumerate(zip(ids, shapes)):
        _rgb(k, h, w).save(voc / "JPEGImages" / f"{i}.jpg")
        cls = np.full((h, w), 1 + k, np.uint8)
        cls[0] = IGNORE_INDEX
        _palette_png(cls, voc / "SegmentationClass" / f"{i}.png")
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:-1]) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text(ids[-1] + "\n")
    return voc


def test_voc_pad_keeps_each_image_at_its_resolution_and_pads_with_void(tmp_path):
    shapes = [(30, 40), (20, 50), (36, 24)]
    _voc_sized(tmp_path, shapes)
    ds = DATASETS.create("voc2012", root=str(tmp_path), size=[40, 60], resize="pad", val_fraction=0.0)
    assert ds.images.shape == (3, 40, 60, 3)
    for k, (h, w) in enumerate(shapes):
        m = ds.masks[k]
        assert (m[1:h, :w] == 1 + k).all() and (m[0, :w] == IGNORE_INDEX).all()  # its own pixels, unscaled
        assert (m[h:] == IGNORE_INDEX).all() and (m[:, w:] == IGNORE_INDEX).all()  # padding is void
        assert not ds.images[k, h:].any() and not ds.images[k, :, w:].any()  # and black
    # larger than the size: scaled down to fit (aspect kept), then padded
    small = DATASETS.create("voc2012", root=str(tmp_path), size=20, resize="pad", val_fraction=0.0)
    m = small.masks[0]  # 30 x 40 -> 15 x 20
    assert (m[1:15] == 1).all() and (m[15:] == IGNORE_INDEX).all()


def test_native_size_needs_one_resolution(tmp_path):
    _voc_sized(tmp_path, [(30, 40), (20, 50)])
    with pytest.raises(ConfigError, match="size = 'native' needs every image at one resolution"):
        DATASETS.create("voc2012", root=str(tmp_path), size="native", val_fraction=0.0)
    with pytest.raises(ConfigError, match="size"):
        DATASETS.create("voc2012", root=str(tmp_path), size="huge")
