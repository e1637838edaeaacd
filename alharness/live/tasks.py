"""Tasks, queries and answers of a live campaign, as JSON.

A *task* is one query of one round, under an id that is unique to the run
(``<run>-r<round>-<index>``); its index is the query's position in the
strategy's batch, and its ``score`` (1 for the first query, falling
linearly) is the strategy's priority, which annotation tools sort by. An
*answer* is what an annotator returned for a task, decoded into the value
the simulation's oracle would have given (``alharness.annotation.answers``),
with the annotator's ``lead_time`` in seconds where the export has one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from alharness.contract.queries import QUERY_TYPES, Pixels, Query
from alharness.errors import AlharnessError
from alharness.live.encoding import decode_array, encode_array


class ExportError(AlharnessError):
    """An export that cannot be imported; nothing of it was recorded."""


class LiveError(AlharnessError):
    """A live-campaign command that cannot go on (one line: what is wrong and what to do)."""


@dataclass(frozen=True)
class PoolFacts:
    """What the formats need to know about the pool: public facts, no ground truth."""

    class_names: tuple[str, ...]
    image_shape: tuple[int, int]
    stems: tuple[str, ...]
    ignore_index: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_index(self, name: Any) -> int | None:
        return self.class_names.index(name) if isinstance(name, str) and name in self.class_names else None


@dataclass(frozen=True)
class Task:
    id: str
    round: int
    index: int
    query: Query
    score: float
    source: str = "strategy"  # or "prelabelled": a mask the user had before the campaign

    def describe(self, facts: PoolFacts) -> str:
        """'task ID (region on image STEM)', for messages."""
        return f"task {self.id} ({self.query.kind} on image {facts.stems[int(self.query.image)]})"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "round": self.round, "index": self.index, "query": query_to_json(self.query),
                "score": self.score, "source": self.source}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Task":
        return cls(d["id"], int(d["round"]), int(d["index"]), query_from_json(d["query"]), float(d["score"]),
                   d.get("source", "strategy"))


@dataclass(frozen=True)
class Answer:
    task: str
    value: Any
    lead_time: float | None = None
    annotator: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "value": encode_value(self.value), "lead_time": self.lead_time,
                "annotator": self.annotator}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Answer":
        return cls(d["task"], decode_value(d["value"]), d.get("lead_time"), d.get("annotator"))


def task_id(run: str, rnd: int, index: int) -> str:
    return f"{run}-r{rnd:03d}-{index:04d}"


def priority(index: int, n: int) -> float:
    """The strategy's priority of its ``index``-th query of ``n``: 1 for the first, falling linearly."""
    return (n - index) / n


# -- queries ---------------------------------------------------------------------------------------------


def query_to_json(q: Query) -> dict[str, Any]:
    """{"type": kind, field: value, ...}; pixel coordinates as [[y, x], ...]."""
    out: dict[str, Any] = {"type": q.kind}
    for f in dataclasses.fields(q):
        v = getattr(q, f.name)
        out[f.name] = [[int(y), int(x)] for y, x in v] if isinstance(q, Pixels) and f.name == "coords" else int(v)
    return out


def query_from_json(d: dict[str, Any]) -> Query:
    cls = QUERY_TYPES[d["type"]]
    kw = {k: v for k, v in d.items() if k != "type"}
    if cls is Pixels:
        kw["coords"] = tuple((int(y), int(x)) for y, x in kw["coords"])
    return cls(**kw)


# -- answer values ---------------------------------------------------------------------------------------


def encode_value(v: Any) -> Any:
    """An answer value as JSON: arrays as run lengths, tuples as lists, booleans as they are."""
    if isinstance(v, np.ndarray):
        return {"array": encode_array(v)}
    if isinstance(v, tuple):
        return {"tuple": [encode_value(x) for x in v]}
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    raise TypeError(f"cannot store an answer of type {type(v).__name__}")


def decode_value(v: Any) -> Any:
    if isinstance(v, dict) and "array" in v:
        return decode_array(v["array"])
    if isinstance(v, dict) and "tuple" in v:
        return tuple(decode_value(x) for x in v["tuple"])
    return bool(v)


class AnswerError(ValueError):
    """What is wrong with one answer in an export (the caller names the task and the file)."""


@dataclass(frozen=True)
class Item:
    """One annotated task as a format read it, not yet checked against the campaign."""

    task: Any  # the task id the export names (anything: it is checked)
    payload: Any  # the format's own answer: Label Studio results, or a COCO answer with its annotations
    lead_time: Any = None
    annotator: Any = None
    where: str = ""  # 'FILE: Label Studio task 17', for messages


def placed(q: Query, value: np.ndarray, facts: PoolFacts) -> np.ndarray:
    """A region's or pixels' answer in its image: the answered labels where the query asked, void elsewhere."""
    mask = np.full(facts.image_shape, facts.ignore_index, np.uint8)
    if isinstance(q, Pixels):
        mask[q.pixel_index] = value
    else:
        y0, x0, y1, x1 = q.bounds
        mask[y0:y1, x0:x1] = value
    return mask


def box_row(c: int, x0: float, y0: float, x1: float, y1: float, facts: PoolFacts) -> tuple[int, int, int, int, int]:
    """A drawn box (pixel edges, any float) as a Boxes answer row (class, y0, x0, y1, x1): edges
    rounded to the nearest pixel and clipped to the image; a foreground class and one pixel at least."""
    h, w = facts.image_shape
    x0, x1 = (min(max(round(v), 0), w) for v in (x0, x1))
    y0, y1 = (min(max(round(v), 0), h) for v in (y0, y1))
    if c == 0:
        raise AnswerError(f"a box of class {facts.class_names[0]!r}: boxes are for foreground classes")
    if x1 <= x0 or y1 <= y0:
        raise AnswerError("a box covers no pixel")
    return c, y0, x0, y1, x1
