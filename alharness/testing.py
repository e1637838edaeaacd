"""Conformance checks for strategy plugins (like scikit-learn's check_estimator).

Plugin authors run ``check_strategy("my_strategy")`` (or pass the class) in
their own tests, or give every check its own test id with
``@parametrize_with_checks([...])``; alharness runs them on its built-in
strategies. Each check is a function in ``STRATEGY_CHECKS``; the checks that
watch the strategy at work share one recorded trial (a four-round campaign
on a tiny synthetic pool, and a second one for determinism, and for a
strategy that streams one per batch size), run once per strategy,
parameters and seed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections import OrderedDict
from typing import Any, Callable, Iterable, NoReturn, Union

import numpy as np

from alharness.annotation.costs import build_cost_models
from alharness.annotation.labels import LabelState
from alharness.annotation.oracle import Oracle
from alharness.annotation.oracle_experiments import check_oracle_needs, oracle_outputs
from alharness.campaign.context import make_context
from alharness.campaign.scoring import loop_outputs
from alharness.contract.queries import QUERY_TYPES, FullMask, ImageLabels, Query
from alharness.contract.strategy import (ARRAY_OUTPUTS, LOOP_NEEDS, ORACLE_NEEDS, ScoreBatch, Strategy, StrategyContext,
                                         check_score_result, concat_scores, unknown_needs)
from alharness.datasets.base import make_pool_view
from alharness.errors import DuplicateQueryError, PluginError, QueryRefused
from alharness.learner import Learner, LearnerConfig
from alharness.learner.services import heads_for, pool_outputs
from alharness.registry import DATASETS, STRATEGIES
from alharness.seeding import derive_rng

#: What the checks accept: a registered name or a Strategy subclass.
StrategyLike = Union[str, type[Strategy]]


class StrategyCheckError(AssertionError):
    """A strategy broke the plugin contract; ``failures`` maps each failed check's name to why."""

    def __init__(self, message: str, failures: dict[str, str] | None = None):
        super().__init__(message)
        self.failures = dict(failures or {})


class _Setup:
    """A tiny pool with a few bought masks and a briefly trained model."""

    def __init__(self, seed: int, budget: float, needs: frozenset[str] = frozenset()):
        # A validation split only for strategies that score on one (train_and_score).
        n_val = 4 if "train_and_score" in needs else 0
        ds = DATASETS.create("synthetic_shapes", n_train=16, n_val=n_val, n_test=4, size=24, num_classes=3, seed=seed)
        pool = ds.split("train")
        self.pool_view = make_pool_view(pool, ds.class_names)
        self.pool = pool  # harness side: oracle experiments' statistics only
        self.oracle = Oracle(pool, build_cost_models({}), "label_equivalents", budget)
        self.state = LabelState(len(pool), self.pool_view.image_shape, ds.num_classes, ds.ignore_index)
        # Built with whatever heads the strategy's needs require.
        config = LearnerConfig(steps=3, batch_size=4, model_params={"width": 4, "depth": 1},
                               heads=list(heads_for(needs)), head_steps=2)
        self.learner = Learner(config, ds.num_classes, ds.ignore_index)
        self.services = loop_outputs(needs, config, self.pool_view.images, self.state,
                                     ds.split("val") if n_val else None, "free" if n_val else "none",
                                     ds.num_classes, ds.ignore_index)
        self.seed = seed

    def context(self, strategy: Strategy, rnd: int, allowance: float):
        if rnd > 0:
            self.learner.fit(self.pool_view.images, self.state, seed=self.seed)
        needs = frozenset(strategy.needs)
        outputs = pool_outputs(self.learner, self.pool_view.images, needs - ORACLE_NEEDS - LOOP_NEEDS) if rnd > 0 else {}
        outputs.update(self.services)
        if rnd > 0 and needs & ORACLE_NEEDS:
            outputs.update(oracle_outputs(self.learner, self.pool_view.images, self.pool, needs, self.oracle.cost_models))
        return make_context(self.pool_view, self.state, self.oracle, rnd, 3, allowance,
                            derive_rng(self.seed, "check", rnd), 2, outputs)


# The trial: round 0 (initial), two rounds with budget, a round with none
# (must propose nothing), and one more with budget after it.
_ALLOWANCES = (48.0, 30.0, 0.0, 40.0)
_BUDGET = 200.0
_EPS = 1e-9  # the oracle's tolerance for sums of prices

# Problem kinds found in a round, one per check that reports them.
_WELL_FORMED, _REPEATS, _ZERO, _CONTEXT = "well_formed", "repeats", "zero_budget", "context"


