"""Results on any pyarrow file system: Parquet files written atomically,
DuckDB views over the valid ones.

Layout under a results location (a local directory, ``file://`` URI or an
object-store URI such as ``s3://bucket/prefix``; see :class:`Location`)::

    campaigns/<batch>.parquet    status, error, spec, versions, host, times (one row per campaign)
    rounds/<batch>.parquet       one row per round of the batch's finished campaigns
    queries/<batch>.parquet      one row per charged answer
    checkpoints/<campaign_id>.ckpt  last finished round of a running campaign (alharness.campaign.checkpoint)

A *batch* is one or more campaigns stored together (the runner batches small
campaigns so that writing thousands of them does not cost thousands of
files); a single campaign's batch is named by its campaign id. The
campaigns file of a batch is written last and is its commit marker: rounds
or queries without it are ignored (and redone on resume). A file that cannot
be read is reported and its campaigns are kept out of every query.
"""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from alharness.errors import ResultsError

SCHEMA_VERSION = "1"
TABLES = ("campaigns", "rounds", "queries")
_META_VERSION = b"alharness.schema_version"
_META_TABLE = b"alharness.table"
# File systems whose move() is an atomic rename; on the others (object
# stores) one PUT is already all-or-nothing, so the final key is written
# directly and the commit marker written last does the rest.
_RENAMING = {"local", "mock"}


class Location:
    """A results directory on a pyarrow file system.

    ``where``: a local path, any URI ``pyarrow.fs.FileSystem.from_uri``
    understands (``file:///…``, ``s3://bucket/prefix``, ``gs://…``), a
    ``(filesystem, path)`` pair, or another Location. Picklable, so Ray
    tasks can write checkpoints next to the results.
    """

    def __init__(self, where: "str | Path | Location | tuple[pafs.FileSystem, str]"):
        if isinstance(where, Location):
            self.fs, self.root, self.uri = where.fs, where.root, where.uri
            return
        if isinstance(where, tuple):
            self.fs, root = where
            self.uri = f"{self.fs.type_name}:{root}"
        elif "://" in str(where):
            try:
                self.fs, root = pafs.FileSystem.from_uri(str(where))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
                raise ResultsError(f"results location {str(where)!r}: {exc}") from None
            self.uri = str(where)
        else:
            self.fs, root, self.uri = pafs.LocalFileSystem(), os.path.abspath(str(where)), str(where)
        self.root = root.rstrip("/") or "/"

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __str__(self) -> str:
        return self.uri

    @property
    def is_local(self) -> bool:
        return self.fs.type_name == "local"

    def _base_type(self) -> str:
        fs = self.fs
        while isinstance(fs, pafs.SubTreeFileSystem):
            fs = fs.base_fs
        return fs.type_name

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts]) if self.root != "/" else "/" + "/".join(parts)

    def write_bytes(self, rel: str, data: bytes, *, durable: bool = True) -> None:
        """Write ``data`` at ``rel`` atomically: readers see the old file or the whole new one.

        ``durable``: fsync a local file before the rename, so a power loss
        cannot publish a file whose bytes never reached the disk (checkpoints
        skip it: a checkpoint lost that way is detected and redone)."""
        path = self.path(rel)
        parent, name = path.rsplit("/", 1)
        if self.is_local:
            Path(parent).mkdir(parents=True, exist_ok=True)
            tmp = f"{parent}/.{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    if durable:
                        fh.flush()
                        os.fsync(fh.fileno())  # the rename must not publish a file whose bytes are still in cache
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return
        self.fs.create_dir(parent, recursive=True)
        if self._base_type() in _RENAMING:
            tmp = f"{parent}/.{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                with self.fs.open_output_stream(tmp) as out:
                    out.write(data)
                self.fs.move(tmp, path)
            finally:
                if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                    self.fs.delete_file(tmp)
        else:
            with self.fs.open_output_stream(path) as out:
                out.write(data)

    def read_bytes(self, rel: str) -> bytes | None:
        """The file's bytes, or None if it does not exist."""
        try:
            with self.fs.open_input_stream(self.path(rel)) as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self.path(rel))
        except FileNotFoundError:
            pass

    def list(self, sub: str, suffix: str) -> list[str]:
        """Names (not paths) of the files in ``sub`` ending in ``suffix``, sorted; temp files excluded."""
        sel = pafs.FileSelector(self.path(sub), allow_not_found=True)
        names = [i.base_name for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File]
        return sorted(n for n in names if n.endswith(suffix) and not n.startswith("."))

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.root).type == pafs.FileType.Directory

    def make_dir(self) -> None:
        self.fs.create_dir(self.root, recursive=True)


