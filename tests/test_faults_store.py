"""Results on any pyarrow file system, batched writes, and what the store
does with duplicates, reruns and corrupt batches."""

from __future__ import annotations

import json

import pyarrow.fs as pafs
import pytest

from alharness.results import leaderboard as report, store
from alharness.errors import ResultsError


def _outcome(cid, status="ok", label="A", seed=0, points=((0, 0.2), (100, 0.8))):
    rec = {"campaign_id": cid, "status": status, "error": "" if status == "ok" else "Traceback: boom", "spec": json.dumps({})}
    rows = [{"campaign_id": cid, "dataset": "d", "strategy": label, "strategy_label": label, "budget_metric": "label_equivalents",
             "budget": 100.0, "seed": seed, "round": i, "spent_label_equivalents": float(x), "miou": float(y),
             "per_class_iou": [float(y)]} for i, (x, y) in enumerate(points)] if status == "ok" else []
    queries = [{"campaign_id": cid, "round": 0, "query_type": "full_mask", "image": 0}] if status == "ok" else []
    return rec, rows, queries


def _memory_object_store():
    """An fsspec in-memory file system seen through pyarrow: no atomic rename,
    like an object store (each written object appears whole or not at all)."""
    from fsspec.implementations.memory import MemoryFileSystem

    mem = MemoryFileSystem()
    mem.store.clear()
    mem.pseudo_dirs.clear()
    mem.pseudo_dirs.append("")
    return pafs.PyFileSystem(pafs.FSSpecHandler(mem))


LOCATIONS = {
    "file-uri": lambda tmp: f"file://{tmp}/res",
    "mock-subtree": lambda tmp: (pafs.SubTreeFileSystem("bucket/prefix", pafs._MockFileSystem()), "results"),
    "object-store": lambda tmp: (_memory_object_store(), "/bucket/results"),
}


@pytest.mark.parametrize("kind", sorted(LOCATIONS))
def test_batches_on_any_file_system(kind, tmp_path):
    loc = store.Location(LOCATIONS[kind](tmp_path))
    store.write_batch(loc, [_outcome("a0"), _outcome("a1", seed=1), _outcome("f0", "failed")])
    store.write_campaign(loc, *_outcome("b0", label="B", points=((0, 0.1), (100, 0.4))))
    assert len(loc.list("campaigns", ".parquet")) == 2 and not loc.list("campaigns", ".tmp")
    con, res = store.connect(loc)
    assert not res.problems
    assert res.status == {"a0": "ok", "a1": "ok", "f0": "failed", "b0": "ok"}
    assert con.execute("SELECT count(*), count(DISTINCT campaign_id) FROM rounds").fetchone() == (6, 3)
    assert con.execute("SELECT count(*) FROM queries").fetchone()[0] == 3
    assert [r["strategy"] for r in report.leaderboard(con)] == ["A", "B"]
    # The failed campaign reruns and succeeds in a later batch: its ok record wins.
    store.write_batch(loc, [_outcome("f0", label="C")])
    con, res = store.connect(loc)
    assert res.status["f0"] == "ok"
    assert con.execute("SELECT status FROM campaigns WHERE campaign_id = 'f0'").fetchall() == [("ok",)]
    assert con.execute("SELECT count(*) FROM rounds WHERE campaign_id = 'f0'").fetchone()[0] == 2


def test_local_writes_leave_no_temp_files_and_uri_equals_path(tmp_path):
    store.write_batch(f"file://{tmp_path}", [_outcome("a0"), _outcome("a1")], batch="b1")
    assert sorted(p.name for p in (tmp_path / "campaigns").iterdir()) == ["b1.parquet"]
    assert store.finished_ids(tmp_path) == store.finished_ids(f"file://{tmp_path}") == {"a0", "a1"}
    with pytest.raises(ResultsError, match="results location"):
        store.Location("nosuchscheme://x/y")


def test_a_campaign_stored_twice_counts_once(tmp_path):
    # Two drivers on one directory: same finish time, the first batch by name wins.
    store.write_batch(tmp_path, [_outcome("a0"), _outcome("a1", seed=1)], batch="batch-1")
    store.write_batch(tmp_path, [_outcome("a0", points=((0, 0.9),)), _outcome("a2", seed=2)], batch="batch-2")
    con, res = store.connect(tmp_path)
    assert con.execute("SELECT campaign_id, count(*) FROM rounds GROUP BY 1 ORDER BY 1").fetchall() == [
        ("a0", 2), ("a1", 2), ("a2", 2)]
    assert con.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 3
    assert con.execute("SELECT max(miou) FROM rounds WHERE campaign_id = 'a0'").fetchone()[0] == pytest.approx(0.8)


def test_corrupt_batch_is_reported_and_all_its_campaigns_excluded(tmp_path):
    store.write_batch(tmp_path, [_outcome("a0"), _outcome("a1", seed=1)], batch="good")
    store.write_batch(tmp_path, [_outcome("b0", label="B"), _outcome("b1", label="B", seed=1)], batch="bad")
    path = tmp_path / "rounds" / "bad.parquet"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # half-written
    con, res = store.connect(tmp_path)
    assert len(res.problems) == 1 and "bad.parquet" in res.problems[0]
    assert res.status["b0"] == res.status["b1"] == "corrupt"
    assert store.finished_ids(tmp_path) == {"a0", "a1"}  # so a resumed bench reruns b0 and b1
    for table in ("rounds", "campaigns", "queries"):
        assert {r[0] for r in con.execute(f"SELECT DISTINCT campaign_id FROM {table}").fetchall()} == {"a0", "a1"}
    assert [r["strategy"] for r in report.leaderboard(con)] == ["A"]


def test_campaigns_with_different_columns_share_a_batch(tmp_path):
    a = _outcome("a0")
    b = _outcome("b0", label="B")
    for r in b[1]:
        r["p_strategy_box_size"] = 8  # only B has this parameter
    c = _outcome("c0", label="C")
    for r in c[1]:
        r["p_strategy_box_size"] = "large"  # cannot share a column with B's integers
    names = store.write_batch(tmp_path, [a, b])
    assert len(names) == 1
    con, _ = store.connect(tmp_path)
    assert con.execute("SELECT campaign_id, any_value(p_strategy_box_size) FROM rounds GROUP BY 1 ORDER BY 1").fetchall() == [
        ("a0", None), ("b0", 8)]
    names = store.write_batch(tmp_path / "mixed", [b, c])
    assert sorted(names) == ["b0", "c0"]  # stored apart rather than losing a value
    assert store.finished_ids(tmp_path / "mixed") == {"b0", "c0"}


def test_a_rerun_replaces_older_results(tmp_path):
    # --no-resume reruns a finished campaign: its later outcome is the one kept.
    old, new = _outcome("a0"), _outcome("a0", points=((0, 0.1), (100, 0.3)))
    old[0]["finished"], new[0]["finished"] = "2026-11-23T09:00:00+00:00", "2026-11-23T10:00:00+00:00"
    store.write_batch(tmp_path, [new], batch="batch-a")
    store.write_batch(tmp_path, [old, _outcome("a1", seed=1)], batch="batch-b")
    con, _ = store.connect(tmp_path)
    assert con.execute("SELECT max(miou), count(*) FROM rounds WHERE campaign_id = 'a0'").fetchone() == (pytest.approx(0.3), 2)