def _digest(a: np.ndarray) -> str:
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}|{a.flags.writeable}|".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _fingerprint(prefix: str, obj: Any, out: dict[str, str]) -> dict[str, str]:
    """Hash of every array reachable through ``obj``'s dataclass fields (dicts
    included, key by key), the repr of plain values and the identity of
    anything else (the model, rng, quote: replacing one is a change too)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out[prefix] = f"id:{id(obj)}"
        for f in dataclasses.fields(obj):
            _fingerprint(f"{prefix}.{f.name}", getattr(obj, f.name), out)
    elif isinstance(obj, np.ndarray):
        out[prefix] = _digest(obj)
    elif isinstance(obj, dict):
        out[prefix] = repr(sorted(map(repr, obj)))
        for k, v in obj.items():
            _fingerprint(f"{prefix}[{k!r}]", v, out)
    elif obj is None or isinstance(obj, (bool, int, float, str, tuple, frozenset)):
        out[prefix] = repr(obj)
    else:
        out[prefix] = f"id:{id(obj)}"
    return out


def _context_fingerprint(ctx: StrategyContext, oracle: Oracle) -> dict[str, str]:
    out = _fingerprint("ctx", ctx, {})
    # Prices: the quote function's cost model is reachable from the context.
    out["prices"] = repr([oracle.quote(q(i)) for i in range(oracle.info.size) for q in (FullMask, ImageLabels)])
    out["oracle.spent"] = repr(oracle.spent)
    return out


def _plain(v: Any) -> Any:
    """Lists and tuples alike, as in a benchmark file (which has lists only)."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays and other values without a truth value
        return repr(a) == repr(b)


@dataclasses.dataclass
class _Round:
    rnd: int
    allowance: float
    batch: list | tuple  # what initial()/propose() returned, made a list if it was not one
    problems: dict[str, list[str]]
    not_a_list: str | None = None  # the type it returned instead of a list


@dataclasses.dataclass
class _Run:
    rounds: list[_Round]
    crash: tuple[str, BaseException] | None = None  # what raised where, and the exception


def _audit(r: _Round, oracle: Oracle, label: str, state: LabelState) -> None:
    """Sort what is wrong with a round's batch by check, then let the oracle
    answer it (a refused batch buys nothing; the trial goes on)."""
    batch, problems = r.batch, r.problems
    where = f"round {r.rnd}"
    if r.not_a_list:
        problems[_WELL_FORMED].append(f"{where}: returned {r.not_a_list}, not a list of queries")
        return
    shape = tuple(oracle.info.image_shape)
    seen: set = set()
    price = 0.0
    for q in batch:
        if not isinstance(q, Query) or QUERY_TYPES.get(type(q).kind) is not type(q):
            problems[_WELL_FORMED].append(f"{where}: {q!r} is not a known query type (known: {', '.join(QUERY_TYPES)})")
            continue
        why = q.validate(oracle.info.size, oracle.info.num_classes, shape)
        if why:
            problems[_WELL_FORMED].append(f"{where}: malformed query {q!r}: {why}")
            continue
        keys = list(q.keys())
        if any(k in seen for k in keys):
            problems[_REPEATS].append(f"{where}: {q!r} asks the same thing twice in one batch")
        elif oracle.ledger.answered(q):
            problems[_REPEATS].append(f"{where}: {q!r} was already answered in an earlier round")
        seen.update(keys)
        price += oracle.quote(q)
    left = oracle.budget - oracle.spent
    if price > r.allowance + _EPS:
        problems[_WELL_FORMED].append(f"{where}: the batch costs {price:g} {oracle.budget_metric} but the round allows {r.allowance:g}")
    if price > left + _EPS:
        problems[_WELL_FORMED].append(f"{where}: the batch costs {price:g} {oracle.budget_metric} but only {left:g} of the budget is left")
    if r.allowance == 0 and len(batch):
        problems[_ZERO].append(f"{where}: proposed {len(batch)} queries with no budget left this round")
    try:
        oracle.answer(list(batch), strategy=label, round=r.rnd, state=state, limit=r.allowance)
    except QueryRefused as exc:
        # Whatever the oracle refuses must fail some check, even if the sorting above missed it.
        if not any(problems.values()):
            problems[_REPEATS if isinstance(exc, DuplicateQueryError) else _WELL_FORMED].append(f"{where}: {exc}")


# Batch sizes a streaming strategy is scored in besides the whole pool at once
# (the trial's pool has 16 images: single images, and batches with a remainder).
_STREAM_BATCHES = (1, 5)