def _table_bytes(rows: "list[dict[str, Any]] | pa.Table", table: str) -> bytes:
    tbl = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows)
    tbl = tbl.replace_schema_metadata({_META_VERSION: SCHEMA_VERSION.encode(), _META_TABLE: table.encode()})
    buf = io.BytesIO()
    pq.write_table(tbl, buf)
    return buf.getvalue()


def write_table(path: str | Path, rows: "list[dict[str, Any]] | pa.Table", table: str, location: Location | None = None) -> None:
    """Write rows as Parquet atomically (a local path, or ``path`` relative to ``location``)."""
    data = _table_bytes(rows, table)
    if location is None:
        p = Path(path).absolute()
        Location(p.parent).write_bytes(p.name, data)
    else:
        location.write_bytes(str(path), data)


Outcome = tuple[dict[str, Any], list[dict], list[dict]]


def _stack(parts: list[list[dict[str, Any]]]) -> pa.Table | None:
    """One table from several campaigns' rows. Campaigns differ in columns
    (each strategy has its own ``p_strategy_*``), so each is converted on its
    own and the tables are stacked with missing columns as nulls."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rows in parts:  # one conversion per set of columns (usually one per strategy), not per campaign
        for row in rows:
            groups.setdefault(tuple(row), []).append(row)
    tables = [pa.Table.from_pylist(rows) for rows in groups.values()]
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def write_batch(where: "str | Path | Location", outcomes: list[Outcome], batch: str | None = None) -> list[str]:
    """Store several campaigns' (record, rows, queries) as one batch; the
    campaigns file goes last (commit marker). Returns the batch names (more
    than one only if the campaigns' columns cannot share a table, e.g. one
    parameter that is a number in one strategy and a string in another)."""
    loc = Location(where)
    if not outcomes:
        return []
    ok = [o for o in outcomes if o[0]["status"] == "ok"]
    try:
        records = _stack([[rec] for rec, _, _ in outcomes])
        rounds = _stack([rows for _, rows, _ in ok])
        queries = _stack([qs for _, _, qs in ok])
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if len(outcomes) == 1:
            raise
        return [name for o in outcomes for name in write_batch(loc, [o], batch=o[0]["campaign_id"])]
    batch = batch or f"batch-{uuid.uuid4().hex}"
    if ok:
        write_table(f"rounds/{batch}.parquet", rounds if rounds is not None else [], "rounds", loc)
        if queries is not None:
            write_table(f"queries/{batch}.parquet", queries, "queries", loc)
        else:
            loc.delete(f"queries/{batch}.parquet")
    write_table(f"campaigns/{batch}.parquet", records, "campaigns", loc)
    return [batch]


def write_campaign(where: "str | Path | Location", record: dict[str, Any], rows: list[dict] | None = None,
                   queries: list[dict] | None = None) -> None:
    """Store one campaign's outcome as its own batch; the record goes last (commit marker)."""
    write_batch(where, [(record, rows or [], queries or [])], batch=record["campaign_id"])


@dataclass
class ScanResult:
    """Valid files per table, and what was wrong with the others.

    ``files`` holds full paths on ``location.fs``. ``status`` maps each
    campaign to ok / failed / corrupt; ``exclude`` maps a batch to campaigns
    whose rows in that batch must be ignored (stored twice: the first
    batch, by name, wins)."""

    location: Location | None = None
    files: dict[str, list[str]] = field(default_factory=lambda: {t: [] for t in TABLES})
    status: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    exclude: dict[str, set[str]] = field(default_factory=dict)


def _valid(loc: Location, path: str, table: str) -> str | None:
    try:
        meta = pq.read_schema(path, filesystem=loc.fs).metadata or {}
        pq.read_metadata(path, filesystem=loc.fs)
    except Exception as exc:  # pyarrow raises several types for broken files
        return f"{path}: unreadable Parquet ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); ignored"
    if meta.get(_META_VERSION) != SCHEMA_VERSION.encode():
        return f"{path}: schema version {meta.get(_META_VERSION, b'?').decode()} (expected {SCHEMA_VERSION}); ignored"
    if meta.get(_META_TABLE) != table.encode():
        return f"{path}: holds table {meta.get(_META_TABLE, b'?').decode()!r}, not {table!r}; ignored"
    return None


def _stem(name: str) -> str:
    return name[: -len(".parquet")]


