"""The Ray backend: campaigns as Ray tasks, and ``run_benchmark`` on it.

This is the only module that imports Ray. Campaigns run as Ray tasks with
the resources their spec asks for (fractional GPUs pack several campaigns on
one device); what runs when, retries of campaigns that raise and the writing
of results are the scheduler's (``alharness.execution.scheduler``).

Faults: a task whose worker or node dies is rerun by Ray (``retries``) and
resumes from its last checkpointed round; once those reruns are spent, the
scheduler records it as failed.
"""

from __future__ import annotations

import os

# Before Ray starts: keep every listener of a local cluster on loopback and
# send no usage statistics (measured with Ray 2.60).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import math  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import ray  # noqa: E402

from alharness.campaign.spec import CampaignSpec  # noqa: E402
from alharness.errors import ConfigError  # noqa: E402
from alharness.execution import scheduler  # noqa: E402
from alharness.execution.benchmark import Benchmark  # noqa: E402
from alharness.execution.scheduler import RunSummary, campaign_threads  # noqa: E402
from alharness.results import store  # noqa: E402

__all__ = ["RayBackend", "RunSummary", "init_ray", "run_benchmark", "task_resources"]


def _execute(spec: CampaignSpec, num_threads: int, checkpoint_at: Any, attempt: int) -> dict[str, Any]:
    from alharness.execution.execute import execute

    # The spec arrives pickled, already validated by the driver: unpickling
    # skips the ~10 ms of re-validation that from_json would cost per campaign.
    out = execute(spec, num_threads=num_threads, checkpoint_at=checkpoint_at, attempt=attempt)
    out["record"]["node_id"] = ray.get_runtime_context().get_node_id()  # which Ray node ran it (hosts may share a name)
    return out


@ray.remote
def _run_campaign_task(spec: CampaignSpec, num_threads: int, checkpoint_at: Any, attempt: int) -> dict[str, Any]:
    return _execute(spec, num_threads, checkpoint_at, attempt)


@ray.remote
def _run_chunk_task(items: list[tuple[CampaignSpec, int]], checkpoint_at: Any) -> list[dict[str, Any]]:
    """Several tiny campaigns, one after another (the scheduler gave them the same resources)."""
    return [_execute(spec, campaign_threads(spec), checkpoint_at, attempt) for spec, attempt in items]


def task_resources(spec: CampaignSpec) -> dict[str, float]:
    """Ray resources of a campaign; a fraction of a GPU packs several campaigns on one device
    (the spec refused any other fraction when it was built: ``campaign.spec.check_gpus``)."""
    return {"num_cpus": float(spec.num_cpus), "num_gpus": float(spec.num_gpus)}


