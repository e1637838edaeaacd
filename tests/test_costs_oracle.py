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
    assert mean(Boxes) == pytest.approx(38.1)  # the class checks of dense annotation (18.5), not t_IL's 20
    # Per image, not only on average: an image with 3 objects of 2 classes.
    assert sec.cost(FullMask(2), pool.image(2)) == pytest.approx(18.5 + 3 * 79)
    assert sec.cost(Boxes(2), pool.image(2)) == pytest.approx(18.5 + 3 * 7)


def test_mask_guided_table1_preset_and_label_equivalents_price_boxes_at_38_1_s():
    """Mask-guided paper Table 1: IL 20 s, IL+C 22.22 s, Full 239.7 s, BB 38.1 s, known before answering
    with the table preset; label_equivalents prices IL+C and boxes at their Table 1 ratio to IL."""
    sec = COSTS.create("seconds", preset="mask_guided_table1")
    sec.prepare(PoolInfo(10, 4, (10, 10)))
    assert [sec.quote(q(0)) for q in (ImageLabels, LabelsWithCounts, FullMask, Boxes)] == \
        pytest.approx([20.0, 22.22, 239.7, 38.1])
    assert sec.quote(Region(0, 0, 0, 5)) == pytest.approx(239.7 * 25 / 100)
    pool = PoolTruth(_split([_square_mask(10, 2, 2, 4)], num_classes=4))
    assert sec.cost(Boxes(0), pool.image(0)) == pytest.approx(38.1)  # the same after answering
    le = COSTS.create("label_equivalents", alpha_c=2.0)
    le.prepare(PoolInfo(10, 4, (10, 10)))
    assert le.quote(Boxes(0)) == pytest.approx(2.0 * 38.1 / 20)
    assert le.quote(LabelsWithCounts(0)) == pytest.approx(2.0 * 22.22 / 20)


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


def test_click_data_is_stored_in_at_most_six_bytes_per_pixel_with_the_same_counts():
    # Kept for every pool image for a campaign's life (1000 x 512 x 1024 pixels
    # took 8 GB at 16 bytes each): compact ids, the vertex map rebuilt from the table.
    rng = np.random.default_rng(0)
    m = rng.integers(0, 3, (64, 128)).astype(np.uint8)  # many small segments: ids above 255
    ic = image_clicks(m, 255, epsilon=1.0)
    assert int(ic.segments.max()) > 255 and ic.segments.dtype == np.uint16
    stored = ic.segments.nbytes + ic.vertex_integral.nbytes
    assert stored <= 6 * (m.size + m.shape[0] + m.shape[1] + 1)
    v = ic.vertices
    assert v.shape == m.shape and v.min() >= 0 and int(v.sum()) == ic.polygon_clicks
    s = np.zeros((65, 129), np.int64)
    s[1:, 1:] = v.cumsum(0).cumsum(1)
    for y0, x0, y1, x1 in [(0, 0, 64, 128), (3, 5, 20, 40), (10, 100, 11, 128)]:
        assert ic.box_polygon_clicks(y0, x0, y1, x1) == int(s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0])
        assert ic.box_class_clicks(y0, x0, y1, x1) == len(np.unique(ic.segments[y0:y1, x0:x1]))
    small = image_clicks(_square_mask(), 255, epsilon=1.0)
    assert small.segments.dtype == np.uint8


def test_pool_click_data_keeps_bounded_maps_and_the_same_counts():
    from alharness.toolkit.clicks import PoolClicks
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 3, (12, 32, 48)).astype(np.uint8)
    masks[:, :4] = 255
    one = image_clicks(masks[0], 255, 1.0)
    per_map = one.segments.nbytes + one.vertex_integral.nbytes
    pool = PoolClicks(masks, 255, 1.0, maps_bytes=3 * per_map)  # room for about 3 images' maps
    direct = [image_clicks(m, 255, 1.0) for m in masks]
    assert len(pool) == 12 and pool.held_bytes <= 3 * per_map
    assert pool.totals == (sum(c.polygon_clicks for c in direct), sum(c.class_clicks for c in direct))
    for i in [0, 11, 5, 0, 7, 3]:  # evicted maps are rebuilt the same
        assert pool.polygon_clicks(i) == direct[i].polygon_clicks and pool.class_clicks(i) == direct[i].class_clicks
        np.testing.assert_array_equal(pool[i].segments, direct[i].segments)
        np.testing.assert_array_equal(pool[i].vertices, direct[i].vertices)
        np.testing.assert_array_equal(pool.segment_classes(i), direct[i].segment_classes)
        assert pool.held_bytes <= 3 * per_map
    assert [c.polygon_clicks for c in pool[2:5]] == [c.polygon_clicks for c in direct[2:5]]


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


# -- the fast oracle path against the dense reference ------------------------------

