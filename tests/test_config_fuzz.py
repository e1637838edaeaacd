"""A generated fuzz of malformed benchmark files: every one is refused with a
one-line ConfigError naming the file, none raises anything else, none is
accepted; the valid files in benchmarks/ all load.

The malformed files are mutations of benchmarks/quickstart.toml, generated
deterministically: wrong types, out-of-range values, NaN / infinities,
booleans where numbers belong, dates, wrong table shapes, unknown and
missing keys, unknown plugins, bad grids, bad names (the benchmark name
becomes a path), broken TOML. Only loading runs (no campaign), and the
quickstart's dataset is generated once (it is opened at load), so the whole
fuzz takes seconds.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any, Callable

import pytest

from alharness.campaign.spec import RESOURCE_FIELDS
from alharness.cli import main
from alharness.errors import ConfigError
from alharness.execution.benchmark import load_benchmark

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "benchmarks" / "quickstart.toml"
BASE = tomllib.loads(QUICKSTART.read_text())
NAN, INF = math.nan, math.inf
DATE, TIME = datetime.date(1979, 5, 27), datetime.time(7, 32)


# -- a TOML writer for the mutated documents (NaN, inf and dates included) -------------------
def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, (int, datetime.date, datetime.time)):
        return v.isoformat() if not isinstance(v, int) else str(v)
    if isinstance(v, str):
        return json.dumps(v).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml_text(doc: dict[str, Any]) -> str:
    """Top-level scalars and non-table arrays first, then [tables], then [[arrays of tables]]."""
    def is_tables(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict) and not is_tables(v)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines += [f"[{_key(k)}]"] + [f"{_key(a)} = {_value(b)}" for a, b in v.items()]
    for k, v in doc.items():
        if is_tables(v):
            for item in v:
                lines += [f"[[{_key(k)}]]"] + [f"{_key(a)} = {_value(b)}" for a, b in item.items()]
    return "\n".join(lines) + "\n"


# -- the mutations ---------------------------------------------------------------------------
NUMBER_JUNK = ["abc", "5", True, False, NAN, INF, -INF, [1], {"x": 1}, DATE, TIME]
INT_JUNK = NUMBER_JUNK + [1.5, 2.0, -1.5]
# Every numeric leaf of the quickstart and what it must refuse besides NUMBER_JUNK.
LEAVES: dict[tuple, list] = {
    ("benchmark", "budget"): [v for v in NUMBER_JUNK if v != [1]] + [0, -5, 1e-9, 1e300, [], [240, NAN], [240, "x"], [240, True]],
    ("benchmark", "rounds"): INT_JUNK + [0, -1, 10**9],
    ("benchmark", "initial_masks"): INT_JUNK + [-1],
    ("benchmark", "seeds"): [v for v in INT_JUNK if v != [1]] + [-1, [], [-1], ["a"], [0, True], [0, 1.5]],
    ("resources", "num_cpus"): NUMBER_JUNK + [0, -1, 1e9, 1e300],
    ("datasets", 0, "n_train"): INT_JUNK + [0, -5, 10**9],
    ("datasets", 0, "n_val"): INT_JUNK + [-1, 10**9],
    ("datasets", 0, "n_test"): INT_JUNK + [0, -3],
    ("datasets", 0, "size"): INT_JUNK + [0, 7, -40, 10**6],
    ("datasets", 0, "num_classes"): INT_JUNK + [0, 1, 256, -5],
    ("datasets", 0, "noise"): NUMBER_JUNK + [-0.1, -1],
    ("datasets", 0, "class_similarity"): NUMBER_JUNK + [-0.1, 1.5, 2],
    ("learner", "steps"): INT_JUNK + [-1],
    ("learner", "batch_size"): INT_JUNK + [0, -8],
    ("learner", "lr"): NUMBER_JUNK + [0, -0.005],
    ("learner", "model_params", "width"): INT_JUNK,
    ("learner", "model_params", "depth"): INT_JUNK,
    ("strategies", 2, "mask_fraction"): NUMBER_JUNK + [-0.1, 1.5],
    ("costs", "label_equivalents", "alpha_c"): NUMBER_JUNK + [0, -1],
    ("costs", "label_equivalents", "alpha_s"): NUMBER_JUNK + [0, -12],
}
STRING_LEAVES: dict[tuple, list] = {
    ("benchmark", "name"): ["", "a/b", "a\\b", ".hidden", "..", "-x", "a b", "a\x00b", "a\nb", "a\tb", "x" * 101,
                            "ü", "a:b", 5, True, 1.5, ["quickstart"], {"x": 1}, DATE],
    ("benchmark", "description"): [5, True, 1.5, ["x"], {"x": 1}, DATE],
    ("benchmark", "budget_metric"): ["dollars", "", "cost_a", "clicks", 5, True, ["label_equivalents"], {"x": 1}],
    ("benchmark", "validation"): ["sometimes", "", 5, True, ["none"], {"x": 1}],
    ("benchmark", "reference"): [1, 0, "true", "yes", 1.0, NAN, [True], {"x": 1}, DATE],
    ("datasets", 0, "name"): ["nope", "", 5, True, ["synthetic_shapes"], {"x": 1}],
    ("strategies", 0, "name"): ["nope", "", 5, True, ["random"], {"x": 1}],
    ("learner", "model"): ["resnet9000", "", 5, True, ["tiny_unet"], {"x": 1}],
    ("learner", "device"): ["gpu", "", 5, True, ["cpu"], {"x": 1}],
    ("learner", "loss"): ["nope", 5, True],
    ("learner", "heads"): [5, "nope", ["iou", 5], [True], {"x": 1}],
    ("learner", "flip"): [1, "yes", NAN],
    ("learner", "pseudo_label_threshold"): [-0.1, 1.5, NAN, True],
    ("learner", "image_label_loss"): ["nope", 5],
    ("learner", "pipeline"): ["cascade", 5],
}
TABLES = ["benchmark", "resources", "learner", "noise", "costs", "datasets", "strategies"]
TABLE_JUNK = [5, "x", [1, 2], True, 1.5, DATE]


def _set(doc: dict, path: tuple, value: Any) -> None:
    *parent, last = path
    for p in parent:
        doc = doc[p]
    doc[last] = value


def _delete(doc: dict, path: tuple) -> None:
    *parent, last = path
    for p in parent:
        doc = doc[p]
    del doc[last]


def _leaf_cases() -> list[tuple[str, Callable, str]]:
    cases = []
    for path, junk in {**LEAVES, **STRING_LEAVES}.items():
        # A plugin's name is named by the error as the unknown plugin, not as 'name'.
        word = "" if path[-1] == "name" and path[0] != "benchmark" else str(path[-1])
        for value in dict.fromkeys(map(_value, junk)):  # each distinct value once
            raw = tomllib.loads(f"v = {value}")["v"]
            cases.append((f"{'.'.join(map(str, path))} = {value}", lambda d, p=path, v=raw: _set(d, p, v), word))
    return cases


def _structure_cases() -> list[tuple[str, Callable, str]]:
    cases = []
    for t in TABLES:
        for junk in TABLE_JUNK + ([[]] if t in ("datasets", "strategies") else []):
            cases.append((f"{t} = {_value(junk)}", lambda d, t=t, v=junk: d.__setitem__(t, v), t))
    for path in [("costs", "label_equivalents"), ("learner", "model_params"), ("datasets", 0), ("strategies", 1)]:
        for junk in [5, "x", [1], True]:
            cases.append((f"{'.'.join(map(str, path))} = {_value(junk)}", lambda d, p=path, v=junk: _set(d, p, v), ""))
    for path in [(), ("benchmark",), ("resources",), ("learner",), ("noise",), ("datasets", 0), ("strategies", 0),
                 ("costs", "label_equivalents"), ("learner", "model_params")]:
        for key in ("bogus", "Name", "seedz"):
            def add(d, p=path, k=key):
                d.setdefault("noise", {})
                _set(d, (*p, k), 1)
            cases.append((f"unknown key {'.'.join(map(str, (*path, key)))}", add, key))
    for path in [("benchmark",), ("benchmark", "name"), ("benchmark", "budget"), ("benchmark", "budget_metric"),
                 ("benchmark", "rounds"), ("datasets",), ("strategies",), ("datasets", 0, "name"), ("strategies", 1, "name")]:
        cases.append((f"missing {'.'.join(map(str, path))}", lambda d, p=path: _delete(d, p), str(path[-1])))
    cases.append(("unknown cost model", lambda d: d["costs"].__setitem__("euros", {}), "euros"))
    cases.append(("empty file", lambda d: d.clear(), "benchmark"))
    return cases


def _entry(**kw):
    return lambda d: d["strategies"].append(kw)


def _semantic_cases() -> list[tuple[str, Callable, str]]:
    """Values of the right type that the plugins or the campaign rules refuse."""
    ds = lambda **kw: (lambda d: d["datasets"][0].update(kw))  # noqa: E731
    rs = lambda **kw: (lambda d: d["resources"].update(kw))  # noqa: E731
    noise = lambda **kw: (lambda d: d.__setitem__("noise", kw))  # noqa: E731
    le = lambda **kw: (lambda d: d["costs"]["label_equivalents"].update(kw))  # noqa: E731
    grid = lambda g: (lambda d: d["strategies"][2].update(grid=g))  # noqa: E731
    cases = {
        "num_gpus": [rs(num_gpus=v) for v in (1.5, 2.5, NAN, -1, True, 1e9, "1", INF)],
        # Resource fields of the campaign spec besides CPUs and GPUs, where it has them.
        "resources": [rs(**{k: v}) for k, junk in (("timeout_s", ("x", NAN, INF, True, -1, 0, [1], {}, DATE, 1e12)),
                                                   ("strategy_process", (1, 0, "yes", NAN, [True], {})))
                      if k in RESOURCE_FIELDS for v in junk],
        "dataset": [ds(objects=[3, 1]), ds(objects=[1]), ds(objects=[1, "x"]), ds(object_size=[0.2, 1.5]),
                    ds(object_size=[0, 0.5]), ds(count_distribution="normal"), ds(instances="yes"), ds(instances=1),
                    ds(imbalance=0.5), ds(imbalance=NAN), ds(occlusion=2), ds(distractors=[-1, 2]),
                    ds(n_train=1_000_000, size=4096), ds(seed=-1), ds(seed=1.5)],
        "validation": [lambda d: (d["datasets"][0].update(n_val=0), d["benchmark"].update(validation="charged")),
                       lambda d: d["benchmark"].update(seeds=[0, 0]), lambda d: d["benchmark"].update(budget=[240, 240.0]),
                       lambda d: d["learner"].update(patience=3)],
        "noise": [noise(flip_rate=v) for v in (2, -0.1, NAN, INF, True, "x")]
        + [noise(boundary_px=v) for v in (-1, 1.5, 10**6, True)] + [noise(missing_area=1.5), noise(pixel_error_rate=-1)],
        "prices": [le(prices={"mask": 3}), le(prices={"region": -1}), le(prices={"region": "x"}), le(prices=5),
                   le(prices={"region": NAN}), lambda d: d["costs"].__setitem__("seconds", {"preset": "fast"}),
                   lambda d: d["costs"].__setitem__("seconds", {"seconds_per_mask": -1}),
                   lambda d: d["costs"].__setitem__("clicks", {"epsilon": -1}),
                   lambda d: d["costs"].__setitem__("clicks", {"box_clicks": 1.5}),
                   lambda d: d["costs"].__setitem__("pixels", {"bogus": 1})],
        "grid": [grid(5), grid("x"), grid([0.5]), grid({"mask_fraction": 0.5}), grid({"mask_fraction": []}),
                 grid({"mask_fraction": [0.5, "x"]}), grid({"mask_fraction": [0.5, 2.0]}), grid({"bogus": [1]}),
                 grid({"mask_fraction": [0.5, NAN]}), grid({"initial_fraction": [0.1, True]}),
                 lambda d: d["datasets"][0].update(grid={"n_train": [10, -1]}),
                 lambda d: d["costs"]["label_equivalents"].update(grid={"alpha_s": [12, 0]}),
                 lambda d: d["costs"]["label_equivalents"].update(grid={"alpha_s": [12, 13]}, alpha_s=12)],
        "strategy": [_entry(name="fixed_proportion", mask_fraction=1.5), _entry(name="fixed_proportion", initial_fraction=-1),
                     _entry(name="random"), _entry(name="random", bogus=1), _entry(name="entropy_box", box_size=0),
                     _entry(name="binary_rr", c_max=0), _entry(name="binary_lp", alpha=0),
                     _entry(name="madbal", n_clusters=0), _entry(name="madbal", uncertainty="maximal"),
                     _entry(name="madbal_vanilla", uncertainty="madbal"), _entry(name="full_or_weak_gp", samples=0),
                     _entry(name="full_or_weak_gp", initial_fraction=0), _entry(name="estimated_best_fixed", proportions=[]),
                     _entry(name="estimated_best_fixed", proportions=[0.5, 2]), _entry(name="mask_guided", beta="mid"),
                     _entry(name="mask_guided", images_per_round=-1), _entry(name="allocation_point", labels=True),
                     _entry(name="metabox", learning_rate=NAN), _entry(name="binary_ilp", time_limit=-1),
                     _entry(name="fixed_proportion", mask_fraction=DATE)],
        "learner": [lambda d: d["learner"].update(model_params={"width": 4, "num_classes": 3}),
                    lambda d: d["learner"].update(model_params={"widht": 4}),
                    lambda d: d["learner"].update(labels_then_masks=True, image_label_loss="none"),
                    lambda d: d["learner"].update(weights_path=5), lambda d: d["learner"].update(stepz=1),
                    lambda d: d["learner"].update(heads=["nope"])],
    }
    return [(f"{group} #{i}", fn, "") for group, fns in cases.items() for i, fn in enumerate(fns)]


def _text_cases() -> list[tuple[str, str]]:
    """Broken TOML: the text itself is malformed."""
    text = QUICKSTART.read_text()
    return [
        ("unclosed table header", text.replace("[resources]", "[resources", 1)),
        ("duplicate key", text.replace('name = "quickstart"', 'name = "quickstart"\nname = "again"', 1)),
        ("duplicate table", text + "\n[resources]\nnum_cpus = 1\n"),
        ("missing value", text.replace("rounds = 4", "rounds =", 1)),
        ("truncated", text[: len(text) // 2] + "[[strat"),
        ("bare word", text.replace("rounds = 4", "rounds = four", 1)),
        ("unterminated string", text.replace('"quickstart"', '"quickstart', 1)),
        ("table then key clash", text + "\n[benchmark.name]\nx = 1\n"),
    ]


def all_cases() -> list[tuple[str, str, str]]:
    """(label, TOML text, a word the error must contain) for every malformed file."""
    out = []
    for label, mutate, word in _leaf_cases() + _structure_cases() + _semantic_cases():
        doc = copy.deepcopy(BASE)
        mutate(doc)
        out.append((label, toml_text(doc), word))
    return out + [(label, text, "invalid TOML") for label, text in _text_cases()]


CASES = all_cases()


def test_the_writer_round_trips_the_quickstart():
    assert tomllib.loads(toml_text(BASE)) == BASE


def test_every_malformed_file_is_one_clear_error(tmp_path):
    assert len(CASES) >= 500
    tracebacks, accepted, unclear = [], [], []
    for i, (label, text, word) in enumerate(CASES):
        path = tmp_path / f"case{i}.toml"
        path.write_text(text, encoding="utf-8")
        try:
            load_benchmark(path)
        except ConfigError as exc:
            msg = str(exc)
            if "\n" in msg or not msg.startswith(str(path)) or (word and word not in msg):
                unclear.append(f"{label}: {msg!r}")
        except Exception as exc:  # noqa: BLE001 - what the fuzz is looking for
            tracebacks.append(f"{label}: {type(exc).__name__}: {exc}")
        else:
            accepted.append(label)
    summary = f"{len(CASES)} files: {len(tracebacks)} tracebacks, {len(accepted)} accepted, {len(unclear)} unclear"
    assert not tracebacks and not accepted and not unclear, "\n".join([summary, *tracebacks, *accepted, *unclear][:60])


def test_a_binary_file_is_one_clear_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe[benchmark]\x00")
    with pytest.raises(ConfigError, match="not a text file|invalid TOML"):
        load_benchmark(path)


@pytest.mark.parametrize("index", range(0, len(CASES), len(CASES) // 12))
def test_the_cli_exits_2_and_schedules_nothing(tmp_path, capsys, index):
    label, text, _ = CASES[index]
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["bench", str(path), "--out", str(out), "--backend", "local"]) == 2, label
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}"), (label, err)
    assert not out.exists()


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").glob("*.toml")), ids=lambda p: p.name)
def test_the_shipped_benchmarks_still_load(path):
    bench = load_benchmark(path)  # datasets opened too: a second or two, generated once per session
    assert bench.specs and bench.name == path.stem
