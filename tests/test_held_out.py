"""Held-out purchases (``FullMask(held_out=True)``): charged and logged like a
full mask, readable by the strategy, never trained on, the image out of the
pool for every later query, kept across checkpoints; MetaBox's meta set M is
bought that way (MetaBox+ paper §3.2)."""

from __future__ import annotations

import numpy as np
import pytest

from alharness.annotation.costs import build_cost_models
from alharness.annotation.labels import UNKNOWN, LabelState
from alharness.annotation.oracle import Oracle
from alharness.campaign.checkpoint import Checkpointer
from alharness.campaign.loop import run_campaign
from alharness.contract import HELD_OUT_MASK, FullMask, ImageLabels, Region, Strategy
from alharness.datasets.base import SplitData
from alharness.errors import DuplicateQueryError, MalformedQueryError
from alharness.learner import Learner, LearnerConfig
from alharness.learner.targets import training_set
from alharness.registry import register_strategy
from alharness.results.store import Location
from conftest import TINY_LEARNER, result_columns, tiny_spec


@register_strategy("test_holds_out")
class HoldsOut(Strategy):
    """Round 0: masks of images 0 and 1, and (``hold``) images 2-4 held out; then one more mask a round (test only)."""

    def __init__(self, hold: bool = True):
        self.hold = hold

    def initial(self, ctx):
        return [FullMask(0), FullMask(1)] + ([FullMask(i, held_out=True) for i in (2, 3, 4)] if self.hold else [])

    def propose(self, ctx):
        return [FullMask(5 + ctx.round)]


def _pool(n=4, size=10):
    masks = np.zeros((n, size, size), np.uint8)
    masks[:, 2:6, 3:8] = 1  # the same mask everywhere: every image costs the same in every metric
    masks[:, 7:, :4] = 2
    return SplitData(dataset_ids=np.arange(n), images=np.zeros((n, size, size, 3), np.uint8), masks=masks,
                     instances=None, num_classes=3, ignore_index=255)


def _oracle(pool):
    return Oracle(pool, build_cost_models({}), "label_equivalents", 1e9)


def test_held_out_mask_is_the_full_masks_key_and_price_logged_apart():
    q = FullMask(1, held_out=True)
    assert q.kind == FullMask.kind and ("full_mask", 1) in list(q.keys())
    assert q.log_kind == HELD_OUT_MASK and q.describe()["query_type"] == HELD_OUT_MASK
    pool = _pool()
    oracle, state = _oracle(pool), LabelState(len(pool), (10, 10), 3, 255)
    assert len(oracle.cost_models) > 1
    assert oracle.quote(q) == oracle.quote(FullMask(0))
    oracle.answer([FullMask(0), q], strategy="s", round=0, state=state)
    mask_row, held_row = oracle.ledger.records()
    costs = [k for k in mask_row if k.startswith("cost_")]
    assert costs and all(held_row[k] == mask_row[k] > 0 for k in costs)  # charged as a full mask, in every metric
    assert (mask_row["query_type"], held_row["query_type"]) == ("full_mask", HELD_OUT_MASK)
    assert oracle.ledger.count("full_mask") == 1 and oracle.ledger.count(HELD_OUT_MASK) == 1
    assert oracle.spent == 2 * mask_row["cost_label_equivalents"]
    # The strategy reads the mask; the image is marked out of the training pool.
    assert np.array_equal(state.pixels[1], pool.masks[1]) and state.held_out.tolist() == [False, True, False, False]
    assert not state.has_full_mask[1] and (state.image_labels[1] == UNKNOWN).all()
    with pytest.raises(MalformedQueryError, match="held_out must be a bool"):
        oracle.answer([FullMask(2, held_out="yes")], strategy="s", round=1, state=state)


