"""Strategies that misbehave on purpose, installed for the tests through a
real entry point (tests/plugins is put on sys.path and PYTHONPATH, so Ray
workers discover them the way they would discover a user's package)."""

from __future__ import annotations

import os

from alharness import FullMask, ImageLabels, Strategy, register_strategy, within_budget


@register_strategy("test_always_fails")
class AlwaysFails(Strategy):
    """Raises in propose (a buggy plugin)."""

    def propose(self, ctx):
        raise RuntimeError("deliberate failure from test_always_fails")


@register_strategy("test_overdraw")
class Overdraw(Strategy):
    """Asks for every missing mask in the pool regardless of budget."""

    def propose(self, ctx):
        return [FullMask(i) for i in range(len(ctx.pool)) if not ctx.labels.has_full_mask[i]]


@register_strategy("test_repeat")
class Repeat(Strategy):
    """Asks image 0's labels every round."""

    def propose(self, ctx):
        return [ImageLabels(0)]


@register_strategy("test_sleepy")
class Sleepy(Strategy):
    """Random masks, but sleeps first (to give kill tests time)."""

    def __init__(self, sleep_s: float = 0.5):
        self.sleep_s = sleep_s

    def propose(self, ctx):
        import time

        time.sleep(self.sleep_s)
        order = ctx.rng.permutation(len(ctx.pool))
        return within_budget((FullMask(int(i)) for i in order if not ctx.labels.has_full_mask[i]), ctx.quote, ctx.budget_left_this_round)


@register_strategy("test_crash_worker")
class CrashWorker(Strategy):
    """Kills its own worker process once (marker file), then behaves like random."""

    def __init__(self, marker: str = ""):
        self.marker = marker

    def propose(self, ctx):
        if self.marker and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        order = ctx.rng.permutation(len(ctx.pool))
        return within_budget((FullMask(int(i)) for i in order if not ctx.labels.has_full_mask[i]), ctx.quote, ctx.budget_left_this_round)


@register_strategy("test_flaky")
class Flaky(Strategy):
    """Raises in its first ``failures`` proposals (counted in a file shared by
    every attempt), then behaves like random: a transient application error."""

    def __init__(self, counter: str = "", failures: int = 1):
        self.counter = counter
        self.failures = failures

    def propose(self, ctx):
        if self.counter:
            with open(self.counter, "a+") as fh:
                fh.seek(0)
                seen = len(fh.read().splitlines())
                fh.write("x\n")
            if seen < self.failures:
                raise RuntimeError(f"deliberate transient failure {seen + 1} of {self.failures}")
        order = ctx.rng.permutation(len(ctx.pool))
        return within_budget((FullMask(int(i)) for i in order if not ctx.labels.has_full_mask[i]), ctx.quote, ctx.budget_left_this_round)
