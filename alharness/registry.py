"""One registry mechanism for every plugin kind (strategies, datasets, costs, models).

Built-in plugins register with a decorator when their module is imported.
Installed packages add more through entry-point groups
(``alharness.strategies``, ``alharness.datasets``, ``alharness.costs``,
``alharness.models``, ``alharness.pipelines``); an entry point may name a module (imported so its
decorators run) or an object (registered under the entry point's name).
Entry points are loaded lazily, on the first lookup, as fsspec does.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import threading
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

from alharness.errors import ConfigError, PluginError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered plugin: its name, factory and a one-line description."""

    name: str
    factory: Callable[..., T]
    description: str
    origin: str


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
            for module in self._builtin_modules:
                importlib.import_module(module)
            for ep in importlib.metadata.entry_points(group=self.group):
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken third-party plugin must not hide the others
                    raise PluginError(
                        f"could not load {self.kind} plugin entry point {ep.name!r} = {ep.value!r} "
                        f"(group {self.group}): {type(exc).__name__}: {exc}"
                    ) from exc
                if inspect.ismodule(obj):
                    continue  # importing it ran its @register decorators
                if ep.name not in self._entries:
                    self.register(ep.name)(obj)

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
            raise ConfigError(
                f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names()) or '(none)'}"
            ) from None

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """Keyword parameters the factory accepts (its configuration surface)."""
        factory = self.get(name).factory
        target = factory.__init__ if inspect.isclass(factory) else factory
        params = dict(inspect.signature(target).parameters)
        params.pop("self", None)
        return {
            k: p
            for k, p in params.items()
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        }

    def check_params(self, name: str, params: dict[str, Any], where: str) -> None:
        """Raise ConfigError naming any parameter the plugin does not accept."""
        accepted = self.parameters(name)
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ConfigError(
                f"{where}: {self.kind} {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"valid parameters: {', '.join(sorted(accepted)) or '(none)'}"
            )

    def defaults(self, name: str) -> dict[str, Any]:
        return {
            k: p.default for k, p in self.parameters(name).items() if p.default is not inspect.Parameter.empty
        }

    def create(self, name: str, **params: Any) -> T:
        """Build the plugin ``name`` with keyword ``params`` (validated first)."""
        self.check_params(name, params, where=f"{self.kind} {name!r}")
        return self.get(name).factory(**params)


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
