"""Run campaigns one at a time in this process: no Ray, no worker processes.

For tests and debugging: a breakpoint in a strategy stops the run, and a
traceback points into the campaign itself. Nothing runs in parallel, so
``max_concurrent`` only bounds how many campaigns are submitted ahead.
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

from alharness.campaign.spec import CampaignSpec
from alharness.execution.execute import execute
from alharness.execution.scheduler import campaign_threads


class LocalBackend:
    """The in-process backend (see :class:`alharness.execution.scheduler.Backend`)."""

    def __init__(self) -> None:
        self._next = 0
        self._queued: dict[int, tuple[CampaignSpec, int, Any]] = {}
        self._done: dict[int, dict[str, Any] | BaseException] = {}

    def slots(self, specs: Sequence[CampaignSpec]) -> int:
        return 1  # one campaign at a time, in this process

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self._queued.clear()
        self._done.clear()

    def submit(self, spec: CampaignSpec, attempt: int, checkpoint_at: Any) -> Hashable:
        self._next += 1
        self._queued[self._next] = (spec, attempt, checkpoint_at)
        return self._next

    def wait(self, handles: list[Hashable], timeout: float) -> list[Hashable]:
        """The first of ``handles``, run now if it has not run yet (``timeout``
        is moot: nothing else runs meanwhile)."""
        for h in handles:
            if h not in self._done:
                self._done[h] = self._run(*self._queued.pop(h))
            return [h]
        return []

    def results(self, handles: list[Hashable]) -> list[dict[str, Any] | BaseException]:
        return [self._done.pop(h) for h in handles]

    @staticmethod
    def _run(spec: CampaignSpec, attempt: int, checkpoint_at: Any) -> dict[str, Any] | BaseException:
        import torch

        threads = torch.get_num_threads()  # execute sets the campaign's; this process keeps its own
        try:
            return execute(spec, num_threads=campaign_threads(spec), checkpoint_at=checkpoint_at, attempt=attempt)
        except Exception as exc:  # execute itself failed, not the campaign: what a dead task is elsewhere
            return exc
        finally:
            torch.set_num_threads(threads)
