"""CampaignSpec: one (strategy × dataset × cost model × budget × seed) run,
hashable, with a stable id derived from its canonical JSON."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from alharness.campaign.reference import REFERENCE_BUDGET, REFERENCE_STRATEGY
from alharness.errors import ConfigError
from alharness.learner import LearnerConfig
from alharness.annotation.noise import NoiseConfig
from alharness.registry import COSTS, DATASETS, STRATEGIES, Registry, show


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in sorted(v.items())}
    return v


def effective_params(registry: Registry, name: str, params: dict[str, Any], where: str) -> dict[str, Any]:
    """Defaults of the plugin overlaid with ``params`` (unknown keys, and values
    that do not fit the parameter's annotation, are an error)."""
    registry.check_params(name, params, where=where)
    registry.check_types(name, params, where=f"{where} {name!r}")
    merged = {**registry.defaults(name), **params}
    missing = [k for k, p in registry.parameters(name).items() if k not in merged]
    if missing:
        raise ConfigError(f"{where}: {registry.kind} {name!r} needs parameter(s) {', '.join(missing)}")
    return _jsonable(merged)


VALIDATION_CHOICES = ("none", "charged", "free")
# The smallest budget a campaign may have: below it nothing is affordable in
# any built-in metric of a realistic pool (a budget of 1e-9 is a typo).
MIN_BUDGET = 1e-6
# Resources a campaign may ask for: more than this per campaign is a typo.
MAX_CPUS = MAX_GPUS = 1024
# The spec's fields that say where and how a campaign runs ([resources] in a
# benchmark file); they are not part of the campaign id.
RESOURCE_FIELDS = ("num_cpus", "num_gpus", "timeout_s", "strategy_process", "dense_outputs_cap_gib")
# Where a strategy that does not stream reads whole-pool arrays: the most they may
# take (GiB) unless [resources] dense_outputs_cap_gib says otherwise (alharness.campaign.loop).
DENSE_OUTPUTS_CAP_GIB = 2.0
MAX_DENSE_OUTPUTS_CAP_GIB = 1 << 20
# What a spec derives from its fields, computed once per instance and kept in
# its __dict__ (functools.cached_property): the scheduler asks for these
# several times per campaign. Left out of pickles, so a pickled spec is what
# it was without the cache, and equality and hash read the same values.
_DERIVED = ("campaign_id", "_json", "strategy_label", "cost_label")
# The longest [resources] timeout_s accepted (a year): more is a typo.
MAX_TIMEOUT_S = 365 * 24 * 3600.0


def check_number(where: str, name: str, value: Any, *, integer: bool = False, lo: float | None = None,
                 lo_open: bool = False, hi: float | None = None) -> None:
    """Raise a one-line ConfigError unless ``value`` is a finite number
    (an integer with ``integer``; never a bool) within the bounds."""
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        bounds = [f"{'>' if lo_open else '>='} {lo:g}"] if lo is not None else []
        bounds += [f"<= {hi:g}"] if hi is not None else []
        what = ("an integer" if integer else "a finite number") + (" " + " and ".join(bounds) if bounds else "")
        raise ConfigError(f"{where}: {name} must be {what}, got {show(value)}")


def check_gpus(where: str, value: Any) -> None:
    """``num_gpus``: 0, a fraction in (0, 1] (packs campaigns on one GPU) or whole GPUs."""
    check_number(where, "num_gpus", value, lo=0, hi=MAX_GPUS)
    if value > 1 and not float(value).is_integer():
        raise ConfigError(f"{where}: num_gpus must be 0, a fraction in (0, 1] or a whole number of GPUs, got {show(value)}")



def _build_cost_models(costs: dict[str, dict[str, Any]], where: str) -> dict[str, Any]:
    """Build every recorded cost model once, so that bad values (not only bad
    names) fail here, before anything is scheduled."""
    models = {}
    for m, params in costs.items():
        try:
            models[m] = COSTS.create(m, **params)
        except ConfigError as exc:
            raise ConfigError(f"{where}: costs.{m}: {exc}") from None
        except Exception as exc:  # a plugin's own check that is not a ConfigError: still one line
            raise ConfigError(f"{where}: costs.{m}: {' '.join(f'{type(exc).__name__}: {exc}'.split())}") from None
    return models


@dataclass(frozen=True, eq=False)
class CampaignSpec:
    """Everything that determines a campaign's results, plus where it runs."""

    dataset: str
    strategy: str
    budget_metric: str
    budget: float
    rounds: int
    seed: int
    dataset_params: dict[str, Any] = field(default_factory=dict)
    strategy_params: dict[str, Any] = field(default_factory=dict)
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)
    initial_masks: int = 0
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    # The dataset's val split for held-out scores (early stopping): "none",
    # "charged" (its full masks are bought in round 0, in every metric) or
    # "free" (not charged; rows say so): held-out scores are paid for unless
    # the benchmark says otherwise (docs/architecture.md, fairness rules).
    validation: str = "none"
    benchmark: str = "adhoc"
    # Resources: where and how it runs, not what it computes (not in the id).
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    # Wall-time limit of the campaign in seconds (None: none); on expiry it is
    # recorded failed with the round and phase it was in (alharness.campaign.loop).
    timeout_s: float | None = None
    # The strategy runs in a process of its own (true) or in the campaign's
    # (false, for debugging; alharness.campaign.strategy_worker).
    strategy_process: bool = True
    # The most GiB of whole-pool output arrays the loop builds for a strategy
    # that does not stream (Strategy.score); over it the campaign fails before round 0.
    dense_outputs_cap_gib: float = DENSE_OUTPUTS_CAP_GIB

    def __post_init__(self) -> None:
        where = f"campaign ({self.strategy} on {self.dataset})"
        object.__setattr__(self, "dataset_params", effective_params(DATASETS, self.dataset, dict(self.dataset_params), f"{where}: dataset"))
        object.__setattr__(self, "strategy_params", effective_params(STRATEGIES, self.strategy, dict(self.strategy_params), f"{where}: strategy"))
        unknown = sorted(set(self.costs) - set(COSTS.names()))
        if unknown:
            raise ConfigError(f"{where}: unknown cost model(s) {', '.join(unknown)}; valid choices: {', '.join(COSTS.names())}")
        if not isinstance(self.budget_metric, str) or self.budget_metric not in COSTS:
            raise ConfigError(f"{where}: unknown budget_metric {show(self.budget_metric)}; valid choices: {', '.join(COSTS.names())}")
        costs = {m: effective_params(COSTS, m, dict(self.costs.get(m, {})), f"{where}: costs.{m}") for m in self.recorded_metrics()}
        object.__setattr__(self, "costs", costs)
        models = _build_cost_models(costs, where)
        if not models[self.budget_metric].priced_in_advance:
            advance = [m for m, model in models.items() if model.priced_in_advance]
            raise ConfigError(
                f"{where}: budget_metric {self.budget_metric!r} is priced only after answering, so an overdraft "
                f"could not be refused in advance; enforce one of: {', '.join(advance)} (it is still recorded)"
            )
        self._check_numbers(where)
        object.__setattr__(self, "budget", float(self.budget))
        if isinstance(self.learner, dict):
            object.__setattr__(self, "learner", LearnerConfig(**self.learner))
        if self.validation not in VALIDATION_CHOICES:
            raise ConfigError(f"{where}: validation must be one of {', '.join(VALIDATION_CHOICES)}, got {self.validation!r}")
        if isinstance(self.learner, LearnerConfig) and self.learner.patience > 0 and self.validation == "none":
            raise ConfigError(f"{where}: learner.patience needs a validation split: set [benchmark] validation = "
                              f"'charged' (its annotation is bought) or 'free'")
        if isinstance(self.noise, dict):
            unknown = sorted(set(self.noise) - set(NoiseConfig.__dataclass_fields__))
            if unknown:
                raise ConfigError(f"{where}: noise: unknown key(s) {', '.join(map(repr, unknown))}; "
                                  f"valid keys: {', '.join(NoiseConfig.__dataclass_fields__)}")
            object.__setattr__(self, "noise", NoiseConfig(**self.noise))

    def cost_models(self) -> dict[str, Any]:
        """A fresh instance of every metric the campaign records (``costs``, in its order)."""
        return _build_cost_models(self.costs, f"campaign ({self.strategy} on {self.dataset})")

    def recorded_metrics(self) -> list[str]:
        """The cost metrics this campaign records (and its id covers): every
        built-in metric, as always, plus the enforced one and those the
        benchmark names. A third-party cost model that is installed but not
        named is not one of them, so installing it changes no campaign id."""
        named = set(self.costs) | {self.budget_metric}
        return [m for m in COSTS.names() if COSTS.is_builtin(m) or m in named]

    def _check_numbers(self, where: str) -> None:
        check_number(where, "budget", self.budget, lo=MIN_BUDGET, hi=REFERENCE_BUDGET)
        check_number(where, "rounds", self.rounds, integer=True, lo=1)
        check_number(where, "initial_masks", self.initial_masks, integer=True, lo=0)
        check_number(where, "seed", self.seed, integer=True, lo=0)
        check_number(where, "num_cpus", self.num_cpus, lo=0, lo_open=True, hi=MAX_CPUS)
        check_gpus(where, self.num_gpus)
        if self.timeout_s is not None:
            check_number(where, "timeout_s", self.timeout_s, lo=0, lo_open=True, hi=MAX_TIMEOUT_S)
        check_number(where, "dense_outputs_cap_gib", self.dense_outputs_cap_gib, lo=0, lo_open=True,
                     hi=MAX_DENSE_OUTPUTS_CAP_GIB)
        if not isinstance(self.strategy_process, bool):
            raise ConfigError(f"{where}: strategy_process must be true or false, got {show(self.strategy_process)}")

    def canonical(self) -> dict[str, Any]:
        """What determines the results (resources and benchmark name excluded)."""
        return {
            "dataset": self.dataset,
            "dataset_params": self.dataset_params,
            "strategy": self.strategy,
            "strategy_params": self.strategy_params,
            "costs": self.costs,
            "budget_metric": self.budget_metric,
            "budget": self.budget,
            "rounds": self.rounds,
            "initial_masks": self.initial_masks,
            "learner": _jsonable(self.learner.to_dict()),
            "noise": self.noise.to_dict(),
            "validation": self.validation,
            "seed": self.seed,
            # Only where the strategy declares one (Strategy.version), so every other id stays as it was.
            **({} if (v := getattr(STRATEGIES.get(self.strategy).factory, "version", None)) is None
               else {"strategy_version": v}),
        }

    @functools.cached_property
    def campaign_id(self) -> str:
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return self._json

    @functools.cached_property
    def _json(self) -> str:
        return json.dumps(
            {**self.canonical(), "benchmark": self.benchmark, "num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
             "timeout_s": self.timeout_s, "strategy_process": self.strategy_process,
             "dense_outputs_cap_gib": self.dense_outputs_cap_gib},
            sort_keys=True,
        )

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _DERIVED}

    @classmethod
    def from_json(cls, text: str) -> "CampaignSpec":
        d = json.loads(text)
        d.pop("strategy_version", None)  # the strategy's code says it (Strategy.version), not the stored spec
        d["learner"] = LearnerConfig(**d["learner"])
        d["noise"] = NoiseConfig(**d.get("noise", {}))
        return cls(**d)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CampaignSpec) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.campaign_id)

    @functools.cached_property
    def strategy_label(self) -> str:
        """Strategy name with the parameters that differ from its defaults,
        e.g. ``fixed_proportion(mask_fraction=0.8)``."""
        defaults = _jsonable(STRATEGIES.defaults(self.strategy))
        changed = {k: v for k, v in self.strategy_params.items() if defaults.get(k, object()) != v}
        if not changed:
            return self.strategy
        args = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(changed.items()))
        return f"{self.strategy}({args})"

    @functools.cached_property
    def cost_label(self) -> str:
        """The enforced metric with every cost parameter that differs from its
        default, e.g. ``label_equivalents(alpha_s=25)``: campaigns priced
        differently are never averaged together in a leaderboard."""
        changed = []
        for metric in sorted(self.costs):
            defaults = _jsonable(COSTS.defaults(metric))
            changed += [f"{metric}.{k}={json.dumps(v)}" for k, v in sorted(self.costs[metric].items())
                        if defaults.get(k, object()) != v]
        return f"{self.budget_metric}({','.join(changed)})" if changed else self.budget_metric

    def reference(self) -> "CampaignSpec":
        """The full-supervision campaign this one is measured against.

        Same dataset, learner, cost models, validation and seed; every pool
        mask bought in round 0, without annotator noise (the reference is
        clean full supervision) and with an unlimited budget. Resources and
        benchmark name carry over but are not part of the id, so one
        reference serves every strategy and budget of a grid.
        """
        return CampaignSpec(
            dataset=self.dataset, dataset_params=self.dataset_params, strategy=REFERENCE_STRATEGY,
            costs=self.costs, budget_metric=self.budget_metric, budget=REFERENCE_BUDGET, rounds=1, seed=self.seed,
            initial_masks=0, learner=self.learner, validation=self.validation, benchmark=self.benchmark,
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, timeout_s=self.timeout_s,
            strategy_process=self.strategy_process, dense_outputs_cap_gib=self.dense_outputs_cap_gib,
        )

    @property
    def is_reference(self) -> bool:
        return self.strategy == REFERENCE_STRATEGY

    def param_columns(self) -> dict[str, Any]:
        """``p_<component>_<name>`` columns (benchopt convention); non-scalars as
        JSON with sorted keys, so the order parameters were given in never
        changes a column."""
        def cell(v: Any) -> Any:
            return v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v, sort_keys=True)

        cols: dict[str, Any] = {}
        cols.update({f"p_dataset_{k}": cell(v) for k, v in self.dataset_params.items()})
        cols.update({f"p_strategy_{k}": cell(v) for k, v in self.strategy_params.items()})
        for metric, params in self.costs.items():
            cols.update({f"p_cost_{metric}_{k}": cell(v) for k, v in params.items()})
        cols.update({f"p_learner_{k}": cell(v) for k, v in self.learner.to_dict().items()})
        cols.update({f"p_noise_{k}": cell(v) for k, v in self.noise.to_dict().items()})
        return cols
