"""Benchmark files: grid expansion and clear one-line errors for bad input."""

from __future__ import annotations

import copy

import pytest

from alharness.execution.benchmark import load_benchmark, parse_benchmark
from alharness.cli import main
from alharness.errors import ConfigError
from alharness.campaign.spec import CampaignSpec
from conftest import tiny_benchmark_doc, toml_dumps


def test_grid_expands_and_ids_are_stable():
    doc = tiny_benchmark_doc(strategies=["random", {"name": "fixed_proportion", "grid": {"mask_fraction": [0.5, 0.9]}}],
                             seeds=[0, 1, 2], budget=[48, 96])
    bench = parse_benchmark(doc)
    assert len(bench.specs) == 3 * 2 * 3
    assert len({s.campaign_id for s in bench.specs}) == len(bench.specs)
    again = parse_benchmark(copy.deepcopy(doc))
    assert [s.campaign_id for s in bench.specs] == [s.campaign_id for s in again.specs]
    labels = {s.strategy_label for s in bench.specs}
    assert labels == {"random", "fixed_proportion", "fixed_proportion(mask_fraction=0.9)"}  # defaults left out
    # The id covers what determines results, not where it runs.
    s = bench.specs[0]
    assert CampaignSpec.from_json(s.to_json()).campaign_id == s.campaign_id


def test_quickstart_file_is_valid():
    bench = load_benchmark("benchmarks/quickstart.toml")
    assert len(bench.specs) == 6 + 2 and bench.name == "quickstart"  # + one full-supervision reference per seed


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(extra={}), "unknown key(s) 'extra'"),
        (lambda d: d["benchmark"].update(seedz=[1]), "[benchmark]: unknown key(s) 'seedz'"),
        (lambda d: d["benchmark"].pop("budget"), "needs 'budget'"),
        (lambda d: d["strategies"].append({"name": "randum"}), "unknown strategy 'randum'; valid choices: "),
        (lambda d: d["strategies"].append({"name": "fixed_proportion", "mask_fracton": 0.5}), "has no parameter 'mask_fracton'; valid parameters: initial_fraction, mask_fraction"),
        (lambda d: d["datasets"][0].update(name="voc"), "unknown dataset 'voc'"),
        (lambda d: d["datasets"][0].update(colour=1), "dataset 'synthetic_shapes' has no parameter 'colour'"),
        (lambda d: d["benchmark"].update(budget_metric="dollars"), "unknown budget_metric 'dollars'"),
        (lambda d: d["benchmark"].update(budget_metric="cost_a"), "priced only after answering"),
        (lambda d: d.update(costs={"seconds": {"preset": "fast"}}), "unknown preset 'fast'"),
        (lambda d: d.update(costs={"label_equivalents": {"prices": {"mask": 3}}}), "unknown query type(s) mask"),
        (lambda d: d["benchmark"].update(budget=-5), "[benchmark] budget must be a finite number in [1e-06, 1e+15] or a non-empty list of them, got -5"),
        (lambda d: d["benchmark"].update(rounds=0), "[benchmark] rounds must be an integer in [1, 10000], got 0"),
        (lambda d: d["benchmark"].update(seeds=["a"]), "[benchmark] seeds must be an integer >= 0 or a non-empty list of them, got ['a']"),
        (lambda d: d["learner"].update(model="resnet9000"), "unknown model 'resnet9000'"),
        (lambda d: d["learner"].update(stepz=3), "[learner]: unknown key(s) 'stepz'"),
        (lambda d: d["learner"].update(model_params={"widht": 3}), "has no parameter 'widht'"),
        (lambda d: d.update(costs={"label_equivalents": {"alpha_z": 1}}), "has no parameter 'alpha_z'"),
        (lambda d: d.update(costs={"euros": {}}), "[costs.euros]: unknown cost model 'euros'; valid choices: "),
        (lambda d: d["strategies"].append({"name": "random"}), "same campaign"),
        (lambda d: d["strategies"].append({"name": "fixed_proportion", "grid": {"mask_fraction": 0.5}}), "grid must be a table of non-empty lists"),
        (lambda d: d["benchmark"].update(name="a/b"), "[benchmark] name must be a name of at most 100 letters"),
        (lambda d: d["benchmark"].update(rounds=True), "[benchmark] rounds must be an integer in [1, 10000], got True"),
        (lambda d: d["benchmark"].update(budget=float("nan")), "budget must be a finite number"),
        (lambda d: d["benchmark"].update(budget=1e-9), "budget must be a finite number in [1e-06"),
        (lambda d: d["benchmark"].update(name="a\x00b"), "got 'a\\x00b'"),
        (lambda d: d.update(resources={"num_gpus": 1.5}), "[resources]: num_gpus must be 0, a fraction in (0, 1] or a whole number"),
        (lambda d: d.update(resources={"num_cpus": float("inf")}), "[resources] num_cpus must be a finite number in (0, 1024], got inf"),
        (lambda d: d.update(resources=3), "[resources] must be a table, got 3"),
        (lambda d: d.update(costs={"label_equivalents": {"alpha_s": float("nan")}}),
         "[costs.label_equivalents]: alpha_s must be a finite number > 0, got nan"),
        (lambda d: d["learner"].update(lr=True), "[learner] lr must be a finite number > 0, got True"),
        (lambda d: d["learner"].update(model=3), "[learner] model must be a string"),
        (lambda d: d["datasets"][0].update(n_train="abc"), "[[datasets]] 'synthetic_shapes': n_train must be an integer in [1, 1000000], got 'abc'"),
        (lambda d: d["strategies"].append({"name": "fixed_proportion", "mask_fraction": "x"}),
         "[[strategies]] 'fixed_proportion': mask_fraction must be a finite number in [0, 1], got 'x'"),
        (lambda d: d["strategies"].append({"name": "madbal", "uncertainty": "maximal"}),
         "[[strategies]] 'madbal': madbal: unknown uncertainty 'maximal'"),  # the strategy's own check, at load
        (lambda d: d.pop("strategies"), "needs at least one [[strategies]]"),
    ],
)
def test_bad_benchmarks_get_one_clear_error(mutate, message):
    doc = tiny_benchmark_doc()
    mutate(doc)
    with pytest.raises(ConfigError) as err:
        parse_benchmark(doc, "bench.toml")
    assert message in str(err.value)
    assert str(err.value).startswith("bench.toml")
    assert "\n" not in str(err.value)


