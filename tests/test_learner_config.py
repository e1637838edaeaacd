"""Model defaults are part of the spec; learner pipelines come from the registry."""

from __future__ import annotations

import json

import pytest

from alharness.errors import ConfigError
from alharness.learner import Learner, LearnerConfig
from alharness.learner.pipeline import BasisLearner, make_learner
from alharness.registry import MODELS, PIPELINES, register_model, register_pipeline
from conftest import tiny_spec


@pytest.fixture
def scratch_registries(monkeypatch):
    """Plugins registered in a test vanish after it (the registries are process-wide)."""
    for reg in (MODELS, PIPELINES):
        reg.names()  # load the built-ins first, so the copy holds them
        monkeypatch.setattr(reg, "_entries", dict(reg._entries))


def _with_default(monkeypatch, factory, **new):
    """Change keyword defaults of a plain function, as a new release of a model would."""
    import inspect

    params = [p for p in inspect.signature(factory).parameters.values() if p.default is not p.empty]
    monkeypatch.setattr(factory, "__defaults__", tuple(new.get(p.name, p.default) for p in params))


# -- model defaults ----------------------------------------------------------------------

def test_model_params_are_the_defaults_overlaid_with_the_given_ones():
    assert LearnerConfig().model_params == {"depth": 2, "width": 16}
    cfg = LearnerConfig(model_params={"width": 4})
    assert cfg.model_params == {"depth": 2, "width": 4}  # in_channels is the harness's, not the spec's
    assert cfg.to_dict()["model_params"] == {"depth": 2, "width": 4}
    assert LearnerConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg  # merging again changes nothing


def test_changing_a_model_default_changes_the_campaign_id(monkeypatch):
    tiny = MODELS.get("tiny_unet").factory
    implicit = tiny_spec(learner=LearnerConfig(model_params={"depth": 1}))
    explicit = tiny_spec(learner=LearnerConfig(model_params={"depth": 1, "width": 16}))
    before = implicit.campaign_id
    assert explicit.campaign_id == before  # the default is in the spec, spelled out or not
    _with_default(monkeypatch, tiny, width=32)
    changed = tiny_spec(learner=LearnerConfig(model_params={"depth": 1}))
    assert changed.learner.model_params == {"depth": 1, "width": 32}
    assert changed.campaign_id != before
    # A campaign that names every parameter keeps its id.
    assert tiny_spec(learner=LearnerConfig(model_params={"depth": 1, "width": 16})).campaign_id == before


def test_a_model_parameter_without_default_must_be_given(scratch_registries):
    @register_model("test_needs_width")
    def needs_width(num_classes: int, width: int, in_channels: int = 3):
        """Test model with a required parameter (test only)."""
        raise AssertionError("not built in this test")

    with pytest.raises(ConfigError, match="model 'test_needs_width' needs parameter"):
        LearnerConfig(model="test_needs_width")
    assert LearnerConfig(model="test_needs_width", model_params={"width": 2}).model_params == {"width": 2}
    with pytest.raises(ConfigError, match="set by the harness"):
        LearnerConfig(model="test_needs_width", model_params={"width": 2, "in_channels": 1})


def test_learner_param_columns_do_not_depend_on_key_order():
    a = tiny_spec(learner=LearnerConfig(model_params={"width": 4, "depth": 1}))
    b = tiny_spec(learner=LearnerConfig(model_params={"depth": 1, "width": 4}))
    assert a.param_columns() == b.param_columns() and a.campaign_id == b.campaign_id
    assert a.param_columns()["p_learner_model_params"] == json.dumps({"depth": 1, "width": 4}, sort_keys=True)


def test_model_params_must_be_a_table():
    with pytest.raises(ConfigError, match="model_params must be a table"):
        LearnerConfig(model_params=[("width", 4)])


# -- pipelines ----------------------------------------------------------------------------

def test_builtin_pipelines_are_registered():
    assert PIPELINES.names() == ["basis", "single"]
    cfg = LearnerConfig(steps=1, model_params={"width": 4, "depth": 1})
    assert type(make_learner(cfg, 3, 255)) is Learner
    assert isinstance(make_learner(LearnerConfig(steps=1, pipeline="basis"), 3, 255), BasisLearner)


def test_unknown_pipeline_names_the_choices():
    with pytest.raises(ConfigError, match=r"learner.pipeline: 'cascade' is not valid; valid choices: 'basis', 'single'"):
        LearnerConfig(pipeline="cascade")


def test_a_plugin_pipeline_is_used_by_make_learner(scratch_registries):
    built = []

    @register_pipeline("test_recording")
    def recording(config, num_classes, ignore_index):
        """One Learner, remembering its arguments (test only)."""
        built.append((config.pipeline, num_classes, ignore_index))
        return Learner(config, num_classes, ignore_index)

    cfg = LearnerConfig(steps=1, pipeline="test_recording")
    assert cfg.to_dict()["pipeline"] == "test_recording"  # a non-default pipeline is part of the id
    learner = make_learner(cfg, 4, 255)
    assert isinstance(learner, Learner) and built == [("test_recording", 4, 255)]


def test_cli_lists_pipelines(capsys):
    from alharness.cli import main

    assert main(["list", "pipelines"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["basis", "single"]
