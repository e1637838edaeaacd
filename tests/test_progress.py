"""The progress line tells running from queued campaigns."""

from __future__ import annotations

import io
from types import SimpleNamespace

from alharness.execution.backends.local import LocalBackend
from alharness.execution.progress import Progress, backend_slots


def _inflight(n: int) -> dict:
    return {i: (SimpleNamespace(num_cpus=1.0, num_gpus=0.0), 1) for i in range(n)}


def test_local_backend_runs_one_and_queues_the_rest():
    bar = Progress(7, stream=io.StringIO())
    bar.watch(LocalBackend())
    bar.update(inflight=_inflight(7))
    assert (bar.running, bar.queued) == (1, 6) and "1 running, 6 queued" in bar.line()
    bar.update(done=1, inflight=_inflight(6))
    assert (bar.running, bar.queued) == (1, 5)


def test_slots_and_started_come_from_the_backend_when_it_can_tell():
    class Slots:
        def slots(self, specs):
            return 2

    class Started(Slots):
        def started(self, handles):
            return 3

    assert backend_slots(Slots(), []) == 2 and backend_slots(object(), []) is None
    for backend, running in ((Slots(), 2), (Started(), 3), (object(), 7)):  # unknown backend: all in flight run
        bar = Progress(9, stream=io.StringIO())
        bar.watch(backend)
        bar.update(inflight=_inflight(7))
        assert (bar.running, bar.queued) == (running, 9 - running), backend
    bar = Progress(4, stream=io.StringIO())  # no backend watched: as before, in flight = running
    bar.update(running=2)
    assert "2 running, 2 queued" in bar.line()


def test_ray_slots_are_cluster_cpus_over_a_campaigns_cpus():
    import pytest

    ray = pytest.importorskip("ray")
    from alharness.execution.backends import ray as ray_backend

    if ray.is_initialized():
        pytest.skip("a Ray is already up in this process")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        spec = SimpleNamespace(num_cpus=2.0, num_gpus=0.0, strategy_label="s")
        assert backend_slots(ray_backend.RayBackend(), [spec, spec, spec]) == 2
        bar = Progress(7, stream=io.StringIO())
        bar.watch(ray_backend.RayBackend())
        bar.update(inflight={i: (spec, 1) for i in range(7)})
        assert "2 running, 5 queued" in bar.line()
    finally:
        ray.shutdown()


def test_a_terminal_line_is_redrawn_at_most_ten_times_a_second_and_closes_on_the_last_state(monkeypatch):
    from alharness.execution import progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    clock = [1000.0]
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    stream = Tty()
    bar = Progress(500, stream=stream)
    for i in range(500):  # 500 tiny campaigns finishing in 0.25 s
        clock[0] += 0.0005
        bar.update(done=1, running=0)
    assert stream.getvalue().count("\r") == 3  # at 0, 0.1 and 0.2 s
    bar.close()
    assert stream.getvalue().rstrip("\n").rsplit("\r", 1)[-1].endswith(bar.line()) and "500/500" in bar.line()
