"""Results on disk: one Parquet file per finished campaign and table, written
atomically; DuckDB views over the valid ones.

Layout under a results directory::

    campaigns/<campaign_id>.parquet   status, error, spec, versions, host, times
    rounds/<campaign_id>.parquet      one row per round
    queries/<campaign_id>.parquet     one row per charged answer

The campaign record is written last and is the commit marker: rounds or
queries without an ``ok`` record are ignored (and redone on resume). A file
that cannot be read is reported and kept out of every query.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from alharness.errors import ResultsError

SCHEMA_VERSION = "1"
TABLES = ("campaigns", "rounds", "queries")
_META_VERSION = b"alharness.schema_version"
_META_TABLE = b"alharness.table"


def write_table(path: Path, rows: list[dict[str, Any]], table: str) -> None:
    """Write rows as Parquet atomically: a temporary file, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tbl = pa.Table.from_pylist(rows)
    tbl = tbl.replace_schema_metadata({_META_VERSION: SCHEMA_VERSION.encode(), _META_TABLE: table.encode()})
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        pq.write_table(tbl, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_campaign(out_dir: Path, record: dict[str, Any], rows: list[dict] | None = None, queries: list[dict] | None = None) -> None:
    """Store one campaign's outcome; the record goes last (commit marker)."""
    out_dir = Path(out_dir)
    cid = record["campaign_id"]
    if record["status"] == "ok":
        write_table(out_dir / "rounds" / f"{cid}.parquet", rows or [], "rounds")
        if queries:
            write_table(out_dir / "queries" / f"{cid}.parquet", queries, "queries")
        else:
            (out_dir / "queries" / f"{cid}.parquet").unlink(missing_ok=True)
    write_table(out_dir / "campaigns" / f"{cid}.parquet", [record], "campaigns")


@dataclass
class ScanResult:
    """Valid files per table, and what was wrong with the others."""

    files: dict[str, list[Path]] = field(default_factory=lambda: {t: [] for t in TABLES})
    status: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _valid(path: Path, table: str) -> str | None:
    try:
        meta = pq.read_schema(path).metadata or {}
        pq.read_metadata(path)
    except Exception as exc:  # pyarrow raises several types for broken files
        return f"{path}: unreadable Parquet ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); ignored"
    if meta.get(_META_VERSION) != SCHEMA_VERSION.encode():
        return f"{path}: schema version {meta.get(_META_VERSION, b'?').decode()} (expected {SCHEMA_VERSION}); ignored"
    if meta.get(_META_TABLE) != table.encode():
        return f"{path}: holds table {meta.get(_META_TABLE, b'?').decode()!r}, not {table!r}; ignored"
    return None


def scan(out_dir: str | Path) -> ScanResult:
    """Find the readable result files of finished campaigns under ``out_dir``."""
    out_dir = Path(out_dir)
    res = ScanResult()
    for path in sorted((out_dir / "campaigns").glob("*.parquet")):
        why = _valid(path, "campaigns")
        if why:
            res.problems.append(why)
            continue
        try:
            rec = pq.read_table(path, columns=["campaign_id", "status"]).to_pylist()[0]
        except Exception as exc:
            res.problems.append(f"{path}: unreadable campaign record ({exc}); ignored")
            continue
        res.status[rec["campaign_id"]] = rec["status"]
        res.files["campaigns"].append(path)
    for table in ("rounds", "queries"):
        for path in sorted((out_dir / table).glob("*.parquet")):
            cid = path.stem
            if res.status.get(cid) != "ok":
                continue  # an unfinished or failed campaign's leftovers
            why = _valid(path, table)
            if why:
                res.problems.append(why)
                res.status[cid] = "corrupt"
                continue
            res.files[table].append(path)
    # A campaign with a corrupt table is kept out of every table.
    bad = {cid for cid, s in res.status.items() if s == "corrupt"}
    if bad:
        for table in TABLES:
            res.files[table] = [p for p in res.files[table] if p.stem not in bad]
    return res


def finished_ids(out_dir: str | Path) -> set[str]:
    """Campaigns whose results are complete and readable."""
    res = scan(out_dir)
    return {cid for cid, s in res.status.items() if s == "ok"}


def _sql_list(paths: Iterable[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def connect(out_dir: str | Path, *, require_rounds: bool = True):
    """A DuckDB connection with views ``campaigns``, ``rounds`` and ``queries``.

    Returns ``(connection, scan_result)``; problems found are in the scan result.
    """
    import duckdb

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ResultsError(f"{out_dir}: no such results directory")
    res = scan(out_dir)
    if require_rounds and not res.files["rounds"]:
        extra = f" ({len(res.problems)} unreadable file(s): {res.problems[0]})" if res.problems else ""
        raise ResultsError(f"{out_dir}: no finished campaigns to read{extra}")
    con = duckdb.connect()
    for table in TABLES:
        if res.files[table]:
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet({_sql_list(res.files[table])}, union_by_name = true)"
            )
    return con, res