def _streamed(ctx: StrategyContext, strategy: Strategy, batch: int, label: str) -> StrategyContext:
    """The context as the loop gives a streaming strategy: ``score`` on each
    ``batch`` pool images in turn, the results in ``scores``, no pool-sized arrays."""
    parts = []
    for start in range(0, len(ctx.pool), batch):
        b = ScoreBatch.of(ctx, start, start + batch)
        parts.append((len(b), check_score_result(strategy.score(b), len(b), label)))
    return dataclasses.replace(ctx, scores=concat_scores(parts, label), **dict.fromkeys(ARRAY_OUTPUTS))


def _run(make: Callable[[], Strategy], label: str, seed: int, batch_size: int | None = None) -> _Run:
    """Run the trial once with a fresh strategy and pool; record, never raise.
    ``batch_size``: a streaming strategy is scored in batches of that many images
    (else over the whole pool at once, from the context's dense outputs)."""
    run = _Run([])
    step = "building the strategy"
    try:
        strat = make()
        step = "setting up the pool and the strategy's needs"
        setup = _Setup(seed, _BUDGET, frozenset(strat.needs))
        for rnd, allowance in enumerate(_ALLOWANCES):
            step = f"round {rnd}: computing the context"
            ctx = setup.context(strat, rnd, allowance)
            if batch_size is not None and rnd > 0 and strat.streams:
                step = f"round {rnd}: score() in batches of {batch_size}"
                ctx = _streamed(ctx, strat, batch_size, label)
            before = _context_fingerprint(ctx, setup.oracle)
            what = "initial()" if rnd == 0 else "propose()"
            step = f"round {rnd}: {what}"
            batch = strat.initial(ctx) if rnd == 0 else strat.propose(ctx)
            r = _Round(rnd, allowance, batch, {k: [] for k in (_WELL_FORMED, _REPEATS, _ZERO, _CONTEXT)})
            if not isinstance(batch, (list, tuple)):
                # Refused by the loop; kept as a list so that the other checks still judge what it proposed.
                r.not_a_list = type(batch).__name__
                r.batch = [] if batch is None else list(batch) if isinstance(batch, Iterable) else [batch]
            run.rounds.append(r)
            after = _context_fingerprint(ctx, setup.oracle)
            # The harness's own label state too: a view swapped for a copy
            # must not hide a write through the original's base.
            harness = _fingerprint("ctx.labels", setup.state.view(), {})
            changed = sorted({k for k in before if after.get(k) != before[k]}
                             | {k for k, v in harness.items() if not v.startswith("id:") and v != before.get(k)}
                             | (after.keys() - before.keys()))
            if changed:
                r.problems[_CONTEXT].append(f"round {rnd}: {what} changed {', '.join(changed)}")
            step = f"round {rnd}: answering the batch"
            _audit(r, setup.oracle, label, setup.state)
    except Exception as exc:  # the checks report it; a crash is a failure, not an error of the harness
        run.crash = (f"{step} raised {type(exc).__name__}: {exc}", exc)
    return run


def _label(strategy: Any) -> str:
    return strategy if isinstance(strategy, str) else getattr(strategy, "__name__", repr(strategy))


class _Trial:
    """One strategy with its parameters and seed: a builder, a label and the
    recorded runs (each made on first use)."""

    def __init__(self, strategy: Any, params: dict[str, Any], seed: int):
        self.params = dict(params)
        self.seed = seed
        self.label = _label(strategy)
        if isinstance(strategy, str):
            self.make = lambda: STRATEGIES.create(strategy, **self.params)
        else:
            self.make = lambda: strategy(**self.params)

    @functools.cached_property
    def first(self) -> _Run:
        return _run(self.make, self.label, self.seed)

    @functools.cached_property
    def second(self) -> _Run:
        return _run(self.make, self.label, self.seed)

    def streamed(self, batch: int) -> _Run:
        runs = self.__dict__.setdefault("_streamed", {})
        if batch not in runs:
            runs[batch] = _run(self.make, self.label, self.seed, batch)
        return runs[batch]


_TRIALS: OrderedDict[tuple, _Trial] = OrderedDict()
_TRIALS_KEPT = 8  # parametrize_with_checks runs a strategy's checks one after the other


def _trial(strategy: Any, params: dict[str, Any] | None, seed: int) -> _Trial:
    params = dict(params or {})
    # Keyed by the class itself too, so that re-registering a name is not served a stale trial.
    factory = STRATEGIES.get(strategy).factory if isinstance(strategy, str) else strategy
    key = (strategy if isinstance(strategy, str) else None, factory, repr(sorted(params.items())), seed)
    trial = _TRIALS.get(key)
    if trial is None:
        trial = _TRIALS[key] = _Trial(strategy, params, seed)
        while len(_TRIALS) > _TRIALS_KEPT:
            _TRIALS.popitem(last=False)
    _TRIALS.move_to_end(key)
    return trial


