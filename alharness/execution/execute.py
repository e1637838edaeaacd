"""Run one campaign and package its outcome (rows, query log, campaign
record) for the store. A campaign that raises becomes a ``failed`` record
with its traceback; it never takes other campaigns down with it."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import platform
import socket
import traceback
from typing import Any

from alharness.campaign.spec import CampaignSpec


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=1)  # per worker process: one lookup, not one per campaign
def versions() -> dict[str, str]:
    import numpy
    import torch

    import alharness

    return {"alharness": alharness.__version__, "torch": torch.__version__, "numpy": numpy.__version__, "python": platform.python_version()}


def campaign_record(spec: CampaignSpec, status: str, *, error: str = "", started: str = "", wall_s: float = 0.0,
                    device: str = "", attempt: int = 1, resumed_round: int | None = None) -> dict[str, Any]:
    return {
        "campaign_id": spec.campaign_id,
        "benchmark": spec.benchmark,
        "dataset": spec.dataset,
        "strategy": spec.strategy,
        "strategy_label": spec.strategy_label,
        "budget_metric": spec.budget_metric,
        "budget": spec.budget,
        "seed": spec.seed,
        "status": status,
        "error": error,
        "spec": spec.to_json(),
        "versions": json.dumps(versions(), sort_keys=True),
        "host": socket.gethostname(),
        "device": device,
        "started": started or _now(),
        "finished": _now(),
        "wall_s": float(wall_s),
        "attempt": int(attempt),
        # The round a per-round checkpoint resumed after (null: ran from round 0).
        "resumed_round": resumed_round,
    }


def execute(spec: CampaignSpec, *, num_threads: int | None = None, checkpoint_at=None, attempt: int = 1) -> dict[str, Any]:
    """Run ``spec``; return ``{"record", "rows", "queries"}`` whatever happens inside.

    ``checkpoint_at``: a results location (alharness.results.store.Location or path);
    the campaign saves a checkpoint there after every round and resumes from
    one it finds (a retry after a worker, node or driver died)."""
    import time

    import torch

    from alharness.campaign.loop import run_campaign
    from alharness.learner import resolve_device

    if num_threads:
        # Each campaign gets as many torch threads as the CPUs it reserved,
        # or parallel campaigns fight over the cores.
        torch.set_num_threads(num_threads)
    started, t0 = _now(), time.perf_counter()
    device = str(resolve_device(spec.learner.device))
    ckpt = None
    if checkpoint_at is not None:
        from alharness.campaign.checkpoint import Checkpointer
        from alharness.results.store import Location

        ckpt = Checkpointer(Location(checkpoint_at), spec.campaign_id)
    try:
        result = run_campaign(spec, checkpoint=ckpt)
    except Exception:
        return {
            "record": campaign_record(spec, "failed", error=traceback.format_exc(), started=started,
                                      wall_s=time.perf_counter() - t0, device=device, attempt=attempt,
                                      resumed_round=ckpt and ckpt.resumed_round),
            "rows": [],
            "queries": [],
        }
    return {
        "record": campaign_record(spec, "ok", started=started, wall_s=result.wall_s, device=device, attempt=attempt,
                                  resumed_round=ckpt and ckpt.resumed_round),
        "rows": result.rows,
        "queries": result.queries,
    }
