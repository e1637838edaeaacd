"""Model registry, heads, config validation and the prediction services."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from alharness.errors import ConfigError
from alharness.annotation.labels import LabelState
from alharness.learner import Learner, LearnerConfig
from alharness.learner.heads import HEADS, Network, maturity_taps
from alharness.learner.services import SERVICES, check_needs, heads_for, pool_outputs
from alharness.registry import MODELS

MODELS_UNDER_TEST = {
    "tiny_unet": {"width": 4, "depth": 2},
    "unet_timm": {"encoder": "resnet10t", "decoder_width": 8},
    "lraspp_mobilenet_v3_large": {},
    "deeplabv3_resnet50": {},
}


def test_models_are_listed_by_the_cli(capsys):
    from alharness.cli import main

    assert main(["list", "models"]) == 0
    listed = capsys.readouterr().out
    for name in MODELS_UNDER_TEST:
        assert name in listed


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_every_model_serves_every_head(name):
    torch.manual_seed(0)
    base = MODELS.create(name, num_classes=4, in_channels=1, **MODELS_UNDER_TEST[name])
    net = Network(base, 4, HEADS, model_name=name).train()
    x = torch.randn(2, 1, 34, 30)  # not a multiple of any stride
    out = net(x)
    assert out["logits"].shape == (2, 4, 34, 30)
    assert out["features"].shape == (2, base.feature_dim)
    assert out["class_logits"].shape == (2, 4)
    assert out["iou"].shape == (2,) and torch.all((out["iou"] >= 0) & (out["iou"] <= 1))
    k = len(maturity_taps(len(base.encoder_channels)))
    assert k == min(3, len(base.encoder_channels))
    assert out["maturity_logits"].shape == (2, k, 4, 34, 30)
    assert out["maturity_weights"].shape == (2, k, 34, 30)
    assert torch.allclose(out["maturity_weights"].sum(1), torch.ones(2, 34, 30), atol=1e-4)
    assert out["loss_prediction"].shape == (2, 2, 34, 30)
    # Only what is asked is computed.
    assert set(net(x, heads=["iou"])) == {"logits", "features", "iou", "object_iou", "object_image"}


@pytest.mark.parametrize("name", ["lraspp_mobilenet_v3_large", "deeplabv3_resnet50"])
def test_opened_torchvision_models_compute_what_torchvision_computes(name):
    import torchvision.models.segmentation as seg

    from alharness.learner.models.torchvision_seg import LRASPP, DeepLabV3

    torch.manual_seed(0)
    tv = getattr(seg, name)(weights=None, weights_backbone=None, num_classes=3).eval()
    ours = (LRASPP if name.startswith("lraspp") else DeepLabV3)(tv, 3).eval()  # shares tv's modules
    x = torch.randn(1, 3, 40, 36)
    with torch.no_grad():
        assert torch.allclose(ours(x)["logits"], tv(x)["out"], atol=1e-5)


def test_tiny_unet_heads_do_not_see_the_padding():
    base = MODELS.create("tiny_unet", num_classes=2, in_channels=3, width=4, depth=2)
    parts = base.forward_parts(torch.zeros(1, 3, 30, 22))
    assert parts.decoder[-1].shape[-2:] == (30, 22)
    assert parts.encoder[1].shape[-2:] == (15, 11)


def test_unet_timm_rejects_an_unknown_encoder():
    with pytest.raises(ConfigError, match="unknown timm encoder"):
        MODELS.create("unet_timm", num_classes=2, in_channels=3, encoder="no_such_net")


class _Plain(nn.Module):
    """A third-party model that only keeps the minimal contract (logits + features)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return {"logits": self.conv(x), "features": x.mean(dim=(2, 3))}


def test_models_without_inner_maps_refuse_heads_clearly():
    with pytest.raises(ConfigError, match="cannot provide head.*iou"):
        Network(_Plain(), 2, ["iou"], model_name="plain")
    with pytest.raises(ConfigError, match="feature_dim"):
        Network(_Plain(), 2, ["classification"], model_name="plain")
    out = Network(_Plain(), 2, [])(torch.zeros(1, 3, 4, 4))
    assert set(out) == {"logits", "features"}


# -- configuration ------------------------------------------------------------------

@pytest.mark.parametrize("bad, match", [
    ({"loss": "focal"}, "valid choices: 'ce', 'dice_ce'"),
    ({"image_label_loss": "bce"}, "valid choices: 'none', 'pooled', 'head'"),
    ({"heads": ["iou", "depth"]}, "valid choices: 'classification'"),
    ({"pseudo_label_threshold": 1.5}, "pseudo_label_threshold"),
    ({"epochs": -1}, ">= 0"),
    ({"warm_start": "yes"}, "warm_start must be true or false"),
    ({"model": "unet++"}, "valid choices"),
    ({"model_params": {"widht": 4}}, "has no parameter 'widht'; valid parameters: depth"),
])
def test_config_errors_name_the_field_and_the_choices(bad, match):
    with pytest.raises(ConfigError, match=match):
        LearnerConfig(**bad)


