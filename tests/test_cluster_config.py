"""cluster.yaml passes Ray's own cluster-launcher validation (the schema and
checks ``ray up`` runs before touching a cloud) and describes what the
README promises: a head, a GPU worker type, the project installed on every
node, the results location writable by every node."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load(CONFIG.read_text())


def test_ray_validates_the_cluster_config(config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))  # merges the provider's defaults, as `ray up` does
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_ray_rejects_a_broken_copy(config):
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = copy.deepcopy(config)
    bad["available_node_types"]["gpu_worker"]["resourcez"] = {"GPU": 1}  # a typo must not pass
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(bad))


def test_config_has_gpu_workers_installs_the_project_and_shares_results(config):
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0  # the head schedules and writes results, runs no campaign
    gpu = [name for name, t in types.items() if t.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu, "no GPU worker type"
    setup = "\n".join(config["setup_commands"])
    assert "pip install" in setup and "-e ~/alharness" in setup
    assert config["file_mounts"]["~/alharness"] == "."
    # Workers write checkpoints next to the results (S3): they need the S3-capable profile too.
    for name, t in types.items():
        if name != config["head_node_type"]:
            assert t["node_config"]["IamInstanceProfile"]["Name"] == "ray-autoscaler-v1", name
    # Ray runs from the venv the setup commands made (the project pins its version).
    assert all(c.startswith("~/venv/bin/ray") or "~/venv/bin/ray start" in c
               for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"])
