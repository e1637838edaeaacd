"""The package's layering, checked on the source with ``ast`` (nothing is imported).

Every ``import`` / ``from ... import`` statement counts, at module level or
inside a function, and so do ``importlib.import_module("name")`` and
``__import__("name")`` calls with a literal name; relative imports are
resolved. The module names that ``Registry(...)`` loads at first lookup
(its ``builtin_modules``) count as imports for the who-may-import-what
rules but not for the cycle check: they are loaded after every module has
been imported, so they cannot make an import cycle.

The rules (docs/architecture.md explains them):

- only ``alharness/execution/backends/ray.py`` imports ``ray``, and only
  ``alharness/results/plots.py`` imports ``matplotlib`` or ``plotly``;
- a strategy plugin imports from alharness only the contract, the toolkit,
  the registry, the errors and the package's own re-exports, no private
  name, and no other plugin module;
- ``alharness/campaign/`` imports neither results, execution nor the CLI;
- nothing in ``alharness/`` imports the ``strategies`` package (built-in
  plugins come in through the entry point, like anyone else's);
- the contract imports nothing in alharness but itself and the errors;
- the subpackages (and the top-level modules) import each other without a cycle.
"""

from __future__ import annotations

import ast
import functools
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("alharness", "strategies")

RAY_MODULE = "alharness/execution/backends/ray.py"
PLOTS_MODULE = "alharness/results/plots.py"
STRATEGY_MAY_IMPORT = ("alharness.contract", "alharness.toolkit", "alharness.registry", "alharness.errors")
CAMPAIGN_MAY_NOT_IMPORT = ("alharness.results", "alharness.execution", "alharness.cli")
CONTRACT_MAY_IMPORT = ("alharness.contract", "alharness.errors")


@dataclass(frozen=True)
class Import:
    """One imported module (and the name taken from it, for ``from m import name`` where name is no module)."""

    path: str  # relative to the root, '/'-separated
    line: int
    source: str  # the importing module's dotted name
    module: str
    name: str | None
    text: str  # the statement or call as written
    deferred: bool = False  # a Registry builtin module: loaded at first lookup, not at import

    def where(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def _within(module: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _module_names(root: Path) -> dict[str, Path]:
    """Dotted name → file for every module under the scanned folders."""
    out = {}
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _resolve(module: str, package: str, level: int) -> str:
    """``from <level dots><module> import ...`` inside ``package``, as an absolute name."""
    if not level:
        return module
    base = package.split(".")
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, module] if module else base)


