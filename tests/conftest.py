from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

PLUGINS = str(Path(__file__).parent / "plugins")
# Before anything imports alharness or starts Ray: the test plugin package
# must be importable here and in every Ray worker.
sys.path.insert(0, PLUGINS)
os.environ["PYTHONPATH"] = os.pathsep.join([PLUGINS, *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Datasets are cached on disk: keep the tests' cache out of the user's home
# and fresh each session (set before Ray starts, so workers inherit it).
os.environ["ALHARNESS_CACHE"] = tempfile.mkdtemp(prefix="alharness-test-cache-")
atexit.register(shutil.rmtree, os.environ["ALHARNESS_CACHE"], True)

# Tiny everything: a campaign takes about a second on one core.
TINY_DATASET = {"n_train": 12, "n_val": 0, "n_test": 6, "size": 24, "num_classes": 3, "seed": 0}
TINY_LEARNER = {"steps": 6, "batch_size": 4, "model_params": {"width": 4, "depth": 1}}


def tiny_spec(**over):
    from alharness.learner import LearnerConfig
    from alharness.campaign.spec import CampaignSpec

    kw = dict(dataset="synthetic_shapes", dataset_params=TINY_DATASET, strategy="random", budget_metric="label_equivalents",
              budget=60, rounds=2, seed=0, initial_masks=2, learner=LearnerConfig(**TINY_LEARNER))
    kw.update(over)
    return CampaignSpec(**kw)


def tiny_benchmark_doc(name="tiny", strategies=("random", "entropy"), seeds=(0, 1), **bench_over):
    import copy

    return copy.deepcopy({
        "benchmark": {"name": name, "seeds": list(seeds), "budget": 60, "budget_metric": "label_equivalents",
                      "rounds": 2, "initial_masks": 2, **bench_over},
        "datasets": [{"name": "synthetic_shapes", **TINY_DATASET}],
        "learner": TINY_LEARNER,
        "strategies": [{"name": s} if isinstance(s, str) else s for s in strategies],
    })


def toml_dumps(doc: dict) -> str:
    """Enough TOML for the tests' benchmark documents."""
    import json

    def val(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v)

    lines = []
    for key, body in doc.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {val(v)}" for k, v in item.items()]
        else:
            lines.append(f"[{key}]")
            lines += [f"{k} = {val(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (starting it costs ~10 s)."""
    from alharness.execution.backends.ray import init_ray

    import ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def result_columns(rows):
    """Rows without the columns that measure time (they differ between identical runs)."""
    from alharness.campaign.loop import TIMING_COLUMNS

    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def pytest_configure(config):
    # Tiny models gain nothing from intra-op threads; on a 2-core machine they
    # only fight the Ray workers for the cores.
    import torch

    torch.set_num_threads(1)
