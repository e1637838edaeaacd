"""The campaign loop without Ray: rows, budget schedule, determinism, check_strategy."""

from __future__ import annotations

import numpy as np
import pytest

from alharness.campaign.loop import run_campaign
from alharness.execution.execute import execute
from alharness.registry import STRATEGIES
from alharness.testing import StrategyCheckError, check_strategy, parametrize_with_checks
from conftest import result_columns, tiny_spec


def test_rows_follow_the_budget_schedule():
    spec = tiny_spec(strategy="random", budget=60, rounds=3, initial_masks=2)
    res = run_campaign(spec)
    rows = res.rows
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    spent = [r["spent_label_equivalents"] for r in rows]
    assert spent[0] == 24  # two initial masks at 12
    assert all(b >= a for a, b in zip(spent, spent[1:]))
    assert spent[-1] <= 60
    # 36 left over 3 rounds: one mask (12) per round.
    assert [r["n_full_mask"] for r in rows] == [2, 3, 4, 5]
    for r in rows:
        assert 0.0 <= r["miou"] <= 1.0
        assert len(r["per_class_iou"]) == 3
        assert r["campaign_id"] == spec.campaign_id
        assert r["p_dataset_size"] == 24 and r["p_cost_label_equivalents_alpha_s"] == 12.0
        assert r["spent_seconds"] > 0
    assert len(res.queries) == 5
    assert sum(q["cost_label_equivalents"] for q in res.queries) == spent[-1]


def test_fixed_proportion_spends_in_the_stated_proportion():
    from conftest import TINY_DATASET

    spec = tiny_spec(strategy="fixed_proportion", strategy_params={"mask_fraction": 0.5}, budget=72, rounds=2, initial_masks=0,
                     dataset_params={**TINY_DATASET, "n_train": 80})
    res = run_campaign(spec)
    by_round = {}
    for q in res.queries:
        by_round.setdefault(q["round"], []).append(q)
    all_masks = 0.0
    for rnd, qs in by_round.items():
        masks = sum(q["cost_label_equivalents"] for q in qs if q["query_type"] == "full_mask")
        labels = sum(q["cost_label_equivalents"] for q in qs if q["query_type"] == "image_labels")
        assert masks % 12 == 0 and labels == 36 - masks  # whole masks, the rest of the round on image labels
        all_masks += masks
    # The share is kept over the campaign, not floored each round: 18 + 18 on masks -> 2 + 1 masks.
    assert all_masks == 36


def test_same_spec_and_seed_give_identical_rows():
    a = run_campaign(tiny_spec(strategy="entropy"))
    b = run_campaign(tiny_spec(strategy="entropy"))
    assert result_columns(a.rows) == result_columns(b.rows)
    assert a.queries == b.queries


def test_different_seeds_differ():
    a = run_campaign(tiny_spec(seed=0))
    b = run_campaign(tiny_spec(seed=1))
    assert a.queries != b.queries


def test_model_really_learns():
    # Enough steps and masks to beat an untrained model clearly.
    from alharness.learner import LearnerConfig

    spec = tiny_spec(budget=12 * 12, rounds=1, initial_masks=12, learner=LearnerConfig(steps=60, batch_size=4, model_params={"width": 8, "depth": 1}))
    untrained = tiny_spec(budget=12, rounds=1, initial_masks=0, learner=LearnerConfig(steps=60, batch_size=4, model_params={"width": 8, "depth": 1}))
    trained_miou = run_campaign(spec).rows[0]["miou"]
    untrained_miou = run_campaign(untrained).rows[0]["miou"]
    assert trained_miou > untrained_miou + 0.2, (trained_miou, untrained_miou)


def test_a_raising_strategy_becomes_a_failed_record():
    out = execute(tiny_spec(strategy="test_always_fails"))
    assert out["record"]["status"] == "failed"
    assert "deliberate failure" in out["record"]["error"] and "Traceback" in out["record"]["error"]
    assert out["rows"] == []


