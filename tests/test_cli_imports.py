"""`alharness list` and `alharness leaderboard` import neither torch, scipy,
sklearn nor the strategies (each run in a fresh interpreter, sys.modules
checked); the cached plugin listing follows what is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest import PLUGINS

HEAVY = ("torch", "scipy", "sklearn", "gpytorch", "cv2", "strategies")
# main(argv) with its stdout kept, then the heavy modules left in sys.modules, as one JSON line.
PROBE = textwrap.dedent(f"""
    import contextlib, io, json, sys
    from alharness.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(sys.argv[1:])
    print(json.dumps({{"rc": rc, "out": out.getvalue(), "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
""")


def _run(args, cache, pythonpath=()):
    env = {**os.environ, "ALHARNESS_CACHE": str(cache), "PYTHONPATH": os.pathsep.join([*map(str, pythonpath), PLUGINS])}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "err": proc.stderr}


def test_list_imports_no_plugin_once_its_listing_is_cached(tmp_path):
    first = _run(["list"], tmp_path / "cache")  # nothing cached yet: every plugin is imported
    again = _run(["list"], tmp_path / "cache")
    assert again["rc"] == 0 and again["heavy"] == []
    assert again["out"] == first["out"]
    assert "test_flaky" in again["out"] and "madbal" in again["out"] and "synthetic_shapes" in again["out"]


def test_the_cached_listing_follows_a_changed_plugin_and_still_warns_of_a_broken_one(tmp_path):
    site = tmp_path / "site"
    (site / "tmpplug").mkdir(parents=True)
    (site / "brokenplug").mkdir()
    (site / "brokenplug" / "__init__.py").write_text("raise ImportError('deliberately broken')\n")
    for name in ("tmpplug", "brokenplug"):
        info = site / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[alharness.strategies]\n{name} = {name}\n")
    plugin = site / "tmpplug" / "__init__.py"
    body = ("from alharness import Strategy, register_strategy\n\n"
            "@register_strategy('{name}')\nclass _{name}(Strategy):\n    '''{doc}'''\n\n"
            "    def propose(self, ctx):\n        return []\n")
    plugin.write_text(body.format(name="tmp_one", doc="The first."))
    cache = tmp_path / "cache"
    for _ in range(2):  # cold, then from the cache: the same listing and the same warning
        got = _run(["list", "strategies"], cache, [site])
        assert "tmp_one" in got["out"] and "The first." in got["out"]
        assert got["err"].count("warning: skipped strategy plugin entry point 'brokenplug'") == 1
    assert got["heavy"] == []
    plugin.write_text(body.format(name="tmp_one", doc="The first.") + body.format(name="tmp_two", doc="The second."))
    got = _run(["list", "strategies"], cache, [site])
    assert "tmp_two" in got["out"] and "The second." in got["out"] and "tmp_one" in got["out"]


def test_leaderboard_imports_neither_torch_scipy_nor_sklearn(tmp_path):
    from alharness.execution.backends.local import LocalBackend
    from alharness.execution.benchmark import parse_benchmark
    from alharness.execution.scheduler import run_benchmark
    from conftest import tiny_benchmark_doc

    doc = tiny_benchmark_doc(strategies=["random"], seeds=[0], budget=4, rounds=1, initial_masks=1)
    doc["datasets"][0].update(n_train=4, n_test=2, size=16, num_classes=2)
    doc["learner"].update(steps=1, batch_size=2, model_params={"width": 2, "depth": 1})
    assert run_benchmark(parse_benchmark(doc), tmp_path / "out", backend=LocalBackend(), progress=False).ok == 1
    got = _run(["leaderboard", str(tmp_path / "out")], tmp_path / "cache")
    assert got["rc"] == 0 and "random" in got["out"]
    assert got["heavy"] == []
