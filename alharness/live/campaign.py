"""A live campaign: the simulation's rounds, with answers from annotators' exports.

One round runs the campaign loop's steps (alharness.campaign.loop) in two
halves, with the annotators in between:

- *open* round r: the round's allowance (``round_allowance``), the declared
  model outputs, the strategy's context (``make_context``), its batch
  (``initial`` in round 0, ``propose`` after), checked and priced as the
  oracle checks a batch (``Oracle.check``: known types, well formed, nothing
  asked twice, within the round's allowance and the budget), then written
  as tasks for annotators;
- *close* round r, once its answers are in: train on everything bought
  (skipped when a later round bought nothing, as in simulation), evaluate
  on the labelled test folder if there is one, and append the round's row
  (``round_row``).

The oracle is replaced by the task queue: an ``Oracle`` over a pool without
ground truth (every pixel void) does the checking, pricing and the ledger,
and never answers. Answers are recorded (``alharness.annotation.answers.record``)
and charged in every metric when they are imported: from the ground truth
the answer shows where that determines the charge (a full mask; the classes
and objects of image labels, counts and boxes; a region's or pixels'
labelled pixels), else the metric's quote where it has one (the enforced
metric always has), else NaN (clicks, cost_a and cost_b need the pool's
polygons; the seconds of a region need the whole image's objects). The
annotators' ``lead_time`` is recorded beside every answer.

The run directory (append-only; every command resumes after any interruption)::

    live.json                  what was started: the campaign spec, the pool, the format (written once)
    images/<stem>.png          the pool at the campaign's resolution (what annotators see)
    label-studio/<type>.xml    a labelling config per query type
    tasks/round-NNN.json       round N's tasks: the strategy's batch, in order, with task ids
    tasks/round-NNN/           the same for annotators (Label Studio JSON per query type, or COCO)
    answers/NNNNNN-<sha>.json  one file per import, written whole or not at all
    checkpoints/               the model, the strategy's state and the rows after the last step
    campaigns/ rounds/ queries/  Parquet, as a benchmark writes it (leaderboard, report, query)

The label state and the ledger are not stored: they are replayed from the
answers in task order, so they equal what the simulation's oracle would
have recorded, and an answer can never be recorded twice.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alharness.annotation.answers import answer as oracle_answer, record
from alharness.annotation.costs import LabelledPixels
from alharness.annotation.labels import LabelState
from alharness.annotation.ledger import Ledger, LedgerEntry
from alharness.annotation.oracle import Oracle
from alharness.annotation.truth import ImageTruth
from alharness.campaign.checkpoint import Checkpointer, delete_checkpoints
from alharness.campaign.context import make_context
from alharness.campaign.evaluation import evaluate, evaluate_extra_networks
from alharness.campaign.loop import (TIMING_COLUMNS, CampaignSetup, _constant_columns, _round_outputs, round_allowance,
                                     round_row)
from alharness.campaign.spec import CampaignSpec
from alharness.campaign.state import CampaignState
from alharness.campaign.strategy_worker import InProcessStrategy
from alharness.contract.queries import FullMask, Query
from alharness.contract.strategy import LOOP_NEEDS, NEEDS, ORACLE_NEEDS
from alharness.datasets.base import IGNORE_INDEX, SplitData, make_pool_view
from alharness.errors import ConfigError, PluginError, QueryRefused
from alharness.learner import services as learner_services
from alharness.learner.pipeline import make_learner
from alharness.live import formats
from alharness.live.images import load_masks, load_test
from alharness.live.tasks import Answer, ExportError, LiveError, PoolFacts, Task, placed, priority, task_id
from alharness.results.store import Location, write_campaign
from alharness.seeding import derive_int_seed, derive_rng

LIVE_FILE = "live.json"
FORMAT_VERSION = 1
FINISHED = "finished"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class LiveRun:
    """A live campaign as loaded from its directory: the simulation's setup and
    state, every round's tasks, and the answers recorded so far."""

    directory: Path
    config: dict[str, Any]
    spec: CampaignSpec
    facts: PoolFacts
    setup: CampaignSetup
    state: CampaignState
    rounds: dict[int, list[Task]] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)
    answer_files: dict[str, str] = field(default_factory=dict)
    recorded: list[str] = field(default_factory=list)  # task ids, in ledger order
    _test: SplitData | None = None

    @property
    def tasks(self) -> dict[str, Task]:
        return {t.id: t for tasks in self.rounds.values() for t in tasks}

    @property
    def finished(self) -> bool:
        return len(self.state.rows) > self.spec.rounds

    @property
    def open_round(self) -> int | None:
        """The round whose tasks are out (None before the first is proposed, or when finished)."""
        r = len(self.state.rows)
        return r if r in self.rounds and not self.finished else None

    def pending(self, rnd: int | None = None) -> list[Task]:
        rnd = self.open_round if rnd is None else rnd
        return [t for t in self.rounds.get(rnd, []) if t.id not in self.answers] if rnd is not None else []

    @property
    def test(self) -> SplitData | None:
        if self._test is None and self.config.get("test"):
            self._test = load_test(Path(self.config["test"]), self.facts.num_classes, self.facts.image_shape,
                                   self.config["resize"])
        return self._test


