"""Plugin registry and seeded randomness."""

from __future__ import annotations

import numpy as np
import pytest

from alharness.errors import ConfigError, PluginError
from alharness.registry import Registry
from alharness.seeding import derive_int_seed, derive_rng


def test_register_create_and_validate():
    reg = Registry("widget", "alharness.test-widgets")

    @reg.register("knob")
    class Knob:
        """Turns."""

        def __init__(self, size: int = 3):
            self.size = size

    assert reg.names() == ["knob"]
    assert reg.get("knob").description == "Turns."
    assert reg.create("knob", size=5).size == 5
    assert reg.defaults("knob") == {"size": 3}
    with pytest.raises(ConfigError, match="unknown widget 'knb'; valid choices: knob"):
        reg.get("knb")
    with pytest.raises(ConfigError, match="has no parameter 'sise'; valid parameters: size"):
        reg.create("knob", sise=1)

    with pytest.raises(PluginError, match="registered twice"):
        @reg.register("knob")
        class Other:
            pass

    with pytest.raises(PluginError, match="invalid widget name"):
        reg.register("bad name!")


def test_derived_generators_are_reproducible_and_independent():
    a = derive_rng(7, "strategy", 3).random(5)
    b = derive_rng(7, "strategy", 3).random(5)
    c = derive_rng(7, "strategy", 4).random(5)
    d = derive_rng(8, "strategy", 3).random(5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, d)
    assert derive_int_seed(1, "train", 0) == derive_int_seed(1, "train", 0) != derive_int_seed(1, "train", 1)
    assert 0 <= derive_int_seed(1, "x") < 2**63


def test_synthetic_dataset_is_deterministic_and_well_formed():
    from alharness.registry import DATASETS

    a = DATASETS.create("synthetic_shapes", n_train=5, n_val=2, n_test=3, size=20, num_classes=4, seed=1)
    b = DATASETS.create("synthetic_shapes", n_train=5, n_val=2, n_test=3, size=20, num_classes=4, seed=1)
    c = DATASETS.create("synthetic_shapes", n_train=5, n_val=2, n_test=3, size=20, num_classes=4, seed=2)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (10, 20, 20, 3) and a.masks.max() < 4
    assert sorted(np.concatenate([a.splits[s] for s in ("train", "val", "test")])) == list(range(10))
    # Instance ids are 1..K per image and lie on foreground pixels only.
    for inst, mask in zip(a.instances, a.masks):
        ids = np.unique(inst[inst > 0])
        assert list(ids) == list(range(1, len(ids) + 1))
        assert (mask[inst > 0] > 0).all()
    with pytest.raises(ValueError):
        a.masks[0, 0, 0] = 1  # ground truth is read-only
    with pytest.raises(ConfigError, match="num_classes must be >= 2"):
        DATASETS.create("synthetic_shapes", num_classes=1)


# -- a broken plugin package -------------------------------------------------------------------

class _EntryPoint:
    """What importlib.metadata.entry_points yields, enough for the registry."""

    def __init__(self, name, value, load):
        self.name, self.value, self._load = name, value, load

    def load(self):
        return self._load()


def _fail_import():
    raise ModuleNotFoundError("No module named 'no_such_pkg'")


def _with_entry_points(monkeypatch, target, extra):
    """``extra`` entry points installed in group ``target``, besides the real ones."""
    import importlib.metadata

    real = importlib.metadata.entry_points

    def entry_points(group=None):
        return [*real(group=group), *extra] if group == target else real(group=group)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_an_entry_point_that_fails_to_import_is_skipped_with_one_warning(monkeypatch, capsys):
    def knob(size: int = 3):
        """Turns."""
        return size

    _with_entry_points(monkeypatch, "alharness.test-broken", [
        _EntryPoint("broken", "no_such_pkg.plugin", _fail_import), _EntryPoint("knob", "pkg:knob", lambda: knob)])
    reg = Registry("widget", "alharness.test-broken")
    assert reg.names() == ["knob"]  # the others still load
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: skipped widget plugin entry point 'broken' = 'no_such_pkg.plugin'")
    assert "ModuleNotFoundError: No module named 'no_such_pkg'" in err[0]
    assert reg.names() == ["knob"] and capsys.readouterr().err == ""  # warned once
    with pytest.raises(ConfigError, match=r"unknown widget 'broken'; valid choices: knob \(entry points that failed "
                                          r"to import: broken = no_such_pkg.plugin: ModuleNotFoundError"):
        reg.get("broken")


def test_list_and_bench_go_on_without_a_broken_strategy_package(monkeypatch, capsys, tmp_path):
    from alharness.cli import main
    from alharness.execution.benchmark import load_benchmark
    from alharness.registry import STRATEGIES

    STRATEGIES.names()
    monkeypatch.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))
    monkeypatch.setattr(STRATEGIES, "load_errors", [])
    monkeypatch.setattr(STRATEGIES, "_loaded", False)  # loaded again, with the broken package installed
    _with_entry_points(monkeypatch, "alharness.strategies", [_EntryPoint("brokenpkg", "brokenpkg", _fail_import)])
    assert main(["list", "strategies"]) == 0
    captured = capsys.readouterr()
    assert "random" in captured.out and "'brokenpkg'" in captured.err and captured.err.count("warning:") == 1
    assert load_benchmark("benchmarks/quickstart.toml", open_datasets=False).specs  # what `bench` loads first


# -- cost models and campaign ids -------------------------------------------------------------

# The id benchmarks/quickstart.toml's first campaign has had since model defaults entered the spec.
QUICKSTART_FIRST_ID = "64a48912f81afe3d"


def test_an_installed_cost_model_changes_no_campaign_id(monkeypatch):
    from alharness.annotation.costs import CostModel
    from alharness.execution.benchmark import load_benchmark
    from alharness.registry import COSTS
    from conftest import tiny_spec

    before = tiny_spec()
    assert set(before.costs) == {m for m in COSTS.names() if COSTS.is_builtin(m)}  # every built-in metric is recorded
    COSTS.names()
    monkeypatch.setattr(COSTS, "_entries", dict(COSTS._entries))

    @COSTS.register("test_euros")
    class Euros(CostModel):
        """Euros per query (test only)."""

        def __init__(self, per_mask: float = 3.0):
            super().__init__()
            self.per_mask = per_mask

        def quote(self, query):
            return self.per_mask

    assert not COSTS.is_builtin("test_euros") and COSTS.is_builtin("label_equivalents")
    after = tiny_spec()
    assert after.campaign_id == before.campaign_id and "test_euros" not in after.costs
    assert load_benchmark("benchmarks/quickstart.toml", open_datasets=False).specs[0].campaign_id == QUICKSTART_FIRST_ID
    # Named by the benchmark (or enforced), it determines the rows: then it is part of the id.
    named = tiny_spec(costs={"test_euros": {"per_mask": 4.0}})
    assert named.costs["test_euros"] == {"per_mask": 4.0} and named.campaign_id != before.campaign_id
    enforced = tiny_spec(budget_metric="test_euros")
    assert "test_euros" in enforced.costs and enforced.campaign_id != before.campaign_id
