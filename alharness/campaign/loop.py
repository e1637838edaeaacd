"""The campaign loop: a pure function of a CampaignSpec, no Ray.

round 0: the strategy's initial batch is bought, the model trained and
evaluated. Each later round: predict on the pool (only what the strategy
needs) → propose → the oracle checks, answers and charges → train → evaluate
on the test split. One row per round.

``setup_campaign`` builds what stays fixed (``CampaignSetup``) and the state
the rounds carry (``CampaignState``, alharness.campaign.state); ``run_round``
plays one round on them; ``run_campaign`` strings the rounds together and
checkpoints the state after each.

The strategy runs in a process of its own unless the spec says
``strategy_process = false`` (alharness.campaign.strategy_worker). The label
state is the loop's: its digest is recorded after every oracle answer that
wrote labels and checked before each proposal, after it where strategy code
ran in the campaign process (in process, or a loop service), and after the
last round, so a campaign whose labels disagree with its ledger fails (it is
never ranked).
``[resources] timeout_s`` bounds a campaign's wall time (``Deadline``).

A strategy that streams (overrides ``Strategy.score``) gets the pool's
declared outputs one ``eval_batch_size`` batch at a time and ``propose``
reads what it kept in ``ctx.scores``; one that does not gets dense
whole-pool arrays in its context, only while they fit ``[resources]
dense_outputs_cap_gib`` (``_check_dense_cap``; docs/architecture.md,
"Streaming acquisition").
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from alharness.annotation.labels import LabelState
from alharness.annotation.noise import Annotator
from alharness.annotation.oracle import Oracle
from alharness.annotation.oracle_experiments import check_oracle_needs, oracle_bytes_per_image, oracle_outputs
from alharness.campaign.context import make_context
from alharness.campaign.evaluation import evaluate, evaluate_extra_networks
from alharness.campaign.memory import release_freed_memory
from alharness.campaign.scoring import loop_outputs
from alharness.campaign.spec import CampaignSpec
from alharness.campaign.state import CampaignState
from alharness.campaign.strategy_worker import StrategyHandle, open_strategy, warm_up
from alharness.contract.queries import QUERY_TYPES
from alharness.contract.strategy import ARRAY_OUTPUTS, LOOP_NEEDS, ORACLE_NEEDS, SCORE_CHUNK_BYTES, unknown_needs
from alharness.contract.views import PoolView
from alharness.datasets.base import SplitData, make_pool_view
from alharness.errors import AlharnessError, ConfigError, PluginError
from alharness.learner import services as learner_services
from alharness.learner.pipeline import make_learner
from alharness.learner.services import batch_outputs, pool_outputs
from alharness.registry import COSTS, DATASETS
from alharness.seeding import derive_int_seed, derive_rng

if TYPE_CHECKING:
    from alharness.campaign.checkpoint import Checkpointer

# Columns that measure where and how fast a campaign ran; they differ between
# identical runs. Everything else in a row is a deterministic result.
TIMING_COLUMNS = ("train_s", "predict_s", "select_s", "oracle_s", "eval_s", "round_s")
# Networks a learner may score besides its main one (``extra_networks()``,
# e.g. BASIS's annotation network): every row has ``<name>_miou`` and
# ``<name>_ap50`` (null when absent), so tables of mixed campaigns share columns.
EXTRA_NETWORK_COLUMNS = ("annotation",)


@dataclass
class CampaignResult:
    spec: CampaignSpec
    rows: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0


class CampaignTimeout(AlharnessError):
    """The campaign ran past its ``[resources] timeout_s``."""


class Deadline:
    """A campaign's time limit and where the campaign is (round and phase),
    so that an expiry names the phase it interrupted."""

    def __init__(self, timeout_s: float | None):
        self.timeout_s = timeout_s
        self._end = None if timeout_s is None else time.monotonic() + float(timeout_s)
        self.where = "setup"

    def enter(self, rnd: int, phase: str) -> None:
        self.where = f"round {rnd}, phase {phase}"

    def left(self) -> float | None:
        """Seconds left (never below 0), or None without a limit."""
        return None if self._end is None else max(0.0, self._end - time.monotonic())

    def check(self) -> None:
        if self._end is not None and time.monotonic() >= self._end:
            raise self.error()

    def error(self) -> CampaignTimeout:
        return CampaignTimeout(f"timed out after {self.timeout_s:g} s in {self.where}")


@contextmanager
def _watchdog(deadline: Deadline) -> Iterator[None]:
    """Interrupt whatever runs (training, an in-process strategy) when the time is up.

    SIGALRM, so only in the main thread (a Ray task's, a CLI run's); elsewhere
    the limit is checked between phases and while a strategy process works."""
    if deadline.timeout_s is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = [True]

    def expire(signum, frame):  # noqa: ARG001
        if armed[0]:
            raise deadline.error()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(float(deadline.timeout_s), 1e-3))
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class CampaignSetup:
    """What stays fixed through a campaign's rounds (harness side: the
    strategy sees ``pool_view`` and ``services`` only, through its context)."""

    spec: CampaignSpec
    pool_view: PoolView
    test: SplitData
    # The learner's held-out split (early stopping), or None.
    val: tuple[np.ndarray, np.ndarray] | None
    # What the strategy declared, and the part of it the model's services answer.
    needs: frozenset[str]
    model_needs: frozenset[str]
    # The pool split, kept for oracle experiments' statistics only (else None).
    oracle_truth: SplitData | None
    services: dict[str, Any]  # loop services (LOOP_NEEDS), built once
    columns: dict[str, Any]  # the columns every row of the campaign shares
    deadline: Deadline = field(default_factory=lambda: Deadline(None))


def run_campaign(spec: CampaignSpec, on_round: Callable[[dict[str, Any]], None] | None = None,
                 checkpoint: "Checkpointer | None" = None) -> CampaignResult:
    """Run one campaign to the end and return its round rows and query log.

    ``checkpoint``: resume after its last saved round, save after every round but the last
    (alharness.campaign.checkpoint; a resumed campaign's rows equal an uninterrupted run's). The last
    round's would be deleted once the results are committed, a few seconds later: a driver killed
    meanwhile costs that round again, on resume, instead of a save in every campaign.
    Raises CampaignTimeout past the spec's ``timeout_s`` (the strategy process is stopped)."""
    t_start = time.perf_counter()
    deadline = Deadline(spec.timeout_s)
    with _watchdog(deadline):
        setup, state = setup_campaign(spec, deadline)
        try:
            if checkpoint is not None and checkpoint.resume(state):
                state.verify_labels("after resuming from the checkpoint")
            for rnd in range(state.next_round, spec.rounds + 1):
                row = run_round(setup, state, rnd)
                if checkpoint is not None and rnd < spec.rounds:
                    deadline.enter(rnd, "checkpoint")
                    checkpoint.save(state)
                if on_round is not None:
                    on_round(row)
            state.verify_labels("after the last round")
        finally:
            state.strategy.close()
    queries = [{"campaign_id": spec.campaign_id, **r} for r in state.oracle.ledger.records()]
    return CampaignResult(spec, state.rows, queries, time.perf_counter() - t_start)