# -- assembling a run from its directory -----------------------------------------------------------------


def check_live_needs(spec: CampaignSpec, strategy: Any) -> frozenset[str]:
    """What the strategy needs from the model; refuses what a live campaign cannot give."""
    needs = frozenset(getattr(strategy, "needs", frozenset()))
    who = f"strategy {spec.strategy!r}"
    if getattr(strategy, "oracle_experiment", False) or needs & ORACLE_NEEDS:
        raise ConfigError(f"{who} is an oracle experiment (it reads ground truth nobody bought); a live campaign has none")
    if needs & LOOP_NEEDS:
        raise ConfigError(f"{who} needs {sorted(needs & LOOP_NEEDS)}, which scores on a validation split; "
                          f"a live campaign has none")
    if needs - NEEDS:
        raise PluginError(f"{who} needs {sorted(needs - NEEDS)}; the loop provides {sorted(NEEDS)}")
    learner_services.check_needs(spec.learner, needs, who=who)
    return needs


def pool_facts(config: dict[str, Any]) -> PoolFacts:
    """The pool's public facts as live.json records them."""
    return PoolFacts(tuple(config["classes"]), tuple(config["size"]), tuple(config["stems"]), IGNORE_INDEX)


def _pool(directory: Path, facts: PoolFacts) -> SplitData:
    """The pool as the task queue's Oracle holds it: the images, and masks that are void everywhere."""
    from PIL import Image

    images = np.stack([np.asarray(Image.open(directory / "images" / f"{s}.png").convert("RGB")) for s in facts.stems])
    n, (h, w) = len(images), facts.image_shape
    return SplitData(dataset_ids=np.arange(n), images=images, instances=None, num_classes=facts.num_classes,
                     masks=np.broadcast_to(np.uint8(IGNORE_INDEX), (n, h, w)), ignore_index=IGNORE_INDEX)


def assemble(directory: Path, config: dict[str, Any]) -> LiveRun:
    """A run's fixed parts and a fresh state (nothing resumed or replayed yet)."""
    spec = CampaignSpec.from_json(config["spec"])
    facts = pool_facts(config)
    pool = _pool(directory, facts)
    oracle = Oracle(pool, spec.cost_models(), spec.budget_metric, spec.budget)  # the metrics a simulation records
    strategy = InProcessStrategy(spec.strategy, spec.strategy_params)  # no ground truth here to keep from it
    needs = check_live_needs(spec, strategy)
    pool_view = make_pool_view(pool, facts.class_names)
    labels = LabelState(len(pool_view), facts.image_shape, facts.num_classes, IGNORE_INDEX)
    learner = make_learner(spec.learner, facts.num_classes, IGNORE_INDEX)
    columns = {**_constant_columns(spec, strategy), "live": True}
    setup = CampaignSetup(spec, pool_view, None, None, needs, needs, None, {}, columns)
    return LiveRun(directory, config, spec, facts, setup, CampaignState(labels, oracle, learner, strategy, None))


def _checkpoints(run: LiveRun) -> list[str]:
    """Checkpoint names (``<campaign>.round-NNN`` / ``<campaign>.finished``), oldest first."""
    cid = run.spec.campaign_id
    names = sorted(p.name[: -len(".ckpt")] for p in (run.directory / "checkpoints").glob(f"{cid}.*.ckpt"))
    return sorted(names, key=lambda n: (n.endswith(FINISHED), n))


