"""Annotation times measured by annotation tools, fitted into ``seconds`` prices.

Label Studio records each annotation's ``lead_time`` (seconds spent on
it); a live campaign keeps it with every answer. ``fit_seconds`` gathers
them per query type — from Label Studio JSON exports (the type is the
task's ``data.query``) or from live run directories (every recorded answer
with a lead time) — and ``prices_toml`` writes the means as a
``[costs.seconds]`` table, with each type's spread beside it, so that a
simulation can price answers with one's own annotators' times.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from alharness.contract.queries import QUERY_TYPES
from alharness.errors import ConfigError


def _from_label_studio(path: Path, doc: list) -> list[tuple[str, float]]:
    out = []
    for t in doc:
        kind = t.get("data", {}).get("query") if isinstance(t, dict) else None
        for a in (t.get("annotations") or []) if isinstance(t, dict) else []:
            lead = a.get("lead_time") if isinstance(a, dict) else None
            if kind in QUERY_TYPES and not a.get("was_cancelled") and isinstance(lead, (int, float)) and lead > 0:
                out.append((kind, float(lead)))
    return out


def _from_run(directory: Path) -> list[tuple[str, float]]:
    from alharness.live.campaign import open_run

    run = open_run(directory)
    tasks = run.tasks
    return [(tasks[t].query.kind, float(a.lead_time)) for t, a in run.answers.items()
            if a.lead_time is not None and a.lead_time > 0 and t in tasks]


def lead_times(sources: list[str | Path]) -> dict[str, list[float]]:
    """Query type → every measured lead time in the sources (exports or live run directories)."""
    times: dict[str, list[float]] = defaultdict(list)
    for src in map(Path, sources):
        if src.is_dir():
            found = _from_run(src)
        else:
            try:
                doc = json.loads(src.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{src}: not a readable JSON export ({type(exc).__name__})") from None
            if not isinstance(doc, list):
                raise ConfigError(f"{src}: not a Label Studio JSON export (for COCO answers, give the live run directory)")
            found = _from_label_studio(src, doc)
        for kind, t in found:
            times[kind].append(t)
    if not times:
        raise ConfigError("no lead_time in the sources (Label Studio exports as JSON, or live run directories)")
    return dict(times)


def fit_seconds(sources: list[str | Path]) -> dict[str, dict[str, float]]:
    """Per query type: answers, mean, sample standard deviation, median, 10th and 90th percentile (seconds)."""
    out = {}
    for kind, values in sorted(lead_times(sources).items()):
        v = np.asarray(values, float)
        out[kind] = {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                     "median": float(np.median(v)), "p10": float(np.percentile(v, 10)), "p90": float(np.percentile(v, 90))}
    return out


def prices_toml(fit: dict[str, dict[str, float]]) -> str:
    """A ``[costs.seconds]`` table pricing each measured type at its mean, the spread as comments."""
    prices = ", ".join(f"{k} = {s['mean']:.4g}" for k, s in fit.items())
    notes = [f"#   {k}: mean {s['mean']:.4g} s, sd {s['std']:.3g}, median {s['median']:.4g}, "
             f"10-90 % {s['p10']:.4g}-{s['p90']:.4g} ({s['n']} answers)" for k, s in fit.items()]
    return "\n".join(["[costs.seconds]   # measured annotation times", f"prices = {{ {prices} }}", *notes]) + "\n"