def _fail(label: str, message: str, cause: BaseException | None = None) -> NoReturn:
    raise StrategyCheckError(f"{label}: {message}") from cause


def _problems(trial: _Trial, kind: str) -> None:
    run = trial.first
    # A crash ends the trial: the rounds it did not reach were not judged.
    found = [m for r in run.rounds for m in r.problems[kind]] + ([run.crash[0]] if run.crash else [])
    if found:
        _fail(trial.label, "; ".join(found), run.crash[1] if run.crash else None)


def _instance(trial: _Trial) -> Strategy:
    try:
        return trial.make()
    except Exception as exc:
        _fail(trial.label, f"building the strategy raised {type(exc).__name__}: {exc}", exc)


# -- the checks --------------------------------------------------------------

def check_needs_declared(strategy: StrategyLike, params: dict[str, Any] | None = None, *, seed: int = 0) -> None:
    """It declares only needs the loop provides, and ground-truth statistics
    (ORACLE_NEEDS) only as an oracle experiment."""
    trial = _trial(strategy, params, seed)
    strat = _instance(trial)
    needs = frozenset(strat.needs)
    why = unknown_needs(needs)
    if why:
        _fail(trial.label, why)
    try:
        check_oracle_needs(strat, needs, trial.label)
    except PluginError as exc:
        _fail(trial.label, str(exc), exc)


def check_batches_well_formed_and_within_budget(strategy: StrategyLike, params: dict[str, Any] | None = None, *,
                                                seed: int = 0) -> None:
    """Every batch is a list of valid queries for the pool whose total quote
    fits both the round's allowance and what is left of the budget."""
    _problems(_trial(strategy, params, seed), _WELL_FORMED)


def check_zero_budget_proposes_nothing(strategy: StrategyLike, params: dict[str, Any] | None = None, *,
                                       seed: int = 0) -> None:
    """A round with no budget left gets an empty batch."""
    _problems(_trial(strategy, params, seed), _ZERO)


def check_no_repeated_queries(strategy: StrategyLike, params: dict[str, Any] | None = None, *, seed: int = 0) -> None:
    """No batch asks for something already answered, or for one thing twice."""
    _problems(_trial(strategy, params, seed), _REPEATS)


def check_context_unmodified(strategy: StrategyLike, params: dict[str, Any] | None = None, *, seed: int = 0) -> None:
    """Choosing a batch changes nothing in the context: the contents of every
    array of the pool view, of the label view (``boxes`` included) and of the
    model outputs (hashed before and after, so a write through an array's
    ``base`` counts), the harness's label state, the budget figures and the
    prices."""
    _problems(_trial(strategy, params, seed), _CONTEXT)


def check_deterministic_under_seed(strategy: StrategyLike, params: dict[str, Any] | None = None, *,
                                   seed: int = 0) -> None:
    """A fresh instance on a fresh pool with the same seed proposes the same batches."""
    trial = _trial(strategy, params, seed)
    a, b = trial.first, trial.second
    for ra, rb in zip(a.rounds, b.rounds):
        if not _same(ra.batch, rb.batch):
            _fail(trial.label, f"round {ra.rnd}: not deterministic under a fixed seed "
                               f"(first run {list(ra.batch)[:3]}, second run {list(rb.batch)[:3]})")
    if a.crash:
        _fail(trial.label, a.crash[0], a.crash[1])
    if b.crash:
        _fail(trial.label, f"not deterministic under a fixed seed: only the second run failed: {b.crash[0]}", b.crash[1])


def check_streaming_matches_dense(strategy: StrategyLike, params: dict[str, Any] | None = None, *,
                                  seed: int = 0) -> None:
    """A strategy that streams (overrides ``score``) proposes the same batches
    whether its ``score`` sees the whole pool at once or batches of 1 or 5
    images, and its ``propose`` reads no pool-sized array from the context
    (the loop gives it none). Nothing to check for a strategy that does not stream."""
    trial = _trial(strategy, params, seed)
    if not _instance(trial).streams:
        return
    dense = trial.first
    if dense.crash:
        _fail(trial.label, dense.crash[0], dense.crash[1])
    for batch in _STREAM_BATCHES:
        run = trial.streamed(batch)
        for ra, rb in zip(dense.rounds, run.rounds):
            if not _same(ra.batch, rb.batch):
                _fail(trial.label, f"round {ra.rnd}: streamed in batches of {batch} images it proposes "
                                   f"{list(rb.batch)[:3]}, over the whole pool at once {list(ra.batch)[:3]}")
        if run.crash:
            _fail(trial.label, f"streamed in batches of {batch} images: {run.crash[0]}", run.crash[1])


