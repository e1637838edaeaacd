"""One registry mechanism for every plugin kind (strategies, datasets, costs, models).

Built-in plugins register with a decorator when their module is imported.
Installed packages add more through entry-point groups
(``alharness.strategies``, ``alharness.datasets``, ``alharness.costs``,
``alharness.models``, ``alharness.pipelines``); an entry point may name a module (imported so its
decorators run) or an object (registered under the entry point's name).
Entry points are loaded lazily, on the first lookup, as fsspec does.

Listing the plugins (``Registry.catalogue``, ``alharness list``) imports
none of them when nothing changed since the last listing: their names,
one-line descriptions and import failures are cached, keyed by the entry
points, the installed distributions and the plugin packages' source files
(``LISTING_FORMAT``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import sys
import threading
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

from alharness.cache_root import cache_root
from alharness.errors import ConfigError, PluginError

T = TypeVar("T")

#: Version of the cached plugin listings (see the module's docstring).
LISTING_FORMAT = 1


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered plugin: its name, factory and a one-line description."""

    name: str
    factory: Callable[..., T]
    description: str
    origin: str


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _stats(places: list[str]) -> list[tuple[str, int, int]]:
    """(path, mtime, size) of every Python source file at ``places`` (files, or package folders walked)."""
    out = []
    for place in places:
        if os.path.isfile(place):
            st = os.stat(place)
            out.append((place, st.st_mtime_ns, st.st_size))
            continue
        for folder, subdirs, names in os.walk(place):
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
            for name in sorted(names):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(folder, name))
                    out.append((os.path.join(folder, name), st.st_mtime_ns, st.st_size))
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, doc: Any) -> None:
    """Write atomically; a cache that cannot be written is no error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)
    except OSError:
        pass


def _origin(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"


def _first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(Generic[T]):
    """Name → factory table for one plugin kind, with entry-point discovery.

    ``validate(name, factory)``, if given, runs on every registration (decorator
    and entry point alike) and raises PluginError to refuse a broken plugin
    there, before any campaign uses it.
    """

    def __init__(self, kind: str, group: str, builtin_modules: tuple[str, ...] = (),
                 validate: Callable[[str, Any], None] | None = None):
        self.kind = kind
        self.group = group
        self._builtin_modules = builtin_modules
        self._validate = validate
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False
        self._lock = threading.RLock()
        # Entry points that failed to import: "name = value: error", warned about once.
        self.load_errors: list[str] = []
        self._warnings: list[str] = []  # the warning printed for each of them
        self._types: dict[str, dict[str, Any]] = {}
        self._params: dict[str, tuple[Any, dict[str, inspect.Parameter]]] = {}  # name -> ((factory, defaults), parameters)

    # -- registration -------------------------------------------------------
    def register(self, name: str, description: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register a class or factory function under ``name``."""
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise PluginError(f"invalid {self.kind} name {name!r}: use letters, digits, '_' or '-'")

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if self._validate is not None:
                self._validate(name, factory)
            with self._lock:
                old = self._entries.get(name)
                origin = _origin(factory)
                if old is not None and old.origin != origin:
                    raise PluginError(
                        f"{self.kind} {name!r} is registered twice: by {old.origin} and by {origin}"
                    )
                self._entries[name] = Entry(
                    name=name,
                    factory=factory,
                    description=description or _first_doc_line(factory),
                    origin=origin,
                )
                self._types.pop(name, None)
            if hasattr(factory, "__dict__") and inspect.isclass(factory):
                # Classes learn their registry key, so instances can report it.
                try:
                    factory.name = name  # type: ignore[attr-defined]
                except (AttributeError, TypeError):
                    pass
            return factory

        return decorate

    # -- discovery ----------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            self._warnings = []  # this load's (what a cached listing repeats)
            for module in self._builtin_modules:
                importlib.import_module(module)
            for ep in importlib.metadata.entry_points(group=self.group):
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken third-party plugin must not hide the others
                    self._skip(ep, exc)
                    continue
                if inspect.ismodule(obj):
                    continue  # importing it ran its @register decorators
                if ep.name not in self._entries:
                    self.register(ep.name)(obj)

    def _skip(self, ep: Any, exc: BaseException) -> None:
        """Warn (once: a registry loads once per process) about an entry point
        that failed to import, and go on with the others."""
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        self.load_errors.append(f"{ep.name} = {ep.value}: {detail}")
        self._warnings.append(f"warning: skipped {self.kind} plugin entry point {ep.name!r} = {ep.value!r} "
                              f"(group {self.group}): it failed to import: {detail}")
        print(self._warnings[-1], file=sys.stderr)

    # -- listing without importing ------------------------------------------
    def catalogue(self) -> list[tuple[str, str]]:
        """``(name, one-line description)`` of every plugin, sorted by name.

        When the registry is not loaded yet, from the cached listing if the
        plugins cannot have changed since (same entry points, installed
        distributions and plugin source files; an entry point that failed to
        import is warned about again); otherwise the plugins are loaded and
        the listing cached for the next time."""
        if not self._loaded:
            key, path = self._listing_key(), self._listing_path()
            cached = _read_json(path)
            if cached is not None and cached.get("key") == key:
                for line in cached["warnings"]:
                    print(line, file=sys.stderr)
                listed = dict(cached["entries"])  # and whatever registered in this process already
                listed.update({e.name: e.description for e in self._entries.values()})
                return sorted(listed.items())
            entries = [(e.name, e.description) for e in self.entries()]
            _write_json(path, {"key": key, "entries": entries, "warnings": self._warnings})
            return entries
        return [(e.name, e.description) for e in self.entries()]

    def _listing_path(self) -> Path:
        # Next to the references, under the one cache root (alharness.cache_root).
        return cache_root() / "plugins" / f"{self.group}.json"

    def _listing_key(self) -> str:
        """What a listing depends on: the entry points, the installed distributions
        and every source file of the packages that register plugins (stat only)."""
        eps = sorted((ep.name, ep.value) for ep in importlib.metadata.entry_points(group=self.group))
        tops = {"alharness", *(m.split(".")[0] for m in self._builtin_modules),
                *(value.split(":")[0].split(".")[0] for _, value in eps)}
        files: list[Any] = []
        for top in sorted(tops):
            try:
                spec = importlib.util.find_spec(top)  # a top-level name: located, not imported
            except (ImportError, ValueError):
                spec = None
            places = list(spec.submodule_search_locations or []) if spec is not None and spec.submodule_search_locations \
                else [spec.origin] if spec is not None and spec.origin else []
            files.append([top, *_stats(places)])
        # Installed distributions by their metadata folders' names (name and version); not the working
        # directory's (on sys.path as '' with -c and -m only: the key would change with the way of starting).
        here = {"", os.getcwd()}
        dists = sorted({n for d in sys.path if d not in here for n in _listdir(d)
                        if n.endswith((".dist-info", ".egg-info", ".egg-link", ".pth"))})
        blob = json.dumps([LISTING_FORMAT, sys.version, sys.prefix, self.kind, eps, files, dists])
        return hashlib.sha256(blob.encode()).hexdigest()

    # -- lookup -------------------------------------------------------------
    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        self._load()
        for name in sorted(self._entries):
            yield self._entries[name]

    def get(self, name: str) -> Entry[T]:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            broken = f" (entry points that failed to import: {'; '.join(self.load_errors)})" if self.load_errors else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names()) or '(none)'}{broken}"
            ) from None

    def is_builtin(self, name: str) -> bool:
        """Whether ``name`` comes from one of the core's built-in modules (not from a plugin package)."""
        module = getattr(self.get(name).factory, "__module__", "") or ""
        return any(module == m or module.startswith(m + ".") for m in self._builtin_modules)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """Keyword parameters the factory accepts (its configuration surface)."""
        factory = self.get(name).factory
        target = factory.__init__ if inspect.isclass(factory) else factory
        # inspect.signature is ~0.4 ms: once per factory and set of defaults (a
        # default changed in place, as by a reloaded module, is seen).
        key = (factory, getattr(target, "__defaults__", None), getattr(target, "__kwdefaults__", None))
        cached = self._params.get(name)
        if cached is None or any(a is not b for a, b in zip(cached[0], key)):
            params = dict(inspect.signature(target).parameters)
            params.pop("self", None)
            cached = self._params[name] = (key, {
                k: p
                for k, p in params.items()
                if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            })
        return dict(cached[1])

    def check_params(self, name: str, params: dict[str, Any], where: str) -> None:
        """Raise ConfigError naming any parameter the plugin does not accept."""
        accepted = self.parameters(name)
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ConfigError(
                f"{where}: {self.kind} {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"valid parameters: {', '.join(sorted(accepted)) or '(none)'}"
            )

    def check_types(self, name: str, params: dict[str, Any], where: str) -> None:
        """Raise ConfigError for a parameter whose value does not fit the
        annotation in the factory's signature (ranges ride along as
        ``Annotated[int, Field(ge=1)]``). Only checks: values are never
        converted, so what enters a campaign id is what the file said."""
        with self._lock:
            if name not in self._types:
                self._types[name] = param_types(self.get(name).factory, self.parameters(name))
            types = self._types[name]
        for key, value in params.items():
            if key in types:
                problem = type_problem(types[key], value)
                if problem:
                    raise ConfigError(f"{where}: {key} must be {problem}, got {show(value)}")

    def defaults(self, name: str) -> dict[str, Any]:
        return {
            k: p.default for k, p in self.parameters(name).items() if p.default is not inspect.Parameter.empty
        }

    def create(self, name: str, **params: Any) -> T:
        """Build the plugin ``name`` with keyword ``params`` (validated first)."""
        self.check_params(name, params, where=f"{self.kind} {name!r}")
        return self.get(name).factory(**params)