def _imports_of(root: Path, name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    src = path.read_text()
    tree = ast.parse(src, str(path))
    rel = path.relative_to(root).as_posix()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    lines = [line.encode() for line in src.splitlines(keepends=True)]

    def text(node: ast.AST) -> str:
        # The statement as written, on one line (ast's offsets count UTF-8 bytes;
        # ast.get_source_segment would re-split the file on every call).
        first, last = node.lineno - 1, node.end_lineno - 1
        seg = b"".join(lines[first : last + 1])
        seg = seg[node.col_offset : len(seg) - len(lines[last]) + node.end_col_offset]
        return " ".join(seg.decode().split())

    def make(node: ast.AST, module: str, imported: str | None = None, deferred: bool = False) -> Import:
        return Import(rel, node.lineno, name, module, imported, text(node), deferred)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield make(node, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", package, node.level)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # `from pkg import sub` imports the module pkg.sub when there is one.
                yield make(node, sub) if sub in modules else make(node, base, alias.name)
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            first = _literal(node.args[0]) if node.args else None
            if called in ("import_module", "__import__") and first is not None:
                anchor = next((_literal(k.value) for k in node.keywords if k.arg == "package"), None)
                if anchor is None and len(node.args) > 1 and called == "import_module":
                    anchor = _literal(node.args[1])
                level = len(first) - len(first.lstrip("."))
                yield make(node, _resolve(first.lstrip("."), anchor or package, level))
            elif called == "Registry":
                arg = node.args[2] if len(node.args) > 2 else next(
                    (k.value for k in node.keywords if k.arg == "builtin_modules"), None)
                for elt in getattr(arg, "elts", ()):
                    if (module := _literal(elt)) is not None:
                        yield make(node, module, deferred=True)


@functools.lru_cache(maxsize=None)
def collect_imports(root: Path = ROOT) -> tuple[Import, ...]:
    """Every import in every module under ``root``'s alharness/ and strategies/."""
    modules = _module_names(root)
    found = (imp for name, path in modules.items() for imp in _imports_of(root, name, path, modules))
    return tuple(sorted(found, key=lambda i: (i.path, i.line)))


def _reexports(imports: tuple[Import, ...]) -> dict[str, str]:
    """Name → module it comes from, for what ``alharness/__init__.py`` imports."""
    return {imp.name: imp.module for imp in imports if imp.path == "alharness/__init__.py" and imp.name}


# -- rules: each returns one message per offending import --------------------------------------------------


def rule_ray(imports: tuple[Import, ...]) -> list[str]:
    return [f"{i.where()}  (only {RAY_MODULE} may import ray)" for i in imports
            if _within(i.module, "ray") and i.path != RAY_MODULE]


def rule_matplotlib(imports: tuple[Import, ...]) -> list[str]:
    return [f"{i.where()}  (only {PLOTS_MODULE} may import matplotlib or plotly)" for i in imports
            if _within(i.module, ("matplotlib", "pylab", "plotly")) and i.path != PLOTS_MODULE]


def rule_strategies(imports: tuple[Import, ...]) -> list[str]:
    reexports = _reexports(imports)
    out = []
    for i in imports:
        if not i.path.startswith("strategies/"):
            continue
        if _within(i.module, "strategies") and i.path != "strategies/__init__.py":
            # The package's __init__ imports its modules: that is how the entry point registers them.
            out.append(f"{i.where()}  (a plugin module must not import another plugin module)")
        if not _within(i.module, "alharness"):
            continue
        if any(_private(p) for p in i.module.split(".")) or (i.name and _private(i.name)):
            out.append(f"{i.where()}  (a strategy must not import a private name)")
        module = reexports.get(i.name, i.module) if i.module == "alharness" else i.module
        if module != "alharness" and not _within(module, STRATEGY_MAY_IMPORT):
            via = f" (re-exported by alharness from {module})" if module != i.module else ""
            out.append(f"{i.where()}{via}  (a strategy may import from alharness only {', '.join(STRATEGY_MAY_IMPORT)})")
    return out


def rule_campaign(imports: tuple[Import, ...]) -> list[str]:
    return [f"{i.where()}  (the campaign must not import {', '.join(CAMPAIGN_MAY_NOT_IMPORT)})" for i in imports
            if i.path.startswith("alharness/campaign/") and _within(i.module, CAMPAIGN_MAY_NOT_IMPORT)]


def rule_no_strategies_in_core(imports: tuple[Import, ...]) -> list[str]:
    return [f"{i.where()}  (alharness must not import the strategies package; it registers through its entry point)"
            for i in imports if i.path.startswith("alharness/") and _within(i.module, "strategies")]


def rule_contract(imports: tuple[Import, ...]) -> list[str]:
    return [f"{i.where()}  (the contract may import from alharness only {', '.join(CONTRACT_MAY_IMPORT)})"
            for i in imports if i.path.startswith("alharness/contract/") and _within(i.module, "alharness")
            and not _within(i.module, CONTRACT_MAY_IMPORT)]


def _node(module: str) -> str | None:
    """``alharness.X`` for a module in subpackage or top-level module X; ``alharness`` for the package itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "alharness" else None


def import_graph(imports: tuple[Import, ...]) -> dict[str, dict[str, Import]]:
    """Node → node it imports → the first import that makes the edge (for the message)."""
    graph: dict[str, dict[str, Import]] = {}
    for i in imports:
        src, dst = _node(i.source), _node(i.module)
        if src and dst and src != dst and not i.deferred:
            graph.setdefault(src, {}).setdefault(dst, i)
            graph.setdefault(dst, {})
    return graph


def find_cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component with more than one node (Tarjan, then BFS)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for comp in components:
        start, members = comp[0], set(comp)
        paths, seen = {start: [start]}, {start}
        frontier = [start]
        cycle = None
        while frontier and cycle is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w == start:
                        cycle = paths[v] + [start]
                        break
                    if w in members and w not in seen:
                        seen.add(w)
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
                if cycle:
                    break
            frontier = nxt
        cycles.append(cycle)
    return sorted(cycles)


def rule_cycles(imports: tuple[Import, ...]) -> list[str]:
    graph = import_graph(imports)
    out = []
    for cycle in find_cycles(graph):
        edges = "; ".join(graph[a][b].where() for a, b in zip(cycle, cycle[1:]))
        out.append(f"import cycle {' -> '.join(cycle)}  ({edges})")
    return out


RULES: dict[str, Callable[[tuple[Import, ...]], list[str]]] = {
    "ray": rule_ray,
    "matplotlib": rule_matplotlib,
    "strategies": rule_strategies,
    "campaign": rule_campaign,
    "no_strategies_in_core": rule_no_strategies_in_core,
    "contract": rule_contract,
    "cycles": rule_cycles,
}


def check_layout(root: Path = ROOT) -> list[str]:
    """Every violation of every rule under ``root``, as 'file:line: import  (why)' lines."""
    imports = collect_imports(Path(root))
    return [msg for rule in RULES.values() for msg in rule(imports)]


# -- the package itself ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_package_keeps_its_layering(rule):
    violations = RULES[rule](collect_imports(ROOT))
    assert not violations, f"layout rule {rule!r} broken:\n" + "\n".join(violations)


def test_the_scan_sees_the_package():
    # Guards against a checker that silently scans nothing (renamed folder, wrong root).
    imports = collect_imports(ROOT)
    assert {i.path.split("/")[0] for i in imports} == set(SCANNED)
    assert any(i.path == RAY_MODULE and i.module == "ray" for i in imports)
    assert any(i.path.startswith("alharness/campaign/") and not i.path.endswith("__init__.py") for i in imports)


# -- the checker can fail --------------------------------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name in ("alharness/__init__.py", "strategies/__init__.py"):
        files.setdefault(name, "")
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            if parent.parts and not (root / parent / "__init__.py").exists():
                (root / parent / "__init__.py").write_text("")
        path.write_text(textwrap.dedent(body))
    return root


def test_the_checker_reports_each_kind_of_violation(tmp_path):
    root = _tree(tmp_path, {
        "alharness/__init__.py": "from alharness.contract.strategy import Strategy\n"
                                 "from alharness.annotation.oracle import Oracle\n",
        "alharness/errors.py": "",
        "alharness/contract/strategy.py": "from alharness.errors import AlharnessError\n"
                                          "from alharness.toolkit import selection\n",
        "alharness/toolkit/selection.py": "",
        "alharness/annotation/oracle.py": "import importlib\n"
                                          "def later():\n"
                                          "    importlib.import_module('alharness.campaign.loop')\n",
        "alharness/campaign/loop.py": "from ..results.store import write\n"
                                      "from alharness.annotation import oracle\n",
        "alharness/results/store.py": "def f():\n    import matplotlib.pyplot as plt\n",
        "alharness/results/plots.py": "import matplotlib\n",
        "alharness/execution/backends/ray.py": "import ray\n",
        "alharness/execution/run.py": "from ray.util import queue\n"
                                      "__import__('strategies.baselines')\n",
        "alharness/registry.py": "from alharness.errors import AlharnessError\n"
                                 "STRATEGIES = Registry('strategy', 'g', ('strategies',))\n",
        "strategies/ok.py": "from alharness import Strategy, __version__\n"
                            "from alharness.contract import Strategy\nfrom alharness.toolkit.selection import pixel_entropy\n"
                            "from alharness.registry import register_strategy\nfrom alharness.errors import ConfigError\n",
        "strategies/bad.py": "from alharness.annotation.oracle import Oracle\n"
                             "from alharness import Oracle\n"
                             "from alharness.toolkit.selection import _helper\n"
                             "from . import ok\n"
                             "def f():\n    import alharness.campaign.loop\n",
    })
    found = check_layout(root)
    text = "\n".join(found)

    def reported(fragment: str) -> bool:
        return any(fragment in line for line in found)

    # strategies: an annotation module, the same through a re-export, a private name, a sibling, in a function
    assert reported("strategies/bad.py:1: from alharness.annotation.oracle import Oracle"), text
    assert reported("strategies/bad.py:2: from alharness import Oracle (re-exported by alharness from alharness.annotation.oracle)"), text
    assert reported("strategies/bad.py:3: from alharness.toolkit.selection import _helper  (a strategy must not import a private name)"), text
    assert reported("strategies/bad.py:4: from . import ok  (a plugin module must not import another plugin module)"), text
    assert reported("strategies/bad.py:6: import alharness.campaign.loop"), text
    assert not reported("strategies/ok.py") and not reported("strategies/__init__.py"), text
    # campaign -> results, through a relative import
    assert reported("alharness/campaign/loop.py:1: from ..results.store import write  (the campaign must not import"), text
    # ray and matplotlib outside their one module; the allowed ones are not reported
    assert reported("alharness/execution/run.py:1: from ray.util import queue  (only"), text
    assert reported("alharness/results/store.py:2: import matplotlib.pyplot as plt  (only"), text
    assert not any(line.startswith((RAY_MODULE, PLOTS_MODULE)) for line in found), text
    # the core naming the strategies package, in __import__ and as a registry builtin module
    assert reported("alharness/execution/run.py:2: __import__('strategies.baselines')  (alharness must not"), text
    assert reported("alharness/registry.py:2: Registry('strategy', 'g', ('strategies',))  (alharness must not"), text
    # the contract reaching up into the toolkit
    assert reported("alharness/contract/strategy.py:2: from alharness.toolkit import selection  (the contract"), text
    assert not reported("alharness/contract/strategy.py:1"), text
    # the cycle annotation -> campaign -> annotation (a function-level import_module call closes it), with its path
    cycles = [line for line in found if line.startswith("import cycle")]
    assert len(cycles) == 1, text
    assert cycles[0].startswith("import cycle alharness.annotation -> alharness.campaign -> alharness.annotation"), text
    assert "alharness/annotation/oracle.py:3: importlib.import_module('alharness.campaign.loop')" in cycles[0], text
    assert "alharness/campaign/loop.py:2: from alharness.annotation import oracle" in cycles[0], text


def test_the_checker_passes_a_clean_tree_and_finds_longer_cycles(tmp_path):
    clean = _tree(tmp_path / "clean", {
        "alharness/errors.py": "",
        "alharness/contract/views.py": "from alharness.errors import AlharnessError\nfrom .queries import Query\n",
        "alharness/contract/queries.py": "",
        "alharness/campaign/loop.py": "from alharness.contract.views import PoolView\n",
        "alharness/results/store.py": "from alharness.campaign import loop\n",
        "strategies/a.py": "from alharness.contract import views\nimport numpy\n",
    })
    assert check_layout(clean) == []
    looped = _tree(tmp_path / "looped", {
        "alharness/a/m.py": "from alharness.b import m\n",
        "alharness/b/m.py": "from alharness.c.m import x\n",
        "alharness/c/m.py": "def f():\n    from alharness.a import m\n",
    })
    assert check_layout(looped) == [
        "import cycle alharness.a -> alharness.b -> alharness.c -> alharness.a  ("
        "alharness/a/m.py:1: from alharness.b import m; alharness/b/m.py:1: from alharness.c.m import x; "
        "alharness/c/m.py:2: from alharness.a import m)"]
