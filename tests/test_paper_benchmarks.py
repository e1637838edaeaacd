"""benchmarks/paper/*.toml: each seed paper's protocol validates, expands to
the campaigns its header states, and dry-runs (nothing scheduled, nothing
written) with a tiny on-disk VOC / Cityscapes layout standing in for the
real data, pointed at by rewriting the file's root lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from alharness.execution.benchmark import load_benchmark
from alharness.execution.estimate import dry_run
from test_datasets_layouts import fresh_cache  # noqa: F401  (autouse: a private dataset cache per test)
from test_datasets_layouts import TRAIN, VAL, _voc_truth, write_cityscapes, write_voc

PAPER = Path(__file__).resolve().parent.parent / "benchmarks" / "paper"
FILES = sorted(PAPER.glob("*.toml"))


def _tiny_data(root: Path) -> dict[str, Path]:
    """A tiny VOC (with the SegmentationClassAug layout for ``augmented``) and Cityscapes."""
    voc = write_voc(root / "pascal", TRAIN, VAL)
    (voc / "SegmentationClassAug").mkdir()
    for k, i in enumerate(TRAIN + VAL):
        Image.fromarray(_voc_truth(k)[0]).save(voc / "SegmentationClassAug" / f"{i}.png")
    (voc / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(TRAIN) + "\n")
    write_cityscapes(root / "cityscapes")
    return {"/path/to/pascal": root / "pascal", "/path/to/cityscapes": root / "cityscapes"}


def _stated_campaigns(text: str) -> int:
    """The campaign count the header's 'Grid:' paragraph ends on."""
    grid = re.search(r"^# Grid:(.*?)(?:^#\s*$|^# Dry-run)", text, re.S | re.M)
    assert grid, "header lacks a 'Grid:' paragraph"
    return int(re.findall(r"= (\d+)", grid.group(1))[-1])


def test_every_paper_file_is_found_and_not_in_the_top_level_glob():
    assert len(FILES) == 7
    assert not set(FILES) & set(PAPER.parent.glob("*.toml"))  # the shipped-benchmarks test globs one level only


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_paper_benchmark_validates_expands_and_dry_runs_on_a_tiny_layout(path, tmp_path, monkeypatch):
    text = path.read_text()
    assert text.count("/path/to/") >= 1 and "EDIT" in text  # a clear placeholder the header explains
    roots = _tiny_data(tmp_path / "data")
    tiny = text
    for placeholder, where in roots.items():
        tiny = tiny.replace(f'"{placeholder}"', f'"{where}"')
    tiny = re.sub(r"^sbd_root = .*$", "", tiny, flags=re.M)  # the tiny VOC has SegmentationClassAug instead
    assert "/path/to/" not in tiny
    work = tmp_path / "work"
    work.mkdir()
    copy = work / path.name
    copy.write_text(tiny)
    monkeypatch.chdir(work)

    bench = load_benchmark(copy)  # validates, datasets opened
    assert bench.name == path.stem
    assert len(bench.specs) == _stated_campaigns(text)
    assert all(0 < s.num_gpus < 1 for s in bench.specs)  # fractional GPUs, as the header's estimate assumes
    report = dry_run(bench, memory_per_campaign_gib=64)
    assert "nothing scheduled, nothing written" in report.splitlines()[0]
    assert f"{len(bench.specs)} campaigns" in report.splitlines()[0]
    assert sorted(p.name for p in work.iterdir()) == [path.name]  # no results directory, nothing else written


@pytest.fixture(scope="module")
def paper_estimates():
    import runpy

    return runpy.run_path(str(PAPER.parent / "paper_estimates.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_the_headers_dry_run_estimate_is_generated_from_the_estimate(path, paper_estimates, monkeypatch):
    """The figures in each header's estimate block follow the estimate's code (no hand-typed sizes)."""
    from alharness.annotation.labels import MMAP_BYTES_ENV

    monkeypatch.delenv(MMAP_BYTES_ENV, raising=False)  # the blocks are written at the default threshold
    assert paper_estimates["committed"](path) == paper_estimates["block"](path), \
        "rerun python benchmarks/paper_estimates.py --write"
