"""Label Studio task JSON, both ways, and a labelling config per query type.

Tasks go out as Label Studio's import format: ``data`` (the image URL, the
task id under ``alharness_task``, what is asked) and ``predictions``, whose
``score`` is the strategy's priority (the Data Manager sorts by it) and
whose result pre-annotates the task: where the query is (a region's
square, a pixel query's points) and, once a model exists, its prediction.
Answers come back as Label Studio's JSON export: each task's one
non-cancelled annotation, with its ``lead_time``.

Per query type (control name, result type):

- FullMask: ``mask`` brushlabels, one brush per class; unpainted pixels are void;
- Region: the square as ``region`` rectanglelabels; ``mask`` brushlabels inside it;
- Boxes: ``boxes`` rectanglelabels, one per object (foreground classes);
- ImageLabels: ``labels`` choices (every class present, or "(none)");
- ClassPresence: ``present`` choices, "yes" or "no";
- LabelsWithCounts: ``labels`` choices and one ``count_<class id>`` number per
  present foreground class;
- Pixels: ``points`` keypointlabels, one per asked pixel, each with its
  class or "(void)".

Coordinates are percentages of the image's width and height, as Label
Studio stores them; a pixel query's point sits at its pixel's centre.
"""

from __future__ import annotations

import math
from typing import Any, Callable
from xml.sax.saxutils import quoteattr

import numpy as np

from alharness.contract.queries import Query
from alharness.live.encoding import EncodingError, brush_to_mask, mask_to_brush
from alharness.live.tasks import AnswerError, ExportError, Item, PoolFacts, Task, box_row, placed

CONTROLS = {"full_mask": "mask", "region": "mask", "boxes": "boxes", "image_labels": "labels",
            "class_presence": "present", "labels_with_counts": "labels", "pixels": "points"}
NONE_CHOICE = "(none)"
VOID_LABEL = "(void)"
REGION_LABEL = "paint inside"
RESERVED = (NONE_CHOICE, VOID_LABEL, REGION_LABEL, "yes", "no")


# -- labelling configs -----------------------------------------------------------------------------------


def _colour(i: int) -> str:
    # Evenly spread hues, so that neighbouring class ids look different.
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.95)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _labels(tag: str, control: str, values: list[str]) -> str:
    inner = "".join(f"\n    <Label value={quoteattr(v)} background={quoteattr(_colour(i))}/>" for i, v in enumerate(values))
    return f'  <{tag} name="{control}" toName="image">{inner}\n  </{tag}>'


def _choices(control: str, values: list[str], multiple: bool) -> str:
    inner = "".join(f"\n    <Choice value={quoteattr(v)}/>" for v in values)
    kind = "multiple" if multiple else "single-radio"
    return f'  <Choices name="{control}" toName="image" choice="{kind}" required="true">{inner}\n  </Choices>'


def labelling_config(kind: str, facts: PoolFacts) -> str:
    """The Label Studio labelling config (XML) for tasks of one query type."""
    names, fg = list(facts.class_names), list(facts.class_names[1:])
    body = {
        "full_mask": ["Paint every pixel with its class; leave only void (unknown) pixels unpainted.",
                      _labels("BrushLabels", "mask", names)],
        "region": [f"Paint every pixel inside the '{REGION_LABEL}' square with its class (do not move the square).",
                   _labels("RectangleLabels", "region", [REGION_LABEL]), _labels("BrushLabels", "mask", names)],
        "boxes": ["Draw one box around every object, with its class.", _labels("RectangleLabels", "boxes", fg)],
        "image_labels": [f"Tick every class present in the image, or {NONE_CHOICE}.",
                         _choices("labels", names + [NONE_CHOICE], True)],
        "class_presence": ["Is there a $class in this image?", _choices("present", ["yes", "no"], False)],
        "labels_with_counts": [f"Tick every class present (or {NONE_CHOICE}), and count the objects of each present class.",
                               _choices("labels", names + [NONE_CHOICE], True),
                               *(f'  <Header value={quoteattr(f"Number of {n} objects")}/>\n'
                                 f'  <Number name="count_{i}" toName="image" min="0"/>' for i, n in enumerate(fg, 1))],
        "pixels": [f"Give each point the class of its pixel ({VOID_LABEL} if it cannot be told); do not add or remove points.",
                   _labels("KeyPointLabels", "points", names + [VOID_LABEL])],
    }[kind]
    header, controls = body[0], body[1:]
    image = '  <Image name="image" value="$image" zoom="true" zoomControl="true"/>'
    return "\n".join(["<View>", f"  <Header value={quoteattr(header)}/>", image, *controls, "</View>"]) + "\n"