def _save(run: LiveRun, step: str) -> None:
    """Checkpoint the state after a step (the commit of that step), then drop older checkpoints."""
    name = f"{run.spec.campaign_id}.{step}"
    old = [n for n in _checkpoints(run) if n != name]
    location = Location(run.directory)
    Checkpointer(location, name).save(run.state)
    delete_checkpoints(location, old)


def _read_rounds(run: LiveRun) -> None:
    """Every round's tasks up to the open one (a later file is a step that never committed)."""
    last = run.state.next_round
    for r in range(last + 1):
        path = run.directory / "tasks" / f"round-{r:03d}.json"
        if path.is_file():
            run.rounds[r] = [Task.from_json(t) for t in json.loads(path.read_text())["tasks"]]


def _read_answers(run: LiveRun) -> None:
    """Every imported answer (the first import of a task wins; imports never overlap)."""
    run.answers.clear()
    run.answer_files.clear()
    for path in sorted((run.directory / "answers").glob("[0-9]*.json")):
        for a in json.loads(path.read_text())["answers"]:
            if a["task"] not in run.answers:
                run.answers[a["task"]] = Answer.from_json(a)
                run.answer_files[a["task"]] = path.name


class ShownTruth:
    """What a weak answer shows of its image's ground truth, under ImageTruth's
    names: the classes present (image labels), the objects per class (counts,
    boxes). Nothing else is there, so a cost model that reads more (the mask,
    the pool's polygons) fails on it and the charge is NaN, never a guess."""

    def __init__(self, facts: PoolFacts, present: np.ndarray | None = None, counts: np.ndarray | None = None):
        self.num_classes, self.ignore_index = facts.num_classes, IGNORE_INDEX
        self.num_foreground_classes = max(1, facts.num_classes - 1)
        if present is not None:
            self.present_classes = np.flatnonzero(present)
        self._counts = counts

    def counts_per_class(self) -> np.ndarray:
        if self._counts is None:
            raise AttributeError("this answer shows no object counts")
        return self._counts

    def instance_count(self) -> int:
        return int(self.counts_per_class().sum())


def answer_truth(q: Query, value: Any, facts: PoolFacts) -> tuple[Any, bool]:
    """The ground truth an answer shows, and whether a charge read from it can be trusted
    in every metric: a full mask is the image's truth; image labels, counts and boxes show
    a few facts (``ShownTruth``); a region or pixels answer shows those pixels, void
    elsewhere, which only a count of labelled pixels may read."""
    n = facts.num_classes
    if isinstance(q, FullMask):
        return ImageTruth(mask=value, instances=None, num_classes=n, ignore_index=IGNORE_INDEX), True
    if q.kind == "image_labels":
        return ShownTruth(facts, present=value), True
    if q.kind == "labels_with_counts":
        return ShownTruth(facts, present=value[0], counts=np.asarray(value[1])), True
    if q.kind == "boxes":
        return ShownTruth(facts, counts=np.bincount(np.asarray(value)[:, 0], minlength=n)[:n]), True
    if q.kind not in ("region", "pixels"):
        return None, False
    return ImageTruth(mask=placed(q, value, facts), instances=None, num_classes=n, ignore_index=IGNORE_INDEX), False


def live_costs(run: LiveRun, q: Query, value: Any) -> dict[str, float]:
    """An answer's charge in every metric (see the module docstring): from the
    truth the answer shows where that determines the charge, else the quote
    where the metric has one, else NaN."""
    truth, trusted = answer_truth(q, value, run.facts)
    out = {}
    for m, model in run.state.oracle.cost_models.items():
        # A count of labelled pixels reads only the pixels an answer labels, which it shows.
        if truth is not None and (trusted or isinstance(model, LabelledPixels)):
            try:
                out[m] = float(model.cost(q, truth))
                continue
            except Exception:  # the metric reads more than the answer shows (the pool's polygons)
                pass
        try:
            out[m] = float(model.quote(q))
        except PluginError:  # priced only from ground truth the answer does not show
            out[m] = float("nan")
    return out


def replay(run: LiveRun) -> None:
    """Rebuild the label state and the ledger from the answers, in task order (round, then batch position)."""
    state = run.state
    state.labels = LabelState(len(run.facts.stems), run.facts.image_shape, run.facts.num_classes, IGNORE_INDEX)
    state.oracle.ledger = Ledger(metrics=tuple(state.oracle.cost_models))
    run.recorded.clear()
    for r in sorted(run.rounds):
        for t in run.rounds[r]:
            if t.id in run.answers:
                value = run.answers[t.id].value
                record(t.query, state.labels, value)
                state.oracle.ledger.append(LedgerEntry(round=r, query=t.query, costs=live_costs(run, t.query, value)))
                run.recorded.append(t.id)


