"""Schedule a benchmark's campaigns on Ray and store them as they finish.

This is the only module that imports Ray. The driver writes results (one
process writes, so files never race), in batches so that thousands of small
campaigns do not cost thousands of files; campaigns run as Ray tasks with
the resources their spec asks for (fractional GPUs pack several campaigns on
one device) and save a checkpoint next to the results after every round.

Faults: a task whose worker or node dies is rerun by Ray (``retries``) and
resumes from its last checkpointed round; a campaign that raises is run
again up to ``attempts`` times in all and then recorded as failed with its
last traceback; a killed driver loses at most the unflushed batch, whose
campaigns replay from their final checkpoints on resume.
"""

from __future__ import annotations

import os

# Before Ray starts: keep every listener of a local cluster on loopback and
# send no usage statistics (measured with Ray 2.60).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import concurrent.futures  # noqa: E402
import contextlib  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import ray  # noqa: E402

from alharness.results import store  # noqa: E402
from alharness.execution.benchmark import Benchmark  # noqa: E402
from alharness.campaign.checkpoint import delete_checkpoints  # noqa: E402
from alharness.errors import ConfigError  # noqa: E402
from alharness.execution.execute import campaign_record  # noqa: E402
from alharness.execution.progress import Progress  # noqa: E402
from alharness.campaign.spec import CampaignSpec  # noqa: E402


@dataclass
class RunSummary:
    total: int
    skipped: int = 0
    ok: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    resumed: int = 0  # campaigns that continued from a checkpoint
    batches: int = 0  # result batches written
    write_s: float = 0.0  # driver time spent writing results and removing checkpoints

    @property
    def success(self) -> bool:
        return not self.failed


@ray.remote
def _run_campaign_task(spec: CampaignSpec, num_threads: int, checkpoint_at: Any, attempt: int) -> dict[str, Any]:
    from alharness.execution.execute import execute

    # The spec arrives pickled, already validated by the driver: unpickling
    # skips the ~10 ms of re-validation that from_json would cost per campaign.
    out = execute(spec, num_threads=num_threads, checkpoint_at=checkpoint_at, attempt=attempt)
    out["record"]["node_id"] = ray.get_runtime_context().get_node_id()  # which Ray node ran it (hosts may share a name)
    return out


def task_resources(spec: CampaignSpec) -> dict[str, float]:
    """Ray resources of a campaign; a fraction of a GPU packs several campaigns on one device."""
    gpus = float(spec.num_gpus)
    if gpus > 1 and not gpus.is_integer():
        raise ConfigError(f"campaign {spec.strategy_label}: num_gpus = {gpus:g}; Ray schedules a fraction of one GPU "
                          f"(0 < num_gpus <= 1, e.g. 0.25 packs 4 campaigns per GPU) or whole GPUs, not {gpus:g}")
    return {"num_cpus": float(spec.num_cpus), "num_gpus": gpus}


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


class _Writer:
    """Buffers finished campaigns and writes them as one batch when enough
    have gathered or the oldest has waited ``flush_s`` (writing one file per
    tiny campaign would dominate the run); checkpoints go once committed."""

    def __init__(self, loc: store.Location, batch_size: int, flush_s: float, summary: RunSummary):
        self.loc, self.batch_size, self.flush_s, self.summary = loc, max(1, batch_size), flush_s, summary
        self.buf: list[store.Outcome] = []
        self.since = 0.0
        # Removing committed campaigns' checkpoints waits on the disk, not the
        # CPU: one background thread does it while the loop goes on.
        self.cleaner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="alharness-ckpt-cleanup")
        self.cleaning: list[concurrent.futures.Future] = []

    def add(self, out: dict[str, Any]) -> None:
        if not self.buf:
            self.since = time.monotonic()
        self.buf.append((out["record"], out["rows"], out["queries"]))
        if len(self.buf) >= self.batch_size:
            self.flush()

    def close(self) -> None:
        """Wait for the checkpoint clean-up (its errors surface here)."""
        self.cleaner.shutdown(wait=True)
        for f in self.cleaning:
            f.result()

    def wait_s(self) -> float:
        """How long the scheduler may block before the buffer is due."""
        return 1.0 if not self.buf else max(0.0, min(1.0, self.since + self.flush_s - time.monotonic()))

    def flush(self, force: bool = False) -> None:
        if not self.buf or not (force or len(self.buf) >= self.batch_size or time.monotonic() - self.since >= self.flush_s):
            return
        t0 = time.perf_counter()
        batch = self.buf[0][0]["campaign_id"] if len(self.buf) == 1 else None  # a lone campaign keeps its id as name
        store.write_batch(self.loc, self.buf, batch=batch)
        self.cleaning.append(self.cleaner.submit(delete_checkpoints, self.loc, [rec["campaign_id"] for rec, _, _ in self.buf]))
        self.summary.batches += 1
        self.summary.write_s += time.perf_counter() - t0
        self.buf = []