@parametrize_with_checks(["random", "entropy", "fixed_proportion"])
def test_builtin_strategies_pass_the_strategy_checks(strategy, check):
    check(strategy)


@pytest.mark.parametrize("name, check, match", [
    ("test_overdraw", "check_batches_well_formed_and_within_budget", "but the round allows"),
    ("test_repeat", "check_no_repeated_queries", "already answered"),
    ("test_always_fails", "check_proposes_something", "RuntimeError: deliberate failure"),
])
def test_check_strategy_catches_broken_plugins(name, check, match):
    with pytest.raises(StrategyCheckError, match=match) as err:
        check_strategy(name)
    assert match in err.value.failures[check]


def test_check_strategy_catches_nondeterminism():
    from alharness import FullMask, Strategy

    class Unseeded(Strategy):
        calls = [0]  # state shared across instances: a fresh twin does not repeat the first

        def propose(self, ctx):
            self.calls[0] += 1
            i = (7 * self.calls[0]) % len(ctx.pool)  # depends on history, not on ctx.rng
            q = FullMask(i)
            return [] if ctx.labels.has_full_mask[i] or ctx.quote(q) > ctx.budget_left_this_round else [q]

    with pytest.raises(StrategyCheckError, match="deterministic"):
        check_strategy(Unseeded)


def test_every_registered_strategy_has_a_description():
    for e in STRATEGIES.entries():
        assert e.description, e.name


def test_early_stopping_uses_a_charged_validation_split():
    from alharness.errors import ConfigError
    from alharness.learner import LearnerConfig
    from conftest import TINY_DATASET, TINY_LEARNER

    ds = {**TINY_DATASET, "n_val": 3}
    learner = LearnerConfig(**{**TINY_LEARNER, "steps": 8, "patience": 2, "val_every": 2})
    with pytest.raises(ConfigError, match="patience needs a validation split"):
        tiny_spec(dataset_params=ds, learner=learner)
    charged = run_campaign(tiny_spec(dataset_params=ds, learner=learner, validation="charged", budget=96))
    free = run_campaign(tiny_spec(dataset_params=ds, learner=learner, validation="free", budget=96))
    val_rows = [q for q in charged.queries if q["query_type"] == "validation_mask"]
    assert len(val_rows) == 3 and all(q["round"] == 0 for q in val_rows)
    assert charged.rows[0]["spent_label_equivalents"] == 3 * 12 + 2 * 12  # validation + initial masks
    assert free.rows[0]["spent_label_equivalents"] == 2 * 12
    assert not any(q["query_type"] == "validation_mask" for q in free.queries)
    assert charged.rows[0]["validation"] == "charged" and free.rows[0]["validation"] == "free"
    assert charged.rows[0]["n_full_mask"] == 2  # validation masks are counted apart
    assert 0.0 <= charged.rows[-1]["val_miou"] <= 1.0
    with pytest.raises(Exception, match="validation split's masks cost"):
        run_campaign(tiny_spec(dataset_params=ds, learner=learner, validation="charged", budget=30))


def test_named_steps_compose_into_run_campaign():
    """setup_campaign, then run_round per round: the rows run_campaign returns."""
    from alharness.campaign.loop import round_allowance, run_round, setup_campaign

    spec = tiny_spec(strategy="entropy", rounds=2)
    setup, state = setup_campaign(spec)
    try:
        assert round_allowance(spec, state, 0) == spec.budget
        rows = [run_round(setup, state, rnd) for rnd in range(spec.rounds + 1)]
    finally:
        state.strategy.close()  # the strategy process setup_campaign started
    assert state.rows == rows and state.next_round == spec.rounds + 1
    assert result_columns(rows) == result_columns(run_campaign(spec).rows)