# -- typed parameters ------------------------------------------------------------
# A plugin declares its parameters' types (and ranges, as
# ``Annotated[int, Field(ge=1)]``) in its signature; they are checked with
# pydantic in strict JSON mode: no str -> int, float -> int or bool -> number
# coercion, NaN and infinities refused, a TOML list fits a tuple. pydantic is
# imported on first use, so importing the registry stays cheap.

def _resolve(annotation: Any, namespace: dict[str, Any]) -> Any:
    """An annotation object (PEP 563 strings evaluated in the plugin's module); Any if unknown."""
    if annotation is inspect.Parameter.empty:
        return Any
    if isinstance(annotation, str):
        try:
            return eval(annotation, namespace)  # what typing.get_type_hints does
        except Exception:
            return Any
    return annotation


def param_types(factory: Any, params: dict[str, inspect.Parameter]) -> dict[str, Any]:
    """``{parameter: (annotation, TypeAdapter)}`` for the annotated parameters pydantic can check."""
    from pydantic import ConfigDict, TypeAdapter

    target = factory.__init__ if inspect.isclass(factory) else factory
    namespace = dict(vars(sys.modules[factory.__module__])) if factory.__module__ in sys.modules else {}
    namespace.update(getattr(target, "__globals__", {}))
    out = {}
    for key, p in params.items():
        annotation = _resolve(p.annotation, namespace)
        if annotation is Any:
            continue
        try:
            out[key] = (annotation, TypeAdapter(annotation, config=ConfigDict(allow_inf_nan=False)))
        except Exception:  # a type pydantic cannot check (an arbitrary class): the plugin checks it
            continue
    return out