def run_benchmark(
    bench: Benchmark,
    out_dir: "str | Path | store.Location",
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    max_concurrent: int | None = None,
    resume: bool = True,
    retries: int = 2,
    attempts: int = 1,
    checkpoints: bool = True,
    batch_size: int = 256,
    flush_s: float = 5.0,
    progress: bool = True,
) -> RunSummary:
    """Run every campaign of ``bench`` not yet finished under ``out_dir``.

    ``out_dir``: a local directory or a URI of any pyarrow file system that
    every node can write (``s3://bucket/prefix``). ``retries``: Ray reruns a
    task whose worker or node died this many times. ``attempts``: runs in all
    of a campaign that raises before it is recorded as failed.
    ``checkpoints``: save every round next to the results and resume from it.
    ``batch_size`` / ``flush_s``: results are written in batches of at most
    this many campaigns, at the latest this many seconds after one finished.
    """
    if retries < 0 or attempts < 1:
        raise ConfigError(f"retries must be >= 0 (got {retries}) and attempts >= 1 (got {attempts})")
    loc = store.Location(out_dir)
    loc.make_dir()
    scan = store.scan(loc)
    done = {cid for cid, s in scan.status.items() if s == "ok"} if resume else set()
    todo = [s for s in bench.specs if s.campaign_id not in done]
    if not resume:
        delete_checkpoints(loc, [s.campaign_id for s in todo])  # start over means from round 0
    resources = {s.campaign_id: task_resources(s) for s in todo}  # bad resources fail before anything runs
    summary = RunSummary(total=len(bench.specs), skipped=len(bench.specs) - len(todo), problems=list(scan.problems))
    bar = Progress(len(todo), skipped=summary.skipped, enabled=progress)
    if not todo:
        return summary

    started_here = init_ray(address, num_cpus)
    writer = _Writer(loc, batch_size, flush_s, summary)
    try:
        pending = [(s, 1) for s in todo]
        pending.reverse()  # pop() from the end keeps the benchmark's order
        inflight: dict[Any, tuple[CampaignSpec, int]] = {}
        while pending or inflight:
            while pending and (max_concurrent is None or len(inflight) < max_concurrent):
                spec, attempt = pending.pop()
                ref = _run_campaign_task.options(
                    **resources[spec.campaign_id],
                    max_retries=retries,  # worker or node death: Ray reruns the task, which resumes from its checkpoint
                    retry_exceptions=False,  # a campaign's own exception is a result (retried below, up to `attempts`)
                    name=f"campaign:{spec.strategy_label}:seed{spec.seed}",
                ).remote(spec, max(1, math.floor(spec.num_cpus)), loc if checkpoints else None, attempt)
                inflight[ref] = (spec, attempt)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=writer.wait_s(), fetch_local=False)
            if ready:  # and whatever else has finished meanwhile, without waiting
                ready, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0, fetch_local=False)
            try:
                outs = dict(zip(ready, ray.get(ready)))  # one call for all: much cheaper than one get per result
            except Exception:
                outs = {}  # some task died: fetch one by one below
            for ref in ready:
                spec, attempt = inflight.pop(ref)
                died = False
                try:
                    out = outs[ref] if ref in outs else ray.get(ref)
                except Exception as exc:  # the task itself died (worker crash, node loss) after its retries
                    died = True
                    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                    out = {"record": campaign_record(spec, "failed", error=tb, attempt=attempt), "rows": [], "queries": []}
                ok = out["record"]["status"] == "ok"
                if not ok and not died and attempt < attempts:
                    pending.append((spec, attempt + 1))  # run it again; the last attempt's traceback is what is kept
                    continue
                writer.add(out)
                summary.resumed += out["record"].get("resumed_round") is not None
                if ok:
                    summary.ok += 1
                else:
                    err = out["record"]["error"].strip().splitlines()
                    summary.failed.append({"campaign_id": spec.campaign_id, "strategy": spec.strategy_label,
                                           "dataset": spec.dataset, "seed": spec.seed, "error": err[-1] if err else "?"})
                bar.update(done=int(ok), failed=int(not ok), running=len(inflight),
                           message=f"{'ok' if ok else 'FAILED'} {spec.strategy_label} seed {spec.seed}")
            writer.flush()
            if not ready:
                bar.update(running=len(inflight))
        writer.flush(force=True)
        writer.close()
    finally:
        # Also on Ctrl-C: what finished is written (a failing write here must
        # not hide the error that brought us here; the campaigns replay from
        # their final checkpoints on resume).
        if writer.buf:
            with contextlib.suppress(Exception):
                writer.flush(force=True)
        writer.cleaner.shutdown(wait=True)
        bar.close()
        if started_here:
            ray.shutdown()
    return summary
