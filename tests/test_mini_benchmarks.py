"""benchmarks/mini/*.toml: each paper's headline in miniature validates, states claims the report
can judge, chooses its seeds adaptively, and has its generated report committed under
results/reference/mini/<paper>/, judged against the claims the file states today."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alharness.execution.adaptive_seeds import seeds_to_decide
from alharness.execution.benchmark import load_benchmark
from alharness.results.claims import CONFIRMED, CONTRADICTED, NOT_DETECTABLE

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "benchmarks" / "mini").glob("*.toml"))


def test_the_mini_benchmarks_are_found():
    assert {p.stem for p in FILES} >= {"madbal", "binary", "full_or_weak"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_mini_benchmark_states_claims_and_its_committed_report_judges_them(path):
    bench = load_benchmark(path, open_datasets=False)
    assert bench.claims and bench.seeding is not None and bench.seeding.min >= 5
    strategies = {s.strategy_label for s in bench.specs if not s.is_reference}
    # Enough seeds at most for the report's exact test to call the group's pairs.
    assert bench.seeding.max >= seeds_to_decide(len(strategies)), (bench.seeding.max, len(strategies))
    assert any(s.is_reference for s in bench.specs)  # full supervision: the adequacy yardstick
    text = path.read_text()
    out = f"results/reference/mini/{path.stem}"
    assert f"alharness bench benchmarks/mini/{path.name} --out results/mini/{path.stem}" in text
    assert f"alharness report results/mini/{path.stem} --claims benchmarks/mini/{path.name} --out {out}" in text
    judged = json.loads((ROOT / out / "claims.json").read_text())
    assert [j["says"] for j in judged] == [c.says for c in bench.claims]
    assert all(j["outcome"] in (CONFIRMED, CONTRADICTED, NOT_DETECTABLE) for j in judged)
    md = (ROOT / out / "report.md").read_text()
    assert md.split("\n## ")[1].startswith("Headline claims")
    for j in judged:
        assert re.search(rf"^### {re.escape(j['says'])}: {j['outcome'].upper()}$", md, re.M), j["says"]


def test_the_docs_table_of_outcomes_is_the_generated_one():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mini_readings", ROOT / "benchmarks" / "mini_readings.py")
    readings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readings)
    table = readings.render()
    assert table.count("\n") >= 2 + len(FILES)  # header, rule, at least one claim a file
    for target in readings.TARGETS:
        assert readings.block(target.read_text()) == table, f"{target}: rerun python benchmarks/mini_readings.py --write"
    for path in FILES:  # every mini benchmark has its committed report in the table
        assert f"| {path.stem} |" in table, path.stem
