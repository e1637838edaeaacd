"""Comparison statistics on hand-made numbers, and `alharness report` built from
real campaign results and checked in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from conftest import tiny_benchmark_doc

from alharness.results import stats, store
from alharness.execution.benchmark import parse_benchmark
from alharness.campaign.loop import run_campaign
from alharness.cli import main


def _pc(label, seed, auc, dataset="d", budget=100.0, **extra):
    return {"dataset": dataset, "metric": "m", "pricing": "m", "budget": budget, "strategy_label": label,
            "seed": seed, "auc": auc, **extra}


def test_bootstrap_of_identical_strategies_covers_zero_and_a_constant_gap_is_exact():
    rng = np.random.default_rng(1)
    values = rng.uniform(0.3, 0.9, size=8)
    rows = [_pc("A", s, v) for s, v in enumerate(values)] + [_pc("B", s, v) for s, v in enumerate(values)]
    rows += [_pc("C", s, v - 0.05) for s, v in enumerate(values)]
    boot = {(b["a"], b["b"]): b for b in stats.paired_bootstrap(rows, "auc", n_boot=2000)}
    ab = boot[("A", "B")]
    assert ab["lo"] <= 0 <= ab["hi"] and ab["significant"] is False and ab["seeds"] == 8
    ac = boot[("A", "C")]  # pairing removes the seeds' spread: a constant gap has a zero-width interval
    assert ac["lo"] == pytest.approx(0.05) and ac["hi"] == pytest.approx(0.05) and ac["significant"]
    # Noisy gap: the interval covers the true mean gap and is reproducible.
    rows2 = [_pc("A", s, 0.5 + 0.1 * rng.standard_normal()) for s in range(30)]
    rows2 += [_pc("B", s, r["auc"] - 0.02 + 0.01 * rng.standard_normal()) for s, r in enumerate(rows2)]
    b1, b2 = stats.paired_bootstrap(rows2, "auc", seed=3), stats.paired_bootstrap(rows2, "auc", seed=3)
    assert b1 == b2 and b1[0]["lo"] < 0.02 < b1[0]["hi"] + 0.01
    # Only common seeds are paired.
    only = stats.paired_bootstrap([_pc("A", 0, 0.5), _pc("A", 1, 0.6), _pc("B", 1, 0.4)], "auc")
    assert only[0]["seeds"] == 1 and only[0]["mean_diff"] == pytest.approx(0.2)
    assert only[0]["significant"] is None  # too few seeds to call it


def test_win_rates_and_ranks_on_known_numbers():
    rows = [_pc("A", 0, 0.9), _pc("A", 1, 0.5), _pc("A", 2, 0.7), _pc("B", 0, 0.8), _pc("B", 1, 0.6), _pc("B", 2, 0.7)]
    (names, w), = stats.win_rates(rows).values()
    assert names == ["A", "B"]
    assert w[0, 1] == pytest.approx(1.5 / 3) and w[1, 0] == pytest.approx(1.5 / 3) and np.isnan(w[0, 0])
    rows = [_pc("A", 0, 0.9, alpha=5), _pc("B", 0, 0.6, alpha=5), _pc("A", 0, 0.4, alpha=50), _pc("B", 0, 0.6, alpha=50)]
    assert stats.ranks_by_parameter(rows, "alpha") == {"d": {5: {"A": 1, "B": 2}, 50: {"A": 2, "B": 1}}}


def _plotly_traces(fragment: str, div_id: str) -> list[dict]:
    """The traces a ``plots.*_interactive`` fragment draws in its element ``div_id`` (its Plotly.newPlot data)."""
    at = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*', fragment)
    assert at and f'id="{div_id}" class="plotly-graph-div"' in fragment
    assert "<script src" not in fragment and "plotly.js v" not in fragment  # the page inlines plotly.js once
    return json.JSONDecoder().raw_decode(fragment, at.end())[0]


def test_rank_lines_and_query_mix_are_interactive_with_the_values_on_hover():
    from alharness.results import plots

    ranks = _plotly_traces(plots.rank_lines_interactive({5: {"A": 1, "B": 2}, 50: {"A": 2, "B": 1}, 500: {"B": 1}},
                                                        "alpha", div_id="ranks-d"), "ranks-d")
    assert [t["name"] for t in ranks] == ["A", "B"]  # one line per strategy
    assert ranks[0]["x"] == ["5", "50", "500"] and ranks[0]["y"] == [1, 2, None] and ranks[1]["y"] == [2, 1, 1]
    assert ranks[0]["hovertemplate"] == "<b>A</b><br>alpha = %{x}<br>rank %{y:g}<extra></extra>"
    mix = _plotly_traces(plots.query_mix_interactive({"S1": {"box": {0: (3.0, 3.0), 1: (2.0, 1.5)}, "mask": {1: (1.0, None)}},
                                                      "S2": {"box": {0: (4.0, 4.0)}}}, div_id="mix-d"), "mix-d")
    # Per strategy and query type: its answers (bars) and its cumulative spend (a line), one legend entry per type.
    assert [(t["name"], t["type"]) for t in mix] == [("box", "bar"), ("box", "scatter"), ("mask", "bar"), ("mask", "scatter"),
                                                     ("box", "bar"), ("box", "scatter")]
    assert [t["name"] for t in mix if t["showlegend"]] == ["box", "mask"]
    assert mix[0]["y"] == [3.0, 2.0] and mix[1]["y"] == [3.0, 4.5] and mix[1]["customdata"] == [3.0, 1.5]
    assert mix[2]["y"] == [0, 1.0] and mix[3]["y"] == [0, 0]  # no answers of a type that round; no spend recorded
    assert mix[2]["hovertemplate"] == "<b>S1</b><br>round %{x}<br>mask: %{y:.4g} answers<extra></extra>"
    assert mix[3]["hovertemplate"].endswith("mask: spent %{customdata:.4g} this round, %{y:.4g} so far<extra></extra>")
    assert (mix[0]["xaxis"], mix[1]["xaxis"], mix[4]["xaxis"]) == ("x", "x3", "x2")  # S1 above / below, S2 beside


def _write_results(out):
    bench = parse_benchmark(tiny_benchmark_doc(strategies=("random", {"name": "fixed_proportion", "mask_fraction": 0.5}),
                                               seeds=(0, 1), reference=True))
    for spec in bench.specs:
        res = run_campaign(spec)
        store.write_campaign(out, {"campaign_id": spec.campaign_id, "status": "ok", "error": "", "spec": spec.to_json()},
                             res.rows, res.queries)
    return bench


@pytest.fixture(scope="module")
def built_report():
    out = tempfile.mkdtemp(prefix="alharness-report-")
    _write_results(out)
    with open(os.path.join(out, "learner_check.json"), "w") as f:  # as `bench --check-learner` leaves it
        json.dump({"tolerance": 0.01, "groups": [{"dataset": "synthetic_shapes", "steps": 20, "adequate": False,
                                                  "gain_2x": 0.08, "gain_4x": 0.03}]}, f)
    assert main(["report", out, "--out", os.path.join(out, "rep")]) == 0
    yield os.path.join(out, "rep")
    shutil.rmtree(out, ignore_errors=True)


def test_report_builds_from_campaign_results(built_report):
    html_text = open(os.path.join(built_report, "report.html")).read()
    md = open(os.path.join(built_report, "report.md")).read()
    # The answer leads: "What to buy" is the first section, in both files.
    assert re.findall(r"<h2>([^<]*)</h2>", html_text)[0] == "What to buy"
    assert re.findall(r"^## (.*)$", md, re.M)[0] == "What to buy"
    assert "best by AUC" in md and "query mix" in md and "cannot distinguish" in md  # 2 seeds: no verdict
    head = md.split("## What ran")[0]
    assert "> **LEARNER UNDER-TRAINED on synthetic_shapes (steps 20): full supervision gains +0.080" in head
    assert '<p class="warning">LEARNER UNDER-TRAINED' in html_text.split("<h2>What ran")[0]
    verdicts = open(os.path.join(built_report, "verdicts.md")).read()
    assert "too few seeds (2" in verdicts and "too few seeds (2" in md
    assert json.load(open(os.path.join(built_report, "verdicts.json")))[0]["verdict"] == "too few seeds"
    for needle in ("What ran", "Cost in label_equivalents", "of full supervision", "Paired bootstrap", "Win rate",
                   "Diagnostics per strategy", "images queried in round"):
        assert needle in html_text and needle in md, needle
    # Self-contained: every image is embedded, nothing is fetched (plotly.js is inlined, its
    # own source text aside: no element loads anything from elsewhere).
    markup = re.sub(r"<script>.*?</script>", "", html_text, flags=re.S)
    assert 'src="data:image/png;base64,' in markup and not re.search(r'src="(?!data:)', markup)
    assert "<script src" not in html_text and html_text.count("plotly.js v") >= 1
    # The learning curves are interactive in the page (hover shows strategy, cost, mean ± std) and a PNG in Markdown.
    assert 'class="plotly-graph-div"' in html_text and "mIoU %{y:.3f}" in html_text and "%{customdata:.3f}" in html_text
    assert 'id="curves-label_equivalents"' in html_text  # fixed ids: the same results give the same page
    assert "![Test mIoU against cost in label_equivalents" in md
    # So is each strategy's query mix (its answers and spend per round by query type on hover).
    mix = html_text.split("<h2>Diagnostics per strategy</h2>")[1].split("</figure>")[0]
    div_id = re.search(r'<div id="(diagnostics_[^"]+)" class="plotly-graph-div"', mix).group(1)
    assert {t["name"] for t in _plotly_traces(mix, div_id)} == {"full_mask", "image_labels"}  # the query types bought
    assert re.search(r"!\[[^\]]*query-type mix per round[^\]]*\]\(diagnostics_[^)]+\.png\)", md)
    for link in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert os.path.getsize(os.path.join(built_report, link)) > 1000
    assert "full_supervision" not in md.split("Cost in label_equivalents")[1].split("Comparisons")[0].split("|---")[1]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _load_in_chromium(page: str) -> tuple[str, list[str], str]:
    """(value of body[data-images-loaded] after load, console lines, the DOM) for a page in headless Chromium
    (the DOM's body[data-plots-drawn] counts the interactive figures that drew their SVG)."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr",
             "--v=0", "--virtual-time-budget=5000", "--dump-dom", f"file://{page}"],
            capture_output=True, text=True, timeout=120)
    loaded = re.search(r'data-images-loaded="([^"]*)"', proc.stdout)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return (loaded.group(1) if loaded else ""), console, proc.stdout