# -- setup -----------------------------------------------------------------------
def setup_campaign(spec: CampaignSpec, deadline: Deadline | None = None) -> tuple[CampaignSetup, CampaignState]:
    """Build a campaign's fixed parts and its state before round 0.

    A strategy that declares what the loop, the oracle rules or the learner
    cannot provide fails here, before anything is trained. The strategy
    process (if any) is started here; the caller closes it (``state.strategy.close()``)."""
    deadline = deadline or Deadline(None)
    in_process = not spec.strategy_process
    if not in_process:
        warm_up()  # the strategy processes' server boots while the data loads
    pool, pool_view, test, val_split = _load_splits(spec)
    # The metrics the spec records (and its id covers), not every installed cost model.
    cost_models = spec.cost_models()
    annotator = Annotator(spec.noise, derive_rng(spec.seed, "noise")) if spec.noise.active else None
    oracle = Oracle(pool, cost_models, spec.budget_metric, spec.budget, annotator)
    strategy = open_strategy(spec.strategy, spec.strategy_params, in_process=in_process, pool=pool_view,
                             quote_model=None if in_process else _quote_model(spec, oracle), deadline=deadline)
    try:
        return _finish_setup(spec, deadline, pool, pool_view, test, val_split, oracle, annotator, strategy)
    except BaseException:
        strategy.close()
        raise


