"""Full-supervision references computed once per machine, not once per bench.

A reference campaign (``CampaignSpec.reference``) depends only on the
dataset, learner, cost models, validation and seed, so every benchmark that
shares them shares it. Finished references are kept in a results location of
their own, ``$ALHARNESS_CACHE/references`` (``ALHARNESS_REFERENCE_CACHE``
overrides it; ``off`` disables the cache). Before a bench runs, cached
references its grid needs are copied into its results, so they are skipped
like any finished campaign; afterwards, references it computed are added to
the cache. A cached reference is reused only by the same alharness version
(its record says which), so a change to the learner never serves stale numbers.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any, Iterable

import alharness
from alharness.results import store
from alharness.datasets.cache import cache_root
from alharness.errors import ResultsError
from alharness.campaign.spec import CampaignSpec

CACHE_ENV = "ALHARNESS_REFERENCE_CACHE"


def cache_location() -> store.Location | None:
    """Where references are cached; None when disabled."""
    where = os.environ.get(CACHE_ENV)
    if where == "off":
        return None
    return store.Location(where or str(cache_root() / "references"))


def _outcomes(src: store.Location, ids: set[str]) -> list[tuple[dict, list[dict], list[dict]]]:
    """(record, rows, queries) of finished campaigns ``ids`` in ``src``."""
    con, _ = store.connect(src)
    marks = ", ".join("?" for _ in ids)
    tables = {t for (t,) in con.execute("SHOW TABLES").fetchall()}

    def fetch(table: str) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = defaultdict(list)
        if table in tables:
            order = " ORDER BY round" if table == "rounds" else ""
            for r in con.sql(f"SELECT * FROM {table} WHERE campaign_id IN ({marks}){order}", params=sorted(ids)).to_arrow_table().to_pylist():
                out[r["campaign_id"]].append(r)
        return out

    records, rounds, queries = fetch("campaigns"), fetch("rounds"), fetch("queries")
    return [(records[cid][0], rounds[cid], queries[cid]) for cid in sorted(ids) if records.get(cid)]


def _current(record: dict[str, Any]) -> bool:
    try:
        return json.loads(record.get("versions") or "{}").get("alharness") == alharness.__version__
    except json.JSONDecodeError:
        return False


def _copy(src: store.Location, dst: store.Location, ids: set[str]) -> int:
    outcomes = [o for o in _outcomes(src, ids) if o[0]["status"] == "ok" and _current(o[0])]
    for outcome in outcomes:
        store.write_batch(dst, [outcome], batch=outcome[0]["campaign_id"])
    return len(outcomes)


def _reference_ids(specs: Iterable[CampaignSpec]) -> set[str]:
    return {s.campaign_id for s in specs if s.is_reference}


def restore(out: "str | store.Location", specs: Iterable[CampaignSpec]) -> int:
    """Copy cached references that ``specs`` need and ``out`` lacks; returns how many."""
    cache = cache_location()
    wanted = _reference_ids(specs)
    if cache is None or not wanted or not cache.is_dir():
        return 0
    out = store.Location(out)
    missing = wanted - (store.finished_ids(out) if out.is_dir() else set())
    try:
        have = missing & store.finished_ids(cache)
        return _copy(cache, out, have) if have else 0
    except ResultsError:
        return 0  # an empty or unreadable cache is only a cache


def save(out: "str | store.Location", specs: Iterable[CampaignSpec]) -> int:
    """Add references finished in ``out`` to the cache; returns how many were new."""
    cache = cache_location()
    wanted = _reference_ids(specs)
    out = store.Location(out)
    if cache is None or not wanted or not out.is_dir():
        return 0
    cache.make_dir()
    new = (wanted & store.finished_ids(out)) - (store.finished_ids(cache) if cache.is_dir() else set())
    return _copy(out, cache, new) if new else 0
