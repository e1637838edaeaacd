"""Benchmark files (TOML) → validated grid of CampaignSpecs.

Every key is checked before anything is scheduled: a typo is an error that
names the file, the table and the valid keys.

Plugin tables (``[[datasets]]``, ``[[strategies]]``, ``[costs.<metric>]``)
hold the plugin's parameters directly, and an optional ``grid`` sub-table
whose lists are expanded as a Cartesian product.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alharness.errors import ConfigError
from alharness.learner import LearnerConfig
from alharness.campaign.spec import CampaignSpec

_TOP = {"benchmark", "resources", "datasets", "strategies", "costs", "learner", "noise"}
_BENCH = {"name", "description", "seeds", "budget", "budget_metric", "rounds", "initial_masks", "validation", "reference"}
_RESOURCES = {"num_cpus", "num_gpus"}
_LEARNER = set(LearnerConfig.__dataclass_fields__)


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    specs: tuple[CampaignSpec, ...]
    source: str = ""


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(allowed))}")


def _as_list(value: Any, where: str, kind: type | tuple[type, ...]) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(f"{where}: must not be empty")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, kind):
            raise ConfigError(f"{where}: expected {getattr(kind, '__name__', kind)} or a list of them, got {v!r}")
    return values


def _expand(entry: dict, where: str) -> list[dict]:
    """Plain params × the Cartesian product of ``grid`` lists."""
    params = {k: v for k, v in entry.items() if k not in ("name", "grid")}
    grid = entry.get("grid", {})
    if not isinstance(grid, dict):
        raise ConfigError(f"{where}.grid: must be a table of lists")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{where}.grid.{k}: must be a non-empty list of values")
        if k in params:
            raise ConfigError(f"{where}: {k!r} is given both as a parameter and in grid")
    keys = sorted(grid)
    return [{**params, **dict(zip(keys, combo))} for combo in itertools.product(*(grid[k] for k in keys))]


def _plugins(doc: dict, key: str, where: str) -> list[tuple[str, dict]]:
    entries = doc.get(key)
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{where}: needs at least one [[{key}]] table with a 'name'")
    out = []
    for i, e in enumerate(entries):
        if "name" not in e or not isinstance(e["name"], str):
            raise ConfigError(f"{where}: [[{key}]] entry {i + 1} has no 'name'")
        out += [(e["name"], p) for p in _expand(e, f"{where}: [[{key}]] {e['name']!r}")]
    return out


def parse_benchmark(doc: dict, source: str = "<benchmark>") -> Benchmark:
    """Validate a parsed benchmark document and expand it into campaign specs."""
    where = source
    _check_keys(doc, _TOP, where)
    bench = doc.get("benchmark")
    if not isinstance(bench, dict):
        raise ConfigError(f"{where}: missing [benchmark] table")
    _check_keys(bench, _BENCH, f"{where}: [benchmark]")
    for required in ("name", "budget", "budget_metric", "rounds"):
        if required not in bench:
            raise ConfigError(f"{where}: [benchmark] needs {required!r}")
    name = bench["name"]
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise ConfigError(f"{where}: [benchmark] name must be a non-empty string without '/', '\\' or spaces, got {name!r}")
    seeds = _as_list(bench.get("seeds", [0]), f"{where}: [benchmark] seeds", int)
    budgets = _as_list(bench["budget"], f"{where}: [benchmark] budget", (int, float))

    resources = doc.get("resources", {})
    _check_keys(resources, _RESOURCES, f"{where}: [resources]")
    learner_doc = doc.get("learner", {})
    _check_keys(learner_doc, _LEARNER, f"{where}: [learner]")
    try:
        learner = LearnerConfig(**learner_doc)
    except ConfigError as exc:
        raise ConfigError(f"{where}: [learner] {exc}") from None

    datasets = _plugins(doc, "datasets", where)
    strategies = _plugins(doc, "strategies", where)
    costs_doc = doc.get("costs", {})
    if not isinstance(costs_doc, dict):
        raise ConfigError(f"{where}: [costs] must be a table of [costs.<metric>] tables")
    cost_axes = [[(m, p) for p in _expand(t, f"{where}: [costs.{m}]")] for m, t in sorted(costs_doc.items())]

    specs: list[CampaignSpec] = []
    seen: dict[str, CampaignSpec] = {}
    for (ds, dsp), (st, stp), cost_combo, budget, seed in itertools.product(
        datasets, strategies, list(itertools.product(*cost_axes)), budgets, seeds
    ):
        try:
            spec = CampaignSpec(
                benchmark=name,
                dataset=ds,
                dataset_params=dsp,
                strategy=st,
                strategy_params=stp,
                costs=dict(cost_combo),
                budget_metric=bench["budget_metric"],
                budget=budget,
                rounds=bench["rounds"],
                initial_masks=bench.get("initial_masks", 0),
                seed=seed,
                learner=learner,
                noise=dict(doc.get("noise", {})),
                validation=bench.get("validation", "none"),
                num_cpus=resources.get("num_cpus", 1),
                num_gpus=resources.get("num_gpus", 0),
            )
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if spec.campaign_id in seen:
            raise ConfigError(f"{where}: two grid entries give the same campaign ({st} on {ds}, seed {seed}); remove the duplicate")
        seen[spec.campaign_id] = spec
        specs.append(spec)
    reference = bench.get("reference", False)
    if not isinstance(reference, bool):
        raise ConfigError(f"{where}: [benchmark] reference must be true or false, got {reference!r}")
    if reference:
        # One full-supervision campaign per (dataset, learner, costs, seed):
        # strategies and budgets share it (spec.reference() drops them).
        for spec in list(specs):
            ref = spec.reference()
            if ref.campaign_id not in seen:
                seen[ref.campaign_id] = ref
                specs.append(ref)
    return Benchmark(name=name, description=str(bench.get("description", "")), specs=tuple(specs), source=source)


def load_benchmark(path: str | Path) -> Benchmark:
    """Read and validate a benchmark TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such benchmark file")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    return parse_benchmark(doc, str(path))
