"""benchmarks/image_label_gain.py: the "Do image labels help?" table of docs/learner.md, generated from a surface."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest

from alharness.errors import ResultsError
from alharness.studies.surface import SURFACE_FILE

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gain():
    return SimpleNamespace(**runpy.run_path(str(ROOT / "benchmarks" / "image_label_gain.py")))


def test_the_docs_block_is_the_rendering_of_the_committed_sidecar(gain):
    page = ROOT / "docs" / "learner.md"
    record = gain.load_rows(gain.sidecar(page))
    assert gain.block(page.read_text()) == gain.markdown(record, "docs/learner.md"), \
        f"rerun {gain.COMMAND} --results {record['results']} --write docs/learner.md"


def _write_surface(where: Path, points: list[tuple[int, int, int, float]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    c, s, seed, miou = zip(*points)
    pq.write_table(pa.table({"C": list(c), "S": list(s), "seed": list(seed), "miou": list(miou)}),
                   where / SURFACE_FILE)


def test_reduction_means_paired_gains_and_counts(gain, tmp_path):
    points = [
        # S = 5: gains at C = 100 on seeds 0 and 1, a loss on seed 2
        (0, 5, 0, 0.30), (0, 5, 1, 0.40), (0, 5, 2, 0.50),
        (50, 5, 0, 0.35), (50, 5, 1, 0.45), (50, 5, 2, 0.40),
        (100, 5, 0, 0.50), (100, 5, 1, 0.50), (100, 5, 2, 0.44),
        # S = 10: seed 2 has no C = 100 point, so only seeds 0 and 1 are paired
        (0, 10, 0, 0.60), (0, 10, 1, 0.70), (0, 10, 2, 0.80),
        (50, 10, 0, 0.60), (50, 10, 1, 0.60), (50, 10, 2, 0.60),
        (100, 10, 0, 0.50), (100, 10, 1, 0.68),
    ]
    _write_surface(tmp_path, points)
    record = gain.measure(str(tmp_path), "benchmarks/x.toml")
    assert record["seeds"] == [0, 1, 2]
    s5, s10 = record["rows"]
    assert (s5["S"], s5["C"], s5["seeds"], s5["paired"], s5["gained"]) == (5, [0, 50, 100], [3, 3, 3], 3, 2)
    assert s5["miou"] == pytest.approx([0.40, 0.40, 0.48])
    assert s5["gain"] == pytest.approx((0.20 + 0.10 - 0.06) / 3)
    assert (s10["seeds"], s10["paired"], s10["gained"]) == ([3, 3, 2], 2, 0)
    assert s10["miou"] == pytest.approx([0.70, 0.60, 0.59])
    assert s10["gain"] == pytest.approx((-0.10 - 0.02) / 2)
    md = gain.markdown(record, "docs/page.md")
    assert "| S | C = 0 | C = 50 | C = 100 | paired gain at C = 100 (seeds with a gain) |" in md
    assert "| 5 | 0.400 | 0.400 | 0.480 | +0.080 (2 of 3) |" in md
    assert "| 10 | 0.700 | 0.600 | 0.590 (2 seeds) | -0.060 (0 of 2) |" in md
    assert (f"alharness surface benchmarks/x.toml --labels 0,50,100 --masks 5,10 --seeds 0,1,2 --out {tmp_path}"
            in md and f"{gain.COMMAND} --results {tmp_path} --write docs/page.md" in md)

    # --write rewrites only the marked block and saves the record beside the page.
    page = tmp_path / "page.md"
    page.write_text(f"before\n{gain.START}\nold table\n{gain.END}\nafter\n")
    assert gain.main(["--results", str(tmp_path), "--bench", "benchmarks/x.toml", "--write", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old table" not in text
    assert gain.block(text) == gain.markdown(gain.load_rows(gain.sidecar(page)), str(page))


def test_missing_or_corrupt_surface_is_a_clear_error(gain, tmp_path):
    with pytest.raises(ResultsError, match="no surface file"):
        gain.measure(str(tmp_path), "b.toml")
    with pytest.raises(SystemExit, match="no surface file"):
        gain.main(["--results", str(tmp_path)])
    (tmp_path / SURFACE_FILE).write_bytes(b"not parquet")
    with pytest.raises(ResultsError, match="unreadable surface file"):
        gain.measure(str(tmp_path), "b.toml")
    _write_surface(tmp_path, [(50, 5, 0, 0.5), (100, 5, 0, 0.6)])
    with pytest.raises(ResultsError, match="needs C = 0"):
        gain.measure(str(tmp_path), "b.toml")