def test_config_normalises_heads_and_round_trips_through_json():
    cfg = LearnerConfig(heads=["maturity", "iou", "iou"], image_label_loss="head")
    assert cfg.heads == ("iou", "maturity")
    assert cfg.model_heads == ("classification", "iou", "maturity")
    again = LearnerConfig(**json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_defaults_use_cross_entropy_and_every_bought_image_label():
    cfg = LearnerConfig()
    assert (cfg.loss, cfg.image_label_loss, cfg.heads, cfg.warm_start, cfg.epochs) == ("ce", "pooled", (), False, 0)


def test_benchmark_files_accept_the_new_fields():
    from alharness.execution.benchmark import parse_benchmark
    from conftest import tiny_benchmark_doc

    doc = tiny_benchmark_doc()
    doc["learner"] = {**doc["learner"], "loss": "dice_ce", "heads": ["iou"], "image_label_loss": "pooled"}
    bench = parse_benchmark(doc)
    assert bench.specs[0].learner.heads == ("iou",)
    assert bench.specs[0].param_columns()["p_learner_loss"] == "dice_ce"


# -- prediction services ---------------------------------------------------------------

def test_needs_vocabulary_is_the_services_table():
    from alharness.contract.strategy import NEEDS, StrategyContext

    assert NEEDS == frozenset(SERVICES)
    fields = {f.name for f in dataclasses.fields(StrategyContext)}
    assert NEEDS <= fields  # every need reaches the strategy under its own name


def test_services_compute_only_what_is_declared_and_check_heads():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 12, 12, 3), dtype=np.uint8)
    state = LabelState(5, (12, 12), 3, 255)
    state.set_full_mask(0, rng.integers(0, 3, (12, 12)).astype(np.uint8))
    learner = Learner(LearnerConfig(steps=2, batch_size=2, eval_batch_size=2, head_steps=2,
                                    model_params={"width": 4, "depth": 1}, heads=["iou"]), 3, 255)
    learner.fit(images, state, seed=0)
    out = pool_outputs(learner, images, {"iou", "class_scores"})
    assert set(out) == {"iou", "class_scores"}
    assert out["iou"].shape == (5,) and out["class_scores"].shape == (5, 3)
    assert not out["iou"].flags.writeable
    with pytest.raises(ConfigError, match=r"heads = \['iou', 'maturity'\]"):
        pool_outputs(learner, images, {"maturity"})
    assert heads_for({"maturity_weights", "probabilities"}) == ("maturity",)
    check_needs(learner.config, {"probabilities", "features", "model", "class_scores", "iou"})


def test_campaign_passes_head_outputs_to_the_strategy():
    from alharness.campaign.context import make_context
    from alharness.learner.services import pool_outputs as campaign_pool_outputs
    from alharness.annotation.costs import build_cost_models
    from alharness.datasets.base import make_pool_view
    from alharness.annotation.oracle import Oracle
    from alharness.registry import DATASETS
    from alharness.seeding import derive_rng

    ds = DATASETS.create("synthetic_shapes", n_train=6, n_val=0, n_test=2, size=16, num_classes=3, seed=0)
    pool = ds.split("train")
    view = make_pool_view(pool, ds.class_names)
    state = LabelState(6, view.image_shape, 3, ds.ignore_index)
    state.set_full_mask(0, pool.masks[0])
    learner = Learner(LearnerConfig(steps=2, batch_size=2, head_steps=2, model_params={"width": 4, "depth": 2},
                                    heads=["maturity", "loss_prediction"]), 3, ds.ignore_index)
    learner.fit(view.images, state, seed=0)
    needs = frozenset({"maturity", "maturity_weights", "loss_prediction", "probabilities"})
    outputs = campaign_pool_outputs(learner, view.images, needs)
    oracle = Oracle(pool, build_cost_models({}), "label_equivalents", 100)
    ctx = make_context(view, state, oracle, 1, 2, 10.0, derive_rng(0, "t"), 0, outputs)
    assert ctx.maturity.shape == (6, 3, 16, 16) and np.all(ctx.maturity >= 0) and np.all(ctx.maturity <= np.log(2) + 1e-5)
    assert ctx.maturity_weights.shape == (6, 3, 16, 16)
    assert ctx.loss_prediction.shape == (6, 2, 16, 16) and ctx.iou is None and ctx.features is None
