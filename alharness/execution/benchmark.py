"""Benchmark files (TOML) → validated grid of CampaignSpecs.

Every key is checked before anything is scheduled (the schema in
``schema.py``, plugin parameters against their annotated signatures, each
strategy built and each dataset opened once): an error is one line that
names the file, the table, the key, the value and what was expected.

Plugin tables (``[[datasets]]``, ``[[strategies]]``, ``[costs.<metric>]``)
hold the plugin's parameters directly, and an optional ``grid`` sub-table
whose lists are expanded as a Cartesian product.
"""

from __future__ import annotations

import itertools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alharness.errors import ConfigError
from alharness.annotation.noise import NoiseConfig
from alharness.learner import LearnerConfig
from alharness.campaign.spec import RESOURCE_FIELDS, CampaignSpec
from alharness.execution.adaptive_seeds import SeedPolicy
from alharness.execution.schema import check_file, unknown_keys
from alharness.results.claims import Claim, resolve_claims
from alharness.registry import COSTS, DATASETS, STRATEGIES, Registry


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    specs: tuple[CampaignSpec, ...]
    source: str = ""
    # Adaptive seeding (seeds = { min, max, until }): specs hold seeds 0 .. max-1,
    # and the scheduler runs them in waves; None: every spec runs.
    seeding: SeedPolicy | None = None
    # [[claims]]: the headlines the report judges (alharness.results.claims).
    claims: tuple[Claim, ...] = ()


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _one_line(exc: BaseException) -> str:
    """An exception as one line (a plugin's message may hold newlines)."""
    text = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def _seed_list(seeds: Any) -> list[int]:
    """The seeds campaigns are built for: a table (adaptive) gives 0 .. max-1."""
    return list(range(seeds["max"])) if isinstance(seeds, dict) else _as_list(seeds)


def _seed_policy(bench: dict, where: str) -> SeedPolicy | None:
    seeds = bench.get("seeds")
    if not isinstance(seeds, dict):
        return None
    if seeds["min"] > seeds["max"]:
        raise ConfigError(f"{where}: [benchmark] seeds: min ({seeds['min']}) must be <= max ({seeds['max']})")
    return SeedPolicy(**seeds)


def _expand(entry: dict, where: str) -> list[dict]:
    """Plain params × the Cartesian product of ``grid`` lists (shapes checked by the schema)."""
    params = {k: v for k, v in entry.items() if k not in ("name", "grid")}
    grid = entry.get("grid", {})
    for k in grid:
        if k in params:
            raise ConfigError(f"{where}: {k!r} is given both as a parameter and in grid")
    keys = sorted(grid)
    return [{**params, **dict(zip(keys, combo))} for combo in itertools.product(*(grid[k] for k in keys))]


def _plugin(registry: Registry, name: str, entry: dict, at: str) -> list[tuple[str, dict]]:
    """(name, parameters) of each expansion of one plugin table, checked
    against the plugin's signature, so the error names the table ``at``."""
    try:
        registry.get(name)
    except ConfigError as exc:
        raise ConfigError(f"{at}: {exc}") from None
    out = []
    for params in _expand(entry, at):
        registry.check_params(name, params, where=at)
        registry.check_types(name, params, where=at)
        if registry is COSTS:  # cheap to build: its own checks (prices, presets) name the table too
            try:
                registry.create(name, **params)
            except Exception as exc:
                raise ConfigError(f"{at}: {_one_line(exc)}") from None
        out.append((name, params))
    return out


def _entries(doc: dict, key: str, where: str) -> list[tuple[str, dict]]:
    registry = DATASETS if key == "datasets" else STRATEGIES
    return [p for e in doc[key] for p in _plugin(registry, e["name"], e, f"{where}: [[{key}]] {e['name']!r}")]


def _config(cls: type, key: str, table: dict[str, Any], where: str) -> Any:
    """``[learner]`` / ``[noise]`` as their config dataclass, which checks its fields."""
    unknown = sorted(set(table) - set(cls.__dataclass_fields__))
    if unknown:
        raise ConfigError(unknown_keys(where, f"[{key}]", unknown, set(cls.__dataclass_fields__)))
    try:
        return cls(**table)
    except ConfigError as exc:  # "learner.lr must be ...", "learner: ...": the table is named once
        raise ConfigError(f"{where}: [{key}] {_one_line(exc).removeprefix(key + '.').removeprefix(key + ': ')}") from None


