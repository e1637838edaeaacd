"""Query types, cost models (recomputing the papers' figures), clicks on
hand-made masks, property tests, and annotator noise rates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alharness.toolkit.clicks import image_clicks
from alharness.annotation.costs import PoolInfo, build_cost_models
from alharness.datasets.base import SplitData
from alharness.errors import DuplicateQueryError, MalformedQueryError, QueryRefused
from alharness.annotation.labels import NEGATIVE, POSITIVE, UNKNOWN, LabelState
from alharness.annotation.noise import Annotator, NoiseConfig
from alharness.annotation.oracle import Oracle
from alharness.contract.queries import (Boxes, ClassPresence, FullMask, ImageLabels, LabelsWithCounts, Pixels, Region)
from alharness.registry import COSTS, DATASETS
from alharness.annotation.truth import PoolTruth


def _split(masks, instances=None, num_classes=3):
    masks = np.asarray(masks, np.uint8)
    n = len(masks)
    return SplitData(dataset_ids=np.arange(n), images=np.zeros((*masks.shape, 3), np.uint8), masks=masks,
                     instances=None if instances is None else np.asarray(instances, np.int32),
                     num_classes=num_classes, ignore_index=255)


def _square_mask(size=20, y=5, x=5, side=6, cls=1):
    m = np.zeros((size, size), np.uint8)
    m[y:y + side, x:x + side] = cls
    return m


def _oracle(split, budget=1e9, **costs):
    return Oracle(split, build_cost_models(costs), "label_equivalents", budget)


# -- the papers' published figures --------------------------------------------

def test_mask_guided_table1_per_image_seconds():
    """Mask-guided paper Table 1 (VOC): t_IL = 20 s, t_IL+C = 22.22 s, t_Full = 239.7 s, recomputed
    from per-image ground truth on a pool with 1.5 present classes and 2.8 objects per image on average."""
    masks, instances = [], []
    present = [1] * 5 + [2] * 5           # 1.5 classes per image
    objects = [3] * 8 + [2] * 2           # 2.8 objects per image
    for k, (p, o) in enumerate(zip(present, objects)):
        m = np.zeros((24, 24), np.uint8)
        inst = np.zeros((24, 24), np.int32)
        for j in range(o):
            cls = 1 + (j % p)
            m[j * 6:(j * 6) + 4, 2:6] = cls
            inst[j * 6:(j * 6) + 4, 2:6] = j + 1
        masks.append(m)
        instances.append(inst)
    pool = PoolTruth(_split(masks, instances, num_classes=21))  # 20 VOC classes + background
    sec = COSTS.create("seconds", full_mask_class_checks=18.5)
    sec.prepare(PoolInfo(10, 21, (24, 24)))
    mean = lambda q: np.mean([sec.cost(q(i), pool.image(i)) for i in range(10)])  # noqa: E731
    assert mean(ImageLabels) == pytest.approx(20.0)
    assert mean(LabelsWithCounts) == pytest.approx(22.22)
    assert mean(FullMask) == pytest.approx(239.7)
    # Per image, not only on average: an image with 3 objects of 2 classes.
    assert sec.cost(FullMask(2), pool.image(2)) == pytest.approx(18.5 + 3 * 79)
    assert sec.cost(Boxes(2), pool.image(2)) == pytest.approx(20 + 3 * 7)


@pytest.mark.parametrize("dataset, binary_h, region_h, pixel_h, binary_per_round", [
    ("cityscapes", 5.56, 300.0, 750.0, 200),
    ("pascal", 4.16, 225.0, 364.0, 200),
    ("flickr", 5.56, 266.67, 156.0, 400),
])
def test_binary_feedback_table3_hours(dataset, binary_h, region_h, pixel_h, binary_per_round):
    """Binary-feedback paper Table 3: Table 1 seconds x queries per iteration x 25 iterations
    (B binary queries or regions; 48 full images for the pixel-level baseline)."""
    sec = COSTS.create("seconds", preset=f"binary_feedback_{dataset}")
    sec.prepare(PoolInfo(1200, 20, (513, 513)))
    hours = lambda q, n: sec.quote(q) * n * 25 / 3600  # noqa: E731
    assert hours(ClassPresence(0, 1), binary_per_round) == pytest.approx(binary_h, abs=0.01)
    assert hours(Region(0, 0, 0, 10), binary_per_round) == pytest.approx(region_h, abs=0.01)
    assert hours(FullMask(0), 48) == pytest.approx(pixel_h, abs=0.01)


def test_label_equivalents_defaults_follow_full_or_weak():
    le = COSTS.create("label_equivalents")
    le.prepare(PoolInfo(10, 5, (10, 10)))
    assert le.quote(ImageLabels(0)) == 1 and le.quote(FullMask(0)) == 12
    assert le.quote(ClassPresence(0, 2)) == pytest.approx(1 / 4)
    assert le.quote(Region(0, 0, 0, 5)) == pytest.approx(12 * 25 / 100)
    custom = COSTS.create("label_equivalents", alpha_s=25, prices={"region": 2.0})
    custom.prepare(PoolInfo(10, 5, (10, 10)))
    assert custom.quote(FullMask(0)) == 25 and custom.quote(Region(0, 0, 0, 5)) == 2.0


# -- clicks on masks whose counts are known by construction ---------------------

def test_polygon_class_and_intersection_clicks_on_a_square():
    ic = image_clicks(_square_mask(), 255, epsilon=1.0)
    # The square: 4 vertices; the background: 4 (image frame) + 4 (the hole).
    assert ic.polygon_clicks == 12
    assert ic.class_clicks == 2
    # Box rows/cols 0..7 contains the frame corner, one corner of the square
    # and one of the hole; the square's outline crosses the box border twice.
    assert ic.box_polygon_clicks(0, 0, 8, 8) == 3
    assert ic.box_intersection_clicks(0, 0, 8, 8) == 2
    assert ic.box_class_clicks(0, 0, 8, 8) == 2
    # A box inside the background only: no vertices, no crossings, one class.
    assert ic.box_polygon_clicks(13, 0, 18, 4) == 0
    assert ic.box_intersection_clicks(13, 0, 18, 4) == 0
    assert ic.box_class_clicks(13, 0, 18, 4) == 1


def test_rdp_counts_triangle_and_two_objects():
    m = np.zeros((40, 40), np.uint8)
    for r in range(30):
        m[5 + r, 5:6 + r] = 2  # right triangle
    m[2:6, 30:36] = 1          # a rectangle of another class
    ic = image_clicks(m, 255, epsilon=1.5)
    seg_vertices = {}
    for sid in np.unique(ic.segments):
        seg_vertices[int(sid)] = int(ic.vertices[ic.segments == sid].sum())
    assert ic.class_clicks == 3
    # triangle 3 + rectangle 4 + background frame 4 + its two holes 3 + 4 (vertices may sit on
    # a neighbouring pixel of another segment, so check the total)
    assert ic.polygon_clicks == 3 + 4 + 4 + 3 + 4


def test_cost_a_b_p_and_clicks_from_the_oracle():
    split = _split([_square_mask(), _square_mask(y=10, x=2)])
    oracle = _oracle(split)
    state = LabelState(2, (20, 20), 3, 255)
    oracle.answer([Region(0, 0, 0, 8)], strategy="s", round=1, state=state)
    e = list(oracle.ledger)[-1].costs
    total = 2 * (12 + 2)  # both images: c_p + c_c
    assert e["clicks"] == 3 + 2 + 2
    assert e["cost_a"] == pytest.approx((3 + 2 + 2) / total)
    assert e["cost_b"] == pytest.approx((3 + 2 + 4) / (2 * 12))
    assert e["pixels"] == pytest.approx(64 / (2 * 400))
    oracle.answer([FullMask(1)], strategy="s", round=1, state=state)
    e = list(oracle.ledger)[-1].costs
    assert e["cost_a"] == pytest.approx(14 / total) and e["cost_b"] == pytest.approx(12 / 24)
    oracle.answer([Pixels(0, ((19, 19), (0, 19)))], strategy="s", round=1, state=state)
    assert list(oracle.ledger)[-1].costs["clicks"] == 2


# -- every query type: answers and label state ------------------------------------

def test_each_query_type_updates_only_what_it_reveals():
    mask = _square_mask(side=6, cls=2)
    inst = (mask > 0).astype(np.int32)
    split = _split([mask, mask, mask], [inst, inst, inst])
    oracle = _oracle(split)
    st_ = LabelState(3, (20, 20), 3, 255)
    oracle.answer([ClassPresence(0, 2), ClassPresence(0, 1)], strategy="s", round=1, state=st_)
    assert list(st_.image_labels[0]) == [UNKNOWN, NEGATIVE, POSITIVE]
    oracle.answer([LabelsWithCounts(1)], strategy="s", round=1, state=st_)
    assert list(st_.counts[1]) == [0, 0, 1] and list(st_.image_labels[1]) == [POSITIVE, NEGATIVE, POSITIVE]
    oracle.answer([Boxes(2)], strategy="s", round=1, state=st_)
    assert st_.boxes[2].tolist() == [[2, 5, 5, 11, 11]]
    oracle.answer([Region(2, 4, 4, 3)], strategy="s", round=1, state=st_)
    assert (st_.pixels[2][4:7, 4:7] == mask[4:7, 4:7]).all()
    assert (st_.pixels[2] != 255).sum() == 9
    oracle.answer([Pixels(1, ((0, 0), (6, 6)))], strategy="s", round=1, state=st_)
    assert st_.pixels[1][0, 0] == 0 and st_.pixels[1][6, 6] == 2 and (st_.pixels[1] != 255).sum() == 2
    assert not st_.has_full_mask.any()
    log = oracle.ledger.records()
    assert [r["query_type"] for r in log] == ["class_presence", "class_presence", "labels_with_counts", "boxes", "region", "pixels"]
    assert log[0]["cls"] == 2 and log[4]["box"] == [4, 4, 7, 7] and log[5]["pixels"] == [[0, 0], [6, 6]]


@pytest.mark.parametrize("query, why", [
    (Region(0, 15, 15, 8), "does not lie inside"),
    (Region(0, 0, 0, 0), "does not lie inside"),
    (Pixels(0, ()), "non-empty"),
    (Pixels(0, ((1, 1), (1, 1))), "repeat a pixel"),
    (Pixels(0, ((1, 20),)), "outside"),
    (Pixels(0, [(1, 1)]), "tuple"),
    (ClassPresence(0, 3), "cls must be"),
    (ClassPresence(0, 1.0), "cls must be"),
])
def test_malformed_new_queries(query, why):
    oracle = _oracle(_split([_square_mask()]))
    with pytest.raises(MalformedQueryError, match=why):
        oracle.answer([query], strategy="s", round=1, state=LabelState(1, (20, 20), 3, 255))
    assert len(oracle.ledger) == 0


def test_repeats_are_refused_per_pixel_and_per_class():
    oracle = _oracle(_split([_square_mask()]))
    state = LabelState(1, (20, 20), 3, 255)
    oracle.answer([Pixels(0, ((1, 1), (2, 2))), ClassPresence(0, 1)], strategy="s", round=1, state=state)
    with pytest.raises(DuplicateQueryError):
        oracle.answer([Pixels(0, ((3, 3), (2, 2)))], strategy="s", round=2, state=state)
    with pytest.raises(DuplicateQueryError):
        oracle.answer([ClassPresence(0, 1)], strategy="s", round=2, state=state)
    oracle.answer([ClassPresence(0, 2), Pixels(0, ((3, 3),))], strategy="s", round=2, state=state)


# -- properties (hypothesis) ------------------------------------------------------

_DS = DATASETS.create("synthetic_shapes", n_train=6, n_val=0, n_test=1, size=16, num_classes=3, seed=4)
_POOL = _DS.split("train")


def _queries():
    img = st.integers(0, 5)
    return st.one_of(
        st.builds(FullMask, img), st.builds(ImageLabels, img), st.builds(LabelsWithCounts, img), st.builds(Boxes, img),
        st.builds(ClassPresence, img, st.integers(0, 2)),
        st.builds(lambda i, y, x, s: Region(i, y, x, s), img, st.integers(0, 8), st.integers(0, 8), st.integers(1, 8)),
        st.builds(lambda i, ps: Pixels(i, tuple(sorted(ps))), img,
                  st.sets(st.tuples(st.integers(0, 15), st.integers(0, 15)), min_size=1, max_size=5)),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(_queries(), max_size=5), min_size=1, max_size=4))
def test_costs_nonnegative_additive_and_refusals_free(batches):
    one = _oracle(_POOL)
    state = LabelState(6, (16, 16), 3, 255)
    accepted = []
    for rnd, batch in enumerate(batches):
        before = one.ledger.totals()
        try:
            one.answer(batch, strategy="prop", round=rnd, state=state)
            accepted.append(batch)
        except QueryRefused:
            assert one.ledger.totals() == before  # a refused batch charges nothing
    for e in one.ledger:
        assert all(v >= 0 for v in e.costs.values())
    # The ledger total equals the sum of the query log, in every metric.
    log = one.ledger.records()
    for m, total in one.ledger.totals().items():
        assert total == pytest.approx(sum(r[f"cost_{m}"] for r in log))
    # Additive: the accepted batches answered as one batch cost the same.
    merged = [q for b in accepted for q in b]
    two = _oracle(_POOL)
    two.answer(merged, strategy="prop", round=0, state=LabelState(6, (16, 16), 3, 255))
    for m, total in one.ledger.totals().items():
        assert two.ledger.total(m) == pytest.approx(total)


# -- noise ------------------------------------------------------------------------

def _noisy_oracle(split, **noise):
    ann = Annotator(NoiseConfig(**noise), np.random.default_rng(0))
    return Oracle(split, build_cost_models({}), "label_equivalents", 1e12, ann)


def test_yes_no_flip_rate():
    split = _split([_square_mask()] * 500)
    oracle = _noisy_oracle(split, flip_rate=0.2)
    state = LabelState(500, (20, 20), 3, 255)
    oracle.answer([ClassPresence(i, c) for i in range(500) for c in range(3)], strategy="s", round=1, state=state)
    rate = np.mean([e.noisy for e in oracle.ledger])
    assert abs(rate - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 1500)
    truth = np.array([[1, 1, 0]] * 500)
    wrong = (state.image_labels == POSITIVE) != truth
    assert wrong.sum() == sum(e.noisy for e in oracle.ledger)


def test_pixel_error_and_spurious_label_rates():
    split = _split([_square_mask()] * 400)
    oracle = _noisy_oracle(split, pixel_error_rate=0.1, spurious_rate=0.3)
    state = LabelState(400, (20, 20), 3, 255)
    coords = tuple((y, x) for y in range(0, 20, 4) for x in range(0, 20, 4))
    oracle.answer([Pixels(i, coords) for i in range(400)], strategy="s", round=1, state=state)
    mask = _square_mask()
    wrong = np.mean([(state.pixels[i][tuple(np.array(coords).T)] != mask[tuple(np.array(coords).T)]).mean() for i in range(400)])
    assert abs(wrong - 0.1) < 4 * np.sqrt(0.1 * 0.9 / (400 * len(coords)))
    oracle.answer([ImageLabels(i) for i in range(400)], strategy="s", round=2, state=state)
    spurious = (state.image_labels[:, 2] == POSITIVE).mean()  # class 2 is absent everywhere
    assert abs(spurious - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 400)


def test_small_objects_are_missed_and_boundaries_shift():
    mask = _square_mask(side=3)  # 9 of 400 pixels: 2.25 %
    oracle = _noisy_oracle(_split([mask, _square_mask(side=10)]), missing_area=0.05, boundary_px=1)
    state = LabelState(2, (20, 20), 3, 255)
    oracle.answer([ImageLabels(0), ImageLabels(1)], strategy="s", round=1, state=state)
    assert state.image_labels[0, 1] == NEGATIVE and state.image_labels[1, 1] == POSITIVE
    oracle.answer([FullMask(1)], strategy="s", round=2, state=state)
    changed = state.pixels[1] != _square_mask(side=10)
    assert changed.any()
    # Only pixels within 1 px of the true boundary may change.
    from scipy import ndimage
    obj = _square_mask(side=10) == 1
    band = ndimage.binary_dilation(obj) & ~ndimage.binary_erosion(obj)
    assert not (changed & ~band).any()
    assert list(oracle.ledger)[-1].noisy


def test_noisy_answers_are_flagged_in_the_query_log():
    from alharness.campaign.loop import run_campaign
    from conftest import tiny_spec

    clean = run_campaign(tiny_spec(seed=3))
    noisy = run_campaign(tiny_spec(seed=3, noise={"boundary_px": 2}))
    assert any(r["noisy"] for r in noisy.queries) and not any(r["noisy"] for r in clean.queries)
    assert noisy.rows[-1]["n_noisy"] > 0
