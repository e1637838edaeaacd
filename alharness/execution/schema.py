"""The benchmark file's schema: its tables, their keys, types and ranges (pydantic).

``check_file`` validates a parsed TOML document in pydantic's strict mode:
no coercion (``"5"`` is no integer, ``true`` is no number, ``1.5`` is no
integer), NaN and infinities refused, unknown keys refused. It only checks;
the loader (``benchmark.py``) goes on with the document's own values, so a
campaign id never depends on how a value was converted. Plugin tables
(``[[datasets]]``, ``[[strategies]]``, ``[costs.<metric>]``) are checked
here for their shape; their parameters are checked against the plugin's
annotated signature when the campaigns are built (``Registry.check_types``).

Every error is one line naming the file, the table, the key, the value and
what was expected.
"""

from __future__ import annotations

import functools
import inspect
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alharness.campaign.reference import REFERENCE_BUDGET
from alharness.campaign.spec import (DENSE_OUTPUTS_CAP_GIB, MAX_CPUS, MAX_DENSE_OUTPUTS_CAP_GIB, MAX_GPUS, MIN_BUDGET,
                                     RESOURCE_FIELDS, VALIDATION_CHOICES, CampaignSpec, check_gpus)
from alharness.errors import ConfigError
from alharness.results.claims import RANKED_METRICS, SCORE_METRICS
from alharness.registry import describe_type, param_types, show, type_problem

# Names that become paths (results/<benchmark name>): letters, digits, '.',
# '_' and '-', starting with a letter or digit (no '..', no hidden file, no
# NUL, newline or separator).
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
SAFE_NAME_TEXT = "a name of at most 100 letters, digits, '.', '_' or '-', starting with a letter or digit"
MAX_ROUNDS = 10_000

Seed = Annotated[int, Field(ge=0)]
Budget = Annotated[float, Field(ge=MIN_BUDGET, le=REFERENCE_BUDGET)]
NonEmpty = Field(min_length=1)