@pytest.mark.parametrize("later", [FullMask(1), FullMask(1, held_out=True), ImageLabels(1), Region(1, 0, 0, 3)])
def test_every_later_query_on_a_held_out_image_is_refused(later):
    pool = _pool()
    oracle, state = _oracle(pool), LabelState(len(pool), (10, 10), 3, 255)
    oracle.answer([FullMask(1, held_out=True)], strategy="s", round=0, state=state)
    spent = oracle.spent
    with pytest.raises(DuplicateQueryError, match="image 1 was bought held out.*left the training pool"):
        oracle.answer([ImageLabels(0), later], strategy="s", round=1, state=state)
    assert oracle.spent == spent and len(oracle.ledger) == 1  # nothing charged


def test_an_image_with_training_labels_cannot_be_held_out():
    pool = _pool()
    oracle, state = _oracle(pool), LabelState(len(pool), (10, 10), 3, 255)
    oracle.answer([ImageLabels(0)], strategy="s", round=0, state=state)
    with pytest.raises(DuplicateQueryError, match="already has labels bought for training"):
        oracle.answer([FullMask(0, held_out=True)], strategy="s", round=1, state=state)
    with pytest.raises(DuplicateQueryError, match="already has labels bought for training"):
        oracle.answer([Region(2, 0, 0, 3), FullMask(2, held_out=True)], strategy="s", round=1, state=state)
    with pytest.raises(DuplicateQueryError, match="holds out pool image 3 and asks about it again"):
        oracle.answer([FullMask(3, held_out=True), ImageLabels(3)], strategy="s", round=1, state=state)
    assert len(oracle.ledger) == 1


def _squares(n=6, size=12, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        y, x = rng.integers(0, size - 5, 2)
        masks[i, y:y + 5, x:x + 5] = 1 + i % 2
        images[i, y:y + 5, x:x + 5] = 200 if i % 2 else 120
    return images, masks


def test_the_learner_never_trains_on_held_out_images():
    images, masks = _squares()
    held = LabelState(len(images), masks.shape[1:], 3, 255)
    plain = LabelState(len(images), masks.shape[1:], 3, 255)
    for st in (held, plain):
        st.set_full_mask(0, masks[0])
        st.set_image_labels(1, np.array([True, True, False]))
    for i in (2, 3, 4):
        held.set_held_out_mask(i, masks[i])
    # Even where a pipeline hands it pseudo-labels for them.
    pseudo = np.full(masks.shape, 255, np.uint8)
    pseudo[[2, 5]] = masks[[2, 5]]
    data = training_set(held, True, (pseudo, None))
    assert data.index.tolist() == [0, 1, 5] and data.n_pseudo == 1  # pseudo-labelled: image 5, not 2
    only_held = LabelState(len(images), masks.shape[1:], 3, 255)
    only_held.set_held_out_mask(0, masks[0])
    assert len(training_set(only_held, True)) == 0
    # The same model as if they had never been bought.
    config = LearnerConfig(**{**TINY_LEARNER, "image_label_loss": "pooled"})
    a, b = Learner(config, 3, 255), Learner(config, 3, 255)
    fa, fb = a.fit(images, held, seed=3), b.fit(images, plain, seed=3)
    assert fa["train_images"] == fb["train_images"] == 2 and fa["final_loss"] == fb["final_loss"]
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.model.state_dict().values(),
                                                                     b.model.state_dict().values()))


def test_basis_and_train_and_score_leave_held_out_images_out():
    from alharness.campaign.scoring import TrainAndScore, UnboughtDataError
    from alharness.learner.pipeline import make_learner

    images, masks = _squares()
    state = LabelState(len(images), masks.shape[1:], 3, 255)
    state.set_full_mask(0, masks[0])
    state.set_image_labels(1, np.array([True, True, False]))
    state.set_held_out_mask(2, masks[2])
    basis = make_learner(LearnerConfig(**{**TINY_LEARNER, "pipeline": "basis"}), 3, 255)
    basis.fit(images, state, seed=0)
    assert basis.pseudo_index.tolist() == [1]  # the weak image is pseudo-labelled, the held-out one is not
    score = TrainAndScore(LearnerConfig(**TINY_LEARNER), images, state, images[:2], masks[:2], 3, 255)
    with pytest.raises(UnboughtDataError, match="pool image 2"):
        score([0, 2], [], seed=0)


