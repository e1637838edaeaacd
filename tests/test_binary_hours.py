"""benchmarks/binary_hours.py: the binary-user-feedback paper's Table 3 (§4) recomputed from the
registered seconds cost model's user-study presets, and the hours a results directory's arms spent."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import tiny_benchmark_doc

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hours():
    spec = importlib.util.spec_from_file_location("binary_hours", ROOT / "benchmarks" / "binary_hours.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table3_recomputed_from_the_cost_model_matches_the_paper(hours):
    rows = hours.table3()
    assert [r["dataset"] for r in rows] == ["flickr", "cityscapes", "pascal"]
    for r in rows:
        for level in hours.LEVELS:
            assert abs(r["hours"][level] - r["paper"][level]) <= 0.01, (r["dataset"], level, r["hours"][level])
    pascal = rows[2]["hours"]["binary"]
    # 3 s x 200 x 25 = 4.1667 h; the paper prints 4.16 (truncated).
    assert round(pascal, 2) == 4.17 and rows[2]["paper"]["binary"] == 4.16
    md = hours.markdown()
    assert "| PASCAL | 3 | 162 | 1092 | 200 | 4.17 | 4.16 |" in md
    assert "needs `--results DIR`" in md and "python benchmarks/binary_hours.py" in md


def test_the_committed_hours_page_is_the_generated_one(hours):
    target = "results/reference/mini/binary/hours.md"
    rows = hours.sidecar(ROOT / target)
    # With measured hours, the page is rendered from the rows binary_hours.py saved beside it.
    expected = (hours.markdown("results/mini/binary", target, hours.load_rows(rows)) if rows.exists()
                else hours.markdown(write=target))
    assert (ROOT / target).read_text() == expected, f"rerun python benchmarks/binary_hours.py [--results DIR] --write {target}"


def test_measured_hours_are_the_campaigns_seconds_per_arm(hours, tmp_path):
    from alharness.campaign.loop import run_campaign
    from alharness.execution.benchmark import parse_benchmark
    from alharness.results import store

    masks = 2 * 18.2 * 60  # two initial masks at the PASCAL preset's price
    doc = tiny_benchmark_doc(strategies=("random", {"name": "binary_rr", "queries_per_round": 5}), seeds=(0,),
                             budget=masks + 30, budget_metric="seconds", reference=True)
    doc["costs"] = {"seconds": {"preset": "binary_feedback_pascal"}}
    out = str(tmp_path / "res")
    specs = parse_benchmark(doc, "b.toml").specs
    labels = sorted(s.strategy_label for s in specs if not s.is_reference)
    rr = next(x for x in labels if x.startswith("binary_rr"))
    for spec in specs:
        res = run_campaign(spec)
        store.write_campaign(out, {"campaign_id": spec.campaign_id, "status": "ok", "error": "", "spec": spec.to_json()},
                             res.rows, res.queries)
    rows = hours.measured(out)
    assert sorted(r["strategy"] for r in rows) == labels and len(labels) == 2
    con, _ = store.connect(out)
    spent = dict(con.execute("SELECT strategy_label, arg_max(spent_seconds, round) FROM rounds "
                             "WHERE strategy <> 'full_supervision' GROUP BY ALL").fetchall())
    for r in rows:
        assert r["seeds"] == 1 and r["hours"] == pytest.approx(spent[r["strategy"]] / 3600)
        assert set(r["reach"]) == set(hours.REACH)
    assert spent[rr] > masks  # the yes/no answers were charged on top of the masks
    md = hours.markdown(out)
    assert all(md.count(f"| {label} | 1 |") == 1 for label in labels)
    assert "needs `--results DIR`" not in md
    # --write keeps the rows beside the page, and the page re-renders from them alone.
    page = tmp_path / "hours.md"
    assert hours.main(["--results", out, "--write", str(page)]) == 0
    assert hours.sidecar(page).exists()
    assert page.read_text() == hours.markdown(out, str(page), hours.load_rows(hours.sidecar(page)))
    assert hours.main(["--write", str(page)]) == 0 and not hours.sidecar(page).exists()
