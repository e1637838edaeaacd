"""Schedule a benchmark's campaigns on Ray and store each as it finishes.

This is the only module that imports Ray. The driver writes results (one
process writes, so files never race); campaigns run as Ray tasks with the
resources their spec asks for.
"""

from __future__ import annotations

import os

# Before Ray starts: keep every listener of a local cluster on loopback and
# send no usage statistics (measured with Ray 2.60, see DESIGN.md).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import math  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import ray  # noqa: E402

from alharness import store  # noqa: E402
from alharness.benchmark import Benchmark  # noqa: E402
from alharness.execute import campaign_record  # noqa: E402
from alharness.progress import Progress  # noqa: E402
from alharness.spec import CampaignSpec  # noqa: E402


@dataclass
class RunSummary:
    total: int
    skipped: int = 0
    ok: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.failed


@ray.remote
def _run_campaign_task(spec_json: str, num_threads: int) -> dict[str, Any]:
    from alharness.execute import execute

    return execute(CampaignSpec.from_json(spec_json), num_threads=num_threads)


def _object_store_bytes() -> int:
    """What a laptop-sized machine can spare: 10 % of memory, 256 MiB..2 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(min(2 * 2**30, max(256 * 2**20, total * 0.10)))


def init_ray(address: str | None = None, num_cpus: int | None = None, *, dashboard: bool = False, log_to_driver: bool = False) -> bool:
    """Connect to ``address`` or start a local Ray; return True if this call started it."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
    else:
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=dashboard,
            object_store_memory=_object_store_bytes(),
            log_to_driver=log_to_driver,
        )
    return True


def run_benchmark(
    bench: Benchmark,
    out_dir: str | Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    max_concurrent: int | None = None,
    resume: bool = True,
    retries: int = 2,
    progress: bool = True,
) -> RunSummary:
    """Run every campaign of ``bench`` not yet finished under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scan = store.scan(out_dir)
    done = {cid for cid, s in scan.status.items() if s == "ok"} if resume else set()
    todo = [s for s in bench.specs if s.campaign_id not in done]
    summary = RunSummary(total=len(bench.specs), skipped=len(bench.specs) - len(todo), problems=list(scan.problems))
    bar = Progress(len(todo), skipped=summary.skipped, enabled=progress)
    if not todo:
        return summary

    started_here = init_ray(address, num_cpus)
    try:
        pending = list(todo)
        inflight: dict[Any, CampaignSpec] = {}
        while pending or inflight:
            while pending and (max_concurrent is None or len(inflight) < max_concurrent):
                spec = pending.pop(0)
                ref = _run_campaign_task.options(
                    num_cpus=spec.num_cpus,
                    num_gpus=spec.num_gpus,
                    max_retries=retries,  # worker or node death: Ray reruns the task
                    retry_exceptions=False,  # a campaign's own exception is a result, not a fault
                    name=f"campaign:{spec.strategy_label}:seed{spec.seed}",
                ).remote(spec.to_json(), max(1, math.floor(spec.num_cpus)))
                inflight[ref] = spec
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                spec = inflight.pop(ref)
                try:
                    out = ray.get(ref)
                except Exception as exc:  # the task itself died (worker crash, node loss) after retries
                    out = {"record": campaign_record(spec, "failed", error=f"{type(exc).__name__}: {exc}"), "rows": [], "queries": []}
                store.write_campaign(out_dir, out["record"], out["rows"], out["queries"])
                ok = out["record"]["status"] == "ok"
                if ok:
                    summary.ok += 1
                else:
                    err = out["record"]["error"].strip().splitlines()
                    summary.failed.append({"campaign_id": spec.campaign_id, "strategy": spec.strategy_label,
                                           "dataset": spec.dataset, "seed": spec.seed, "error": err[-1] if err else "?"})
                bar.update(done=int(ok), failed=int(not ok), running=len(inflight),
                           message=f"{'ok' if ok else 'FAILED'} {spec.strategy_label} seed {spec.seed}")
            if not ready:
                bar.update(running=len(inflight))
    finally:
        bar.close()
        if started_here:
            ray.shutdown()
    return summary
