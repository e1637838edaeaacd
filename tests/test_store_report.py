"""Parquet store, DuckDB views, corrupt-file handling, leaderboard metrics on hand-made results."""

from __future__ import annotations

import json

import pytest

from alharness.results import leaderboard as report, store
from alharness.cli import main
from alharness.errors import ResultsError


def _rows(cid, label, seed, points, budget=100.0, dataset="d", params=None):
    return [
        {"campaign_id": cid, "dataset": dataset, "strategy": label, "strategy_label": label, "budget_metric": "label_equivalents",
         "budget": budget, "seed": seed, "round": i, "spent_label_equivalents": float(x), "spent_seconds": float(10 * x),
         "miou": float(y), "per_class_iou": [float(y)], **{f"p_dataset_{k}": v for k, v in (params or {}).items()}}
        for i, (x, y) in enumerate(points)
    ]


def _record(cid, status="ok"):
    return {"campaign_id": cid, "status": status, "error": "" if status == "ok" else "boom", "spec": json.dumps({})}


def _write(tmp_path, cid, label, seed, points, **kw):
    store.write_campaign(tmp_path, _record(cid), _rows(cid, label, seed, points, **kw),
                         [{"campaign_id": cid, "round": 0, "query_type": "full_mask", "image": 0}])


def test_leaderboard_metrics_on_known_curves(tmp_path):
    # a: (0, .2) -> (50, .6) -> (100, .8): AUC = (50*.4 + 50*.7)/100 = 0.55
    _write(tmp_path, "a0", "A", 0, [(0, 0.2), (50, 0.6), (100, 0.8)])
    _write(tmp_path, "a1", "A", 1, [(0, 0.2), (50, 0.6), (100, 0.8)])
    # b: (0, .1) -> (40, .4), held flat to 100: AUC = (40*.25 + 60*.4)/100 = 0.34
    _write(tmp_path, "b0", "B", 0, [(0, 0.1), (40, 0.4)])
    con, res = store.connect(tmp_path)
    assert not res.problems
    lb = {r["strategy"]: r for r in report.leaderboard(con)}
    assert lb["A"]["auc_mean"] == pytest.approx(0.55)
    assert lb["A"]["auc_std"] == pytest.approx(0.0)
    assert lb["B"]["auc_mean"] == pytest.approx(0.34)
    assert lb["A"]["final_miou_mean"] == pytest.approx(0.8) and lb["A"]["seeds"] == 2
    # 90 % of the best final mIoU (0.8) is 0.72: A reaches it at cost 100, B never.
    assert lb["A"]["cost_to_reach_mean"] == pytest.approx(100) and lb["A"]["reached"] == 2
    assert lb["B"]["reached"] == 0
    assert [r["strategy"] for r in report.leaderboard(con)] == ["A", "B"]
    text = report.format_leaderboard(report.leaderboard(con))
    assert "never" in text and "0.550" in text
    # Re-scored in another recorded metric: span is the largest spend seen (1000).
    lb_s = {r["strategy"]: r for r in report.leaderboard(con, cost_metric="seconds")}
    assert lb_s["A"]["auc_mean"] == pytest.approx(0.55)
    with pytest.raises(ResultsError, match="recorded metrics: label_equivalents, seconds"):
        report.leaderboard(con, cost_metric="dollars")


def test_differently_configured_datasets_of_one_name_are_separate_rows(tmp_path):
    """Two synthetic_shapes configurations (3 and 5 classes) are not two seeds of one row."""
    for classes, final in ((3, 0.8), (5, 0.4)):
        for seed in (0, 1):
            _write(tmp_path, f"c{classes}s{seed}", "A", seed, [(0, 0.1), (100, final)], dataset="synthetic_shapes",
                   params={"num_classes": classes, "size": 32, "noise": 0.1})
    _write(tmp_path, "other", "A", 0, [(0, 0.1), (100, 0.5)], params={"num_classes": 3})  # dataset "d": one configuration
    con, _ = store.connect(tmp_path)
    lb = {r["dataset"]: r for r in report.leaderboard(con)}
    assert set(lb) == {"synthetic_shapes(num_classes=3)", "synthetic_shapes(num_classes=5)", "d"}
    assert lb["synthetic_shapes(num_classes=3)"]["seeds"] == 2
    assert lb["synthetic_shapes(num_classes=3)"]["final_miou_mean"] == pytest.approx(0.8)
    assert lb["synthetic_shapes(num_classes=5)"]["final_miou_mean"] == pytest.approx(0.4)
    assert "dataset synthetic_shapes(num_classes=5) |" in report.format_leaderboard(report.leaderboard(con))
    panels = {p.dataset for p in report.learning_curve_panels(con)}
    assert panels == set(lb)


