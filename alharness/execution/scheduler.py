"""Schedule a benchmark's campaigns on a backend and store them as they finish.

What runs where is the backend's business (:class:`Backend`: Ray in
``backends/ray.py``, in-process in ``backends/local.py``); what to run, how
many at once, what to do when a campaign fails and how its results land is
decided here, the same for every backend, and testable without Ray.

The driver writes results (one process writes, so files never race), in
batches so that thousands of small campaigns do not cost thousands of files;
campaigns save a checkpoint next to the results after every round.

Faults: a campaign that raises is run again up to ``attempts`` times in all
and then recorded as failed with its last traceback; a task that died (the
backend's own retries spent) is recorded as failed at once; a killed driver
loses at most the unflushed batch, whose campaigns replay their last round
from their checkpoints on resume.

Overhead: at most a window of tasks is in flight (the backend never scans
thousands of handles), and on a backend that can (``submit_chunk``) tiny
campaigns run several per task, one after another, so that the backend's
cost per task is spread over about ``CHUNK_S`` seconds of campaigns; how
tiny a campaign is comes from the campaigns finished so far. Retries,
checkpoints and records stay per campaign: a chunk whose task died (its
backend retries spent) runs again one campaign per task, and only a
campaign whose own task dies is recorded as failed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Protocol, Sequence

from alharness.campaign.checkpoint import delete_checkpoints
from alharness.campaign.spec import CampaignSpec
from alharness.errors import ConfigError
from alharness.execution.benchmark import Benchmark
from alharness.execution.execute import campaign_record
from alharness.execution.progress import Progress, backend_slots
from alharness.results import store


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

    def count(self, spec: CampaignSpec, out: dict[str, Any]) -> None:
        """Count one campaign's final outcome."""
        rec = out["record"]
        self.resumed += rec.get("resumed_round") is not None
        if rec["status"] == "ok":
            self.ok += 1
            return
        err = rec["error"].strip().splitlines()
        self.failed.append({"campaign_id": spec.campaign_id, "strategy": spec.strategy_label,
                            "dataset": spec.dataset, "seed": spec.seed, "error": err[-1] if err else "?"})


#: Seconds of campaigns one task runs, on a backend with ``submit_chunk``, when campaigns are shorter (at most
#: ``MAX_CHUNK`` campaigns; Ray's cost per task is a few ms of driver, raylet and worker time).
CHUNK_S = 0.5
MAX_CHUNK = 100
#: Tasks in flight without ``max_concurrent``: twice the backend's slots, at least this many.
WINDOW_MIN = 64


class Backend(Protocol):
    """Where campaigns run. A handle stands for one submitted run of one campaign.

    Optionally, ``submit_chunk(items, checkpoint_at)`` with ``items`` a list of
    ``(spec, attempt)`` runs them one after another in one task, whose result
    is the list of their outcomes (or the exception that killed the task)."""

    def start(self) -> None:
        """Acquire what running needs (called only when there is something to run)."""

    def stop(self) -> None:
        """Release what :meth:`start` acquired (also after an error or Ctrl-C)."""

    def submit(self, spec: CampaignSpec, attempt: int, checkpoint_at: Any) -> Hashable:
        """Start ``execute(spec, attempt=attempt, checkpoint_at=checkpoint_at)``; return its handle."""

    def wait(self, handles: list[Hashable], timeout: float) -> list[Hashable]:
        """Those of ``handles`` that have finished: at least one, unless ``timeout`` seconds passed."""

    def results(self, handles: list[Hashable]) -> list[dict[str, Any] | BaseException]:
        """Per finished handle, execute's outcome, or the exception that killed the task."""


def campaign_threads(spec: CampaignSpec) -> int:
    """Torch threads of a campaign: the whole CPUs it reserved, at least one."""
    return max(1, math.floor(spec.num_cpus))


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

    def salvage(self) -> None:
        """On the way out, also after an error: write what finished (a failing
        write must not hide the error that brought us here; the campaigns
        replay from their final checkpoints on resume)."""
        if self.buf:
            with contextlib.suppress(Exception):
                self.flush(force=True)
        self.cleaner.shutdown(wait=True)

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