# -- tasks out -------------------------------------------------------------------------------------------


def task_json(task: Task, facts: PoolFacts, image_url: str, result: list[dict], model_version: str) -> dict:
    """One task in Label Studio's import format, pre-annotated with ``result``."""
    q = task.query
    stem = facts.stems[int(q.image)]
    data: dict[str, Any] = {"image": f"{image_url}{stem}.png", "alharness_task": task.id, "query": q.kind,
                            "pool_image": stem, "round": task.round}
    if q.kind == "class_presence":
        data["class"] = facts.class_names[int(q.cls)]
    if q.kind == "region":
        data["region"] = f"y={q.y}, x={q.x}, size={q.size}"
    return {"data": data, "predictions": [{"model_version": model_version, "score": task.score, "result": result}]}


def prediction(query: Query, predicted: Any | None, facts: PoolFacts) -> list[dict]:
    """Pre-annotation of a task: the model's predicted answer where there is a
    model, else only where the query is (a region's square, a pixel query's points)."""
    if predicted is not None:
        return encode(query, predicted, facts)
    if query.kind == "region":
        return [_region_square(query, facts)]
    if query.kind == "pixels":
        return _points(query, [VOID_LABEL] * len(query.coords), facts)
    return []


# -- answers out (shadow mode and predictions) -----------------------------------------------------------


def _result(facts: PoolFacts, control: str, kind: str, value: dict, n: int) -> dict:
    h, w = facts.image_shape
    return {"id": f"{control}{n}", "from_name": control, "to_name": "image", "type": kind,
            "original_width": w, "original_height": h, "image_rotation": 0, "value": value}


def _rect(facts: PoolFacts, y0: int, x0: int, y1: int, x1: int) -> dict:
    h, w = facts.image_shape
    return {"x": 100 * x0 / w, "y": 100 * y0 / h, "width": 100 * (x1 - x0) / w, "height": 100 * (y1 - y0) / h, "rotation": 0}


def _brushes(labels: np.ndarray, facts: PoolFacts) -> list[dict]:
    present = [int(c) for c in np.unique(labels) if c != facts.ignore_index]
    return [_result(facts, "mask", "brushlabels", {"format": "rle", "rle": mask_to_brush(labels == c),
                                                   "brushlabels": [facts.class_names[c]]}, k)
            for k, c in enumerate(present)]


def _region_square(q: Query, facts: PoolFacts) -> dict:
    y0, x0, y1, x1 = q.bounds
    return _result(facts, "region", "rectanglelabels", {**_rect(facts, y0, x0, y1, x1), "rectanglelabels": [REGION_LABEL]}, 0)


def _points(q: Query, names: list[str], facts: PoolFacts) -> list[dict]:
    h, w = facts.image_shape
    return [_result(facts, "points", "keypointlabels", {"x": 100 * (x + 0.5) / w, "y": 100 * (y + 0.5) / h, "width": 1.0,
                                                        "keypointlabels": [name]}, k)
            for k, ((y, x), name) in enumerate(zip(q.coords, names))]


def _choice_names(present: np.ndarray, facts: PoolFacts) -> list[str]:
    return [facts.class_names[c] for c in np.flatnonzero(present)] or [NONE_CHOICE]


def _enc_counts(q: Query, a: tuple, facts: PoolFacts) -> list[dict]:
    present, counts = a
    out = [_result(facts, "labels", "choices", {"choices": _choice_names(present, facts)}, 0)]
    return out + [_result(facts, f"count_{c}", "number", {"number": int(counts[c])}, 0)
                  for c in range(1, facts.num_classes) if present[c]]


_ENCODERS: dict[str, Callable[[Query, Any, PoolFacts], list[dict]]] = {
    "full_mask": lambda q, a, f: _brushes(a, f),
    "region": lambda q, a, f: [_region_square(q, f), *_brushes(placed(q, a, f), f)],
    "boxes": lambda q, a, f: [_result(f, "boxes", "rectanglelabels", {**_rect(f, y0, x0, y1, x1),
                                                                      "rectanglelabels": [f.class_names[c]]}, k)
                              for k, (c, y0, x0, y1, x1) in enumerate(np.asarray(a).tolist())],
    "image_labels": lambda q, a, f: [_result(f, "labels", "choices", {"choices": _choice_names(a, f)}, 0)],
    "class_presence": lambda q, a, f: [_result(f, "present", "choices", {"choices": ["yes" if a else "no"]}, 0)],
    "labels_with_counts": _enc_counts,
    "pixels": lambda q, a, f: _points(q, [VOID_LABEL if v == f.ignore_index else f.class_names[v] for v in a.tolist()], f),
}