def test_cli_reports_bad_files_in_one_line_and_schedules_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[benchmark\nname = 'x'\n")
    assert main(["bench", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "invalid TOML" in err[0]
    assert not (tmp_path / "out").exists()

    doc = tiny_benchmark_doc(strategies=["random", "nonexistent"])
    bad.write_text(toml_dumps(doc))
    assert main(["bench", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown strategy 'nonexistent'" in err[0]
    assert main(["bench", str(tmp_path / "missing.toml")]) == 2
    assert "no such benchmark file" in capsys.readouterr().err


def test_cli_list(capsys):
    assert main(["list", "strategies"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in out]
    assert {"random", "entropy", "fixed_proportion"} <= set(names)
    assert all(len(line.split(None, 1)) == 2 for line in out)  # every name has a description
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for section in ("# strategies", "# datasets", "# costs", "# models", "# pipelines", "basis", "tiny_unet", "synthetic_shapes", "label_equivalents"):
        assert section in out


def test_a_closed_pipe_ends_the_listing_quietly():
    """`alharness list | head`: the reader goes away before the output is written."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "alharness.cli", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # nobody reads: every write to stdout meets a closed pipe
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_a_local_ray_starts_without_the_dashboard(monkeypatch):
    """No web UI; the API server Ray starts anyway listens on loopback (see init_ray)."""
    import ray

    from alharness.execution.backends import ray as backend

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    assert backend.init_ray(num_cpus=1) is True
    assert calls[0]["include_dashboard"] is False and calls[0]["dashboard_host"] == "127.0.0.1"


def _folder(root, n=6, h=20, w=24):
    """A tiny images/ + masks/ layout for the folder loader."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for k in range(n):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"img{k}.png")
        Image.fromarray((rng.random((h, w)) > 0.5).astype(np.uint8)).save(root / "masks" / f"img{k}.png")
    (root / "classes.txt").write_text("background\nthing\n")


def _new_mask(mode, size, name):
    from PIL import Image

    return lambda root: Image.new(mode, size).save(root / "masks" / name)


@pytest.mark.parametrize("damage, message", [
    (lambda root: (root / "masks" / "img3.png").unlink(), "missing file .*masks/img3.png"),
    (_new_mask("L", (10, 10), "img2.png"), "labels are 10x10 but the image .*img2.png is 24x20"),
    (_new_mask("RGB", (24, 20), "img1.png"), "label image is RGB; expected class ids"),
])
def test_dataset_layouts_are_checked_at_load(tmp_path, capsys, damage, message):
    """A broken layout is exit 2 before scheduling, not a failed campaign after it."""
    import re

    root = tmp_path / "data"
    _folder(root)
    doc = tiny_benchmark_doc(strategies=["random"], seeds=[0])
    doc["datasets"] = [{"name": "folder", "root": str(root), "size": 16}]
    good = tmp_path / "good.toml"
    good.write_text(toml_dumps(doc))
    assert len(load_benchmark(good).specs) == 1
    damage(root)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(good))}: \\[\\[datasets\\]\\] 'folder': .*{message}"):
        load_benchmark(good)
    out = tmp_path / "out"
    assert main(["bench", str(good), "--out", str(out), "--backend", "local"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]) and not out.exists()
    assert len(load_benchmark(good, open_datasets=False).specs) == 1  # bench --no-data-check: the nodes' files decide


def test_a_strategy_version_enters_the_campaign_id_only_where_declared(monkeypatch):
    """Strategy.version: a strategy whose selections changed gets new ids (resume and the
    reference cache cannot serve its old rows); one without a version keeps its ids."""
    from conftest import tiny_spec

    from alharness.registry import STRATEGIES

    assert "strategy_version" not in tiny_spec(strategy="random").canonical()
    fixed = STRATEGIES.get("fixed_proportion").factory
    before = tiny_spec(strategy="fixed_proportion")
    old_id = before.campaign_id
    assert before.canonical()["strategy_version"] == fixed.version
    assert CampaignSpec.from_json(before.to_json()).campaign_id == old_id  # stored and read back: the same id
    monkeypatch.setattr(fixed, "version", fixed.version + 1)
    bumped = tiny_spec(strategy="fixed_proportion")
    assert bumped.campaign_id != old_id and bumped.canonical()["strategy_version"] == fixed.version
    monkeypatch.setattr(fixed, "version", None)
    assert "strategy_version" not in tiny_spec(strategy="fixed_proportion").canonical()
