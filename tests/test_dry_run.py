"""``alharness bench FILE --dry-run``: the grid and a per-campaign memory estimate, nothing scheduled or written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alharness.cli import main
from alharness.execution.benchmark import parse_benchmark
from alharness.execution.estimate import estimate, label_state_bytes, model_footprint, dataset_shape
from conftest import TINY_DATASET, tiny_benchmark_doc, toml_dumps

ROOT = Path(__file__).resolve().parent.parent


def _file(tmp_path: Path, **over) -> Path:
    doc = tiny_benchmark_doc(strategies=("random", "entropy"), seeds=(0, 1))
    doc["datasets"][0].update(over)
    path = tmp_path / "bench.toml"
    path.write_text(toml_dumps(doc))
    return path


def test_dry_run_prints_every_campaign_and_its_estimate_and_writes_nothing(tmp_path, capsys, monkeypatch):
    path = _file(tmp_path)
    monkeypatch.chdir(tmp_path)  # the default results directory would be results/tiny here
    out = tmp_path / "out"
    assert main(["bench", str(path), "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    bench = parse_benchmark(tiny_benchmark_doc(strategies=("random", "entropy"), seeds=(0, 1)))
    for spec in bench.specs:
        assert spec.campaign_id in text
    assert "entropy" in text and "synthetic_shapes" in text and "1 CPU" in text
    assert "RAM compared against: this node's memory" in text
    assert "every campaign estimated fits" in text
    assert not out.exists() and not (tmp_path / "results").exists()


def test_dry_run_starts_no_ray_and_no_campaign(tmp_path):
    """In a fresh interpreter: after the dry run, Ray was never imported and the
    scheduler never called (its module not even loaded)."""
    path = _file(tmp_path)
    code = ("import sys; from alharness.cli import main; rc = main(['bench', sys.argv[1], '--dry-run', '--out', sys.argv[2]]); "
            "assert rc == 0, rc; bad = [m for m in ('ray', 'alharness.execution.scheduler', 'alharness.campaign.loop') "
            "if m in sys.modules]; assert not bad, bad")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "plugins"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "out")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "dry run: nothing scheduled" in proc.stdout
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


def test_estimate_terms_follow_the_shapes():
    bench = parse_benchmark(tiny_benchmark_doc(strategies=("random", "entropy"), seeds=(0,)))
    result = estimate(bench.specs, memory_per_campaign=2**40)
    shape = dataset_shape("synthetic_shapes", bench.specs[0].dataset_params)
    n, c, hw = TINY_DATASET["n_train"], TINY_DATASET["num_classes"], TINY_DATASET["size"] ** 2
    assert (shape.pool, shape.num_classes, shape.height * shape.width) == (n, c, hw)
    assert label_state_bytes(shape) == n * hw + 3 * n * c + n
    by = {e.spec.strategy: e for e in result.campaigns}
    # the strategy process holds a copy of the labels, of the pool's images and of the outputs it is sent
    assert by["random"].ram["labels"] == 2 * label_state_bytes(shape) + n * hw * 3
    assert by["random"].ram["outputs"] == 0
    assert by["entropy"].ram["outputs"] == 2 * n * c * hw * 4  # dense probabilities, float32
    # uint8 images and labels of the whole pool, one batch of them as float32 images and int64 targets
    batch = min(n, bench.specs[0].learner.batch_size)
    assert by["entropy"].ram["training"] == n * hw * 4 + batch * hw * 20
    assert all(e.fits for e in result.campaigns)
    assert "memory per campaign given, 1024.0 GiB" in result.budget.basis


def test_model_footprint_scales_with_batch_and_resolution():
    from alharness.learner import LearnerConfig

    small = model_footprint(LearnerConfig(batch_size=2), 19, 64, 128, ("probabilities", "features"))
    big = model_footprint(LearnerConfig(batch_size=4), 19, 128, 256, ("probabilities", "features"))
    assert small.parameters == big.parameters > 0
    assert small.state_bytes == big.state_bytes >= 16 * small.parameters
    assert big.activation_bytes == 8 * small.activation_bytes  # 2x the batch, 4x the pixels
    assert small.output_bytes_per_image["probabilities"] == 19 * 64 * 128 * 4
    assert big.output_bytes_per_image["probabilities"] == 4 * small.output_bytes_per_image["probabilities"]


def test_the_model_term_counts_the_eval_pass_peak_with_the_heads_the_strategy_reads():
    from alharness.learner import LearnerConfig

    def cfg(eval_batch):
        return LearnerConfig(batch_size=2, eval_batch_size=eval_batch, model_params={"width": 4, "depth": 1},
                             heads=["maturity", "loss_prediction"])

    madbal = ("probabilities", "maturity", "maturity_weights", "loss_prediction", "feature_map", "model")
    plain, heads, bigger = (model_footprint(cfg(b), 19, 64, 128, n) for b, n in
                            ((4, ("probabilities",)), (4, madbal), (16, madbal)))
    # The peak holds at least the input batch and the outputs it returns, at full resolution.
    assert plain.eval_peak_bytes >= 4 * 64 * 128 * (3 + 19) * 4
    assert heads.eval_peak_bytes >= plain.eval_peak_bytes + 4 * sum(heads.output_bytes_per_image[k] for k in madbal[1:4])
    assert bigger.eval_peak_bytes == 4 * heads.eval_peak_bytes  # linear in the eval batch
    assert bigger.working_bytes == bigger.state_bytes + max(bigger.activation_bytes, bigger.eval_peak_bytes)
    assert bigger.eval_peak_bytes > bigger.activation_bytes  # here the prediction, not the training, sets the term


def test_a_campaign_over_its_share_does_not_fit(tmp_path, capsys):
    path = _file(tmp_path)
    assert main(["bench", str(path), "--dry-run", "--memory-per-campaign", "0.00001"]) == 0  # 10.5 KiB
    text = capsys.readouterr().out
    assert "NO" in text and "4 of 4 campaign(s) do not fit" in text
    assert "the memory per campaign given, 10.5 KiB" in text


def test_gpu_campaigns_are_packed_by_their_gpu_fraction():
    doc = tiny_benchmark_doc(strategies=("entropy",), seeds=(0,))
    doc["resources"] = {"num_gpus": 0.25}
    bench = parse_benchmark(doc)
    result = estimate(bench.specs, node_memory=64 * 2**30, node_cpus=64, node_gpus=1, gpu_bytes=2**20)
    (e,) = result.campaigns
    assert result.budget.concurrent == 1  # one spec; four would fit on the GPU
    assert set(e.device) == {"model", "training"} and "model" not in e.ram
    assert e.fits is False  # the model does not fit a quarter of a 1 MiB GPU
    wide = estimate(bench.specs, node_memory=64 * 2**30, node_cpus=64, node_gpus=1, gpu_bytes=80 * 2**30)
    assert wide.campaigns[0].fits is True


def test_a_streaming_campaign_on_a_gpu_holds_one_run_of_outputs_on_the_host(monkeypatch):
    import alharness.execution.estimate as E

    doc = tiny_benchmark_doc(strategies=("entropy",), seeds=(0,))
    n, c, hw = TINY_DATASET["n_train"], TINY_DATASET["num_classes"], TINY_DATASET["size"] ** 2
    per_image = c * hw * 4  # probabilities
    monkeypatch.setattr(E, "SCORE_CHUNK_BYTES", per_image)  # runs of one image
    cpu = E.estimate(parse_benchmark(doc).specs, memory_per_campaign=2**40).campaigns[0]
    doc["resources"] = {"num_gpus": 0.5}
    gpu = E.estimate(parse_benchmark(doc).specs, node_memory=64 * 2**30, node_cpus=64, node_gpus=1,
                     gpu_bytes=80 * 2**30).campaigns[0]
    batch = min(n, cpu.spec.learner.eval_batch_size) * per_image
    assert batch > per_image
    # CPU: the eval batch here, one run in the strategy process; GPU: the batch stays on the device.
    assert cpu.ram["outputs"] == batch + per_image
    assert gpu.ram["outputs"] == 2 * per_image


def test_no_data_check_leaves_the_shape_terms_unknown(tmp_path, capsys):
    assert main(["bench", str(_file(tmp_path)), "--dry-run", "--no-data-check"]) == 0
    text = capsys.readouterr().out
    assert "dataset not opened (--no-data-check)" in text and "some campaigns could not be estimated" in text


@pytest.mark.parametrize("bad", ["0", "-1"])
def test_bad_memory_per_campaign_is_a_usage_error(tmp_path, capsys, bad):
    assert main(["bench", str(_file(tmp_path)), "--dry-run", "--memory-per-campaign", bad]) == 2
    assert "--memory-per-campaign must be > 0" in capsys.readouterr().err


def test_pixel_labels_over_the_mmap_threshold_count_as_scratch(monkeypatch):
    from alharness.annotation.labels import MMAP_BYTES_ENV

    bench = parse_benchmark(tiny_benchmark_doc(strategies=("random",), seeds=(0,)))
    shape = dataset_shape("synthetic_shapes", bench.specs[0].dataset_params)
    pixels = shape.pool * shape.height * shape.width
    monkeypatch.setenv(MMAP_BYTES_ENV, "0")
    (e,) = estimate(bench.specs).campaigns
    assert e.scratch_bytes == 2 * pixels + 3 * pixels  # the strategy process's labels and pool images too
    assert e.ram["labels"] == 2 * (label_state_bytes(shape) - pixels)


def test_streamed_outputs_count_one_batch_and_dense_ones_the_pool_under_the_cap(monkeypatch):
    from alharness.registry import STRATEGIES

    doc = tiny_benchmark_doc(strategies=("entropy",), seeds=(0,))
    doc["learner"] = {**doc["learner"], "eval_batch_size": 4}
    doc["resources"] = {"dense_outputs_cap_gib": 1e-5}  # 10.5 KiB
    bench = parse_benchmark(doc)
    n, c, hw = TINY_DATASET["n_train"], TINY_DATASET["num_classes"], TINY_DATASET["size"] ** 2
    (streamed,) = estimate(bench.specs).campaigns
    assert streamed.ram["outputs"] == 2 * 4 * c * hw * 4 and streamed.fits  # one batch of 4, both processes
    from alharness.execution import estimate as estimate_module

    monkeypatch.setattr(estimate_module, "SCORE_CHUNK_BYTES", c * hw * 4)  # runs of one image
    (runs,) = estimate(bench.specs).campaigns
    assert runs.ram["outputs"] == (4 + 1) * c * hw * 4  # the batch here, one image's run in the strategy process
    monkeypatch.setattr(type(STRATEGIES.create("entropy")), "streams", property(lambda self: False))
    (dense,) = estimate(bench.specs).campaigns
    assert dense.ram["outputs"] == 2 * n * c * hw * 4
    assert dense.fits is False and "over dense_outputs_cap_gib = 1e-05: fails before round 0" in dense.note
