"""Full-or-weak strategies: the GP allocation, estimated-best-fixed and fixed
proportions in campaigns; the train_and_score service refuses unbought data,
needs a declared validation split and never reaches the test split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alharness import FullMask
from alharness.campaign.loop import run_campaign
from alharness.datasets.base import SegmentationDataset, SplitData
from alharness.errors import ConfigError
from alharness.annotation.oracle import Oracle
from alharness.registry import DATASETS, register_strategy
from alharness.campaign.scoring import TrainAndScore, UnboughtDataError
from alharness.contract.strategy import Strategy
from alharness.testing import parametrize_with_checks
from conftest import tiny_spec
from test_fairness import _reachable

POOL = {"n_train": 40, "n_val": 6, "n_test": 6, "size": 24, "num_classes": 3, "seed": 0}
SEEN: list = []


@register_strategy("test_score_spy")
class ScoreSpy(Strategy):
    """Keeps its contexts and tries train_and_score on bought and unbought data (test only)."""

    needs = frozenset({"train_and_score"})

    def propose(self, ctx):
        SEEN.append(ctx)
        return [FullMask(int(i)) for i in np.flatnonzero(~ctx.labels.has_full_mask)[:1]]


@parametrize_with_checks([
    ("full_or_weak_gp", {"samples": 2, "gp_iters": 10}),
    ("estimated_best_fixed", {"proportions": [0.5, 0.95]}),
    ("fixed_proportion", {"mask_fraction": 0.95, "initial_fraction": 0.1}),
])
def test_strategies_pass_the_plugin_contract(strategy, check):
    check(strategy)


@pytest.mark.parametrize("fraction", [0.5, 0.8])
def test_fixed_proportions_spend_the_budget_in_the_stated_proportion(fraction):
    # Labels cost 1/12 of a mask: a large pool, so that images do not run out before the budget.
    spec = tiny_spec(strategy="fixed_proportion", strategy_params={"mask_fraction": fraction, "initial_fraction": 0.02},
                     dataset_params={**POOL, "n_train": 300}, budget=400, rounds=2, initial_masks=0)
    res = run_campaign(spec)
    spent = {}
    for q in res.queries:
        spent.setdefault(q["round"], {}).setdefault(q["query_type"], 0.0)
        spent[q["round"]][q["query_type"]] += q["cost_label_equivalents"]
    total = sum(sum(r.values()) for r in spent.values())
    assert total <= 400 + 1e-9 and total >= 400 - 12
    for rnd, by_type in spent.items():
        round_total = sum(by_type.values())
        # Masks come in units of alpha_s = 12: the share is within one mask of the target.
        assert abs(by_type.get("full_mask", 0.0) - fraction * round_total) <= 12, (rnd, by_type)
    masks = sum(r.get("full_mask", 0.0) for r in spent.values())
    assert abs(masks / total - fraction) < 0.06, masks / total


@pytest.mark.parametrize("budget, fraction", [(400, 0.5), (400, 0.75), (700, 0.5), (700, 0.95)])
def test_fixed_share_stays_within_one_mask_of_the_nominal_cumulatively(budget, fraction):
    """The benchmark's setting (B0 = 3 % of the pool, 4 installments), where rounding each round's masks
    down spent 39 % (nominal 50 %) and 66 % (nominal 75 %) of B = 400 on masks: after every round the
    cumulative mask spend is within one mask price (alpha_s = 12) of the nominal share of the spend,
    and the rows record the achieved share."""
    spec = tiny_spec(strategy="fixed_proportion", strategy_params={"mask_fraction": fraction, "initial_fraction": 0.03},
                     dataset_params={**POOL, "n_train": 600}, budget=budget, rounds=4, initial_masks=0)
    res = run_campaign(spec)
    masks = total = 0.0
    for row in res.rows:
        bought = [q for q in res.queries if q["round"] == row["round"]]
        masks += sum(q["cost_label_equivalents"] for q in bought if q["query_type"] == "full_mask")
        total += sum(q["cost_label_equivalents"] for q in bought)
        assert abs(masks - fraction * total) <= 12 + 1e-9, (row["round"], masks, total)
        diag = json.loads(row["diagnostics"])
        assert diag["mask_fraction"] == fraction
        assert diag["mask_share"] == pytest.approx(masks / total)
    assert total >= budget - 12


def test_train_and_score_refuses_unbought_data_and_scores_on_validation_only():
    SEEN.clear()
    spec = tiny_spec(strategy="test_score_spy", dataset_params=POOL, validation="charged", budget=200, rounds=1,
                     initial_masks=3, strategy_process=False)  # the spy records in this process
    run_campaign(spec)
    ctx = SEEN[0]
    service = ctx.train_and_score
    assert isinstance(service, TrainAndScore)
    bought = np.flatnonzero(ctx.labels.has_full_mask)
    unbought = np.flatnonzero(~ctx.labels.has_full_mask & ~ctx.labels.has_image_labels)
    with pytest.raises(UnboughtDataError, match="no full mask was bought"):
        service(masks=[int(unbought[0])], labels=[], seed=0)
    with pytest.raises(UnboughtDataError, match="no image-level labels"):
        service(masks=[], labels=[int(unbought[0])], seed=0)
    with pytest.raises(UnboughtDataError, match="outside the pool"):
        service(masks=[10_000], labels=[], seed=0)
    score = service(masks=bought.tolist(), labels=bought.tolist(), seed=0, steps=4)
    assert 0.0 <= score <= 1.0
    assert service(masks=bought.tolist(), labels=[], seed=0, steps=4) == service(masks=bought.tolist(), labels=[], seed=0, steps=4)

    # What it holds: the val split (charged), never the test split or pool truth.
    ds = DATASETS.create("synthetic_shapes", **POOL)
    val, test, train = ds.split("val"), ds.split("test"), ds.split("train")
    objs = _reachable(ctx)
    assert not {type(o) for o in objs} & {SegmentationDataset, SplitData, Oracle}
    arrays = [o for o in objs if isinstance(o, np.ndarray)]
    for a in arrays:
        assert not np.shares_memory(a, ds.masks) and not np.shares_memory(a, ds.images)
        if a.shape == test.images.shape:
            assert not np.array_equal(a, test.images), "the test images are reachable from the context"
        if a.shape == test.masks.shape:
            assert not np.array_equal(a, test.masks), "the test masks are reachable from the context"
        if a.shape == train.masks.shape and a.dtype == train.masks.dtype:
            assert not np.array_equal(a, train.masks), "pool ground truth is reachable from the context"
    assert any(a.shape == val.masks.shape and np.array_equal(a, val.masks) for a in arrays)
    # The validation masks were paid for.
    assert spec.validation == "charged"


def test_train_and_score_needs_a_declared_validation_split():
    spec = tiny_spec(strategy="test_score_spy", dataset_params=POOL, validation="none", rounds=1)
    with pytest.raises(ConfigError, match="validation = 'charged'"):
        run_campaign(spec)


def test_gp_allocation_campaign_end_to_end():
    spec = tiny_spec(strategy="full_or_weak_gp", strategy_params={"samples": 3, "gp_iters": 30, "initial_fraction": 0.1},
                     dataset_params=POOL, validation="free", budget=300, rounds=3, initial_masks=0)
    res = run_campaign(spec)
    assert len(res.rows) == 4
    last = res.rows[-1]
    assert last["spent_label_equivalents"] <= 300 + 1e-9
    assert res.rows[0]["n_full_mask"] == 4 and res.rows[0]["n_image_labels"] == 4  # (C0, S0) = 10 % of 40
    for rnd, row in enumerate(res.rows[1:], start=1):
        d = json.loads(row["diagnostics"])
        if "skipped" in d:
            continue
        assert d["samples"] == 3 * rnd  # Alg. 2 line 5: M grows by M samples per round
        before = res.rows[rnd - 1]
        assert row["n_full_mask"] - before["n_full_mask"] == d["delta_s"]
        assert row["n_image_labels"] - before["n_image_labels"] == d["delta_c"]
    # Eq. (7) at t = T - 1 reaches for the eq. (3) optimum.
    d = json.loads(res.rows[-1]["diagnostics"])
    if "eq3" in d:
        assert d["eq7"] == d["eq3"]