@pytest.mark.skipif(_chromium() is None and os.environ.get("CI") != "true",
                    reason="headless Chromium not installed (make test installs Debian's chromium where it can)")
def test_report_renders_in_headless_chromium(built_report, tmp_path):
    assert _chromium(), "Chromium is required in CI: the Makefile's test target installs Debian's chromium"
    loaded, console, dom = _load_in_chromium(os.path.join(built_report, "report.html"))
    headings = re.findall(r"<h2>([^<]*)</h2>", dom)
    assert headings[0] == "What to buy" and "What ran" in headings[1:]  # the rendered page leads with the answer
    total = int(loaded.split("/")[1])
    assert loaded == f"{total}/{total}", loaded  # every image decoded
    drawn = re.search(r'data-plots-drawn="(\d+)/(\d+)"', dom)
    assert drawn and int(drawn.group(2)) >= 1 and drawn.group(1) == drawn.group(2), drawn  # every plotly figure drew
    assert total + int(drawn.group(2)) >= 4  # the learning curves are interactive, the other figures images
    assert console == []
    # The check can fail: a broken image and a script error are both caught.
    bad = tmp_path / "bad.html"
    page = open(os.path.join(built_report, "report.html")).read()
    page = page.replace('src="data:image/png;base64,', 'src="data:image/png;base64,AAAA', 1)
    page = page.replace("</body>", "<script>undefined_function_here();</script></body>")
    bad.write_text(page)
    loaded_bad, console_bad, _ = _load_in_chromium(str(bad))
    assert loaded_bad == f"{total - 1}/{total}"
    assert any("undefined_function_here" in line for line in console_bad)
    # ...and so is a figure that cannot draw (the page without its inlined plotly.js).
    unplotted = tmp_path / "unplotted.html"
    unplotted.write_text(re.sub(r"<script>/\*\*\s*\* plotly\.js v.*?</script>", "", page, count=1, flags=re.S))
    _, console_unplotted, dom_unplotted = _load_in_chromium(str(unplotted))
    assert f'data-plots-drawn="0/{drawn.group(2)}"' in dom_unplotted and console_unplotted