def open_run(directory: str | Path) -> LiveRun:
    """Load a live campaign from its directory: its last checkpoint, its tasks and its answers."""
    directory = Path(directory)
    path = directory / LIVE_FILE
    if not path.is_file():
        raise LiveError(f"{directory}: not a live campaign (no {LIVE_FILE}); start one with 'alharness live start'")
    config = json.loads(path.read_text())
    if config.get("format_version") != FORMAT_VERSION:
        raise LiveError(f"{path}: format {config.get('format_version')!r}, this alharness reads {FORMAT_VERSION}")
    run = assemble(directory, config)
    names = _checkpoints(run)
    if names:  # else the first round was never committed: nothing to read
        if not Checkpointer(Location(directory), names[-1]).resume(run.state):
            raise LiveError(f"{directory}/checkpoints/{names[-1]}.ckpt cannot be read; restore it from a backup")
        _read_rounds(run)
    _read_answers(run)
    replay(run)
    return run


# -- one round, in two halves ----------------------------------------------------------------------------


def _predicted(run: LiveRun, tasks: list[Task]) -> dict[str, Any]:
    """Each task's answer as the current model would give it (pre-annotations), or none before a model."""
    state = run.state
    if not tasks or state.fit.get("train_steps", 0) <= 0:
        return {}
    idx = sorted({int(t.query.image) for t in tasks})
    pred = dict(zip(idx, state.learner.predict(run.setup.pool_view.images[idx])))
    return {t.id: oracle_answer(t.query, ImageTruth(mask=pred[int(t.query.image)], instances=None,
                                                    num_classes=run.facts.num_classes, ignore_index=IGNORE_INDEX))
            for t in tasks}


def _write_tasks(run: LiveRun, rnd: int, tasks: list[Task], extra: dict[str, Any]) -> list[Path]:
    """The round's tasks: the canonical list, then the files for annotators."""
    info = {"description": f"alharness live campaign {run.config['run']}, round {rnd}", "alharness_run": run.config["run"],
            "round": rnd}
    paths = formats.write_round(run.directory / "tasks" / f"round-{rnd:03d}", run.config["format"], tasks, run.facts,
                                image_url=run.config["image_url"], predicted=_predicted(run, tasks),
                                model_version=f"alharness {run.spec.strategy_label} round {rnd}", info=info)
    formats.write_json(run.directory / "tasks" / f"round-{rnd:03d}.json",
                       {"round": rnd, **extra, "tasks": [t.to_json() for t in tasks]})
    return paths


def propose(run: LiveRun, rnd: int) -> list[Task]:
    """Open round ``rnd``: the strategy's batch, checked and priced, written as tasks, then checkpointed."""
    spec, state, setup = run.spec, run.state, run.setup
    allowance = round_allowance(spec, state, rnd)
    t0 = time.perf_counter()
    outputs = _round_outputs(setup, state, rnd)  # the model's outputs only: no loop services, no oracle experiment
    t1 = time.perf_counter()
    ctx = make_context(setup.pool_view, state.labels, state.oracle, rnd, spec.rounds, allowance,
                       derive_rng(spec.seed, "strategy", rnd), spec.initial_masks, outputs)
    batch = state.strategy.select(ctx)
    t2 = time.perf_counter()
    price = state.oracle.check(batch, strategy=spec.strategy, limit=allowance)
    tasks = [Task(task_id(run.config["run"], rnd, i), rnd, i, q, priority(i, len(batch))) for i, q in enumerate(batch)]
    _write_tasks(run, rnd, tasks, {"allowance": allowance, "price": price, "proposed": _now(),
                                   "predict_s": t1 - t0, "select_s": t2 - t1})
    run.rounds[rnd] = tasks
    state.next_round = rnd
    _save(run, f"round-{rnd:03d}")
    return tasks


def _round_timings(run: LiveRun, rnd: int) -> dict[str, float]:
    timings = dict.fromkeys(TIMING_COLUMNS, 0.0)
    path = run.directory / "tasks" / f"round-{rnd:03d}.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    timings.update({k: float(saved[k]) for k in ("predict_s", "select_s") if k in saved})
    return timings