def _random_pool(seed, n=4, size=40, num_classes=4, with_instances=False, void=True):
    """Random blobs of several classes, void pixels where ``void``."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    instances = np.zeros((n, size, size), np.int32)
    for m, inst in zip(masks, instances):
        for k in range(8):
            y, x, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(2, 9))]
            yy, xx = np.ogrid[:size, :size]
            blob = (yy - y) ** 2 + (xx - x) ** 2 <= r * r
            m[blob] = rng.integers(1, num_classes)
            inst[blob] = k + 1
        if void:
            m[ndimage.binary_dilation(m == 1) & ~(m == 1)] = 255  # a void border, as VOC has
    return _split(masks, instances if with_instances else None, num_classes=num_classes)


def _queries_for(split, rng):
    n, size = len(split), split.masks.shape[1]
    qs = []
    for i in range(n):
        coords = {(int(y), int(x)) for y, x in rng.integers(0, size, (12, 2))}
        qs += [FullMask(i), ImageLabels(i), LabelsWithCounts(i), Boxes(i), ClassPresence(i, 1),
               Region(i, int(rng.integers(0, size - 10)), int(rng.integers(0, size - 10)), int(rng.integers(1, 10))),
               Pixels(i, tuple(sorted(coords)))]
    return qs


def _components_per_class(mask, num_classes, ignore_index=255):
    """Objects per class by definition: 4-connected components of each foreground class."""
    from scipy import ndimage

    return np.array([0] + [ndimage.label(mask == c)[1] for c in range(1, num_classes)], np.int64)


@pytest.mark.parametrize("seed, with_instances", [(0, False), (1, False), (2, True)])
def test_oracle_metrics_equal_each_metric_computed_alone_on_dense_truth(seed, with_instances):
    """Every metric of every answer, as the oracle charges it (click data shared,
    counts cached, one memo per answer), equals the metric computed alone on a
    fresh pool truth (no cache: objects from the mask) and the dense formulas."""
    split = _random_pool(seed, with_instances=with_instances)
    oracle = _oracle(split)
    state = LabelState(len(split), split.masks.shape[1:], split.num_classes, 255)
    queries = _queries_for(split, np.random.default_rng(seed))
    oracle.answer(queries, strategy="s", round=1, state=state)
    area = split.masks.size
    for entry in oracle.ledger:
        q = entry.query
        for m, model in build_cost_models({}).items():
            model.prepare(oracle.info)
            alone = model.cost(q, PoolTruth(split).image(q.image))
            assert entry.costs[m] == alone, (m, q)
        # cost_P by its dense definition: the void-free pixels of the query's area.
        covered = np.zeros(split.masks.shape[1:], bool)
        if q.kind == "full_mask":
            covered[:] = True
        elif q.kind == "region":
            y0, x0, y1, x1 = q.bounds
            covered[y0:y1, x0:x1] = True
        elif q.kind == "pixels":
            covered[q.pixel_index] = True
        assert entry.costs["pixels"] == (covered & (split.masks[q.image] != 255)).sum() / area
    truth = oracle._truth
    for i in range(len(split)):
        ic = truth.clicks(1.0)[i]
        assert ic.class_clicks == len(np.unique(ic.segments[ic.segments > 0]))
        for q in (q for q in queries if q.kind == "region" and q.image == i):
            seg = ic.segments[q.y:q.y + q.size, q.x:q.x + q.size]
            assert ic.box_class_clicks(*q.bounds) == len(np.unique(seg[seg > 0]))
        if not with_instances:
            assert truth.object_counts(i).tolist() == _components_per_class(split.masks[i], split.num_classes).tolist()


def test_seconds_cost_is_the_same_with_or_without_click_data():
    """Objects per class come from the click data's segments when it exists,
    else from labelling the mask: both give the same counts."""
    split = _random_pool(3)
    with_clicks, without = PoolTruth(split), PoolTruth(split)
    with_clicks.clicks(1.0)
    for i in range(len(split)):
        assert with_clicks._segment_classes(i) is not None and without._segment_classes(i) is None
        assert with_clicks.object_counts(i).tolist() == without.object_counts(i).tolist()


# -- cost_P and the label state: one definition (MetaBox+ eq. 12) -----------------

def test_pixel_cost_leaves_void_out_like_the_labelled_pixel_fraction():
    """Void pixels carry no label: cost_P does not charge them, the labelled
    pixel fraction does not count them, and the two agree. The quote (before
    the answer) is the whole area, the most the answer can cost."""
    mask = _square_mask()
    mask[:, :4] = 255  # a void band: 80 of 400 pixels
    split = _split([mask, mask])
    oracle = _oracle(split)
    state = LabelState(2, (20, 20), 3, 255)
    region, pixels = Region(1, 0, 0, 8), Pixels(1, ((0, 0), (0, 10), (10, 10)))
    assert oracle.cost_models["pixels"].quote(FullMask(0)) == 400 / 800
    oracle.answer([FullMask(0), region, pixels], strategy="s", round=1, state=state)
    costs = [e.costs["pixels"] for e in oracle.ledger]
    assert costs == [320 / 800, (64 - 32) / 800, 2 / 800]
    assert oracle.ledger.total("pixels") == pytest.approx(state.labelled_pixel_fraction(), abs=1e-15)
    assert all(oracle.cost_models["pixels"].quote(q) >= c for q, c in zip([FullMask(0), region, pixels], costs))


def test_pixel_budget_is_enforced_on_the_quote_and_charged_without_void():
    mask = np.full((10, 10), 255, np.uint8)
    mask[:5] = 1
    oracle = Oracle(_split([mask, mask]), build_cost_models({}), "pixels", 0.6)
    state = LabelState(2, (10, 10), 3, 255)
    oracle.answer([FullMask(0)], strategy="s", round=1, state=state)
    assert oracle.spent == 50 / 200
    # Quoted at 100/200 against 0.35 left: refused before answering, although it would be charged 0.25.
    with pytest.raises(QueryRefused):
        oracle.answer([FullMask(1), Region(1, 0, 0, 2)], strategy="s", round=2, state=state)
    assert oracle.spent == 50 / 200 and len(oracle.ledger) == 1


# -- the ledger: kept by column, read as entries -------------------------------------

def _filled_ledger():
    from alharness.annotation.ledger import Ledger, LedgerEntry

    ledger = Ledger(metrics=("a", "b"))
    ledger.append(LedgerEntry(round=0, query=FullMask(0), costs={"b": 2.0, "a": 0.1}))
    ledger.add(1, Pixels(1, ((0, 0), (3, 4))), [0.2, 1e-17], noisy=True)
    ledger.add(1, Region(2, 0, 0, 3), [0.3, 5.0])
    return ledger


def test_ledger_reads_as_entries_records_totals_and_counts():
    ledger = _filled_ledger()
    entries = list(ledger)
    assert [e.round for e in entries] == [0, 1, 1] and [e.noisy for e in entries] == [False, True, False]
    assert entries[0].costs == {"a": 0.1, "b": 2.0} and entries[1].query == Pixels(1, ((0, 0), (3, 4)))
    # Totals: one float addition per entry, in order, as summing the query log gives.
    assert ledger.totals() == {"a": 0.1 + 0.2 + 0.3, "b": 2.0 + 1e-17 + 5.0}
    rows = ledger.records()
    assert list(rows[1]) == ["round", "query_type", "image", "cls", "box", "pixels", "cost_a", "cost_b", "noisy"]
    assert rows[1]["pixels"] == [[0, 0], [3, 4]] and rows[1]["cost_b"] == 1e-17 and rows[1]["noisy"] is True
    assert ledger.count("pixels") == 1 and ledger.count("full_mask") == 1 and ledger.noisy_count() == 1
    assert ledger.answered(Pixels(1, ((3, 4),))) and not ledger.answered(Pixels(1, ((3, 5),)))
    # Iteration sees the entries as of the call, as a copy would.
    it = iter(ledger)
    ledger.add(2, ImageLabels(0), [0.0, 0.0])
    assert len(list(it)) == 3 and len(ledger) == 4
    with pytest.raises(ValueError):
        ledger.add(2, ImageLabels(1), [0.0])


def test_ledger_pickles_and_reads_the_per_entry_layout_of_older_checkpoints():
    import pickle

    from alharness.annotation.ledger import Ledger

    ledger = _filled_ledger()
    again = pickle.loads(pickle.dumps(ledger))
    assert again.records() == ledger.records() and again.totals() == ledger.totals()
    again.add(3, ImageLabels(3), [1.0, 1.0])
    assert len(again) == 4 and len(ledger) == 3
    # The layout pickled before the ledger was kept by column.
    old = Ledger.__new__(Ledger)
    old.__setstate__({"metrics": ("a", "b"), "_entries": list(ledger), "_totals": ledger.totals(),
                      "_keys": set(ledger._keys), "_counts": ledger._counts.copy()})
    assert old.records() == ledger.records() and old.totals() == ledger.totals()
    assert old.answered(Region(2, 0, 0, 3)) and old.count("region") == 1


def test_campaign_rows_spend_in_pixels_what_the_label_state_holds(tmp_path):
    """On a pool with void pixels, a campaign's spent_pixels equals its
    labelled_pixel_fraction, round by round (full masks and boxes)."""
    from PIL import Image

    from alharness.campaign.loop import run_campaign
    from conftest import tiny_spec

    rng = np.random.default_rng(0)
    for d in ("images", "masks"):
        (tmp_path / d).mkdir()
    (tmp_path / "classes.txt").write_text("background\nthing\nstuff\n")
    for k in range(16):
        m = np.zeros((24, 24), np.uint8)
        y, x = rng.integers(0, 16, 2)
        m[y:y + 8, x:x + 8] = 1 + k % 2
        m[:, :3] = 255  # a void band
        Image.fromarray(np.stack([m * 100] * 3, -1)).save(tmp_path / "images" / f"img{k}.png")
        Image.fromarray(m).save(tmp_path / "masks" / f"img{k}.png")
    params = {"root": str(tmp_path), "size": 24, "val_fraction": 0.0, "test_fraction": 0.25}
    res = run_campaign(tiny_spec(dataset="folder", dataset_params=params, strategy="random_box", budget_metric="pixels",
                                 budget=0.3, initial_masks=1))
    assert res.rows[-1]["n_region"] > 0
    for row in res.rows:
        assert row["spent_pixels"] == pytest.approx(row["labelled_pixel_fraction"], abs=1e-12)