# -- the strategy process --------------------------------------------------------
POOL = {"n_train": 40, "n_val": 6, "n_test": 6, "size": 24, "num_classes": 3, "seed": 0}
MODES = {
    "entropy": dict(strategy="entropy", rounds=3),  # declared outputs (probabilities)
    "madbal": dict(strategy="madbal", strategy_params={"pixels_per_image": 3, "initial_pixels": 4, "n_clusters": 2},
                   budget_metric="pixels", budget=0.05, rounds=2, initial_masks=0,
                   learner={"steps": 4, "batch_size": 4, "model_params": {"width": 4, "depth": 1},
                            "heads": ["maturity", "loss_prediction"], "head_steps": 2}),  # the model, by copy
    "full_or_weak_gp": dict(strategy="full_or_weak_gp", strategy_params={"samples": 2, "gp_iters": 10,
                                                                         "initial_fraction": 0.1},
                            dataset_params=POOL, validation="free", budget=200, rounds=2, initial_masks=0),
    "mask_guided_oracle": dict(strategy="mask_guided_oracle", strategy_params={"beta": 0.5}, rounds=2),
}


def _without_timings(rows):
    """Result columns, and diagnostics without the strategy's own timings (keys ending in _s)."""
    import json

    out = result_columns(rows)
    for r in out:
        r["diagnostics"] = {k: v for k, v in json.loads(r["diagnostics"]).items() if not k.endswith("_s")}
    return out


@pytest.mark.parametrize("case", sorted(MODES))
def test_a_strategy_process_gives_the_rows_of_an_in_process_run(case):
    """Services by message (train_and_score), the model by copy, oracle statistics,
    torch's global generator: the same rows and queries either way."""
    a = run_campaign(tiny_spec(**MODES[case], strategy_process=False))
    b = run_campaign(tiny_spec(**MODES[case]))
    assert _without_timings(a.rows) == _without_timings(b.rows)
    assert a.queries == b.queries


def test_a_strategy_error_keeps_its_type_and_its_traceback():
    from alharness.campaign.strategy_worker import RemoteTraceback
    from alharness.errors import ConfigError

    with pytest.raises(RuntimeError, match="deliberate failure from test_always_fails") as err:
        run_campaign(tiny_spec(strategy="test_always_fails"))
    assert isinstance(err.value.__cause__, RemoteTraceback) and "in propose" in err.value.__cause__.tb
    out = execute(tiny_spec(strategy="test_always_fails"))
    assert "Traceback in the strategy process" in out["record"]["error"]
    with pytest.raises(ConfigError, match="unknown uncertainty"):  # raised by the strategy's own __init__
        run_campaign(tiny_spec(strategy="madbal", strategy_params={"uncertainty": "maximal"}))


def test_a_strategy_process_that_dies_fails_its_campaign(tmp_path):
    from alharness.campaign.strategy_worker import StrategyError

    marker = tmp_path / "crashed"
    with pytest.raises(StrategyError, match="'test_crash_worker': its process died"):
        run_campaign(tiny_spec(strategy="test_crash_worker", strategy_params={"marker": str(marker)}))
    assert marker.exists()


def test_a_strategy_registered_at_run_time_runs_in_a_strategy_process(tmp_path, monkeypatch):
    """Not an entry point: the strategy process imports the module that registered it."""
    (tmp_path / "my_runtime_strategy.py").write_text(
        "from alharness import FullMask, Strategy, register_strategy\n"
        "@register_strategy('test_runtime_registered')\n"
        "class Mine(Strategy):\n"
        "    'The first unbought image.'\n"
        "    def propose(self, ctx):\n"
        "        import os\n"
        "        self.pid = os.getpid()\n"
        "        return [FullMask(int(i)) for i in range(len(ctx.pool)) if not ctx.labels.has_full_mask[i]][:1]\n"
        "    def diagnostics(self):\n"
        "        return {'pid': getattr(self, 'pid', None)}\n")
    monkeypatch.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))  # forget it afterwards
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    import json
    import os

    importlib.import_module("my_runtime_strategy")
    rows = run_campaign(tiny_spec(strategy="test_runtime_registered")).rows
    assert [r["n_full_mask"] for r in rows] == [2, 3, 4]
    assert json.loads(rows[1]["diagnostics"])["pid"] != os.getpid()
