"""The annotation formats of a live campaign, both ways: Label Studio task
JSON and COCO JSON (``label_studio``, ``coco``).

``write_round`` writes a round's tasks for annotators; ``read_export`` turns
an export into answers, checking all of it before anything is recorded:
an unknown task, the same task answered twice, a class outside the label
set or a malformed answer refuses the whole export with a one-line error.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

from alharness.live import coco, label_studio
from alharness.live.encoding import EncodingError
from alharness.live.tasks import Answer, AnswerError, ExportError, Item, PoolFacts, Task

FORMATS = ("label-studio", "coco")


def detect(doc: Any) -> str:
    """Which format an export is in: a JSON list is Label Studio's, an object with ``answers`` COCO."""
    if isinstance(doc, list):
        return "label-studio"
    if isinstance(doc, dict) and ("answers" in doc or "images" in doc):
        return "coco"
    raise ExportError("not an export of a known format (a Label Studio JSON export is a list of tasks; a COCO "
                      "answers file is an object with 'answers'); nothing was recorded")


def _lead_time(item: Item) -> float | None:
    v = item.lead_time
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ExportError(f"{item.where}: lead_time must be a number of seconds >= 0, got {v!r}; nothing was recorded")
    return float(v)


def read_export(doc: Any, tasks: Mapping[str, Task], facts: PoolFacts, where: str) -> list[Answer]:
    """Every answer of an export, decoded; raises ExportError (one line) on the first problem."""
    try:
        fmt = detect(doc)
    except ExportError as exc:
        raise ExportError(f"{where}: {exc}") from None
    items = label_studio.read_items(doc, where) if fmt == "label-studio" else coco.read_items(doc, where, facts)
    seen: dict[str, str] = {}
    answers = []
    for item in items:
        task = tasks.get(item.task) if isinstance(item.task, str) else None
        if task is None:
            raise ExportError(f"{item.where}: unknown task {item.task!r} (not a task of this live campaign); "
                              f"nothing was recorded")
        if item.task in seen:
            raise ExportError(f"{item.where}: duplicate answers: {task.describe(facts)} is answered again "
                              f"(first in {seen[item.task]}); nothing was recorded")
        seen[item.task] = item.where.rsplit(": ", 1)[-1]
        decode = label_studio.decode if fmt == "label-studio" else coco.decode
        try:
            value = decode(task.query, item.payload, facts)
        except (AnswerError, EncodingError) as exc:
            raise ExportError(f"{item.where}: {task.describe(facts)}: {exc}; nothing was recorded") from None
        answers.append(Answer(task.id, value, _lead_time(item), item.annotator))
    return answers


def write_json(path: Path, doc: Any) -> None:
    """Write atomically and durably (``Location.write_bytes``): a reader sees the old file or the whole new one."""
    from alharness.results.store import Location  # pyarrow: only once a file is written, not when the CLI loads

    Location(path.parent).write_bytes(path.name, (json.dumps(doc, indent=1) + "\n").encode())


def write_configs(directory: Path, facts: PoolFacts) -> list[Path]:
    """One Label Studio labelling config per query type, ``<directory>/<type>.xml``."""
    out = []
    for kind in label_studio.CONTROLS:
        path = directory / f"{kind}.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(label_studio.labelling_config(kind, facts))
        out.append(path)
    return out


def write_round(directory: Path, fmt: str, tasks: list[Task], facts: PoolFacts, *, image_url: str,
                predicted: Mapping[str, Any], model_version: str, info: dict[str, Any]) -> list[Path]:
    """A round's tasks for annotators: Label Studio, one file per query type
    (each type is its own project, with its own labelling config); COCO, one file."""
    if fmt == "coco":
        path = directory / "coco.json"
        write_json(path, coco.tasks_document(tasks, facts, info))
        return [path]
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for t in tasks:
        result = label_studio.prediction(t.query, predicted.get(t.id), facts)
        by_kind[t.query.kind].append(label_studio.task_json(t, facts, image_url, result, model_version))
    paths = []
    for kind, docs in by_kind.items():
        paths.append(directory / f"{kind}.json")
        write_json(paths[-1], docs)
    return paths


def answers_export(fmt: str, answered: list[tuple[Task, Any, float | None]], facts: PoolFacts, *,
                   image_url: str, info: dict[str, Any]) -> Any:
    """An export answering tasks with the given values, as an annotation tool would write it (shadow mode)."""
    if fmt == "coco":
        return coco.answers_document(answered, facts, info)
    return [label_studio.exported_task(t, facts, image_url, label_studio.encode(t.query, v, facts), lead, k + 1)
            for k, (t, v, lead) in enumerate(answered)]