def encode(query: Query, answer: Any, facts: PoolFacts) -> list[dict]:
    """The Label Studio result list that answers ``query`` with ``answer`` (the oracle's value)."""
    return _ENCODERS[query.kind](query, answer, facts)


def exported_task(task: Task, facts: PoolFacts, image_url: str, result: list[dict], lead_time: float | None,
                  ls_id: int) -> dict:
    """A task as Label Studio's JSON export shows it once annotated with ``result`` (shadow mode)."""
    out = task_json(task, facts, image_url, [], "")
    del out["predictions"]
    return {"id": ls_id, **out, "annotations": [{"id": ls_id, "completed_by": "shadow", "was_cancelled": False,
                                                 "lead_time": lead_time, "result": result}]}


# -- answers in ------------------------------------------------------------------------------------------


def read_items(doc: Any, where: str) -> list[Item]:
    """Every annotated task of a Label Studio JSON export (tasks without an annotation are skipped)."""
    if not isinstance(doc, list):
        raise ExportError(f"{where}: not a Label Studio export (expected a JSON list of tasks); nothing was recorded")
    items = []
    for k, t in enumerate(doc):
        at = f"{where}: Label Studio task {t.get('id', k) if isinstance(t, dict) else k}"
        if not isinstance(t, dict) or not isinstance(t.get("data"), dict):
            raise ExportError(f"{at}: not a task (no 'data' object); nothing was recorded")
        anns = t.get("annotations")
        if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
            raise ExportError(f"{at}: no 'annotations' list (export the project as JSON, not JSON-MIN or CSV); "
                              f"nothing was recorded")
        done = [a for a in anns if not a.get("was_cancelled")]
        if len(done) > 1:
            raise ExportError(f"{at}: duplicate answers ({len(done)} annotations of one task; keep one, e.g. after "
                              f"review); nothing was recorded")
        if not done:
            continue  # not annotated yet, or skipped by the annotator
        if not isinstance(done[0].get("result"), list):
            raise ExportError(f"{at}: its annotation has no 'result' list; nothing was recorded")
        by = done[0].get("completed_by")
        items.append(Item(t["data"].get("alharness_task"), done[0]["result"], done[0].get("lead_time"),
                          None if by is None else str(by), at))
    return items


def _of(results: list, control: str, kind: str) -> list[dict]:
    """The results of one control, each checked to be a result of ``kind``."""
    out = []
    for r in results:
        if not isinstance(r, dict) or not isinstance(r.get("value"), dict):
            raise AnswerError("a result is not an object with a 'value'")
        if r.get("from_name") == control:
            if r.get("type", kind).lower() != kind:
                raise AnswerError(f"result of '{control}' is a {r.get('type')!r}, expected {kind!r}")
            out.append(r)
    return out


def _label(r: dict, key: str, facts: PoolFacts, allowed: tuple[str, ...] | None = None) -> int:
    """The class id of a result's one label (``allowed``: extra names, mapped to -1 - position)."""
    names = r["value"].get(key)
    if not (isinstance(names, list) and len(names) == 1):
        raise AnswerError(f"a {key} result must carry exactly one label, got {names!r}")
    c = facts.class_index(names[0])
    if allowed and names[0] in allowed:
        return -1 - allowed.index(names[0])
    if c is None:
        raise AnswerError(f"label {names[0]!r} is outside the label set ({', '.join(facts.class_names)})")
    return c


def _paint(results: list, facts: PoolFacts) -> np.ndarray:
    """The label map the brushes paint (later strokes over earlier ones; unpainted pixels void)."""
    out = np.full(facts.image_shape, facts.ignore_index, np.uint8)
    for r in _of(results, "mask", "brushlabels"):
        v = r["value"]
        if v.get("format", "rle") != "rle" or "rle" not in v:
            raise AnswerError("a brush result must hold an 'rle' mask")
        size = (r.get("original_height", facts.image_shape[0]), r.get("original_width", facts.image_shape[1]))
        if tuple(size) != tuple(facts.image_shape):
            raise AnswerError(f"a brush is {size[1]}x{size[0]}, but the image is {facts.image_shape[1]}x{facts.image_shape[0]}")
        c = _label(r, "brushlabels", facts)
        try:
            out[brush_to_mask(v["rle"], facts.image_shape)] = c
        except EncodingError as exc:
            raise AnswerError(str(exc)) from None
    return out


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise AnswerError(f"{what} must be a number, got {v!r}")
    return float(v)


