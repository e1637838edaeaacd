"""Append-only record of every charged answer."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from alharness.contract.queries import Query


@dataclass(frozen=True)
class LedgerEntry:
    round: int
    query: Query
    costs: Mapping[str, float]
    noisy: bool = False


@dataclass
class Ledger:
    """Entries can be appended, never changed; totals are kept per metric."""

    metrics: tuple[str, ...]
    _entries: list[LedgerEntry] = field(default_factory=list)
    _totals: dict[str, float] = field(default_factory=dict)
    _keys: set = field(default_factory=set)
    _counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._totals = {m: 0.0 for m in self.metrics}

    def append(self, entry: LedgerEntry) -> None:
        self._entries.append(entry)
        self._keys.update(entry.query.keys())
        self._counts[entry.query.log_kind] += 1
        for m in self.metrics:
            self._totals[m] += entry.costs[m]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(tuple(self._entries))

    def answered(self, query: Query) -> bool:
        """True if any part of ``query`` was bought before."""
        return any(k in self._keys for k in query.keys())

    def total(self, metric: str) -> float:
        return self._totals[metric]

    def totals(self) -> dict[str, float]:
        return dict(self._totals)

    def count(self, kind: str) -> int:
        """Answers of one logged query type (validation masks count separately)."""
        return self._counts[kind]

    def records(self) -> list[dict]:
        """Rows for the ``queries`` table."""
        return [
            {"round": e.round, **e.query.describe(), **{f"cost_{m}": float(e.costs[m]) for m in self.metrics}, "noisy": e.noisy}
            for e in self._entries
        ]