def check_get_params_round_trips(strategy: StrategyLike, params: dict[str, Any] | None = None, *,
                                 seed: int = 0) -> None:
    """``get_params()`` reports every parameter the strategy was built with,
    and the class built again from it has equal ``get_params()`` and repr
    (benchmark files and result rows name strategies by these)."""
    trial = _trial(strategy, params, seed)
    strat = _instance(trial)
    got = strat.get_params()
    wrong = [f"{k}={got.get(k, '<missing>')!r} (built with {v!r})" for k, v in trial.params.items()
             if k not in got or not _same(_plain(got[k]), _plain(v))]
    if wrong:
        _fail(trial.label, f"get_params() reports {', '.join(wrong)}")
    try:
        again = type(strat)(**got)
    except Exception as exc:
        _fail(trial.label, f"{type(strat).__name__}(**get_params()) raised {type(exc).__name__}: {exc}", exc)
    if not _same(again.get_params(), got):
        _fail(trial.label, f"built again from get_params() {got!r}, it reports {again.get_params()!r}")
    if repr(again) != repr(strat):
        _fail(trial.label, f"built again from get_params(), its repr is {again!r}, not {strat!r}")


def check_proposes_something(strategy: StrategyLike, params: dict[str, Any] | None = None, *, seed: int = 0) -> None:
    """After round 0 it proposes something in some round that has budget."""
    trial = _trial(strategy, params, seed)
    run = trial.first
    if run.crash:
        _fail(trial.label, run.crash[0], run.crash[1])
    if not any(len(r.batch) for r in run.rounds if r.rnd > 0 and r.allowance > 0):
        _fail(trial.label, "proposed nothing in any round after round 0 although budget was available")


#: Every check, by name, in the order check_strategy runs them.
STRATEGY_CHECKS: dict[str, Callable[..., None]] = {f.__name__: f for f in (
    check_needs_declared,
    check_batches_well_formed_and_within_budget,
    check_zero_budget_proposes_nothing,
    check_no_repeated_queries,
    check_context_unmodified,
    check_deterministic_under_seed,
    check_streaming_matches_dense,
    check_get_params_round_trips,
    check_proposes_something,
)}


def check_strategy(strategy: StrategyLike, params: dict[str, Any] | None = None, *, seed: int = 0) -> None:
    """Run every check in ``STRATEGY_CHECKS``; raise one StrategyCheckError
    listing every failure (``.failures``: check name -> why), or return."""
    failures: dict[str, str] = {}
    cause: BaseException | None = None
    label = _label(strategy)
    for name, check in STRATEGY_CHECKS.items():
        try:
            check(strategy, params, seed=seed)
        except StrategyCheckError as exc:
            failures[name] = str(exc).removeprefix(f"{label}: ")
            cause = cause or exc.__cause__
    if failures:
        # One line per distinct reason: a crash fails every check that watched the strategy run.
        by_reason: dict[str, list[str]] = {}
        for name, why in failures.items():
            by_reason.setdefault(why, []).append(name)
        lines = "".join(f"\n  {', '.join(names)}: {why}" for why, names in by_reason.items())
        raise StrategyCheckError(f"{label} failed {len(failures)} of {len(STRATEGY_CHECKS)} strategy checks:{lines}",
                                 failures) from cause


def parametrize_with_checks(strategies: list[Any], *, seed: int = 0):
    """A ``pytest.mark.parametrize`` decorator giving every (strategy, check)
    pair its own test, as scikit-learn's ``parametrize_with_checks`` does.

    ``strategies``: registered names, classes, or ``(name or class, params)``
    pairs. The test takes ``strategy`` and ``check`` and calls
    ``check(strategy)``::

        @parametrize_with_checks(["random", ("madbal", {"n_clusters": 2})])
        def test_contract(strategy, check):
            check(strategy)
    """
    import pytest  # only the test suite needs pytest

    values, ids = [], []
    for item in strategies:
        strategy, params = item if isinstance(item, tuple) else (item, {})
        label = _label(strategy)
        if params:
            label += "(" + ",".join(f"{k}={v!r}" for k, v in params.items()) + ")"
        for name, check in STRATEGY_CHECKS.items():
            values.append((strategy, functools.partial(check, params=dict(params), seed=seed)))
            ids.append(f"{label}-{name}")
    return pytest.mark.parametrize("strategy, check", values, ids=ids)