def close(run: LiveRun, rnd: int) -> dict[str, Any]:
    """Close round ``rnd``: train on what was bought, evaluate, append the round's row."""
    spec, state = run.spec, run.state
    tasks = run.rounds.get(rnd, [])
    answered = [t for t in tasks if t.id in run.answers]
    if rnd == 0:
        state.spent_after_initial = state.oracle.spent
    timings = _round_timings(run, rnd)
    if rnd == 0 or answered:  # else nothing new was bought: the model and its scores carry over
        t0 = time.perf_counter()
        state.fit = state.learner.fit(run.setup.pool_view.images, state.labels,
                                      seed=derive_int_seed(spec.seed, "train", rnd), val=None)
        t1 = time.perf_counter()
        if run.test is not None:
            state.miou, state.class_iou, state.ap50 = evaluate(state.learner, run.test)
            state.extra_scores = evaluate_extra_networks(state.learner, run.test)
        else:
            state.miou, state.class_iou, state.ap50 = None, [], None
        timings.update(train_s=t1 - t0, eval_s=time.perf_counter() - t1)
    timings["round_s"] = sum(v for k, v in timings.items() if k != "round_s")
    row = round_row(run.setup, state, rnd, len(tasks), timings)
    leads = [run.answers[t.id].lead_time for t in answered if run.answers[t.id].lead_time is not None]
    row.update(unanswered=len(tasks) - len(answered), lead_time_s=float(sum(leads)) if leads else None)
    state.rows.append(row)
    state.next_round = rnd + 1
    return row


# -- results ---------------------------------------------------------------------------------------------


def write_results(run: LiveRun) -> None:
    """The campaigns, rounds and queries tables, as a benchmark writes them (replaced as a whole)."""
    from alharness.execution.execute import campaign_record
    from alharness.learner import resolve_device

    if not run.state.rows:
        return
    wall = float(sum(r.get("round_s", 0.0) for r in run.state.rows))
    record_ = campaign_record(run.spec, "ok", started=run.config["started"], wall_s=wall,
                              device=str(resolve_device(run.spec.learner.device)))
    record_.update(live=True, live_run=run.config["run"], live_open_round=run.open_round, live_finished=run.finished)
    entries = run.state.oracle.ledger.records()
    queries = []
    for rec, tid in zip(entries, run.recorded):
        a = run.answers[tid]
        queries.append({"campaign_id": run.spec.campaign_id, **rec, "task": tid, "lead_time": a.lead_time,
                        "annotator": a.annotator})
    write_campaign(run.directory, record_, run.state.rows, queries)


# -- imports ---------------------------------------------------------------------------------------------


def _write_answers(run: LiveRun, answers: list[Answer], meta: dict[str, Any]) -> str:
    """One import as one new file, written whole (temporary file, then a link that fails if the name is taken)."""
    d = run.directory / "answers"
    d.mkdir(parents=True, exist_ok=True)
    body = (json.dumps({**meta, "answers": [a.to_json() for a in answers]}) + "\n").encode()
    sha = hashlib.sha256(body).hexdigest()[:12]
    tmp = d / f".{sha}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    seq = 1 + max((int(p.name[:6]) for p in d.glob("[0-9]*.json")), default=0)
    while True:
        final = d / f"{seq:06d}-{sha}.json"
        try:
            os.link(tmp, final)
            break
        except FileExistsError:  # another import took the number: take the next
            seq += 1
    tmp.unlink()
    return final.name


def check_answers(run: LiveRun, answers: list[Answer], where: str) -> None:
    """Refuse answers to tasks already answered or of a closed round (nothing is recorded)."""
    tasks = run.tasks
    for a in answers:
        t = tasks[a.task]
        if a.task in run.answers:
            raise ExportError(f"{where}: duplicate answers: {t.describe(run.facts)} was already answered "
                              f"(answers/{run.answer_files[a.task]}); nothing was recorded")
        if t.round != run.open_round:
            state = "the campaign is finished" if run.finished else f"round {run.open_round} is open"
            raise ExportError(f"{where}: {t.describe(run.facts)} belongs to round {t.round}, which is closed "
                              f"({state}); nothing was recorded")


