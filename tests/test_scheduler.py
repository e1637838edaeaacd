"""The scheduling policy, through the in-process backend (no Ray): resume,
retries up to ``attempts``, dead tasks, batched writes, ``max_concurrent``."""

from __future__ import annotations

import pytest

from alharness.cli import main
from alharness.execution.backends.local import LocalBackend
from alharness.execution.benchmark import parse_benchmark
from alharness.execution.scheduler import run_benchmark
from alharness.results import store
from conftest import tiny_benchmark_doc, toml_dumps


def _doc(strategies=("random",), seeds=(0,)):
    """Campaigns of ~0.1 s: one round on the smallest data (the policy, not the model, is under test)."""
    doc = tiny_benchmark_doc(strategies=strategies, seeds=seeds, budget=4, rounds=1, initial_masks=1)
    doc["datasets"][0].update(n_train=4, n_test=2, size=16, num_classes=2)
    doc["learner"].update(steps=1, batch_size=2, model_params={"width": 2, "depth": 1})
    return doc


class Recording(LocalBackend):
    """The local backend, noting what the scheduler asks of it."""

    def __init__(self, loc=None, dies=()):
        super().__init__()
        self.loc, self.dies = loc, set(dies)  # campaign ids whose task "dies"
        self.submitted, self.stale, self.peak, self.started = [], [], 0, 0
        self._specs = {}

    def start(self):
        self.started += 1

    def submit(self, spec, attempt, checkpoint_at):
        self.submitted.append((spec.campaign_id, attempt))
        if self.loc is not None:
            self.stale.append((self.loc / "checkpoints" / f"{spec.campaign_id}.ckpt").exists())
        h = super().submit(spec, attempt, checkpoint_at)
        self._specs[h] = spec
        self.peak = max(self.peak, len(self._queued) + len(self._done))
        return h

    def results(self, handles):
        outs = super().results(handles)
        return [RuntimeError("worker died") if self._specs.pop(h).campaign_id in self.dies else o
                for h, o in zip(handles, outs)]


def test_resume_skips_finished_campaigns_and_no_resume_starts_over(tmp_path):
    bench = parse_benchmark(_doc(seeds=[0, 1]))
    first = run_benchmark(bench, tmp_path, backend=(b1 := Recording()), progress=False)
    assert (first.ok, first.skipped, len(b1.submitted)) == (2, 0, 2)

    again = run_benchmark(bench, tmp_path, backend=(b2 := Recording()), progress=False)
    assert (again.ok, again.skipped, b2.submitted, b2.started) == (0, 2, [], 0)  # nothing ran, nothing started

    cid = bench.specs[0].campaign_id
    (tmp_path / "checkpoints" / f"{cid}.ckpt").write_bytes(b"stale")
    over = run_benchmark(bench, tmp_path, backend=(b3 := Recording(tmp_path)), resume=False, progress=False)
    assert (over.ok, over.skipped, len(b3.submitted)) == (2, 0, 2)
    assert b3.stale == [False, False]  # deleted before anything ran: start over means from round 0


def test_a_raising_campaign_is_retried_up_to_attempts_then_recorded(tmp_path):
    strategies = ["random", {"name": "test_flaky", "counter": str(tmp_path / "c1"), "failures": 1},
                  {"name": "test_flaky", "counter": str(tmp_path / "c99"), "failures": 99}]
    bench = parse_benchmark(_doc(strategies))
    summary = run_benchmark(bench, tmp_path / "out", backend=(b := Recording()), attempts=3, progress=False)
    assert summary.ok == 2 and len(summary.failed) == 1 and "failure 3 of 99" in summary.failed[0]["error"]
    assert [a for _, a in b.submitted] == [1, 1, 1, 2, 2, 3]  # all first attempts in flight before any retry
    assert len((tmp_path / "c99").read_text().splitlines()) == 3
    con, _ = store.connect(tmp_path / "out")
    got = con.execute("SELECT strategy_label, status, attempt FROM campaigns ORDER BY status, attempt").fetchall()
    assert [(s, a) for _, s, a in got] == [("failed", 3), ("ok", 1), ("ok", 2)]
    error, = con.execute("SELECT error FROM campaigns WHERE status = 'failed'").fetchone()
    assert "Traceback" in error and "failure 3 of 99" in error  # the last attempt's
    assert con.execute("SELECT count(DISTINCT campaign_id) FROM rounds").fetchone() == (2,)


def test_a_task_that_died_is_recorded_failed_without_retry(tmp_path):
    bench = parse_benchmark(_doc(seeds=[0, 1]))
    victim = bench.specs[0].campaign_id
    summary = run_benchmark(bench, tmp_path, backend=(b := Recording(dies=[victim])), attempts=3, progress=False)
    assert summary.ok == 1 and [f["campaign_id"] for f in summary.failed] == [victim]
    assert summary.failed[0]["error"] == "RuntimeError: worker died" and len(b.submitted) == 2
    con, _ = store.connect(tmp_path)
    assert con.execute("SELECT status, attempt FROM campaigns WHERE campaign_id = ?", [victim]).fetchall() == [("failed", 1)]


