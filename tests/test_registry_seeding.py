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