class _Table(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


MAX_SEEDS = 10_000
SeedList = Seed | Annotated[list[Seed], NonEmpty]
SEEDS_TABLE_TEXT = ('a table { min = 3, max = 20, until = "settled", rank_by = "final_miou" | "auc", per_wave = 1 } '
                    "(integers >= 1)")


class SeedsTable(_Table):
    """``seeds = { min = 3, max = 20, until = "settled" }``: adaptive seeding
    (``alharness.execution.adaptive_seeds``); seeds 0 .. max-1 are used."""

    min: Annotated[int, Field(ge=1, le=MAX_SEEDS)]
    max: Annotated[int, Field(ge=1, le=MAX_SEEDS)]
    until: Literal["settled"] = "settled"
    rank_by: Literal["final_miou", "auc"] = "final_miou"
    per_wave: Annotated[int, Field(ge=1, le=MAX_SEEDS)] = 1


class BenchmarkTable(_Table):
    """``[benchmark]``."""

    name: Annotated[str, Field(pattern=SAFE_NAME)]
    description: str = ""
    seeds: SeedList | SeedsTable = [0]
    budget: Budget | Annotated[list[Budget], NonEmpty]
    budget_metric: str
    rounds: Annotated[int, Field(ge=1, le=MAX_ROUNDS)]
    initial_masks: Annotated[int, Field(ge=0)] = 0
    validation: Literal[VALIDATION_CHOICES] = "none"  # type: ignore[valid-type]
    reference: bool = False


class ResourcesTable(_Table):
    """``[resources]``: per campaign. Other resource fields of the spec
    (``RESOURCE_FIELDS``) pass through, checked by the spec."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)
    num_cpus: Annotated[float, Field(gt=0, le=MAX_CPUS)] = 1
    # Above 1 only whole GPUs (checked after the schema, see check_file).
    num_gpus: Annotated[float, Field(ge=0, le=MAX_GPUS)] = 0
    # Whole-pool output arrays for a strategy that does not stream (alharness.campaign.loop).
    dense_outputs_cap_gib: Annotated[float, Field(gt=0, le=MAX_DENSE_OUTPUTS_CAP_GIB)] = DENSE_OUTPUTS_CAP_GIB


Grid = dict[str, Annotated[list[Any], NonEmpty]]


class PluginTable(BaseModel):
    """One ``[[datasets]]`` / ``[[strategies]]`` entry: its name, its parameters, a grid."""

    model_config = ConfigDict(strict=True, extra="allow")
    name: str
    grid: Grid = {}


class CostTable(BaseModel):
    """``[costs.<metric>]``: the cost model's parameters and a grid."""

    model_config = ConfigDict(strict=True, extra="allow")
    grid: Grid = {}


class ClaimTable(_Table):
    """One ``[[claims]]`` entry: a paper's headline that the report judges
    (``alharness.results.claims``). ``a`` and ``b`` name strategies as the
    leaderboard labels them, or by plugin name where that is unambiguous."""

    says: str
    kind: Literal["beats", "within", "cheaper", "no_single_best", "outscores"]
    # every kind but "no_single_best", which is about the b's alone
    a: str | None = None
    # every kind but "outscores", which compares two scores of a's own campaigns
    b: str | Annotated[list[str], NonEmpty] | None = None
    # the ranked metrics, or for "outscores" the final scores (claims.SCORE_METRICS)
    metric: Literal[RANKED_METRICS + SCORE_METRICS] = "final_miou"
    # "outscores": the score metric is compared with
    than: Literal[SCORE_METRICS] | None = None
    # "within": a's shortfall against the best b, as a fraction of that b's mean.
    margin: Annotated[float, Field(ge=0, le=1)] = 0.02
    # "cheaper": the cost metric read (default: the budget's own) and the share
    # of full supervision's final mIoU to reach.
    cost: str | None = None
    reach: Annotated[float, Field(gt=0, le=1)] = 0.95


class BenchmarkFile(_Table):
    """The whole file."""

    benchmark: BenchmarkTable
    resources: ResourcesTable = ResourcesTable()
    datasets: Annotated[list[PluginTable], NonEmpty]
    strategies: Annotated[list[PluginTable], NonEmpty]
    costs: dict[str, CostTable] = {}
    learner: dict[str, Any] = {}  # LearnerConfig checks its fields
    noise: dict[str, Any] = {}  # NoiseConfig checks its fields
    claims: list[ClaimTable] = []


_TABLES = {"benchmark": BenchmarkTable, "resources": ResourcesTable}
_PLUGIN_TABLES = {"datasets": PluginTable, "strategies": PluginTable}
_EXPECTED = {
    ("benchmark", "name"): SAFE_NAME_TEXT,
    "grid": "a table of non-empty lists (grid = { parameter = [value, ...] })",
    "datasets": "at least one [[datasets]] table with a 'name'",
    "strategies": "at least one [[strategies]] table with a 'name'",
    "costs": "a table of [costs.<metric>] tables",
    "claims": "a list of [[claims]] tables (says, kind, a, b)",
}


def check_file(doc: dict[str, Any], where: str) -> BenchmarkFile:
    """Validate the document's structure and scalar values; raise one ConfigError line."""
    unknown = sorted(set(doc.get("resources", {}) if isinstance(doc.get("resources"), dict) else ())
                     - set(ResourcesTable.model_fields) - set(RESOURCE_FIELDS))
    if unknown:
        raise ConfigError(unknown_keys(where, "[resources]", unknown, set(ResourcesTable.model_fields) | set(RESOURCE_FIELDS)))
    try:
        checked = BenchmarkFile.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(_message(exc, doc, where)) from None
    check_gpus(f"{where}: [resources]", checked.resources.num_gpus)
    _check_other_resources(doc.get("resources", {}), where)
    return checked


@functools.cache
def _spec_types() -> dict[str, Any]:
    return param_types(CampaignSpec, dict(inspect.signature(CampaignSpec).parameters))


def _check_other_resources(table: dict[str, Any], where: str) -> None:
    """The spec's other resource fields, against their annotations there
    (the spec checks their ranges when the campaigns are built)."""
    for key, value in table.items():
        if key not in ResourcesTable.model_fields and key in _spec_types():
            problem = type_problem(_spec_types()[key], value)
            if problem:
                raise ConfigError(f"{where}: [resources] {key} must be {problem}, got {show(value)}")


def unknown_keys(where: str, table: str, keys: list[str], valid: set[str]) -> str:
    """The one-line error for keys a table does not have."""
    prefix = f"{where}: {table}:" if table else f"{where}:"
    return f"{prefix} unknown key(s) {', '.join(map(repr, keys))}; valid keys: {', '.join(sorted(valid))}"


def _locate(loc: tuple, doc: dict[str, Any]) -> tuple[str, str | None, Any, Any]:
    """(table in words, key or None, the document's value there, its model or annotation)."""
    top = loc[0]
    if top in _TABLES:
        model = _TABLES[top]
        if len(loc) == 1:
            return f"[{top}]", None, doc.get(top), model
        key = loc[1]
        return f"[{top}]", str(key), doc[top].get(key), model.model_fields.get(key)
    if top in _PLUGIN_TABLES and len(loc) == 2 and isinstance(loc[1], int):
        return f"[[{top}]] entry {loc[1] + 1}", None, doc[top][loc[1]], PluginTable
    if top in _PLUGIN_TABLES and len(loc) >= 3 and isinstance(loc[1], int):
        entry = doc[top][loc[1]]
        label = f"{entry['name']!r}" if isinstance(entry.get("name"), str) else f"entry {loc[1] + 1}"
        return f"[[{top}]] {label}", str(loc[2]), entry.get(loc[2]), PluginTable.model_fields.get(loc[2])
    if top == "claims" and len(loc) >= 2 and isinstance(loc[1], int):
        entry = doc[top][loc[1]]
        if len(loc) == 2 or not isinstance(entry, dict):
            return f"[[claims]] entry {loc[1] + 1}", None, entry, ClaimTable
        return f"[[claims]] entry {loc[1] + 1}", str(loc[2]), entry.get(loc[2]), ClaimTable.model_fields.get(loc[2])
    if top == "costs" and len(loc) >= 3:
        return f"[costs.{loc[1]}]", str(loc[2]), doc[top][loc[1]].get(loc[2]), CostTable.model_fields.get(loc[2])
    if top == "costs" and len(loc) == 2:
        return f"[costs.{loc[1]}]", None, doc[top][loc[1]], CostTable
    return f"[{top}]" if top in doc else str(top), None, doc.get(top), BenchmarkFile.model_fields.get(top)


def _message(exc: ValidationError, doc: dict[str, Any], where: str) -> str:
    errors = exc.errors()
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    if extra:
        loc = extra[0]["loc"][:-1]
        keys = sorted(str(e["loc"][-1]) for e in extra if e["loc"][:-1] == loc)
        if tuple(loc[:2]) == ("benchmark", "seeds"):
            return unknown_keys(where, "[benchmark] seeds", keys, set(SeedsTable.model_fields))
        if loc and loc[0] == "claims":
            return unknown_keys(where, f"[[claims]] entry {loc[1] + 1}", keys, set(ClaimTable.model_fields))
        model = _TABLES.get(loc[0]) if loc else BenchmarkFile
        return unknown_keys(where, f"[{loc[0]}]" if loc else "", keys, set((model or BenchmarkFile).model_fields))
    loc = errors[0]["loc"]
    table, key, value, field = _locate(loc, doc)
    if errors[0]["type"] == "missing":
        if key:
            return f"{where}: {table} needs {key!r}"
        return f"{where}: needs {_EXPECTED[loc[0]]}" if loc[0] in _EXPECTED else f"{where}: missing [{loc[0]}] table"
    if (table, key) == ("[benchmark]", "seeds"):  # the union's two shapes, told apart by the value's
        expected = SEEDS_TABLE_TEXT if isinstance(value, dict) else describe_type(SeedList)
        return f"{where}: [benchmark] seeds must be {expected}, got {show(value)}"
    return f"{where}: {table}{' ' + key if key else ''} must be {_expected(loc[0], key, field, table)}, got {show(value)}"


def _expected(top: str, key: str | None, field: Any, table: str = "") -> str:
    """What a key (or, with no key, a whole table) should have been, in words."""
    if key is None and table.startswith("[costs."):
        return "a table of the cost model's parameters"
    if key is None and table.startswith("[[claims]]"):
        return "a table with says, kind, a and b"
    if key is None and table.startswith("[["):
        return "a table with a 'name' and the plugin's parameters"
    for k in ((top, key), key, top if key is None else None):
        if k in _EXPECTED:
            return _EXPECTED[k]
    if key is None or field is None:
        return "a table"
    return describe_type(Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation)