def _finish_setup(spec: CampaignSpec, deadline: Deadline, pool: SplitData, pool_view: PoolView, test: SplitData,
                  val_split: SplitData | None, oracle: Oracle, annotator: Annotator | None,
                  strategy: StrategyHandle) -> tuple[CampaignSetup, CampaignState]:
    needs = strategy.needs
    # Oracle experiments only: the pool truth stays on the harness side, for the statistic alone.
    oracle_truth = pool if check_oracle_needs(strategy, needs, spec.strategy) else None
    del pool
    model_needs = _check_needs(spec, needs)
    if not strategy.streams:  # before anything is charged
        _check_dense_cap(spec, needs, _dense_bytes(spec, needs, pool_view))
    if spec.validation == "charged":
        oracle.charge_validation(val_split)
    # Held-out data reaches the learner (early stopping), never the strategy.
    val = (val_split.images, val_split.masks) if val_split is not None and spec.learner.patience > 0 else None
    labels = LabelState(len(pool_view), pool_view.image_shape, pool_view.num_classes, pool_view.ignore_index)
    learner = make_learner(spec.learner, pool_view.num_classes, pool_view.ignore_index)
    # Loop services (train_and_score): bought labels and the val split only, never the test split.
    services = loop_outputs(needs, spec.learner, pool_view.images, labels, val_split, spec.validation,
                            pool_view.num_classes, pool_view.ignore_index, who=f"strategy {spec.strategy!r}")
    setup = CampaignSetup(spec, pool_view, test, val, needs, model_needs, oracle_truth, services,
                          _constant_columns(spec, strategy), deadline)
    state = CampaignState(labels, oracle, learner, strategy, annotator)
    state.record_labels()
    return setup, state


def _quote_model(spec: CampaignSpec, oracle: Oracle) -> Any:
    """A fresh copy of the enforced cost model for the strategy process's ``quote``:
    built from its parameters and prepared with the pool's public facts only
    (it never priced an answer, so it holds nothing learnt from ground truth)."""
    model = COSTS.create(spec.budget_metric, **spec.costs[spec.budget_metric])
    model.prepare(oracle.info)
    return model


def _load_splits(spec: CampaignSpec) -> tuple[SplitData, PoolView, SplitData, SplitData | None]:
    """The pool split, the strategy's view of it, the test split and the val split (if the spec uses one)."""
    dataset = DATASETS.create(spec.dataset, **spec.dataset_params)
    pool, test = dataset.split("train"), dataset.split("test")
    val_split = dataset.split("val") if spec.validation != "none" else None
    pool_view = make_pool_view(pool, dataset.class_names)
    del dataset  # nothing below may reach other splits through it
    if val_split is not None and len(val_split) == 0:
        raise ConfigError(f"validation = {spec.validation!r}, but dataset {spec.dataset!r} has an empty val split")
    return pool, pool_view, test, val_split


def _check_needs(spec: CampaignSpec, needs: frozenset[str]) -> frozenset[str]:
    """Refuse needs nobody provides; return those the learner's services answer."""
    why = unknown_needs(needs)
    if why:
        raise PluginError(f"strategy {spec.strategy!r} {why}")
    model_needs = needs - ORACLE_NEEDS - LOOP_NEEDS
    # A head the strategy needs but the learner does not build fails now, not after round 0 trained.
    learner_services.check_needs(spec.learner, model_needs, who=f"strategy {spec.strategy!r}")
    return model_needs


def _dense_bytes(spec: CampaignSpec, needs: frozenset[str], pool_view: PoolView) -> int:
    """Bytes the dense whole-pool arrays of ``needs`` take: the model's outputs
    sized by a forward pass on the ``meta`` device (learner.services.
    output_bytes_per_image: the feature map's size and the maturity heads show
    before any network is trained), the oracle statistics from the pool alone.
    A model that cannot be built on the meta device is left to round 1's first
    batch, which checks the real sizes again before the rest is computed."""
    c, (h, w) = pool_view.num_classes, pool_view.image_shape
    try:
        model = learner_services.output_bytes_per_image(spec.learner, c, (h, w), needs)
    except Exception:  # noqa: BLE001 - a plugin model the meta device cannot build: the round-1 check stands
        model = {"probabilities": 4 * c * h * w} if "probabilities" in needs else {}
    return len(pool_view) * (sum(model.values()) + oracle_bytes_per_image(needs, (h, w)))


