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
            if math.isnan(v):
                assert m in ("clicks", "cost_a", "cost_b", "seconds"), (m, e.query)
                assert m != "seconds" or not isinstance(e.query, FullMask), e.query
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
