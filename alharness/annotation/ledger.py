"""Append-only record of every charged answer."""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

from alharness.contract.queries import QUERY_TYPES, Query


@dataclass(frozen=True)
class LedgerEntry:
    round: int
    query: Query
    costs: Mapping[str, float]
    noisy: bool = False


@dataclass
class Ledger:
    """Entries can be appended, never changed; totals are kept per metric.

    Kept by column: the queries in a list, rounds, costs (one row per entry,
    in the order of ``metrics``) and noisy flags in flat arrays. An answer
    is recorded without building an entry or a cost dict; entries are made
    when the ledger is read (iteration, ``records``)."""

    metrics: tuple[str, ...]
    _queries: list[Query] = field(default_factory=list)
    _rounds: array = field(default_factory=lambda: array("q"))
    _costs: array = field(default_factory=lambda: array("d"))
    _noisy: bytearray = field(default_factory=bytearray)
    _totals: dict[str, float] = field(default_factory=dict)
    _keys: set = field(default_factory=set)
    _counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.metrics = tuple(self.metrics)
        self._totals = {m: 0.0 for m in self.metrics}

    def add(self, round: int, query: Query, costs: Sequence[float], noisy: bool = False) -> None:
        """Record one charged answer; ``costs`` in the order of ``metrics``."""
        if len(costs) != len(self.metrics):
            raise ValueError(f"{len(costs)} costs for {len(self.metrics)} metrics {self.metrics}")
        self._queries.append(query)
        self._rounds.append(round)
        self._costs.extend(costs)
        self._noisy.append(bool(noisy))
        self._keys.update(query.keys())
        self._counts[query.log_kind] += 1
        # One addition per metric, in entry order: the same float sums as
        # adding up the query log.
        for m, c in zip(self.metrics, costs):
            self._totals[m] += c

    def append(self, entry: LedgerEntry) -> None:
        self.add(entry.round, entry.query, [entry.costs[m] for m in self.metrics], entry.noisy)

    def __len__(self) -> int:
        return len(self._queries)

    def _entry(self, i: int) -> LedgerEntry:
        k = len(self.metrics)
        costs = dict(zip(self.metrics, self._costs[i * k:(i + 1) * k]))
        return LedgerEntry(round=self._rounds[i], query=self._queries[i], costs=costs, noisy=bool(self._noisy[i]))

    def __iter__(self) -> Iterator[LedgerEntry]:
        # The entries as of this call: later appends are not seen.
        return (self._entry(i) for i in range(len(self._queries)))

    def answered(self, query: Query) -> bool:
        """True if any part of ``query`` was bought before."""
        return any(k in self._keys for k in query.keys())

    def held_out(self, image: int) -> bool:
        """True if pool image ``image`` was bought held out (``FullMask(held_out=True)``)."""
        return ("held_out", int(image)) in self._keys

    def asked(self, image: int) -> bool:
        """True if anything about pool image ``image`` was bought.

        Derived from the atomic keys, each ``(kind, image, ...)``: only the kinds of
        strategy queries count (not the harness's ``validation_mask``, whose image
        indexes the validation split, nor the ``held_out`` mark). A scan, but it is
        asked only for held-out purchases, not on every answer."""
        image = int(image)
        return any(k[0] in QUERY_TYPES and k[1] == image for k in self._keys)

    def total(self, metric: str) -> float:
        return self._totals[metric]

    def totals(self) -> dict[str, float]:
        return dict(self._totals)

    def count(self, kind: str) -> int:
        """Answers of one logged query type (validation and held-out masks count separately)."""
        return self._counts[kind]

    def noisy_count(self) -> int:
        """Answers the annotator model corrupted."""
        return self._noisy.count(1)

    def records(self) -> list[dict]:
        """Rows for the ``queries`` table."""
        k, names = len(self.metrics), [f"cost_{m}" for m in self.metrics]
        rows = []
        for i, q in enumerate(self._queries):
            row = {"round": self._rounds[i], **q.describe()}
            row.update(zip(names, self._costs[i * k:(i + 1) * k]))
            row["noisy"] = bool(self._noisy[i])
            rows.append(row)
        return rows

    def __setstate__(self, state: dict) -> None:
        entries = state.pop("_entries", None)
        if entries is None:
            self.__dict__.update(state)
            return
        # A ledger pickled with one object per entry (older checkpoints):
        # replaying its entries rebuilds the same totals, keys and counts.
        fresh = Ledger(metrics=tuple(state["metrics"]))
        for e in entries:
            fresh.append(e)
        self.__dict__.update(fresh.__dict__)