def test_a_campaign_trains_the_same_model_as_if_held_out_images_were_never_bought():
    spec = dict(strategy="test_holds_out", budget=120, initial_masks=0)
    held = run_campaign(tiny_spec(**spec, strategy_params={"hold": True}))  # in a strategy process: the flag travels
    plain = run_campaign(tiny_spec(**spec, strategy_params={"hold": False}))
    same = ("miou", "per_class_iou", "train_loss", "train_steps", "n_full_mask")
    assert [{k: r[k] for k in same} for r in held.rows] == [{k: r[k] for k in same} for r in plain.rows]
    assert [r["n_full_mask"] for r in held.rows] == [2, 3, 4]
    mask_price = 12.0  # label_equivalents' alpha_s
    assert [r["spent_label_equivalents"] - p["spent_label_equivalents"] for r, p in zip(held.rows, plain.rows)] == \
        [3 * mask_price] * 3  # M is counted in the budget
    held_out = [q for q in held.queries if q["query_type"] == HELD_OUT_MASK]
    assert [(q["round"], q["image"], q["cost_label_equivalents"]) for q in held_out] == \
        [(0, i, mask_price) for i in (2, 3, 4)]


def test_held_out_flags_survive_a_checkpoint():
    import tempfile

    spec = tiny_spec(strategy="test_holds_out", budget=120, initial_masks=0)
    plain = run_campaign(spec)

    class Interrupt(Exception):
        pass

    def die(row):
        raise Interrupt

    with tempfile.TemporaryDirectory() as where:
        with pytest.raises(Interrupt):
            run_campaign(spec, on_round=die, checkpoint=Checkpointer(Location(where), spec.campaign_id))
        snap = Checkpointer(Location(where), spec.campaign_id).load()
        assert snap["labels"]["held_out"].tolist() == [False, False, True, True, True] + [False] * 7
        ck = Checkpointer(Location(where), spec.campaign_id)
        # The resumed label state must equal the recorded digest (held-out flags included) or the campaign fails.
        resumed = run_campaign(spec, checkpoint=ck)
    assert ck.resumed_round == 0
    assert result_columns(resumed.rows) == result_columns(plain.rows)


def test_metabox_meta_set_is_bought_held_out_and_never_trained_on(monkeypatch):
    import alharness.learner.learner as learner_module

    trained: list[set] = []
    original = learner_module.training_set

    def spy(state, *a, **k):
        data = original(state, *a, **k)
        trained.append(set(data.index.tolist()))
        return data

    monkeypatch.setattr(learner_module, "training_set", spy)
    params = {"box_size": 6, "boxes_per_round": 3, "initial_images": 1, "meta_images": 2, "n_estimators": 10}
    res = run_campaign(tiny_spec(strategy="metabox_plus", budget=80, rounds=2, strategy_params=params))
    meta = [q for q in res.queries if q["query_type"] == HELD_OUT_MASK]
    masks = [q for q in res.queries if q["query_type"] == "full_mask"]
    assert len(meta) == 2 and len(masks) == 1 and all(q["round"] == 0 for q in meta + masks)
    assert meta[0]["cost_label_equivalents"] == masks[0]["cost_label_equivalents"]  # the full-mask price
    meta_images = {q["image"] for q in meta}
    assert [r["n_full_mask"] for r in res.rows] == [1, 1, 1]
    assert any(q["query_type"] == "region" for q in res.queries)
    assert not any(q["image"] in meta_images for q in res.queries if q["query_type"] != HELD_OUT_MASK)
    assert len(trained) == 3 and all(masks[0]["image"] in t and not t & meta_images for t in trained)