def scan(where: "str | Path | Location") -> ScanResult:
    """Find the readable result files of finished campaigns."""
    loc = Location(where)
    res = ScanResult(location=loc)
    members: dict[str, list[tuple[str, str]]] = {}
    finished: dict[tuple[str, str], str] = {}
    for name in loc.list("campaigns", ".parquet"):
        path = loc.path("campaigns", name)
        why = _valid(loc, path, "campaigns")
        if not why:
            try:
                t = pq.read_table(path, filesystem=loc.fs)
                recs = t.select([c for c in ("campaign_id", "status", "finished") if c in t.column_names]).to_pylist()
                members[_stem(name)] = [(r["campaign_id"], r["status"]) for r in recs]
                finished.update({(_stem(name), r["campaign_id"]): r.get("finished") or "" for r in recs})
            except Exception as exc:
                why = f"{path}: unreadable campaign record ({exc}); ignored"
        if why:
            res.problems.append(why)
            continue
        res.files["campaigns"].append(path)
    # Each campaign's outcome comes from one batch: an ok one if any (a failed
    # campaign rerun on resume succeeds in a later batch), the latest finished
    # among those (a --no-resume rerun replaces), then the first by name.
    home: dict[str, str] = {}
    for batch, recs in members.items():
        for cid, status in recs:
            if cid in home:
                old = (res.status[cid] == "ok", finished[home[cid], cid])
                if (status == "ok", finished[batch, cid]) <= old:
                    continue
            home[cid], res.status[cid] = batch, status
    for batch, recs in members.items():
        stale = {cid for cid, _ in recs if home[cid] != batch}
        if stale:
            res.exclude[batch] = stale
    for table in ("rounds", "queries"):
        for name in loc.list(table, ".parquet"):
            batch = _stem(name)
            oks = [cid for cid, s in members.get(batch, ()) if s == "ok" and home[cid] == batch]
            if not oks:
                continue  # an unfinished batch's leftovers, or only failed campaigns
            path = loc.path(table, name)
            why = _valid(loc, path, table)
            if why:
                res.problems.append(why)
                for cid in oks:
                    res.status[cid] = "corrupt"
                continue
            res.files[table].append(path)
    # A campaign with a corrupt table is kept out of every table.
    for batch, recs in members.items():
        bad = {cid for cid, _ in recs if res.status.get(cid) == "corrupt"}
        if bad:
            res.exclude.setdefault(batch, set()).update(bad)
    return res


def finished_ids(where: "str | Path | Location") -> set[str]:
    """Campaigns whose results are complete and readable."""
    res = scan(where)
    return {cid for cid, s in res.status.items() if s == "ok"}


def _sql_list(paths: Iterable[str]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _arrow_table(res: ScanResult, table: str) -> pa.Table:
    """The valid files of one table read through pyarrow (any file system), stale rows dropped."""
    import pyarrow.compute as pc

    parts = []
    for path in res.files[table]:
        t = pq.read_table(path, filesystem=res.location.fs)
        drop = res.exclude.get(_stem(path.rsplit("/", 1)[-1]))
        if drop:
            t = t.filter(pc.invert(pc.is_in(t["campaign_id"], pa.array(sorted(drop)))))
        parts.append(t.replace_schema_metadata(None))
    return pa.concat_tables(parts, promote_options="permissive")


def connect(where: "str | Path | Location", *, require_rounds: bool = True):
    """A DuckDB connection with views ``campaigns``, ``rounds`` and ``queries``.

    Returns ``(connection, scan_result)``; problems found are in the scan result.
    """
    import duckdb

    loc = Location(where)
    if not loc.is_dir():
        raise ResultsError(f"{loc}: no such results directory")
    res = scan(loc)
    if require_rounds and not res.files["rounds"]:
        extra = f" ({len(res.problems)} unreadable file(s): {res.problems[0]})" if res.problems else ""
        raise ResultsError(f"{loc}: no finished campaigns to read{extra}")
    con = duckdb.connect()
    for table in TABLES:
        if not res.files[table]:
            continue
        if loc.is_local and not any(_stem(p.rsplit("/", 1)[-1]) in res.exclude for p in res.files[table]):
            # The common case: DuckDB reads the files itself, lazily.
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({_sql_list(res.files[table])}, union_by_name = true)")
        else:
            # Object stores or rows to drop: read through pyarrow's file system.
            con.register(f"_{table}_arrow", _arrow_table(res, table))
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _{table}_arrow")
    return con, res
