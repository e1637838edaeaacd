"""Live campaigns (alharness.live): shadow mode reproduces the simulation for
every query type and both formats, exports are refused whole, runs resume,
and the results tables serve the leaderboard.

The data are tiny synthetic PNGs written into a temporary folder: a folder
dataset (images/, masks/, classes.txt, splits/) for the simulation, and the
same pool images, their masks and a test folder for the live campaign.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alharness import (Boxes, ClassPresence, FullMask, ImageLabels, LabelsWithCounts, Pixels, Region, Strategy,
                       register_strategy)
from alharness.contract import UNKNOWN
from alharness.live import campaign as live
from alharness.live import encoding
from alharness.live.tasks import ExportError, LiveError
from alharness.toolkit import within_budget

KINDS = ("full_mask", "region", "boxes", "image_labels", "class_presence", "pixels", "labels_with_counts")
CLASSES = ("background", "square", "disc")
SIZE = 16
N_POOL, N_TEST = 8, 4


@register_strategy("live_test_kind")
class OneKind(Strategy):
    """Test strategy for live campaigns: queries of one type, most uncertain images first."""

    needs = frozenset({"probabilities"})

    def __init__(self, kind: str = "full_mask", per_round: int = 3):
        self.kind = kind
        self.per_round = per_round
        self._asked: set = set()  # state across rounds: checkpointed like any strategy's

    def _query(self, ctx, i: int):
        lab, k = ctx.labels, self.kind
        if k == "full_mask":
            return None if lab.has_full_mask[i] else FullMask(i)
        if lab.has_full_mask[i]:
            return None
        if k == "image_labels":
            return ImageLabels(i) if (lab.image_labels[i] == UNKNOWN).all() else None
        if k == "labels_with_counts":
            return LabelsWithCounts(i) if (lab.counts[i] < 0).all() else None
        if k == "boxes":
            return None if i in lab.boxes else Boxes(i)
        if k == "class_presence":
            unknown = [c for c in ctx.rng.permutation(len(ctx.pool.class_names)) if lab.image_labels[i, c] == UNKNOWN]
            return ClassPresence(i, int(unknown[0])) if unknown else None
        h, w = ctx.pool.image_shape
        if k == "region":
            y, x = (int(v) for v in ctx.rng.integers(0, h - 6 + 1, 2))
            return Region(i, y, x, 6)
        picks = [(int(p // w), int(p % w)) for p in ctx.rng.choice(h * w, 3, replace=False)]
        coords = tuple(c for c in picks if ("pixels", i, *c) not in self._asked)
        return Pixels(i, coords) if coords else None

    def propose(self, ctx):
        score = ctx.probabilities.max(axis=1).mean(axis=(1, 2))
        shuffled = ctx.rng.permutation(len(ctx.pool))
        order = shuffled[np.argsort(score[shuffled], kind="stable")]
        queries = [q for q in (self._query(ctx, int(i)) for i in order)
                   if q is not None and not any(key in self._asked for key in q.keys())]
        chosen = within_budget(queries, ctx.quote, ctx.budget_left_this_round)[: self.per_round]
        self._asked.update(key for q in chosen for key in q.keys())
        return chosen


# -- data ------------------------------------------------------------------------------------------------


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A noisy background with a square (class 1) and a disc (class 2), and a void rim around the disc."""
    img = rng.integers(0, 60, (SIZE, SIZE, 3)).astype(np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    y, x = rng.integers(1, SIZE - 6, 2)
    img[y:y + 5, x:x + 5] = (220, 40, 40)
    mask[y:y + 5, x:x + 5] = 1
    cy, cx = rng.integers(4, SIZE - 4, 2)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    d = (yy - cy) ** 2 + (xx - cx) ** 2
    img[d <= 6] = (40, 40, 230)
    mask[(d <= 9) & (d > 6)] = 255
    mask[d <= 6] = 2
    return img, mask


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("live-data")
    rng = np.random.default_rng(7)
    dirs = {name: root / name for name in ("dataset", "pool", "pool_masks", "test")}
    for d in (dirs["dataset"] / "images", dirs["dataset"] / "masks", dirs["dataset"] / "splits", dirs["pool"],
              dirs["pool_masks"], dirs["test"] / "images", dirs["test"] / "masks"):
        d.mkdir(parents=True)
    stems = {"train": [f"p{i:02d}" for i in range(N_POOL)], "test": [f"t{i:02d}" for i in range(N_TEST)]}
    for split, names in stems.items():
        for stem in names:
            img, mask = _scene(rng)
            for d in (dirs["dataset"],) + ((dirs["test"],) if split == "test" else ()):
                Image.fromarray(img).save(d / "images" / f"{stem}.png")
                Image.fromarray(mask).save(d / "masks" / f"{stem}.png")
            if split == "train":
                Image.fromarray(img).save(dirs["pool"] / f"{stem}.png")
                Image.fromarray(mask).save(dirs["pool_masks"] / f"{stem}.png")
        (dirs["dataset"] / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    for d in (dirs["dataset"], dirs["pool"]):
        (d / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return dirs


def _benchmark(data: dict[str, Path], path: Path, strategy: str, params: dict | None = None, budget: float = 60) -> Path:
    from conftest import toml_dumps

    doc = {"benchmark": {"name": "live-test", "seeds": [0], "budget": budget, "budget_metric": "label_equivalents",
                         "rounds": 2, "initial_masks": 2},
           "datasets": [{"name": "folder", "root": str(data["dataset"]), "size": SIZE}],
           "learner": {"steps": 4, "batch_size": 4, "model_params": {"width": 4, "depth": 1}},
           "strategies": [{"name": strategy, **(params or {})}]}
    path.write_text(toml_dumps(doc))
    return path


def _simulate(bench: Path):
    """The simulated campaign of the benchmark, round by round: its final state."""
    from alharness.campaign.loop import run_round, setup_campaign
    from alharness.execution.benchmark import load_benchmark

    spec = load_benchmark(bench).specs[0]
    setup, state = setup_campaign(spec)
    try:
        for rnd in range(spec.rounds + 1):
            run_round(setup, state, rnd)
    finally:
        getattr(state.strategy, "close", lambda: None)()
    return state


def _start(data, bench, out, strategy, **kw) -> live.LiveRun:
    from alharness.live.start import start

    run, _ = start({"file": str(bench), "strategy": strategy, "images": str(data["pool"]), "out": str(out),
                    "test": str(data["test"]), **kw})
    return run


def _shadow_round(out: Path, data, tmp: Path, fmt: str) -> Path:
    """Answer the open round from ground truth into an export file, as annotators would."""
    from alharness.live.shadow import shadow_export

    run = live.open_run(out)
    doc, n = shadow_export(run, data["pool_masks"], fmt)
    path = tmp / f"export-{run.open_round}-{fmt}.json"
    path.write_text(json.dumps(doc))
    return path


def _live_campaign(data, bench, out, tmp, strategy, fmt) -> live.LiveRun:
    """start → (shadow export → import → next) until finished, reopening the run at every step."""
    _start(data, bench, out, strategy, format=fmt)
    while not (run := live.open_run(out)).finished:
        if run.pending():
            live.import_export(live.open_run(out), _shadow_round(out, data, tmp, fmt))
        live.advance(live.open_run(out))
    return live.open_run(out)


def _same_labels(a, b) -> None:
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.image_labels, b.image_labels)
    np.testing.assert_array_equal(a.has_full_mask, b.has_full_mask)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert sorted(a.boxes) == sorted(b.boxes)
    for k in a.boxes:
        np.testing.assert_array_equal(a.boxes[k], b.boxes[k])


def _same_ledger(sim, run) -> None:
    """Entries equal in order; costs equal in every metric the live campaign prices (NaN only where it cannot)."""
    sim_entries, live_entries = list(sim), list(run.state.oracle.ledger)
    assert [(e.round, e.query) for e in live_entries] == [(e.round, e.query) for e in sim_entries]
    for s, e in zip(sim_entries, live_entries):
        for m, v in e.costs.items():
            if math.isnan(v):  # only where the answer does not show what the metric counts
                assert m in ("clicks", "cost_a", "cost_b") or (m, e.query.kind) == ("seconds", "region"), (m, e.query)
            else:
                assert v == pytest.approx(s.costs[m], rel=1e-12, abs=1e-12), (m, e.query)
        assert e.costs["label_equivalents"] == s.costs["label_equivalents"]


_SIMULATED: dict[str, object] = {}


@pytest.mark.parametrize("fmt", ["label-studio", "coco"])
@pytest.mark.parametrize("kind", KINDS)
def test_shadow_mode_reproduces_the_simulated_campaign(data, tmp_path, kind, fmt):
    bench = _benchmark(data, tmp_path / "bench.toml", "live_test_kind", {"kind": kind})
    if kind not in _SIMULATED:
        _SIMULATED[kind] = _simulate(bench)
    sim = _SIMULATED[kind]
    run = _live_campaign(data, bench, tmp_path / "run", tmp_path, "live_test_kind", fmt)
    assert run.finished
    assert any(e.query.kind == kind for e in run.state.oracle.ledger), "the strategy never asked this query type"
    _same_labels(sim.labels, run.state.labels)
    _same_ledger(sim.oracle.ledger, run)
    keep = ("round", "miou", "spent_label_equivalents", "batch_size", "labelled_pixel_fraction", "per_class_iou",
            *(f"n_{k}" for k in KINDS))
    assert [{k: r[k] for k in keep} for r in run.state.rows] == [{k: r[k] for k in keep} for r in sim.rows]


@pytest.mark.parametrize("strategy, fmt", [("fixed_proportion", "label-studio"), ("entropy", "coco")])
def test_shadow_mode_with_builtin_strategies(data, tmp_path, strategy, fmt):
    # fixed_proportion mixes full masks and image labels in a round: two Label Studio projects per round
    bench = _benchmark(data, tmp_path / "bench.toml", strategy, budget=80)
    sim = _simulate(bench)
    run = _live_campaign(data, bench, tmp_path / "run", tmp_path, strategy, fmt)
    _same_labels(sim.labels, run.state.labels)
    _same_ledger(sim.oracle.ledger, run)
    assert [r["miou"] for r in run.state.rows] == [r["miou"] for r in sim.rows]
    assert [r["diagnostics"] for r in run.state.rows] == [r["diagnostics"] for r in sim.rows]
    if strategy == "fixed_proportion":
        assert {e.query.kind for e in run.state.oracle.ledger} == {"full_mask", "image_labels"}
        rounds = [sorted(p.name for p in d.glob("*.json")) for d in (run.directory / "tasks").iterdir() if d.is_dir()]
        assert ["full_mask.json", "image_labels.json"] in rounds, rounds


# -- refused exports: nothing recorded -------------------------------------------------------------------


@pytest.fixture(scope="module")
def started(data, tmp_path_factory) -> tuple[Path, Path]:
    """A live campaign (full masks, Label Studio) just started: round 0's two tasks are out."""
    tmp = tmp_path_factory.mktemp("live-started")
    bench = _benchmark(data, tmp / "bench.toml", "live_test_kind", {"kind": "full_mask"})
    _start(data, bench, tmp / "run", "live_test_kind")
    return tmp / "run", bench


@pytest.fixture
def run_dir(started, tmp_path) -> Path:
    shutil.copytree(started[0], tmp_path / "run")
    return tmp_path / "run"


def _export(run_dir: Path, data, fmt: str = "label-studio"):
    from alharness.live.shadow import shadow_export

    return shadow_export(live.open_run(run_dir), data["pool_masks"], fmt)[0]


def _refused(run_dir: Path, doc, match: str, raw: str | None = None) -> None:
    before = sorted(p.name for p in (run_dir / "answers").glob("*")) if (run_dir / "answers").exists() else []
    path = run_dir.parent / "bad-export.json"
    path.write_text(raw if raw is not None else json.dumps(doc))
    with pytest.raises(ExportError, match=match) as info:
        live.import_export(live.open_run(run_dir), path)
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith("nothing was recorded"), msg
    after = sorted(p.name for p in (run_dir / "answers").glob("*")) if (run_dir / "answers").exists() else []
    assert after == before
    run = live.open_run(run_dir)
    assert not run.answers and len(run.state.oracle.ledger) == 0


def _first_brush(doc) -> dict:
    return next(r for t in doc for r in t["annotations"][0]["result"] if r["type"] == "brushlabels")


def test_refused_exports_record_nothing(run_dir, data):
    doc = _export(run_dir, data)
    text = json.dumps(doc)
    _refused(run_dir, None, "not valid JSON", raw=text[: len(text) // 2])  # a partial export
    _refused(run_dir, None, "not valid JSON", raw="{nope")
    _refused(run_dir, {"tasks": 1}, "not an export of a known format")
    _refused(run_dir, [doc[0], doc[0]], "duplicate answers")
    twice = json.loads(text)
    twice[0]["annotations"].append(dict(twice[0]["annotations"][0]))
    _refused(run_dir, twice, "duplicate answers")
    unknown = json.loads(text)
    unknown[1]["data"]["alharness_task"] = unknown[1]["data"]["alharness_task"].replace("r000", "r009")
    _refused(run_dir, unknown, "unknown task")
    stranger = json.loads(text)
    stranger[0]["data"].pop("alharness_task")
    _refused(run_dir, stranger, "unknown task None")
    cat = json.loads(text)
    _first_brush(cat)["value"]["brushlabels"] = ["cat"]
    _refused(run_dir, cat, "label 'cat' is outside the label set")
    truncated = json.loads(text)
    _first_brush(truncated)["value"]["rle"] = _first_brush(truncated)["value"]["rle"][:5]
    _refused(run_dir, truncated, "brush RLE")
    minimal = [{"image": t["data"]["image"], "mask": []} for t in doc]
    _refused(run_dir, minimal, "not a task")


def test_refused_coco_exports_and_a_second_import(run_dir, data):
    doc = _export(run_dir, data, "coco")
    bad = json.loads(json.dumps(doc))
    bad["annotations"][0]["category_id"] = 9
    bad.pop("categories")
    _refused(run_dir, bad, "category_id 9 is outside the label set")
    renamed = json.loads(json.dumps(doc))
    renamed["categories"][1]["name"] = "box"
    _refused(run_dir, renamed, "category 2 is 'box' in the export")
    orphan = json.loads(json.dumps(doc))
    orphan["answers"] = orphan["answers"][:1]
    _refused(run_dir, orphan, "has no entry in 'answers'")
    wrong = json.loads(json.dumps(doc))
    wrong["annotations"][0]["segmentation"]["size"] = [8, 8]
    _refused(run_dir, wrong, "RLE segmentation is 8x8")
    path = run_dir.parent / "export.json"
    path.write_text(json.dumps(doc))
    assert len(live.import_export(live.open_run(run_dir), path)) == 2
    with pytest.raises(ExportError, match="duplicate answers: task .* was already answered"):
        live.import_export(live.open_run(run_dir), path)
    run = live.open_run(run_dir)
    assert len(run.answers) == 2 and len(run.state.oracle.ledger) == 2 and len(list((run_dir / "answers").glob("*"))) == 1


# -- resuming --------------------------------------------------------------------------------------------


class Crash(Exception):
    pass


def _crash_once(monkeypatch, name: str) -> None:
    """Make ``alharness.live.campaign.<name>`` raise the first time (an interrupted command)."""
    real = getattr(live, name)
    calls = []

    def once(*args, **kwargs):
        if not calls:
            calls.append(1)
            raise Crash(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(live, name, once)


def test_a_campaign_resumes_after_any_interruption(data, tmp_path, monkeypatch):
    bench = _benchmark(data, tmp_path / "bench.toml", "live_test_kind", {"kind": "region"})
    whole = _live_campaign(data, bench, tmp_path / "whole", tmp_path, "live_test_kind", "coco")
    out = tmp_path / "interrupted"
    _crash_once(monkeypatch, "begin")  # start stopped after live.json, before round 0 was proposed
    with pytest.raises(Crash):
        _start(data, bench, out, "live_test_kind", format="coco")
    with pytest.raises(LiveError, match="other settings"):
        _start(data, bench, out, "live_test_kind", format="label-studio")
    _start(data, bench, out, "live_test_kind", format="coco")  # the same arguments resume
    steps = 0
    while not (run := live.open_run(out)).finished:
        if run.pending():
            export = _shadow_round(out, data, tmp_path, "coco")
            (out / "answers").mkdir(exist_ok=True)
            (out / "answers" / ".stale.123.tmp").write_text("{")  # an import that died mid-write
            live.import_export(live.open_run(out), export)
        # the next round's tasks are written, then the step is committed by its checkpoint: stop in between
        _crash_once(monkeypatch, "_save" if steps % 2 == 0 else "close")
        with pytest.raises(Crash):
            live.advance(live.open_run(out))
        monkeypatch.undo()
        live.advance(live.open_run(out))
        steps += 1
    assert steps == 3
    _same_labels(whole.state.labels, run.state.labels)
    assert [(e.round, e.query, e.costs["label_equivalents"]) for e in run.state.oracle.ledger] == \
        [(e.round, e.query, e.costs["label_equivalents"]) for e in whole.state.oracle.ledger]
    keep = ("round", "miou", "spent_label_equivalents", "n_region", "diagnostics")
    assert [{k: r[k] for k in keep} for r in run.state.rows] == [{k: r[k] for k in keep} for r in whole.state.rows]
    with pytest.raises(LiveError, match="finished"):
        live.advance(run)


def test_next_waits_for_every_answer_unless_told_to_skip(run_dir, data):
    doc = _export(run_dir, data)
    path = run_dir.parent / "half.json"
    path.write_text(json.dumps(doc[:1]))
    live.import_export(live.open_run(run_dir), path)
    with pytest.raises(LiveError, match="1 of 2 tasks are not answered"):
        live.advance(live.open_run(run_dir))
    run = live.open_run(run_dir)
    live.advance(run, skip_missing=True)
    assert run.state.rows[0]["unanswered"] == 1 and run.state.rows[0]["n_full_mask"] == 1
    late = run_dir.parent / "late.json"
    late.write_text(json.dumps(doc[1:]))
    with pytest.raises(ExportError, match="belongs to round 0, which is closed"):
        live.import_export(live.open_run(run_dir), late)


# -- results and tasks -----------------------------------------------------------------------------------


def test_the_leaderboard_and_the_query_log_read_a_live_run(data, tmp_path):
    from alharness.results import leaderboard, store

    bench = _benchmark(data, tmp_path / "bench.toml", "live_test_kind", {"kind": "boxes"})
    run = _live_campaign(data, bench, tmp_path / "run", tmp_path, "live_test_kind", "label-studio")
    con, res = store.connect(run.directory)
    assert not res.problems
    board = leaderboard.leaderboard(con)
    assert [r["strategy"] for r in board] == [run.spec.strategy_label] and board[0]["seeds"] == 1
    assert board[0]["final_miou_mean"] == pytest.approx(run.state.rows[-1]["miou"])
    rows = con.execute("SELECT query_type, lead_time, task FROM queries ORDER BY round, task").fetchall()
    assert len(rows) == len(run.state.oracle.ledger) and {r[0] for r in rows} == {"full_mask", "boxes"}
    assert all(r[1] is not None and r[1] > 0 for r in rows)  # shadow answers carry the simulated seconds
    live_flag, finished = con.execute("SELECT bool_and(rounds.live), bool_and(live_finished) FROM rounds JOIN campaigns "
                                      "USING (campaign_id)").fetchone()
    assert live_flag and finished
    from alharness.live.times import fit_seconds, prices_toml

    tasks = run.tasks
    seconds = [[a.lead_time for t, a in run.answers.items() if tasks[t].query.kind == k] for k in ("boxes", "full_mask")]
    # the shadow's lead times are the simulated seconds: a full mask's equal its live charge
    assert seconds[1] == [e.costs["seconds"] for e in run.state.oracle.ledger if e.query.kind == "full_mask"]
    fit = fit_seconds([run.directory])
    assert [fit[k]["n"] for k in ("boxes", "full_mask")] == [len(s) for s in seconds]
    assert [fit[k]["mean"] for k in ("boxes", "full_mask")] == pytest.approx([np.mean(s) for s in seconds])
    table = prices_toml(fit)
    import tomllib

    prices = tomllib.loads(table)["costs"]["seconds"]["prices"]
    assert prices["full_mask"] == pytest.approx(fit["full_mask"]["mean"], rel=1e-3)


def test_label_studio_tasks_carry_priorities_and_predictions(data, started):
    run_dir, _ = started
    run = live.open_run(run_dir)
    tasks = json.loads((run_dir / "tasks" / "round-000" / "full_mask.json").read_text())
    assert [t["predictions"][0]["score"] for t in tasks] == [1.0, 0.5]
    assert all(t["predictions"][0]["result"] == [] for t in tasks)  # no model before round 0 is bought
    assert tasks[0]["data"]["image"].endswith(f"{tasks[0]['data']['pool_image']}.png")
    assert (run_dir / "images" / f"{tasks[0]['data']['pool_image']}.png").is_file()
    assert sorted(p.stem for p in (run_dir / "label-studio").glob("*.xml")) == sorted(KINDS)
    assert run.open_round == 0 and len(run.pending()) == 2


def test_round_one_tasks_are_pre_annotated_by_the_model(data, tmp_path):
    from alharness.live.label_studio import decode

    bench = _benchmark(data, tmp_path / "bench.toml", "live_test_kind", {"kind": "pixels"})
    out = tmp_path / "run"
    _start(data, bench, out, "live_test_kind")
    live.import_export(live.open_run(out), _shadow_round(out, data, tmp_path, "label-studio"))
    live.advance(live.open_run(out))
    run = live.open_run(out)
    tasks = json.loads((out / "tasks" / "round-001" / "pixels.json").read_text())
    assert len(tasks) == len(run.rounds[1]) > 0
    scores = [t["predictions"][0]["score"] for t in tasks]
    assert scores == sorted(scores, reverse=True)
    for t, task in zip(tasks, run.rounds[1]):
        predicted = decode(task.query, t["predictions"][0]["result"], run.facts)  # the model's labels, one per point
        assert predicted.shape == (len(task.query.coords),) and (predicted < len(CLASSES)).all()


def test_labelling_configs_name_the_controls_the_import_reads(data, started):
    import xml.etree.ElementTree as ET

    from alharness.live.label_studio import CONTROLS

    for kind, control in CONTROLS.items():
        root = ET.fromstring((started[0] / "label-studio" / f"{kind}.xml").read_text())
        names = {e.get("name") for e in root.iter() if e.get("toName") == "image"}
        assert control in names, (kind, names)
        labels = {e.get("value") for e in root.iter() if e.tag in ("Label", "Choice")}
        if kind in ("full_mask", "region", "pixels", "image_labels", "labels_with_counts"):
            assert set(CLASSES) <= labels
    counts = ET.fromstring((started[0] / "label-studio" / "labels_with_counts.xml").read_text())
    assert {e.get("name") for e in counts.iter("Number")} == {"count_1", "count_2"}


def test_prelabelled_masks_are_round_zero(data, tmp_path):
    bench = _benchmark(data, tmp_path / "bench.toml", "live_test_kind", {"kind": "image_labels"}, budget=50)
    masks = tmp_path / "masks"
    masks.mkdir()
    for stem in ("p01", "p04"):
        shutil.copy(data["pool_masks"] / f"{stem}.png", masks / f"{stem}.png")
    run = _start(data, bench, tmp_path / "run", "live_test_kind", masks=str(masks))
    assert len(run.state.rows) == 1 and run.state.rows[0]["n_full_mask"] == 2 and run.open_round == 1
    assert run.state.rows[0]["spent_label_equivalents"] == 24 and run.state.labels.has_full_mask[[1, 4]].all()
    assert {t.query.kind for t in run.rounds[1]} == {"image_labels"}
    with pytest.raises(Exception, match="masks cannot be recorded: batch costs 24"):
        _start(data, _benchmark(data, tmp_path / "small.toml", "live_test_kind", budget=20), tmp_path / "small",
               "live_test_kind", masks=str(masks))


# -- encodings -------------------------------------------------------------------------------------------


def _bits(fields) -> list[int]:
    """Bytes of (value, width) fields written most significant bit first, as the brush RLE spec says."""
    s = "".join(format(v, f"0{w}b") for v, w in fields)
    s += "0" * (-len(s) % 8)
    return [int(s[i:i + 8], 2) for i in range(0, len(s), 8)]


def test_brush_rle_follows_the_documented_bit_layout():
    header = [(7, 32), (7, 5), (2, 4), (3, 4), (7, 4), (15, 4)]  # 7 values, 8-bit words, run fields 3/4/8/16 bits
    # a repeated run of 4 x 255 (3-bit length field), then 3 literals 1, 2, 3 (3-bit length field)
    stream = _bits(header + [(1, 1), (0, 2), (3, 3), (255, 8), (0, 1), (0, 2), (2, 3), (1, 8), (2, 8), (3, 8)])
    assert encoding.brush_decode(stream).tolist() == [255, 255, 255, 255, 1, 2, 3]
    assert encoding.brush_encode(np.array([255, 255, 255, 255, 1, 2, 3])) == stream
    long = _bits([(70000, 32), (7, 5), (2, 4), (3, 4), (7, 4), (15, 4), (1, 1), (3, 2), (65535, 16), (9, 8),
                  (1, 1), (3, 2), (70000 - 65536 - 1, 16), (0, 8)])
    assert encoding.brush_decode(long).tolist() == [9] * 65536 + [0] * (70000 - 65536)
    with pytest.raises(encoding.EncodingError, match="truncated"):
        encoding.brush_decode(stream[:-2])


def test_mask_encodings_round_trip():
    rng = np.random.default_rng(3)
    for shape in [(1, 1), (5, 7), (16, 16), (33, 20)]:
        for p in (0.0, 0.1, 0.5, 1.0):
            m = rng.random(shape) < p
            assert (encoding.brush_to_mask(encoding.mask_to_brush(m), shape) == m).all()
            assert (encoding.coco_to_mask(encoding.mask_to_coco(m), shape) == m).all()
            runs = [int(n) for n in np.diff(np.flatnonzero(np.r_[True, np.diff(m.T.ravel()) != 0, True]))]
            uncompressed = {"size": list(shape), "counts": ([0] if m.T.ravel()[0] else []) + runs}
            assert (encoding.coco_to_mask(uncompressed, shape) == m).all()
            labels = rng.integers(0, 4, shape).astype(np.uint8)
            back = encoding.decode_array(encoding.encode_array(labels))
            assert back.dtype == labels.dtype and (back == labels).all()
    square = encoding.coco_to_mask([[1, 1, 4, 1, 4, 4, 1, 4]], (6, 6))
    assert square[2, 2] and not square[5, 5]
    with pytest.raises(encoding.EncodingError, match="is 4x4, but the image is 6x6"):
        encoding.coco_to_mask({"size": [4, 4], "counts": [16]}, (6, 6))


# -- the command line ------------------------------------------------------------------------------------


def _cli(capsys, *argv: str) -> tuple[int, str]:
    from alharness.cli import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out + err


def test_the_commands_with_a_builtin_strategy_say_what_to_do_next(data, tmp_path, capsys):
    bench = _benchmark(data, tmp_path / "bench.toml", "entropy")
    out = tmp_path / "run"
    rc, text = _cli(capsys, "live", "start", bench, "--strategy", "entropy", "--images", data["pool"], "--out", out,
                    "--test", data["test"])
    assert rc == 0, text
    assert "round 0 of 2: 0 of 2 tasks answered (2 full_mask)" in text
    assert f"{out / 'tasks' / 'round-000' / 'full_mask.json'}" in text and f"alharness live import {out} EXPORT.json" in text
    rc, text = _cli(capsys, "live", "next", out)
    assert rc == 2 and "error: round 0: 2 of 2 tasks are not answered yet" in text
    for rnd in range(3):
        export = tmp_path / f"shadow-{rnd}.json"
        rc, text = _cli(capsys, "live", "shadow", out, data["pool_masks"], "--out", export)
        assert rc == 0 and f"next: alharness live import {out} {export}" in text, text
        rc, text = _cli(capsys, "live", "import", out, export)
        assert rc == 0 and "recorded" in text and f"next: alharness live next {out}" in text, text
        rc, text = _cli(capsys, "live", "import", out, export)
        assert rc == 2 and "duplicate answers" in text and text.count("\n") == 1, text
        rc, text = _cli(capsys, "live", "next", out)
        assert rc == 0 and f"round {rnd} closed: test mIoU" in text, text
    assert "campaign finished after round 2" in text and f"alharness leaderboard {out}" in text
    rc, text = _cli(capsys, "live", "status", out)
    assert rc == 0 and "campaign finished" in text
    rc, text = _cli(capsys, "leaderboard", out)
    assert rc == 0 and "entropy" in text, text
    rc, text = _cli(capsys, "costs", "fit", *(tmp_path / f"shadow-{r}.json" for r in range(3)), "--out", tmp_path / "t.toml")
    assert rc == 0 and "full_mask" in text and "[costs.seconds]" in (tmp_path / "t.toml").read_text(), text


def test_start_refuses_what_a_live_campaign_cannot_run(data, tmp_path, capsys):
    from alharness.live.start import choose_spec

    bench = _benchmark(data, tmp_path / "grid.toml", "fixed_proportion", {"grid": {"mask_fraction": [0.25, 0.75]}})
    with pytest.raises(Exception, match="stands for 2 strategies of a grid: .*mask_fraction=0.25"):
        choose_spec(bench, "fixed_proportion", None, None)
    spec, _ = choose_spec(bench, "fixed_proportion(mask_fraction=0.75)", None, None)
    assert spec.strategy_params["mask_fraction"] == 0.75
    with pytest.raises(Exception, match="no strategy 'entropy'"):
        choose_spec(bench, "entropy", None, None)
    with pytest.raises(Exception, match="no campaign with budget 99"):
        choose_spec(bench, "fixed_proportion(mask_fraction=0.75)", 99, None)
    oracle = _benchmark(data, tmp_path / "oracle.toml", "mask_guided_oracle")
    rc, text = _cli(capsys, "live", "start", oracle, "--strategy", "mask_guided_oracle", "--images", data["pool"],
                    "--out", tmp_path / "o")
    assert rc == 2 and "oracle experiment" in text and not (tmp_path / "o").exists(), text
    rc, text = _cli(capsys, "live", "status", tmp_path)
    assert rc == 2 and "not a live campaign" in text