def test_corrupt_and_half_written_files_are_reported_and_excluded(tmp_path, capsys):
    _write(tmp_path, "good", "A", 0, [(0, 0.2), (100, 0.8)])
    _write(tmp_path, "bad", "B", 0, [(0, 0.1), (100, 0.9)])
    (tmp_path / "rounds" / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp_path / "campaigns" / "trunc.parquet").write_bytes((tmp_path / "campaigns" / "good.parquet").read_bytes()[:50])
    # Rounds of a campaign that never committed its record (killed mid-write): ignored.
    store.write_table(tmp_path / "rounds" / "orphan.parquet", _rows("orphan", "C", 0, [(0, 0.5)]), "rounds")
    (tmp_path / "rounds" / ".x.parquet.123.tmp").write_bytes(b"partial")
    con, res = store.connect(tmp_path)
    assert len(res.problems) == 2
    assert any("bad.parquet" in p for p in res.problems) and any("trunc.parquet" in p for p in res.problems)
    assert con.execute("SELECT DISTINCT campaign_id FROM rounds").fetchall() == [("good",)]
    assert con.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 1  # the corrupt campaign is out of every table
    assert [r["strategy"] for r in report.leaderboard(con)] == ["A"]
    assert store.finished_ids(tmp_path) == {"good"}
    assert main(["leaderboard", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "bad.parquet" in captured.err
    assert "A" in captured.out and "orphan" not in captured.out


def test_failed_campaigns_have_records_but_no_rows(tmp_path):
    _write(tmp_path, "good", "A", 0, [(0, 0.2), (100, 0.8)])
    store.write_campaign(tmp_path, _record("broken", "failed"))
    con, res = store.connect(tmp_path)
    assert con.execute("SELECT campaign_id, status FROM campaigns ORDER BY 1").fetchall() == [("broken", "failed"), ("good", "ok")]
    assert store.finished_ids(tmp_path) == {"good"}


def test_empty_or_missing_results_give_clear_errors(tmp_path, capsys):
    with pytest.raises(ResultsError, match="no finished campaigns"):
        store.connect(tmp_path)
    assert main(["leaderboard", str(tmp_path / "nope")]) == 2
    assert "no such results directory" in capsys.readouterr().err


def test_query_and_plot_commands(tmp_path, capsys):
    _write(tmp_path, "a0", "A", 0, [(0, 0.2), (50, 0.6), (100, 0.8)])
    _write(tmp_path, "a1", "A", 1, [(0, 0.3), (50, 0.5), (100, 0.9)])
    assert main(["query", str(tmp_path), "SELECT strategy, count(*) AS n FROM rounds GROUP BY 1"]) == 0
    out = capsys.readouterr().out
    assert "A" in out and "6" in out
    assert main(["query", str(tmp_path), "SELECT * FROM nothing_here"]) == 2
    assert "views: campaigns, rounds, queries" in capsys.readouterr().err
    png = tmp_path / "curves.png"
    assert main(["plot", str(tmp_path), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_writes_are_atomic(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    path = tmp_path / "rounds" / "x.parquet"
    store.write_table(path, [{"a": 1}], "rounds")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError):
        store.write_table(path, [{"a": 2}], "rounds")
    monkeypatch.undo()
    assert pq.read_table(path).to_pylist() == [{"a": 1}]  # old file intact
    assert [p.name for p in path.parent.iterdir()] == ["x.parquet"]  # no temp left behind