def _check_dense_cap(spec: CampaignSpec, needs: frozenset[str], nbytes: int) -> None:
    """ConfigError (one line) if a strategy that does not stream would need more
    than ``[resources] dense_outputs_cap_gib`` of whole-pool arrays."""
    cap = spec.dense_outputs_cap_gib
    if nbytes <= cap * 2**30:
        return
    raise ConfigError(
        f"strategy {spec.strategy!r} reads whole-pool arrays {sorted(needs & set(ARRAY_OUTPUTS))} of "
        f"{nbytes / 2**30:.2f} GiB, over [resources] dense_outputs_cap_gib = {cap:g}: stream them (override "
        "Strategy.score(batch) to keep per-image results and read them in propose as ctx.scores; docs/architecture.md, "
        "'Streaming acquisition') or raise the cap")


def _constant_columns(spec: CampaignSpec, strategy: StrategyHandle) -> dict[str, Any]:
    return {
        "benchmark": spec.benchmark,
        "campaign_id": spec.campaign_id,
        # The full-supervision campaign this one is measured against (its own
        # id for a reference campaign); the leaderboard joins on it.
        "reference_id": spec.reference().campaign_id,
        "dataset": spec.dataset,
        "strategy": spec.strategy,
        "strategy_label": spec.strategy_label,
        "cost_model": spec.cost_label,
        "budget_metric": spec.budget_metric,
        "budget": spec.budget,
        "validation": spec.validation,
        "seed": spec.seed,
        "oracle_experiment": bool(strategy.oracle_experiment),
        **spec.param_columns(),
    }


# -- one round -------------------------------------------------------------------
def run_round(setup: CampaignSetup, state: CampaignState, rnd: int) -> dict[str, Any]:
    """Play round ``rnd`` on ``state``; append its row to ``state.rows`` and return it."""
    t_round = time.perf_counter()
    spec, oracle, deadline = setup.spec, state.oracle, setup.deadline
    timings = dict.fromkeys(TIMING_COLUMNS, 0.0)
    allowance = round_allowance(spec, state, rnd)
    deadline.enter(rnd, "predict")
    with _timed(timings, "predict_s"):
        outputs = _round_outputs(setup, state, rnd)
        release_freed_memory()  # the prediction pass's batches (alharness.campaign.memory)
    ctx = make_context(setup.pool_view, state.labels, oracle, rnd, spec.rounds, allowance,
                       derive_rng(spec.seed, "strategy", rnd), spec.initial_masks, outputs)
    deadline.enter(rnd, "propose")
    state.verify_labels(f"before round {rnd}'s proposal")
    with _timed(timings, "select_s"):
        batch = state.strategy.select(ctx, deadline)
    if state.strategy.in_process or setup.services:
        # Strategy code ran in this process (the views' .base or setflags(write=True) reach the
        # loop's arrays, as a service's label state does): a write fails here. A strategy process
        # holds copies only, so there the check before the proposal is the one that matters.
        state.verify_labels(f"after strategy {spec.strategy!r} proposed in round {rnd}")
    deadline.check()
    deadline.enter(rnd, "oracle")
    with _timed(timings, "oracle_s"):
        oracle.answer(batch, strategy=spec.strategy, round=rnd, state=state.labels, limit=allowance)
    if batch:  # an empty batch wrote nothing: the recorded digest still holds
        state.record_labels()
    if rnd == 0:
        state.spent_after_initial = oracle.spent
    del ctx, outputs  # the round's dense outputs (a context holds them), before training allocates its own
    if rnd == 0 or batch:
        _train_and_evaluate(setup, state, rnd, timings)
        release_freed_memory()  # training's and evaluation's tensors: the campaign waits for the next round without them
    # else: nothing new was bought, so the model and its score carry over.
    timings["round_s"] = time.perf_counter() - t_round
    deadline.enter(rnd, "row")
    row = round_row(setup, state, rnd, len(batch), timings)
    state.rows.append(row)
    state.next_round = rnd + 1
    return row


def round_allowance(spec: CampaignSpec, state: CampaignState, rnd: int) -> float:
    """What round ``rnd`` may spend.

    Round 0 may spend the whole budget on the initial batch; later rounds
    spread what is left evenly, carrying over whatever an earlier round did
    not spend. A self-pacing strategy chooses its own installments."""
    if rnd == 0 or state.strategy.paces_itself:
        return spec.budget - state.oracle.spent
    target = state.spent_after_initial + (spec.budget - state.spent_after_initial) * rnd / spec.rounds
    return max(0.0, min(target, spec.budget) - state.oracle.spent)