@pytest.mark.parametrize("max_concurrent", [None, 2])
def test_batched_writes_and_max_concurrent(tmp_path, max_concurrent):
    bench = parse_benchmark(_doc(seeds=range(5)))
    summary = run_benchmark(bench, tmp_path, backend=(b := Recording()), max_concurrent=max_concurrent,
                            batch_size=2, flush_s=1e6, progress=False)
    assert b.peak == (max_concurrent or 5)
    assert summary.ok == 5 and summary.batches == 3  # 2 + 2 + the rest at the end
    assert len(list((tmp_path / "campaigns").glob("*.parquet"))) == 3
    assert store.finished_ids(tmp_path) == {s.campaign_id for s in bench.specs}
    con, _ = store.connect(tmp_path)
    assert con.execute("SELECT count(DISTINCT campaign_id), count(*) FROM rounds").fetchone() == (5, 5 * 2)
    assert not list((tmp_path / "checkpoints").iterdir())  # removed once committed


def test_bad_limits_fail_before_anything_runs(tmp_path):
    from alharness.errors import ConfigError

    bench = parse_benchmark(_doc())
    for kw in ({"attempts": 0}, {"max_concurrent": 0}):
        with pytest.raises(ConfigError):
            run_benchmark(bench, tmp_path / "out", backend=LocalBackend(), progress=False, **kw)
    assert not (tmp_path / "out").exists()


def test_cli_bench_on_the_local_backend(tmp_path, capsys):
    bfile = tmp_path / "b.toml"
    bfile.write_text(toml_dumps(_doc(["random", "test_always_fails"])))
    rc = main(["bench", str(bfile), "--backend", "local", "--out", str(tmp_path / "out"), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 1 and "1 of 2 campaign(s) FAILED" in err and "deliberate failure" in err
    assert "rank" in out and "random" in out



class Chunking:
    """A backend that runs tiny campaigns several per task (``submit_chunk``), in
    this process, each task when it is waited for; a task holding a campaign of
    ``dies`` dies whole, as a crashed worker would."""

    def __init__(self, dies=()):
        self.dies, self.sizes, self.tasks = set(dies), [], {}

    def slots(self, specs):
        return 1

    def start(self):
        pass

    def stop(self):
        pass

    def submit(self, spec, attempt, checkpoint_at):
        return self._add([(spec, attempt)], checkpoint_at, single=True)

    def submit_chunk(self, items, checkpoint_at):
        return self._add(items, checkpoint_at, single=False)

    def _add(self, items, checkpoint_at, single):
        self.sizes.append(len(items))
        self.tasks[len(self.sizes)] = (list(items), checkpoint_at, single)
        return len(self.sizes)

    def wait(self, handles, timeout):
        return handles[:1]

    def results(self, handles):
        from alharness.execution.execute import execute

        outs = []
        for h in handles:
            items, at, single = self.tasks.pop(h)
            if any(spec.campaign_id in self.dies for spec, _ in items):
                outs.append(RuntimeError("worker died"))
                continue
            done = [execute(spec, checkpoint_at=at, attempt=attempt) for spec, attempt in items]
            outs.append(done[0] if single else done)
        return outs


def test_tiny_campaigns_run_several_per_task_and_are_stored_one_by_one(tmp_path, monkeypatch):
    from alharness.execution import scheduler

    monkeypatch.setattr(scheduler, "CHUNK_S", 1e6)  # every campaign counts as tiny: chunks as large as allowed
    bench = parse_benchmark(_doc(seeds=range(8)))
    summary = run_benchmark(bench, tmp_path, backend=(b := Chunking()), max_concurrent=1, progress=False)
    # Nothing measured yet: one campaign alone; then at most half of what is left per task (the last ones stay small).
    assert b.sizes == [1, 4, 2, 1]
    assert summary.ok == 8 and not summary.failed
    assert store.finished_ids(tmp_path) == {s.campaign_id for s in bench.specs}
    con, _ = store.connect(tmp_path)
    assert con.execute("SELECT count(DISTINCT campaign_id), count(*) FROM rounds").fetchone() == (8, 8 * 2)
    assert not list((tmp_path / "checkpoints").iterdir())


def test_a_chunk_whose_task_died_runs_again_one_campaign_per_task(tmp_path, monkeypatch):
    from alharness.execution import scheduler

    monkeypatch.setattr(scheduler, "CHUNK_S", 1e6)
    bench = parse_benchmark(_doc(seeds=range(8)))
    victim = bench.specs[3].campaign_id
    summary = run_benchmark(bench, tmp_path, backend=(b := Chunking(dies=[victim])), max_concurrent=1, attempts=3,
                            progress=False)
    # The chunk of campaigns 1-4 died: each again alone, and only the victim, dying alone too, is recorded failed.
    assert b.sizes == [1, 4, 1, 1, 1, 1, 2, 1]
    assert summary.ok == 7 and [f["campaign_id"] for f in summary.failed] == [victim]
    con, _ = store.connect(tmp_path)
    assert con.execute("SELECT status, attempt FROM campaigns WHERE campaign_id = ?", [victim]).fetchall() == [("failed", 1)]


def test_a_raising_campaign_in_a_chunk_is_retried_alone(tmp_path, monkeypatch):
    from alharness.execution import scheduler

    monkeypatch.setattr(scheduler, "CHUNK_S", 1e6)
    bench = parse_benchmark(_doc(["random", {"name": "test_flaky", "counter": str(tmp_path / "c"), "failures": 1}],
                                 seeds=range(3)))
    summary = run_benchmark(bench, tmp_path / "out", backend=(b := Chunking()), max_concurrent=1, attempts=2,
                            progress=False)
    assert max(b.sizes) > 1 and summary.ok == 6 and not summary.failed
    con, _ = store.connect(tmp_path / "out")
    assert sorted(a for (a,) in con.execute("SELECT attempt FROM campaigns").fetchall()) == [1] * 5 + [2]
