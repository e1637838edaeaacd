"""COCO JSON, both ways: a round's tasks out, annotators' answers in.

Images are ``id = pool position + 1`` with ``file_name = <stem>.png``;
categories are ``id = class id + 1`` (COCO keeps 0 for "nothing"). A tasks
file is an ordinary COCO file (``images``, ``categories``, no annotations)
plus ``tasks``: one entry per query with its ``id``, ``image_id``, ``type``,
``score`` (the strategy's priority) and what it asks: ``category_id``
(ClassPresence), ``bbox`` [x, y, width, height] (Region), ``points``
[[x, y], ...] in pixels (Pixels).

An answers file adds to that:

- ``answers``: one entry per answered task, ``{"task": id, "lead_time": seconds}``
  (lead_time optional), which makes every answer explicit, so an image with
  nothing in it and an image not yet looked at never look alike. Image-level
  answers live in the entry: ``labels``, a list of ``{"category_id", "present"}``
  for every category (ImageLabels), for the asked category (ClassPresence),
  or for every category with a ``count`` for each present foreground one
  (LabelsWithCounts); ``points``, ``[{"x", "y", "category_id"}]`` for each asked
  pixel (category 0: void) (Pixels);
- ``annotations``: ordinary COCO annotations with a ``task`` field: one per
  class with its mask as ``segmentation`` (RLE, compressed or not, or
  polygons; unpainted pixels are void) for FullMask and Region (only the
  square is read), one per object with its ``bbox`` for Boxes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable

import numpy as np

from alharness.contract.queries import Query
from alharness.live.encoding import EncodingError, coco_to_mask, mask_to_coco
from alharness.live.tasks import AnswerError, ExportError, Item, PoolFacts, Task, box_row, placed


def _base(facts: PoolFacts, info: dict[str, Any]) -> dict[str, Any]:
    h, w = facts.image_shape
    return {"info": info,
            "images": [{"id": i + 1, "file_name": f"{s}.png", "width": w, "height": h} for i, s in enumerate(facts.stems)],
            "categories": [{"id": c + 1, "name": n} for c, n in enumerate(facts.class_names)]}


def _task_entry(task: Task) -> dict[str, Any]:
    q = task.query
    out: dict[str, Any] = {"id": task.id, "image_id": int(q.image) + 1, "type": q.kind, "score": task.score}
    if q.kind == "class_presence":
        out["category_id"] = int(q.cls) + 1
    elif q.kind == "region":
        out["bbox"] = [int(q.x), int(q.y), int(q.size), int(q.size)]
    elif q.kind == "pixels":
        out["points"] = [[int(x), int(y)] for y, x in q.coords]
    return out


def tasks_document(tasks: list[Task], facts: PoolFacts, info: dict[str, Any]) -> dict[str, Any]:
    """A round's tasks as a COCO file with a ``tasks`` list."""
    return {**_base(facts, info), "tasks": [_task_entry(t) for t in tasks]}


# -- answers out (shadow mode) ---------------------------------------------------------------------------


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _masks(q: Query, labels: np.ndarray, facts: PoolFacts) -> list[dict]:
    return [{"image_id": int(q.image) + 1, "category_id": int(c) + 1, "segmentation": mask_to_coco(labels == c),
             "area": int((labels == c).sum()), "bbox": _bbox(labels == c), "iscrowd": 0}
            for c in np.unique(labels) if c != facts.ignore_index]


def _labels_of(present: np.ndarray, counts: np.ndarray | None = None) -> list[dict]:
    return [{"category_id": c + 1, "present": bool(p), **({} if counts is None or c == 0 else {"count": int(counts[c])})}
            for c, p in enumerate(np.asarray(present).tolist())]


# What each type puts in its answers entry and in annotations: (entry fields, annotations).
_ENCODERS: dict[str, Callable[[Query, Any, PoolFacts], tuple[dict, list[dict]]]] = {
    "full_mask": lambda q, a, f: ({}, _masks(q, a, f)),
    "region": lambda q, a, f: ({}, _masks(q, placed(q, a, f), f)),
    "boxes": lambda q, a, f: ({}, [{"image_id": int(q.image) + 1, "category_id": c + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                    "area": (x1 - x0) * (y1 - y0), "iscrowd": 0}
                                   for c, y0, x0, y1, x1 in np.asarray(a).tolist()]),
    "image_labels": lambda q, a, f: ({"labels": _labels_of(a)}, []),
    "class_presence": lambda q, a, f: ({"labels": [{"category_id": int(q.cls) + 1, "present": bool(a)}]}, []),
    "labels_with_counts": lambda q, a, f: ({"labels": _labels_of(a[0], a[1])}, []),
    "pixels": lambda q, a, f: ({"points": [{"x": int(x), "y": int(y), "category_id": 0 if v == f.ignore_index else int(v) + 1}
                                           for (y, x), v in zip(q.coords, a.tolist())]}, []),
}