def type_problem(typed: tuple[Any, Any], value: Any) -> str | None:
    """None if ``value`` fits; else what was expected, in words."""
    import json

    from pydantic import ValidationError

    annotation, adapter = typed
    try:
        adapter.validate_json(json.dumps(value), strict=True)
    except (TypeError, ValueError, ValidationError):  # json refuses dates and times: no parameter takes them
        return describe_type(annotation)
    return None


def show(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, cut to one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


_NOUNS = {int: ("an integer", "integers"), float: ("a finite number", "finite numbers"), bool: ("true or false", "booleans"),
          str: ("a string", "strings"), dict: ("a table", "tables"), list: ("a list", "lists"),
          tuple: ("a list", "lists")}


def _bounds(meta: list[Any]) -> str:
    """Constraints from ``Annotated`` metadata (annotated_types objects, or a
    pydantic ``Field`` holding them) in words: " >= 1", " in [0, 1]"."""
    keys = ("ge", "gt", "le", "lt", "min_length")
    found: dict[str, Any] = {}
    for m in meta:
        for c in [m, *(getattr(m, "metadata", None) or ())]:
            found.update({k: getattr(c, k) for k in keys if getattr(c, k, None) is not None})
    num = {k: str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}" for k, v in found.items()}
    lo = f"[{num['ge']}" if "ge" in found else f"({num['gt']}" if "gt" in found else ""
    hi = f"{num['le']}]" if "le" in found else f"{num['lt']})" if "lt" in found else ""
    if lo and hi:
        text = f" in {lo}, {hi}"
    elif lo:
        text = f" {'>=' if lo[0] == '[' else '>'} {lo[1:]}"
    elif hi:
        text = f" {'<=' if hi[-1] == ']' else '<'} {hi[:-1]}"
    else:
        text = ""
    if "min_length" in found:
        text += f" (at least {found['min_length']})"
    return text


def _bare(annotation: Any) -> Any:
    """The type under ``Annotated`` (its metadata dropped)."""
    import typing

    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation


def describe_type(annotation: Any, plural: bool = False) -> str:
    """An annotation in words: ``Annotated[int, Field(ge=1)]`` -> "an integer >= 1"."""
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return describe_type(args[0], plural) + _bounds(list(args[1:]))
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 2 and typing.get_origin(_bare(options[1])) is list and typing.get_args(_bare(options[1]))[0] == options[0]:
            return f"{describe_type(options[0], plural)} or a non-empty list of them"  # a value or a grid axis
        return " or ".join(describe_type(a, plural) for a in options)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (list, tuple, set, frozenset) or (origin is not None and getattr(origin, "__name__", "") == "Sequence"):
        items = [a for a in args if a is not Ellipsis]
        if origin is tuple and items and Ellipsis not in args:
            kinds = {describe_type(a, plural=True) for a in items}
            inner = f"{len(items)} {kinds.pop()}" if len(kinds) == 1 else ", ".join(describe_type(a) for a in items)
            return f"lists of {inner}" if plural else f"a list of {inner}"
        inner = describe_type(items[0], plural=True) if items else "values"
        return f"lists of {inner}" if plural else f"a list of {inner}"
    if origin is dict:
        inner = describe_type(args[1], plural=True) if len(args) == 2 else "values"
        return f"tables of {inner}" if plural else f"a table of {inner}"
    singular, many = _NOUNS.get(origin or annotation, (getattr(annotation, "__name__", str(annotation)),) * 2)
    return many if plural else singular


def _validate_strategy(name: str, obj: Any) -> None:
    """Refuse a strategy that is not a concrete subclass of alharness.Strategy.

    Only classes: registration tells the class its name (instances report it),
    and a factory function's product could only be checked when a campaign
    builds it, too late for a one-line error at registration."""
    # Imported on use: the registry is imported by every plugin module, so it
    # keeps to alharness.errors at import time (no cycle through the contract).
    from alharness.contract.strategy import Strategy

    must = "must subclass alharness.Strategy and implement propose(ctx)"
    if not inspect.isclass(obj):
        raise PluginError(f"strategy {name!r}: {_origin(obj)} is not a class; a strategy {must}")
    if not issubclass(obj, Strategy):
        raise PluginError(f"strategy {name!r}: class {_origin(obj)} does not subclass alharness.Strategy; a strategy {must}")
    missing = sorted(getattr(obj, "__abstractmethods__", ()))
    if missing:
        raise PluginError(f"strategy {name!r}: class {_origin(obj)} does not implement {', '.join(missing)}; "
                          f"a strategy {must}")


# Built-in strategies come through the entry point in pyproject.toml, like any
# plugin package; the core registers only the full-supervision reference.
STRATEGIES: Registry[Any] = Registry("strategy", "alharness.strategies", ("alharness.campaign.reference",),
                                     validate=_validate_strategy)
DATASETS: Registry[Any] = Registry("dataset", "alharness.datasets", ("alharness.datasets",))
COSTS: Registry[Any] = Registry("cost model", "alharness.costs", ("alharness.annotation.costs",))
MODELS: Registry[Any] = Registry("model", "alharness.models", ("alharness.learner.models",))
# Learner pipelines: how a campaign turns bought labels into a scored network
# (one network, or the mask-guided paper's BASIS annotation -> segmentation pair).
PIPELINES: Registry[Any] = Registry("pipeline", "alharness.pipelines", ("alharness.learner.pipeline",))

REGISTRIES: dict[str, Registry[Any]] = {
    "strategies": STRATEGIES,
    "datasets": DATASETS,
    "costs": COSTS,
    "models": MODELS,
    "pipelines": PIPELINES,
}

register_strategy = STRATEGIES.register
register_dataset = DATASETS.register
register_cost = COSTS.register
register_model = MODELS.register
register_pipeline = PIPELINES.register
