"""Is the learner adequate? ``alharness check-learner FILE`` and ``bench --check-learner``.

For each (dataset, learner) of a benchmark, the full-supervision reference
(``CampaignSpec.reference``) is trained at 1×, 2× and 4× the benchmark's
steps (``max_steps`` with ``steps = "auto"``, ``epochs`` where they are
set), and on 50 % of the pool's masks (a ``random`` campaign buying half
the pool in round 0, scored on that round). These are ordinary campaigns,
run by the scheduler into ``<results>/learner_check/`` (so a rerun
resumes); the summary goes to ``<results>/learner_check.json``.

- *converged*: each doubling of the steps (1× → 2×, 2× → 4×) gains less
  than ``tol`` mIoU (default 0.01). If not, the benchmark's learner is
  under-trained: full supervision is handicapped and "cost to 90 % of full
  supervision" means little.
- *more data helps*: 100 % of the masks beats 50 % by at least ``tol``; if
  not, the learner (or the dataset) saturates early and label budgets are
  compared on a flat stretch of the curve.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from alharness.campaign.spec import CampaignSpec
from alharness.execution.benchmark import Benchmark
from alharness.learner import LearnerConfig
from alharness.registry import DATASETS

TOLERANCE = 0.01
STEP_FACTORS = (1, 2, 4)
CHECK_DIR = "learner_check"
CHECK_FILE = "learner_check.json"


def scaled(learner: LearnerConfig, factor: int) -> LearnerConfig:
    """``learner`` trained ``factor`` times as long (its cap, with ``steps = "auto"``)."""
    if learner.steps == "auto":
        return dataclasses.replace(learner, max_steps=learner.max_steps * factor)
    if learner.epochs > 0:
        return dataclasses.replace(learner, epochs=learner.epochs * factor)
    return dataclasses.replace(learner, steps=learner.steps * factor)


def _half_pool(ref: CampaignSpec) -> CampaignSpec:
    """Random masks for half the pool in round 0 (scored on round 0): the reference, another strategy."""
    pool = len(DATASETS.create(ref.dataset, **ref.dataset_params).splits["train"])
    return dataclasses.replace(ref.reference(), strategy="random", initial_masks=max(1, pool // 2))


def _group(spec: CampaignSpec) -> str:
    return json.dumps([spec.dataset, spec.dataset_params, spec.learner.to_dict()], sort_keys=True)


def check_specs(bench: Benchmark, seeds: int = 1) -> dict[str, dict[str, list[CampaignSpec]]]:
    """group (dataset, learner as JSON) → variant ("1x", "2x", "4x", "50%") → one spec per seed
    (the benchmark's first ``seeds`` seeds)."""
    refs: dict[str, dict[int, CampaignSpec]] = {}
    for spec in bench.specs:
        ref = spec if spec.is_reference else spec.reference()
        refs.setdefault(_group(ref), {}).setdefault(ref.seed, ref)
    out: dict[str, dict[str, list[CampaignSpec]]] = {}
    for group, by_seed in refs.items():
        chosen = [by_seed[s] for s in sorted(by_seed)[:seeds]]
        variants = {f"{f}x": [dataclasses.replace(r, learner=scaled(r.learner, f)) for r in chosen] for f in STEP_FACTORS}
        variants["50%"] = [_half_pool(r) for r in chosen]
        out[group] = variants
    return out


def summarise(group: str, miou: dict[str, float], tol: float = TOLERANCE) -> dict[str, Any]:
    """One group's verdict from its mean mIoU per variant."""
    dataset, params, learner = json.loads(group)
    gains = [miou[f"{b}x"] - miou[f"{a}x"] for a, b in zip(STEP_FACTORS, STEP_FACTORS[1:])]
    converged = all(g < tol for g in gains)
    steps = learner["steps"] if learner["steps"] != "auto" else f"auto (cap {learner['max_steps']})"
    return {"dataset": dataset, "dataset_params": params, "learner": learner, "steps": steps,
            "miou": dict(miou), "gain_2x": gains[0], "gain_4x": gains[1], "data_gain": miou["1x"] - miou["50%"],
            "converged": converged, "more_data_helps": miou["1x"] - miou["50%"] >= tol, "adequate": converged}


def warnings(result: dict[str, Any]) -> list[str]:
    """One line per inadequate group."""
    out = []
    for g in result["groups"]:
        if not g["adequate"]:
            out.append(f"learner under-trained on {g['dataset']} (model {g['learner']['model']}, steps {g['steps']}): "
                       f"full supervision gains {max(g['gain_2x'], g['gain_4x']):+.3f} mIoU from doubling the steps "
                       f"(tolerance {result['tolerance']:g}); raise [learner] steps or set steps = \"auto\"")
    return out


def format_table(result: dict[str, Any]) -> str:
    """The check as a plain-text table."""
    head = ["dataset", "model", "steps", "1x", "2x", "4x", "50% masks", "converged", "more data helps"]
    rows = [[g["dataset"], g["learner"]["model"], str(g["steps"]), *(f"{g['miou'][k]:.3f}" for k in ("1x", "2x", "4x", "50%")),
             "yes" if g["converged"] else "NO", "yes" if g["more_data_helps"] else "no"] for g in result["groups"]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines) + f"\n(full-supervision test mIoU; converged: each doubling gains < {result['tolerance']:g})\n"


def _scores(loc: Any) -> dict[str, dict[int, float]]:
    """campaign id → round → test mIoU."""
    from alharness.results import store

    con, _ = store.connect(loc)
    out: dict[str, dict[int, float]] = {}
    for cid, rnd, miou in con.execute("SELECT campaign_id, round, miou FROM rounds").fetchall():
        out.setdefault(cid, {})[int(rnd)] = float(miou)
    return out


def check_learner(bench: Benchmark, out: Any, *, backend: Any, seeds: int = 1, tol: float = TOLERANCE,
                  progress: bool = True, max_concurrent: int | None = None) -> dict[str, Any]:
    """Run the check's campaigns under ``out``/learner_check; write and return ``learner_check.json``'s content."""
    from alharness.execution.scheduler import run_benchmark
    from alharness.results import store

    plan = check_specs(bench, seeds)
    specs = tuple(dict.fromkeys(s for variants in plan.values() for v in variants.values() for s in v))
    loc = store.Location(out)
    loc.make_dir()
    check = Benchmark(f"{bench.name}-learner-check", "learner adequacy check", specs, bench.source)
    sub = store.Location((loc.fs, loc.path(CHECK_DIR)))  # a sub-directory of any file system
    summary = run_benchmark(check, sub, backend=backend, progress=progress, max_concurrent=max_concurrent)
    scores = _scores(sub)
    groups = []
    for group, variants in plan.items():
        miou = {}
        for name, vspecs in variants.items():
            # the half-pool campaign is scored on round 0, when it holds half the masks
            vals = [scores[s.campaign_id][0] if name == "50%" else scores[s.campaign_id][max(scores[s.campaign_id])]
                    for s in vspecs if s.campaign_id in scores]
            miou[name] = sum(vals) / len(vals) if vals else float("nan")
        if all(v == v for v in miou.values()):
            groups.append({**summarise(group, miou, tol), "seeds": len(variants["1x"])})
    result = {"tolerance": tol, "groups": groups, "failed": len(summary.failed)}
    loc.write_bytes(CHECK_FILE, (json.dumps(result, indent=2, sort_keys=True) + "\n").encode())
    return result
