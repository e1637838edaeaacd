"""Learner adequacy: the check-learner campaigns, their verdict and warning, and steps = "auto"."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from alharness.cli import main
from alharness.errors import ConfigError
from alharness.execution.adequacy import CHECK_FILE, check_learner, check_specs, warnings
from alharness.execution.backends.local import LocalBackend
from alharness.execution.benchmark import parse_benchmark
from alharness.execution.execute import campaign_record
from alharness.learner import Learner, LearnerConfig
from conftest import tiny_benchmark_doc, tiny_spec, toml_dumps
from test_learner_training import masked


def _doc(steps, lr=3e-2):
    doc = tiny_benchmark_doc(strategies=["random"], seeds=[0], budget=24, rounds=1, initial_masks=1)
    doc["learner"].update(steps=steps, lr=lr, model_params={"width": 8, "depth": 1})
    return doc


class Saturating(LocalBackend):
    """Stand-in campaigns: a learner that has converged by the benchmark's steps
    (mIoU 0.8 (1 − e^(−steps/5)), a little less on half the masks)."""

    def _run(self, spec, attempt, checkpoint_at):
        miou = 0.8 * (1 - math.exp(-spec.learner.steps / 5)) - (0.1 if spec.strategy == "random" else 0)
        row = {"campaign_id": spec.campaign_id, "strategy": spec.strategy, "seed": spec.seed, "round": 0, "miou": miou}
        return {"record": campaign_record(spec, "ok"), "rows": [row], "queries": []}


def test_an_underfit_learner_triggers_the_warning(tmp_path, capsys):
    bfile = tmp_path / "b.toml"
    bfile.write_text(toml_dumps(_doc(steps=4)))
    rc = main(["check-learner", str(bfile), "--backend", "local", "--out", str(tmp_path / "out"), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 0 and "converged" in out and "NO" in out
    assert err.count("warning: learner under-trained on synthetic_shapes") == 1
    (group,) = json.loads((tmp_path / "out" / CHECK_FILE).read_text())["groups"]
    assert not group["converged"] and group["gain_2x"] > 0.01 and set(group["miou"]) == {"1x", "2x", "4x", "50%"}


def test_a_converged_learner_does_not(tmp_path):
    bench = parse_benchmark(_doc(steps=60), open_datasets=False)
    variants, = check_specs(bench).values()
    assert [s[0].learner.steps for k, s in variants.items() if k != "50%"] == [60, 120, 240]
    assert variants["50%"][0].initial_masks == 6 and variants["50%"][0].strategy == "random"  # half of 12
    result = check_learner(bench, tmp_path, backend=Saturating(), progress=False)
    (group,) = result["groups"]
    assert group["converged"] and group["more_data_helps"] and warnings(result) == []
    assert json.loads((tmp_path / CHECK_FILE).read_text()) == json.loads(json.dumps(result))


# -- steps = "auto" ------------------------------------------------------------------

def test_auto_steps_enter_the_campaign_id_with_cap_and_tolerance():
    fixed, auto = LearnerConfig(), LearnerConfig(steps="auto")
    assert "max_steps" not in fixed.to_dict()  # ids of fixed-step campaigns are unchanged
    assert auto.to_dict()["steps"] == "auto" and auto.to_dict()["max_steps"] == 2000
    ids = {tiny_spec(learner=LearnerConfig(steps="auto", **kw)).campaign_id
           for kw in ({}, {"max_steps": 100}, {"auto_tol": 0.05})}
    assert len(ids) == 3
    with pytest.raises(ConfigError, match="learner.steps must be an integer >= 0 or one of 'auto'"):
        LearnerConfig(steps="forever")
    with pytest.raises(ConfigError, match="epochs"):
        LearnerConfig(steps="auto", epochs=2)


def _fit(**kw):
    images, masks, _, state = masked(16, 16)
    cfg = LearnerConfig(steps="auto", batch_size=8, lr=1e-2, model_params={"width": 8, "depth": 1}, val_every=5, **kw)
    learner = Learner(cfg, 3, 255)
    stats = learner.fit(images, state, seed=0, val=(images[:8], masks[:8]) if cfg.patience else None)
    return stats, learner.predict(images[:4])


def test_auto_steps_stop_on_a_loss_plateau_before_the_cap_deterministically():
    stats, pred = _fit(max_steps=400, auto_tol=0.2)
    assert 0 < stats["train_steps"] < 400 and stats["train_steps"] % 5 == 0
    again, pred2 = _fit(max_steps=400, auto_tol=0.2)
    assert again["train_steps"] == stats["train_steps"] and np.array_equal(pred, pred2)
    capped, _ = _fit(max_steps=12, auto_tol=0.0)
    assert capped["train_steps"] == 12  # never past the cap


def test_auto_steps_stop_on_the_validation_split_when_one_is_passed():
    stats, _ = _fit(max_steps=300, patience=1)
    assert 0 < stats["train_steps"] < 300 and stats["val_miou"] is not None