def _round_outputs(setup: CampaignSetup, state: CampaignState, rnd: int) -> dict[str, Any]:
    """The declared outputs for round ``rnd``'s context (no model before round 0
    trained one). A streaming strategy is sent the pool-sized ones batch by
    batch here (``_stream``), and its context gets none of them."""
    if rnd == 0:
        outputs: dict[str, Any] = {}
    elif state.strategy.streams:
        outputs = _stream(setup, state, rnd)
    else:
        check = lambda nbytes: _check_dense_cap(setup.spec, setup.needs, nbytes)  # noqa: E731
        outputs = pool_outputs(state.learner.services, setup.pool_view.images, setup.model_needs, check_size=check)
    outputs.update(setup.services)
    if rnd > 0 and setup.oracle_truth is not None and not state.strategy.streams:
        outputs.update(oracle_outputs(state.learner.services, setup.pool_view.images, setup.oracle_truth,
                                      setup.needs, state.oracle.cost_models))
    return outputs


def _stream(setup: CampaignSetup, state: CampaignState, rnd: int) -> dict[str, Any]:
    """Send the strategy the pool's declared outputs, one ``eval_batch_size``
    batch at a time (in runs of at most ``SCORE_CHUNK_BYTES``), for its ``score``; return what its
    context still gets (the model)."""
    learner, images = state.learner.services, setup.pool_view.images
    model = learner.model if "model" in setup.model_needs else None
    state.strategy.begin_scoring(setup.pool_view, rnd, state.labels.view(), model)
    step = learner.config.eval_batch_size
    oracle_bytes = oracle_bytes_per_image(setup.needs, tuple(images.shape[1:3])) if setup.oracle_truth is not None else 0
    for start, out in batch_outputs(learner, images, setup.model_needs - {"model"}, run_bytes=SCORE_CHUNK_BYTES,
                                    extra_bytes_per_image=oracle_bytes):
        stop = start + (len(next(iter(out.values()))) if out else min(step, len(images) - start))
        if setup.oracle_truth is not None:
            out.update(oracle_outputs(learner, images, setup.oracle_truth, setup.needs, state.oracle.cost_models,
                                      rows=slice(start, stop)))
        setup.deadline.check()
        state.strategy.score(start, stop, out, setup.deadline)
    return {} if model is None else {"model": model}


def _train_and_evaluate(setup: CampaignSetup, state: CampaignState, rnd: int, timings: dict[str, float]) -> None:
    """Train on the labels bought so far and score on the test split."""
    setup.deadline.enter(rnd, "train")
    with _timed(timings, "train_s"):
        state.fit = state.learner.fit(setup.pool_view.images, state.labels,
                                      seed=derive_int_seed(setup.spec.seed, "train", rnd), val=setup.val)
    setup.deadline.enter(rnd, "evaluate")
    with _timed(timings, "eval_s"):
        state.miou, state.class_iou, state.ap50 = evaluate(state.learner, setup.test)
        state.extra_scores = evaluate_extra_networks(state.learner, setup.test)


def round_row(setup: CampaignSetup, state: CampaignState, rnd: int, batch_size: int,
              timings: dict[str, float]) -> dict[str, Any]:
    """Round ``rnd``'s result row: spend, counts and scores after the round, then its timings."""
    ledger, fit = state.oracle.ledger, state.fit
    return {
        **setup.columns,
        "round": rnd,
        **{f"spent_{m}": ledger.total(m) for m in state.oracle.cost_models},
        **{f"n_{kind}": ledger.count(kind) for kind in QUERY_TYPES},
        "batch_size": batch_size,
        "n_noisy": ledger.noisy_count(),
        "labelled_pixel_fraction": state.labels.labelled_pixel_fraction(),
        "miou": state.miou,
        "per_class_iou": state.class_iou,
        "ap50": state.ap50,
        **{f"{n}_{m}": None for n in EXTRA_NETWORK_COLUMNS for m in ("miou", "ap50")},
        **state.extra_scores,
        "train_steps": int(fit["train_steps"]),
        "train_loss": float(fit["final_loss"]),
        "val_miou": None if fit.get("val_miou") is None else float(fit["val_miou"]),  # null without a val split
        **{k: timings[k] for k in TIMING_COLUMNS},
        "diagnostics": state.strategy.diagnostics(),  # JSON text, sorted keys (computed where the strategy runs)
    }


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - t0