def answers_document(answered: list[tuple[Task, Any, float | None]], facts: PoolFacts,
                     info: dict[str, Any]) -> dict[str, Any]:
    """A COCO answers file for (task, answer value, lead time) triples (shadow mode)."""
    entries, annotations = [], []
    for task, value, lead in answered:
        fields, anns = _ENCODERS[task.query.kind](task.query, value, facts)
        entries.append({"task": task.id, "image_id": int(task.query.image) + 1, "lead_time": lead, **fields})
        annotations += [{"id": len(annotations) + k + 1, "task": task.id, **a} for k, a in enumerate(anns)]
    return {**_base(facts, info), "annotations": annotations, "answers": entries}


# -- answers in ------------------------------------------------------------------------------------------


def _check_categories(doc: dict, facts: PoolFacts, where: str) -> None:
    """A tool that renumbered or renamed categories would shift every class: refuse it."""
    cats = doc.get("categories")
    if cats is None:
        return
    ok = isinstance(cats, list) and all(isinstance(c, dict) for c in cats)
    for c in cats if ok else ():
        cid, name = c.get("id"), c.get("name")
        mine = facts.class_names[cid - 1] if isinstance(cid, int) and 1 <= cid <= facts.num_classes else None
        if mine != name:
            raise ExportError(f"{where}: category {cid!r} is {name!r} in the export but "
                              f"{mine!r} in this campaign (categories are class id + 1); nothing was recorded")
    if not ok:
        raise ExportError(f"{where}: 'categories' must be a list of objects; nothing was recorded")


def read_items(doc: Any, where: str, facts: PoolFacts) -> list[Item]:
    """Every answered task of a COCO answers file, with its annotations."""
    if not isinstance(doc, dict) or not isinstance(doc.get("answers"), list):
        raise ExportError(f"{where}: not a COCO answers file (it needs an 'answers' list, one entry per answered "
                          f"task; see docs/live.md); nothing was recorded")
    _check_categories(doc, facts, where)
    anns = doc.get("annotations", [])
    if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
        raise ExportError(f"{where}: 'annotations' must be a list of objects; nothing was recorded")
    by_task: dict[Any, list[dict]] = defaultdict(list)
    for k, a in enumerate(anns):
        if not isinstance(a.get("task"), str):
            raise ExportError(f"{where}: annotation {a.get('id', k)!r} names no task; nothing was recorded")
        by_task[a["task"]].append(a)
    items = []
    for k, e in enumerate(doc["answers"]):
        if not isinstance(e, dict):
            raise ExportError(f"{where}: answers[{k}] is not an object; nothing was recorded")
        items.append(Item(e.get("task"), {"entry": e, "annotations": by_task.pop(e.get("task"), [])},
                          e.get("lead_time"), e.get("annotator"), f"{where}: answers[{k}]"))
    if by_task:
        orphan = next(iter(by_task))
        raise ExportError(f"{where}: annotations of task {orphan!r}, which has no entry in 'answers' (an answer must "
                          f"be explicit); nothing was recorded")
    return items


def _category(v: Any, facts: PoolFacts, void: bool = False) -> int:
    """The class id of a category id (0 means void where ``void``)."""
    if void and v == 0:
        return facts.ignore_index
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= facts.num_classes:
        raise AnswerError(f"category_id {v!r} is outside the label set (1..{facts.num_classes}: "
                          f"{', '.join(facts.class_names)})")
    return v - 1


def _image_of(q: Query, obj: dict) -> None:
    if "image_id" in obj and obj["image_id"] != int(q.image) + 1:
        raise AnswerError(f"image_id {obj['image_id']!r}, but the task is about image {int(q.image) + 1}")