def _dec_boxes(q: Query, results: list, facts: PoolFacts) -> np.ndarray:
    h, w = facts.image_shape
    rows = []
    for r in _of(results, "boxes", "rectanglelabels"):
        v = r["value"]
        if _number(v.get("rotation", 0), "rotation") != 0:
            raise AnswerError("rotated boxes are not supported")
        x, y = _number(v.get("x"), "box x") * w / 100, _number(v.get("y"), "box y") * h / 100
        bw, bh = _number(v.get("width"), "box width") * w / 100, _number(v.get("height"), "box height") * h / 100
        rows.append(box_row(_label(r, "rectanglelabels", facts), x, y, x + bw, y + bh, facts))
    return np.array(rows, np.int64).reshape(-1, 5)


def _chosen(results: list, control: str) -> list[str]:
    found = _of(results, control, "choices")
    if len(found) != 1:
        raise AnswerError(f"'{control}' must be answered exactly once (found {len(found)} answers)")
    names = found[0]["value"].get("choices")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise AnswerError(f"'{control}' has no choice")
    return names


def _dec_labels(q: Query, results: list, facts: PoolFacts) -> np.ndarray:
    names = _chosen(results, "labels")
    if NONE_CHOICE in names:
        if len(names) > 1:
            raise AnswerError(f"{NONE_CHOICE} is ticked together with classes")
        return np.zeros(facts.num_classes, bool)
    bad = [n for n in names if facts.class_index(n) is None]
    if bad:
        raise AnswerError(f"class {bad[0]!r} is outside the label set ({', '.join(facts.class_names)})")
    present = np.zeros(facts.num_classes, bool)
    present[[facts.class_index(n) for n in names]] = True
    return present


def _dec_presence(q: Query, results: list, facts: PoolFacts) -> bool:
    names = _chosen(results, "present")
    if names not in (["yes"], ["no"]):
        raise AnswerError(f"'present' must be 'yes' or 'no', got {names!r}")
    return names == ["yes"]


def _dec_counts(q: Query, results: list, facts: PoolFacts) -> tuple[np.ndarray, np.ndarray]:
    present = _dec_labels(q, results, facts)
    counts = np.zeros(facts.num_classes, np.int64)
    for c in range(1, facts.num_classes):
        found = _of(results, f"count_{c}", "number")
        value = _number(found[0]["value"].get("number"), f"count of {facts.class_names[c]!r}") if found else None
        if value is not None and (value < 0 or value != int(value)):
            raise AnswerError(f"count of {facts.class_names[c]!r} must be a whole number >= 0, got {value:g}")
        if present[c] and value is None:
            raise AnswerError(f"class {facts.class_names[c]!r} is ticked present but has no count")
        if not present[c] and value:
            raise AnswerError(f"class {facts.class_names[c]!r} is not ticked present but counts {value:g} objects")
        counts[c] = int(value or 0)
    return present, counts


def _dec_pixels(q: Query, results: list, facts: PoolFacts) -> np.ndarray:
    h, w = facts.image_shape
    got: dict[tuple[int, int], int] = {}
    for r in _of(results, "points", "keypointlabels"):
        v = r["value"]
        x, y = _number(v.get("x"), "point x"), _number(v.get("y"), "point y")
        cell = (min(max(math.floor(y * h / 100), 0), h - 1), min(max(math.floor(x * w / 100), 0), w - 1))
        if cell in got:
            raise AnswerError(f"two points on pixel (y={cell[0]}, x={cell[1]})")
        c = _label(r, "keypointlabels", facts, (VOID_LABEL,))
        got[cell] = facts.ignore_index if c < 0 else c
    asked = [tuple(p) for p in q.coords]
    extra, missing = sorted(set(got) - set(asked)), [p for p in asked if p not in got]
    if missing or extra:
        p = (missing or extra)[0]
        raise AnswerError(f"pixel (y={p[0]}, x={p[1]}) {'has no point' if missing else 'was not asked'}; "
                          f"give exactly the asked points a class")
    return np.array([got[p] for p in asked], np.uint8)


_DECODERS: dict[str, Callable[[Query, list, PoolFacts], Any]] = {
    "full_mask": lambda q, r, f: _paint(r, f),
    "region": lambda q, r, f: _paint(r, f)[q.bounds[0]:q.bounds[2], q.bounds[1]:q.bounds[3]].copy(),
    "boxes": _dec_boxes,
    "image_labels": _dec_labels,
    "class_presence": _dec_presence,
    "labels_with_counts": _dec_counts,
    "pixels": _dec_pixels,
}


def decode(query: Query, results: list, facts: PoolFacts) -> Any:
    """The answer value (as the oracle gives it) of a task's Label Studio result list."""
    return _DECODERS[query.kind](query, results, facts)