def _object_store_bytes() -> int:
    """What a laptop-sized machine can spare: 10 % of memory, 256 MiB..2 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(min(2 * 2**30, max(256 * 2**20, total * 0.10)))


def init_ray(address: str | None = None, num_cpus: int | None = None, *, dashboard: bool = False, log_to_driver: bool = False) -> bool:
    """Connect to ``address`` or start a local Ray; return True if this call started it.

    A local Ray starts without the dashboard (no web UI, ``dashboard=False``).
    Ray 2.60 still starts two processes of that family, and has no option to
    turn them off: its API server (``dashboard.py``, with
    ``include_dashboard=False`` only the usage-stats module and no frontend)
    and the per-node dashboard agent, which the raylet needs (runtime
    environments, metrics) and exits without. The API server is kept on
    loopback (``dashboard_host``).
    """
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
    else:
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=dashboard,
            dashboard_host="127.0.0.1",  # the API server Ray starts anyway listens on loopback only
            object_store_memory=_object_store_bytes(),
            log_to_driver=log_to_driver,
        )
    return True


class RayBackend:
    """Campaigns as Ray tasks (see :class:`alharness.execution.scheduler.Backend`).

    ``address``: the cluster to connect to (default: the Ray already running
    in this process, else a local one of ``num_cpus`` CPUs). ``retries``: Ray
    reruns a task whose worker or node died this many times."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, *, retries: int = 2):
        if retries < 0:
            raise ConfigError(f"retries must be >= 0 (got {retries})")
        self.address, self.num_cpus, self.retries = address, num_cpus, retries
        self._started = False

    def slots(self, specs: Sequence[CampaignSpec]) -> int | None:
        """Campaigns the cluster can run at once: per resource (CPU, GPU), its
        total over the mean a campaign reserves, the smallest of those."""
        if not ray.is_initialized() or not specs:
            return None
        cluster = ray.cluster_resources()
        demands = [task_resources(s) for s in specs]
        slots = []
        for key, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
            mean = sum(d.get(key, 0.0) for d in demands) / len(demands)
            if mean > 0:
                slots.append(math.floor(cluster.get(resource, 0.0) / mean + 1e-9))
        return max(1, min(slots)) if slots else None

    def start(self) -> None:
        self._started = init_ray(self.address, self.num_cpus)

    def stop(self) -> None:
        if self._started:  # only the Ray this backend started; a caller's Ray stays up
            ray.shutdown()
            self._started = False

    def submit(self, spec: CampaignSpec, attempt: int, checkpoint_at: Any) -> ray.ObjectRef:
        return _run_campaign_task.options(
            **task_resources(spec),
            max_retries=self.retries,  # worker or node death: Ray reruns the task, which resumes from its checkpoint
            retry_exceptions=False,  # a campaign's own exception is a result (the scheduler retries it, up to `attempts`)
            name=f"campaign:{spec.strategy_label}:seed{spec.seed}",
        ).remote(spec, campaign_threads(spec), checkpoint_at, attempt)

    def submit_chunk(self, items: list[tuple[CampaignSpec, int]], checkpoint_at: Any) -> ray.ObjectRef:
        """One task for several campaigns of the same resources; its result is their outcomes, in order."""
        spec = items[0][0]
        return _run_chunk_task.options(
            **task_resources(spec), max_retries=self.retries, retry_exceptions=False,
            name=f"campaigns:{len(items)}:{spec.strategy_label}:seed{spec.seed}",
        ).remote(items, checkpoint_at)

    def wait(self, handles: list[ray.ObjectRef], timeout: float) -> list[ray.ObjectRef]:
        ready, _ = ray.wait(handles, num_returns=1, timeout=timeout, fetch_local=False)
        if ready:  # and whatever else has finished meanwhile, without waiting
            ready, _ = ray.wait(handles, num_returns=len(handles), timeout=0, fetch_local=False)
        return ready

    def results(self, handles: list[ray.ObjectRef]) -> list[dict[str, Any] | BaseException]:
        try:
            return ray.get(handles)  # one call for all: much cheaper than one get per result
        except Exception:
            return [_get_one(ref) for ref in handles]  # some task died: fetch one by one


def _get_one(ref: ray.ObjectRef) -> dict[str, Any] | BaseException:
    try:
        return ray.get(ref)
    except Exception as exc:  # the task itself died (worker crash, node loss) after its retries
        return exc


def run_benchmark(
    bench: Benchmark,
    out_dir: "str | Path | store.Location",
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    retries: int = 2,
    **options: Any,
) -> RunSummary:
    """Run every campaign of ``bench`` not yet finished under ``out_dir`` on Ray.

    ``address`` / ``num_cpus`` / ``retries``: as :class:`RayBackend`; ``options``
    (``max_concurrent``, ``resume``, ``attempts``, ``checkpoints``,
    ``batch_size``, ``flush_s``, ``progress``) as
    :func:`alharness.execution.scheduler.run_benchmark`.
    """
    return scheduler.run_benchmark(bench, out_dir, backend=RayBackend(address, num_cpus, retries=retries), **options)
