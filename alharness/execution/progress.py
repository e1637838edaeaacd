"""A small progress display for long runs: done / running / failed and ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


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

    def line(self) -> str:
        finished = self.done + self.failed
        elapsed = time.monotonic() - self.t0
        eta = "?" if finished == 0 else _fmt(elapsed / finished * (self.total - finished))
        width = 24
        filled = int(width * finished / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        skipped = f", {self.skipped} already done" if self.skipped else ""
        return (f"[{bar}] {finished}/{self.total} campaigns: {self.done} ok, {self.running} running, "
                f"{self.failed} failed{skipped} | elapsed {_fmt(elapsed)}, ETA {eta}")

    def update(self, *, done: int = 0, failed: int = 0, running: int | None = None, message: str = "") -> None:
        self.done += done
        self.failed += failed
        if running is not None:
            self.running = running
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if done or failed or now - self._last > 0.5:
                self.stream.write("\r\033[K" + self.line())
                self.stream.flush()
                self._last = now
        elif done or failed:
            self.stream.write((message + " " if message else "") + self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