def _died(spec: CampaignSpec, attempt: int, exc: BaseException) -> dict[str, Any]:
    """The outcome of a task that died (worker crash, node loss) after the backend's retries."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"record": campaign_record(spec, "failed", error=tb, attempt=attempt), "rows": [], "queries": []}


class _Loop:
    """The pending / in-flight loop of one run and its retry policy."""

    def __init__(self, backend: Backend, todo: list[CampaignSpec], writer: _Writer, bar: Progress, *,
                 checkpoint_at: Any, attempts: int, max_concurrent: int | None, waves: dict[str, int] | None = None):
        self.backend, self.writer, self.bar = backend, writer, bar
        bar.watch(backend)  # so that the line tells running from queued campaigns
        self.waves = waves  # adaptive seeding: campaign id -> the wave it ran in
        self.checkpoint_at, self.attempts = checkpoint_at, attempts
        self.slots = backend_slots(backend, todo) or 1
        # Tasks in flight; a task runs one campaign at a time, so this bounds the campaigns running at once.
        self.window = max_concurrent or max(WINDOW_MIN, 2 * self.slots)
        self.chunks = callable(getattr(backend, "submit_chunk", None))
        self.pending = [(s, 1) for s in reversed(todo)]  # pop() from the end keeps the benchmark's order
        self.alone: list[tuple[CampaignSpec, int]] = []  # from a chunk whose task died: one campaign per task
        self.inflight: dict[Hashable, list[tuple[CampaignSpec, int]]] = {}
        self.measured = [0.0, 0]  # finished campaigns' own time (s) and count: what sizes the chunks

    def run(self) -> None:
        while self.pending or self.alone or self.inflight:
            self._fill()
            ready = self.backend.wait(list(self.inflight), self.writer.wait_s())
            for handle, out in zip(ready, self.backend.results(ready)):  # one call for all: much cheaper on Ray
                items = self.inflight.pop(handle)
                if len(items) == 1:
                    self._finish(*items[0], out)
                elif isinstance(out, BaseException):  # the chunk's task died: each of its campaigns again, alone
                    self.alone.extend(reversed(items))
                else:
                    for (spec, attempt), one in zip(items, out):
                        self._finish(spec, attempt, one)
            self.writer.flush()
            if not ready:
                self.bar.update(inflight=self._running())

    def _running(self) -> dict[Hashable, tuple[CampaignSpec, int]]:
        """Per task in flight, the campaign it runs first (what the progress line counts)."""
        return {h: items[0] for h, items in self.inflight.items()}

    def _chunk_size(self) -> int:
        """Campaigns for the next task: about CHUNK_S seconds of them, as measured so far, and no more
        than a fair share of what is left, so that every slot finishes at about the same time."""
        total, n = self.measured
        if not self.chunks or not n:
            return 1
        size = min(MAX_CHUNK, int(CHUNK_S * n / max(total, 1e-9)), math.ceil(len(self.pending) / (2 * self.slots)))
        return max(1, size)

    def _fill(self) -> None:
        while (self.pending or self.alone) and len(self.inflight) < self.window:
            if self.alone:
                items = [self.alone.pop()]
            else:
                size = self._chunk_size()
                items = [self.pending.pop()]
                needs = _resources(items[0][0])  # one task, one reservation: only campaigns that ask the same
                while len(items) < size and self.pending and _resources(self.pending[-1][0]) == needs:
                    items.append(self.pending.pop())
            if len(items) == 1:
                handle = self.backend.submit(*items[0], self.checkpoint_at)
            else:
                handle = self.backend.submit_chunk(items, self.checkpoint_at)  # type: ignore[attr-defined]
            self.inflight[handle] = items

    def _finish(self, spec: CampaignSpec, attempt: int, out: dict[str, Any] | BaseException) -> None:
        died = isinstance(out, BaseException)
        if died:
            out = _died(spec, attempt, out)
        else:
            self.measured[0] += float(out["record"].get("wall_s") or 0.0)
            self.measured[1] += 1
        ok = out["record"]["status"] == "ok"
        if not ok and not died and attempt < self.attempts:
            self.pending.append((spec, attempt + 1))  # run it again; the last attempt's traceback is what is kept
            return
        if self.waves is not None:  # the driver knows the wave, the worker does not: stamped here
            wave = self.waves.get(spec.campaign_id)
            out["record"]["wave"] = wave
            for row in out["rows"]:
                row["wave"] = wave
        self.writer.add(out)
        self.writer.summary.count(spec, out)
        shown = self.bar.enabled  # what runs now and the message only for a line that is drawn (10 000 campaigns)
        self.bar.update(done=int(ok), failed=int(not ok), inflight=self._running() if shown else None,
                        message=f"{'ok' if ok else 'FAILED'} {spec.strategy_label} seed {spec.seed}" if shown else "")


def _resources(spec: CampaignSpec) -> tuple[float, float]:
    return spec.num_cpus, spec.num_gpus


def _finished(scan: store.ScanResult, resume: bool, ran: set[str] | None = None) -> set[str]:
    """Ids that count as finished: ok in the store (without ``resume``, only those in ``ran``:
    already run by this invocation)."""
    return {cid for cid, s in scan.status.items() if s == "ok" and (resume or cid in (ran or ()))}


def _plan(specs: Sequence[CampaignSpec], loc: store.Location, resume: bool,
          ran: set[str] | None = None) -> tuple[list[CampaignSpec], RunSummary]:
    """The campaigns to run: those not finished in the store (all of them, from round 0, without ``resume``,
    except those in ``ran``)."""
    scan = store.scan(loc)
    done = _finished(scan, resume, ran)
    todo = [s for s in specs if s.campaign_id not in done]
    if not resume:
        delete_checkpoints(loc, [s.campaign_id for s in todo])  # start over means from round 0
    return todo, RunSummary(total=len(specs), skipped=len(specs) - len(todo), problems=list(scan.problems))


def run_benchmark(
    bench: Benchmark,
    out_dir: "str | Path | store.Location",
    *,
    backend: Backend,
    max_concurrent: int | None = None,
    resume: bool = True,
    attempts: int = 1,
    checkpoints: bool = True,
    batch_size: int = 256,
    flush_s: float = 5.0,
    progress: bool = True,
) -> RunSummary:
    """Run on ``backend`` every campaign of ``bench`` not yet finished under ``out_dir``.

    ``out_dir``: a local directory or a URI of any pyarrow file system that
    every worker can write (``s3://bucket/prefix``). ``max_concurrent``: at
    most this many tasks in flight, so at most this many campaigns running at
    once (default: twice the backend's slots, at least ``WINDOW_MIN``).
    ``attempts``: runs in all of a campaign that raises before it is recorded
    as failed. ``checkpoints``: save every round next to the results and
    resume from it. ``batch_size`` / ``flush_s``: results are written in
    batches of at most this many campaigns, at the latest this many seconds
    after one finished.
    """
    if attempts < 1 or (max_concurrent is not None and max_concurrent < 1):
        raise ConfigError(f"attempts and max_concurrent must be >= 1 (got {attempts} and {max_concurrent})")
    loc = store.Location(out_dir)
    loc.make_dir()
    opts = dict(checkpoints=checkpoints, attempts=attempts, max_concurrent=max_concurrent, batch_size=batch_size,
                flush_s=flush_s)
    if bench.seeding is not None:
        return _run_adaptive(bench, loc, backend, resume=resume, progress=progress, **opts)
    todo, summary = _plan(bench.specs, loc, resume)
    bar = Progress(len(todo), skipped=summary.skipped, enabled=progress)
    if not todo:
        return summary
    backend.start()
    try:
        _run_todo(backend, todo, summary, loc, bar, **opts)
    finally:  # also on Ctrl-C
        backend.stop()
    return summary


def _run_todo(backend: Backend, todo: list[CampaignSpec], summary: RunSummary, loc: store.Location, bar: Progress, *,
              checkpoints: bool, attempts: int, max_concurrent: int | None, batch_size: int, flush_s: float,
              waves: dict[str, int] | None = None) -> None:
    """Run ``todo`` on a started backend, writing results as they finish."""
    writer = _Writer(loc, batch_size, flush_s, summary)
    try:
        _Loop(backend, todo, writer, bar, checkpoint_at=loc if checkpoints else None, attempts=attempts,
              max_concurrent=max_concurrent, waves=waves).run()
        writer.flush(force=True)
        writer.close()
    finally:  # also on Ctrl-C
        writer.salvage()
        bar.close()


def _run_adaptive(bench: Benchmark, loc: store.Location, backend: Backend, *, resume: bool, progress: bool,
                  **opts: Any) -> RunSummary:
    """Seeds in waves until every group stops (``alharness.execution.adaptive_seeds``);
    the backend starts once, at the first wave with something to run."""
    from alharness.execution.adaptive_seeds import run_waves

    total = RunSummary(total=0)
    ran: set[str] = set()  # without resume, only what this invocation ran counts as finished
    started = False

    def finished() -> set[str]:
        return _finished(store.scan(loc), resume, ran)

    def run(todo: list[CampaignSpec], waves: dict[str, int]) -> set[str]:
        nonlocal started
        todo, summary = _plan(todo, loc, resume, ran)
        total.problems = sorted(set(total.problems) | set(summary.problems))
        if not todo:
            return set()
        if not started:
            backend.start()
            started = True
        _run_todo(backend, todo, summary, loc, Progress(len(todo), enabled=progress), waves=waves, **opts)
        ran.update(s.campaign_id for s in todo)
        total.ok, total.failed = total.ok + summary.ok, total.failed + summary.failed
        total.resumed, total.batches = total.resumed + summary.resumed, total.batches + summary.batches
        total.write_s += summary.write_s
        return {f["campaign_id"] for f in summary.failed}

    try:
        last = run_waves(bench.specs, bench.seeding, loc, finished, run)
    finally:  # also on Ctrl-C
        if started:
            backend.stop()
    total.total = len(last.waves)
    total.skipped = total.total - total.ok - len(total.failed)
    return total
