"""A small progress display for long runs: done / running / queued / failed and ETA.

"Running" is what the backend can actually be running, not what was
submitted: a backend that can tell which of its handles have started says so
(a ``started(handles) -> int`` method); otherwise the harness estimates it as
min(in flight, the backend's slots): for Ray the cluster's CPUs (and GPUs)
divided by what one campaign reserves, for the local backend 1 (see
:func:`backend_slots`). Everything else not yet finished is queued.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Hashable, Mapping, Sequence, TextIO

#: seconds between two looks at a Ray cluster's size (it can grow or shrink while a run goes on)
_SLOTS_TTL_S = 10.0


def _fmt(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def backend_slots(backend: Any, specs: Sequence[Any]) -> int | None:
    """How many of ``specs`` the backend can run at once (its ``slots(specs)``), or None if it cannot tell."""
    slots = getattr(backend, "slots", None)
    return slots(specs) if callable(slots) else None


class Progress:
    """Redraws one status line on a terminal; prints a line per event otherwise."""

    def __init__(self, total: int, *, skipped: int = 0, stream: TextIO | None = None, enabled: bool = True):
        self.total = total
        self.skipped = skipped
        self.done = 0
        self.failed = 0
        self.running = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.monotonic()
        self._last = 0.0
        self.backend: Any = None
        self._slots: tuple[float, int | None] = (-math.inf, None)

    def watch(self, backend: Any) -> None:
        """Tell running from queued campaigns by asking ``backend`` (see the module's docstring)."""
        self.backend = backend

    @property
    def queued(self) -> int:
        """Campaigns neither finished nor running: submitted and waiting, or not yet submitted."""
        return max(0, self.total - self.done - self.failed - self.running)

    def running_of(self, inflight: Mapping[Hashable, Any]) -> int:
        """How many of the in-flight handles (handle → (spec, attempt)) are running."""
        n = len(inflight)
        started = getattr(self.backend, "started", None)
        if n == 0 or self.backend is None:
            return n
        if callable(started):
            return min(n, int(started(list(inflight))))
        now = time.monotonic()
        if now - self._slots[0] > _SLOTS_TTL_S:
            self._slots = (now, backend_slots(self.backend, [v[0] for v in inflight.values()]))
        slots = self._slots[1]
        return n if slots is None else min(n, slots)

    def line(self) -> str:
        finished = self.done + self.failed
        elapsed = time.monotonic() - self.t0
        eta = "?" if finished == 0 else _fmt(elapsed / finished * (self.total - finished))
        width = 24
        filled = int(width * finished / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        skipped = f", {self.skipped} already done" if self.skipped else ""
        return (f"[{bar}] {finished}/{self.total} campaigns: {self.done} ok, {self.running} running, {self.queued} queued, "
                f"{self.failed} failed{skipped} | elapsed {_fmt(elapsed)}, ETA {eta}")

    def update(self, *, done: int = 0, failed: int = 0, running: int | None = None,
               inflight: Mapping[Hashable, Any] | None = None, message: str = "") -> None:
        """Count finished campaigns; ``inflight`` (handle → (spec, attempt)) or ``running`` sets what runs now."""
        self.done += done
        self.failed += failed
        if inflight is not None:
            running = self.running_of(inflight)
        if running is not None:
            self.running = running
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            # At most 10 redraws a second while campaigns finish (thousands of tiny ones would
            # otherwise cost a redraw each), every 0.5 s otherwise; close() draws the last state.
            if now - self._last > (0.1 if done or failed else 0.5):
                self._draw(now)
        elif done or failed:
            self.stream.write((message + " " if message else "") + self.line() + "\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        self.stream.write("\r\033[K" + self.line())
        self.stream.flush()
        self._last = now

    def close(self) -> None:
        if self.enabled and self.tty:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