def _paint(q: Query, payload: dict, facts: PoolFacts) -> np.ndarray:
    out = np.full(facts.image_shape, facts.ignore_index, np.uint8)
    for a in payload["annotations"]:
        _image_of(q, a)
        c = _category(a.get("category_id"), facts)
        try:
            out[coco_to_mask(a.get("segmentation"), facts.image_shape)] = c
        except EncodingError as exc:
            raise AnswerError(str(exc)) from None
    return out


def _dec_boxes(q: Query, payload: dict, facts: PoolFacts) -> np.ndarray:
    rows = []
    for a in payload["annotations"]:
        _image_of(q, a)
        box = a.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)):
            raise AnswerError(f"bbox must be [x, y, width, height], got {box!r}")
        x, y, bw, bh = box
        rows.append(box_row(_category(a.get("category_id"), facts), x, y, x + bw, y + bh, facts))
    return np.array(rows, np.int64).reshape(-1, 5)


def _labels(q: Query, payload: dict, facts: PoolFacts, only: int | None = None) -> dict[int, dict]:
    """Class id → its ``labels`` entry; every category must be given exactly once (or just ``only``)."""
    _image_of(q, payload["entry"])
    given = payload["entry"].get("labels")
    if not isinstance(given, list) or not all(isinstance(g, dict) and isinstance(g.get("present"), bool) for g in given):
        raise AnswerError("'labels' must list {category_id, present: true/false} objects")
    out: dict[int, dict] = {}
    for g in given:
        c = _category(g.get("category_id"), facts)
        if c in out:
            raise AnswerError(f"category {c + 1} is given twice")
        out[c] = g
    want = {only} if only is not None else set(range(facts.num_classes))
    if set(out) != want:
        gap = sorted(want ^ set(out))[0]
        raise AnswerError(f"'labels' must give exactly {'category ' + str(only + 1) if only is not None else 'every category'}"
                          f" (category {gap + 1} {'is missing' if gap in want else 'was not asked'})")
    return out


def _dec_counts(q: Query, payload: dict, facts: PoolFacts) -> tuple[np.ndarray, np.ndarray]:
    given = _labels(q, payload, facts)
    present = np.array([given[c]["present"] for c in range(facts.num_classes)], bool)
    counts = np.zeros(facts.num_classes, np.int64)
    for c in range(1, facts.num_classes):
        n = given[c].get("count")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise AnswerError(f"count of category {c + 1} must be a whole number >= 0, got {n!r}")
        if present[c] and n is None:
            raise AnswerError(f"category {c + 1} is present but has no count")
        if not present[c] and n:
            raise AnswerError(f"category {c + 1} is absent but counts {n} objects")
        counts[c] = n or 0
    return present, counts


def _dec_pixels(q: Query, payload: dict, facts: PoolFacts) -> np.ndarray:
    _image_of(q, payload["entry"])
    points = payload["entry"].get("points")
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise AnswerError("'points' must list {x, y, category_id} objects")
    got: dict[tuple, int] = {}
    for p in points:
        cell = (p.get("y"), p.get("x"))
        if cell in got:
            raise AnswerError(f"pixel (y={cell[0]}, x={cell[1]}) is given twice")
        got[cell] = _category(p.get("category_id"), facts, void=True)
    asked = [tuple(c) for c in q.coords]
    if set(got) != set(asked):
        p = sorted(set(asked) - set(got), key=str)[:1] or sorted(set(got) - set(asked), key=str)[:1]
        raise AnswerError(f"pixel (y={p[0][0]}, x={p[0][1]}) {'has no point' if p[0] in asked else 'was not asked'}; "
                          f"give exactly the asked pixels a category")
    return np.array([got[c] for c in asked], np.uint8)


_DECODERS: dict[str, Callable[[Query, dict, PoolFacts], Any]] = {
    "full_mask": _paint,
    "region": lambda q, p, f: _paint(q, p, f)[q.bounds[0]:q.bounds[2], q.bounds[1]:q.bounds[3]].copy(),
    "boxes": _dec_boxes,
    "image_labels": lambda q, p, f: np.array([g["present"] for _, g in sorted(_labels(q, p, f).items())], bool),
    "class_presence": lambda q, p, f: bool(_labels(q, p, f, only=int(q.cls))[int(q.cls)]["present"]),
    "labels_with_counts": _dec_counts,
    "pixels": _dec_pixels,
}


def decode(query: Query, payload: dict, facts: PoolFacts) -> Any:
    """The answer value (as the oracle gives it) of one COCO answers entry and its annotations."""
    return _DECODERS[query.kind](query, payload, facts)