def import_export(run: LiveRun, path: str | Path) -> list[Answer]:
    """Record every answer of an export, or none: the whole export is checked first."""
    path = Path(path)
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"{where}: cannot read ({exc.strerror}); nothing was recorded") from None
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        raise ExportError(f"{where}: not valid JSON ({detail}; a partial export?); nothing was recorded") from None
    answers = formats.read_export(doc, run.tasks, run.facts, where)
    if not answers:
        raise ExportError(f"{where}: holds no annotated task of this campaign; nothing was recorded")
    check_answers(run, answers, where)
    name = _write_answers(run, answers, {"imported": _now(), "export": str(path.resolve()),
                                         "sha256": hashlib.sha256(raw).hexdigest(), "format": formats.detect(doc)})
    for a in answers:
        run.answers[a.task], run.answer_files[a.task] = a, name
    replay(run)
    write_results(run)
    return answers


def counts(tasks: list[Task]) -> str:
    """'3 full_mask, 2 image_labels'."""
    return ", ".join(f"{n} {k}" for k, n in Counter(t.query.kind for t in tasks).items()) or "none"


# -- the commands' steps ---------------------------------------------------------------------------------


def prelabelled(run: LiveRun) -> list[Task]:
    """Round 0 from the masks labelled before the campaign: full masks, charged like
    a simulation's initial masks, recorded as one import (once: a rerun finds it)."""
    cfg, facts = run.config, run.facts
    masks = load_masks(Path(cfg["masks"]), list(facts.stems), [tuple(s) for s in cfg["sources"]], facts.image_shape,
                       cfg["resize"], facts.num_classes)
    queries = [FullMask(i) for i in sorted(masks)]
    try:
        price = run.state.oracle.check(queries, strategy="prelabelled masks", limit=run.spec.budget)
    except QueryRefused as exc:
        raise ConfigError(f"{cfg['masks']}: the {len(queries)} masks cannot be recorded: {exc.reason} (the budget covers "
                          f"what is already labelled, as it covers a simulation's initial masks)") from None
    tasks = [Task(task_id(cfg["run"], 0, i), 0, i, q, priority(i, len(queries)), "prelabelled")
             for i, q in enumerate(queries)]
    formats.write_json(run.directory / "tasks" / "round-000.json", {"round": 0, "allowance": run.spec.budget, "price": price,
                                                                    "proposed": _now(), "tasks": [t.to_json() for t in tasks]})
    if not any(t.id in run.answers for t in tasks):
        answers = [Answer(t.id, masks[int(t.query.image)], None, "prelabelled") for t in tasks]
        _write_answers(run, answers, {"imported": _now(), "export": str(Path(cfg["masks"]).resolve()), "format": "masks"})
    run.rounds[0] = tasks
    _read_answers(run)
    replay(run)
    run.state.next_round = 0
    _save(run, "round-000")
    return tasks


def begin(run: LiveRun) -> None:
    """The first step after start: round 0 from pre-labelled masks (then round 1 proposed), or proposed."""
    if run.config.get("masks"):
        prelabelled(run)
        advance(run)
    else:
        _after_proposal(run, propose(run, 0), 0)


def _after_proposal(run: LiveRun, tasks: list[Task], rnd: int) -> None:
    """Close rounds that bought nothing (the model carries over) until one has tasks or the campaign ends."""
    while not tasks and not run.finished:
        close(run, rnd)
        if run.finished:
            break
        rnd += 1
        tasks = propose(run, rnd)
    if run.finished:
        _save(run, FINISHED)
    write_results(run)


def advance(run: LiveRun, skip_missing: bool = False) -> None:
    """Close the open round (every task answered, or ``skip_missing``) and open the next."""
    if run.finished:
        raise LiveError(f"{run.directory}: the campaign is finished (see alharness leaderboard {run.directory})")
    rnd = run.open_round
    if rnd is None:  # start was interrupted before its first round was committed
        begin(run)
        return
    pending = run.pending(rnd)
    if pending and not skip_missing:
        raise LiveError(f"round {rnd}: {len(pending)} of {len(run.rounds[rnd])} tasks are not answered yet "
                        f"(e.g. {pending[0].describe(run.facts)}); import their answers, or run 'alharness live next "
                        f"{run.directory} --skip-missing' to leave them unbought")
    close(run, rnd)
    if run.finished:
        _after_proposal(run, [], rnd)
        return
    _after_proposal(run, propose(run, rnd + 1), rnd + 1)