def _specs(doc: dict, where: str) -> list[CampaignSpec]:
    """Every (dataset × strategy × cost parameters × budget × seed) campaign, checked."""
    bench = doc["benchmark"]
    if bench["budget_metric"] not in COSTS:
        raise ConfigError(f"{where}: [benchmark] unknown budget_metric {bench['budget_metric']!r}; "
                          f"valid choices: {', '.join(COSTS.names())}")
    learner = _config(LearnerConfig, "learner", doc.get("learner", {}), where)
    noise = _config(NoiseConfig, "noise", doc.get("noise", {}), where)
    resources = {k: v for k, v in doc.get("resources", {}).items() if k in RESOURCE_FIELDS}
    cost_axes = [_plugin(COSTS, m, t, f"{where}: [costs.{m}]") for m, t in sorted(doc.get("costs", {}).items())]
    specs: list[CampaignSpec] = []
    seen: set[str] = set()
    for (ds, dsp), (st, stp), cost_combo, budget, seed in itertools.product(
        _entries(doc, "datasets", where), _entries(doc, "strategies", where),
        list(itertools.product(*cost_axes)), _as_list(bench["budget"]), _seed_list(bench.get("seeds", [0])),
    ):
        try:
            spec = CampaignSpec(
                benchmark=bench["name"], dataset=ds, dataset_params=dsp, strategy=st, strategy_params=stp,
                costs=dict(cost_combo), budget_metric=bench["budget_metric"], budget=budget, rounds=bench["rounds"],
                initial_masks=bench.get("initial_masks", 0), seed=seed, learner=learner,
                noise=noise, validation=bench.get("validation", "none"), **resources,
            )
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{where}: {_one_line(exc)}") from None
        if spec.campaign_id in seen:
            raise ConfigError(f"{where}: two grid entries give the same campaign ({st} on {ds}, seed {seed}); remove the duplicate")
        seen.add(spec.campaign_id)
        specs.append(spec)
    return specs


def _distinct(specs: list[CampaignSpec], kind: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """One (name, effective parameters) per distinct plugin configuration."""
    out = {}
    for s in specs:
        name, params = (s.strategy, s.strategy_params) if kind == "strategies" else (s.dataset, s.dataset_params)
        out.setdefault(json.dumps([name, params], sort_keys=True), (name, params))
    return out


def _construct_strategies(specs: list[CampaignSpec], where: str) -> None:
    """Build each distinct strategy once, so that its own checks run before anything is scheduled."""
    for name, params in _distinct(specs, "strategies").values():
        try:
            STRATEGIES.create(name, **params)
        except Exception as exc:  # whatever a plugin raises, the user gets one line
            raise ConfigError(f"{where}: [[strategies]] {name!r}: {_one_line(exc)}") from None


def _open_datasets(specs: list[CampaignSpec], where: str) -> None:
    """Open each distinct dataset once: a missing file, a size mismatch or a
    colour label image is an error now, not in every campaign after
    scheduling. Cheap after the first time: datasets are cached on disk."""
    for name, params in _distinct(specs, "datasets").values():
        try:
            ds = DATASETS.create(name, **params)
        except Exception as exc:  # a loader's ConfigError, or what a decoder raised
            raise ConfigError(f"{where}: [[datasets]] {name!r}: {_one_line(exc)}") from None
        validation = {s.validation for s in specs if s.dataset == name and s.dataset_params == params} - {"none"}
        if validation and len(ds.splits["val"]) == 0:
            raise ConfigError(f"{where}: [benchmark] validation = {sorted(validation)[0]!r}, but dataset {name!r} "
                              f"has an empty val split (give it one, e.g. n_val, val_fraction)")


def parse_benchmark(doc: dict, source: str = "<benchmark>", *, open_datasets: bool = True) -> Benchmark:
    """Validate a parsed benchmark document and expand it into campaign specs.

    Everything is checked before anything can be scheduled: the file's
    schema, every plugin parameter against its annotated signature, each
    distinct strategy built once, and (``open_datasets``) each distinct
    dataset opened once.
    """
    where = source
    check_file(doc, where)
    bench = doc["benchmark"]
    seeding = _seed_policy(bench, where)
    specs = _specs(doc, where)
    _construct_strategies(specs, where)
    claims = resolve_claims(doc.get("claims", []), (s.strategy_label for s in specs), where, COSTS.names())
    if open_datasets:
        _open_datasets(specs, where)
    if bench.get("reference", False):
        # One full-supervision campaign per (dataset, learner, costs, seed):
        # strategies and budgets share it (spec.reference() drops them).
        seen = {s.campaign_id for s in specs}
        for spec in list(specs):
            ref = spec.reference()
            if ref.campaign_id not in seen:
                seen.add(ref.campaign_id)
                specs.append(ref)
    return Benchmark(name=bench["name"], description=bench.get("description", ""), specs=tuple(specs), source=source,
                     seeding=seeding, claims=claims)


def load_benchmark(path: str | Path, *, open_datasets: bool = True) -> Benchmark:
    """Read and validate a benchmark TOML file (see ``parse_benchmark``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such benchmark file")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    return parse_benchmark(doc, str(path), open_datasets=open_datasets)
