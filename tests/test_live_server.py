"""A live campaign's round trip through a real Label Studio, and a look at its labelling page.

One Label Studio (PyPI ``label-studio``, from its own virtualenv ``.venv-ls``
that ``make test`` creates) runs on 127.0.0.1 with SQLite and a test user for
the whole module (``tests/label_studio_server.py``). For every query type,
a live campaign (round 0: two masks already labelled) proposes round 1;
the test creates a project with alharness's labelling config for that type
through the HTTP API, adds the run's images as local-files storage, imports
the round's task file, posts one annotation per task as an annotator would
(the ground-truth answer, with a lead time the test chooses), exports the
project as JSON and imports the export with ``alharness live import``. The
ledger then holds exactly those answers with those lead times, and the same
label state and ledger as a shadow-mode import of the same round.

Then headless Chromium, logged in as the test user, opens the labelling page
of an annotated region task and takes a screenshot (kept in the test's tmp
folder; ``ALHARNESS_LS_SCREENSHOT=PATH`` also copies it there).

Without ``.venv-ls`` the tests are skipped with a note, except under
``CI=true``, where they fail: CI runs ``make test``, which creates it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import label_studio_server as lss
from test_live import KINDS, _benchmark, _same_labels, _start, data  # noqa: F401  (data: the module's fixture)

CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    if lss.executable() is None:
        named = os.environ.get("ALHARNESS_LABEL_STUDIO")
        note = (f"ALHARNESS_LABEL_STUDIO={named} is not an executable" if named else
                f"Label Studio is not installed in {lss.LS_VENV}: `make test` creates it "
                f"(pip install label-studio into a virtualenv of its own)")
        if CI:
            pytest.fail(f"{note}; under CI=true the real-server test must run")
        pytest.skip(note)
    root = tmp_path_factory.mktemp("label-studio")
    # the document root "/" is the one the tasks' default image URLs assume (docs/live.md, section 4)
    with lss.LabelStudio(root, Path("/")) as server:
        yield server
    assert server.proc.poll() is not None, "the Label Studio server is still running"


@dataclass
class RoundTrip:
    run_dir: Path
    shadow_dir: Path  # a copy of the run, answered in shadow mode instead
    project: int
    ls_tasks: dict[str, int]  # alharness task id -> Label Studio task id
    lead_times: dict[str, float]  # what the test posted
    export: Path
    output: str  # what `alharness live import` printed
    user_id: int


def _round_trip(server: lss.LabelStudio, data, tmp: Path, kind: str, capsys) -> RoundTrip:
    from alharness.cli import main
    from alharness.live import campaign as live
    from alharness.live.shadow import shadow_export

    masks = tmp / "masks"
    masks.mkdir()
    for stem in ("p01", "p04"):
        shutil.copy(data["pool_masks"] / f"{stem}.png", masks / f"{stem}.png")
    bench = _benchmark(data, tmp / "bench.toml", "live_test_kind", {"kind": kind}, budget=50)
    run = _start(data, bench, tmp / "run", "live_test_kind", masks=str(masks))
    assert run.open_round == 1 and {t.query.kind for t in run.rounds[1]} == {kind}
    shadow_dir = tmp / "shadow-run"
    shutil.copytree(run.directory, shadow_dir)

    # the project, as docs/live.md says: alharness's labelling config, local-files storage for the images
    config = (run.directory / "label-studio" / f"{kind}.xml").read_text()
    project = server.api("POST", "/api/projects/", {"title": f"alharness {kind}", "label_config": config})["id"]
    server.api("POST", "/api/storages/localfiles/", {"project": project, "title": "pool",
                                                      "path": str((run.directory / "images").resolve())})
    tasks_file = json.loads((run.directory / "tasks" / "round-001" / f"{kind}.json").read_text())
    imported = server.api("POST", f"/api/projects/{project}/import", tasks_file)
    assert imported["task_count"] == len(run.rounds[1]) and imported["prediction_count"] == len(run.rounds[1])
    listed = server.api("GET", f"/api/tasks/?project={project}&page_size=1000")["tasks"]
    ls_tasks = {t["data"]["alharness_task"]: t["id"] for t in listed}
    assert sorted(ls_tasks) == sorted(t.id for t in run.rounds[1])
    image = server.request("GET", listed[0]["data"]["image"])  # the task's image URL, as the labelling page loads it
    assert image.startswith(b"\x89PNG")

    # the annotator: the ground-truth answer of every task, each with its own lead time
    truth, _ = shadow_export(run, data["pool_masks"], "label-studio")
    results = {t["data"]["alharness_task"]: t["annotations"][0]["result"] for t in truth}
    lead_times = {tid: 7.25 + 3.5 * k for k, tid in enumerate(sorted(ls_tasks))}
    for tid, ls_id in ls_tasks.items():
        posted = server.api("POST", f"/api/tasks/{ls_id}/annotations/",
                            {"result": results[tid], "lead_time": lead_times[tid], "was_cancelled": False})
        assert posted["task"] == ls_id
    export = tmp / f"project-{project}-export.json"
    export.write_bytes(server.request("GET", f"/api/projects/{project}/export?exportType=JSON"))

    capsys.readouterr()
    rc = main(["live", "import", str(run.directory), str(export)])
    output = "".join(capsys.readouterr())
    assert rc == 0, output
    shadow_file = tmp / "shadow.json"
    shadow_file.write_text(json.dumps(truth))
    live.import_export(live.open_run(shadow_dir), shadow_file)
    user_id = server.api("GET", "/api/current-user/whoami")["id"]
    return RoundTrip(run.directory, shadow_dir, project, ls_tasks, lead_times, export, output, user_id)


@pytest.fixture(scope="module")
def round_trips(label_studio, data, tmp_path_factory):
    """The round trip of each query type, made once (the browser check looks at one of them)."""
    done: dict[str, RoundTrip] = {}

    def get(kind: str, capsys) -> RoundTrip:
        if kind not in done:
            done[kind] = _round_trip(label_studio, data, tmp_path_factory.mktemp(f"ls-{kind}"), kind, capsys)
        return done[kind]

    return get


def _same_value(a, b) -> bool:
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and (a == b).all()
    return a == b


def _costs(entry) -> dict[str, float | None]:
    return {m: None if math.isnan(v) else v for m, v in entry.costs.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_a_round_trips_through_a_real_label_studio(round_trips, kind, capsys):
    from alharness.live import campaign as live
    from alharness.results import store

    trip = round_trips(kind, capsys)
    n = len(trip.ls_tasks)
    assert f"recorded {n} answer(s) from {trip.export}, {sum(trip.lead_times.values()):g} s of annotation time" \
        in trip.output, trip.output
    assert f"next: alharness live next {trip.run_dir}" in trip.output
    run, shadow = live.open_run(trip.run_dir), live.open_run(trip.shadow_dir)
    round1 = [t.id for t in run.rounds[1]]
    # exactly those answers: the ground truth's values, the posted lead times, the annotator's Label Studio id
    assert sorted(t for t in run.answers if t in set(round1)) == sorted(round1) and not run.pending()
    for tid in round1:
        got, expected = run.answers[tid], shadow.answers[tid]
        assert _same_value(got.value, expected.value), (tid, got.value, expected.value)
        assert got.lead_time == trip.lead_times[tid]
        assert got.annotator == str(trip.user_id)
    # the ledger and the label state are the shadow import's
    assert [(e.round, e.query) for e in run.state.oracle.ledger] == [(e.round, e.query) for e in shadow.state.oracle.ledger]
    assert [_costs(e) for e in run.state.oracle.ledger] == [_costs(e) for e in shadow.state.oracle.ledger]
    assert len([e for e in run.state.oracle.ledger if e.round == 1]) == n
    _same_labels(run.state.labels, shadow.state.labels)
    # and the queries table holds each answer's lead time
    con, res = store.connect(run.directory)
    assert not res.problems
    rows = dict(con.execute("SELECT task, lead_time FROM queries WHERE round = 1").fetchall())
    assert rows == trip.lead_times
    # the export refuses to be recorded twice
    from alharness.cli import main

    capsys.readouterr()
    assert main(["live", "import", str(trip.run_dir), str(trip.export)]) == 2
    assert "duplicate answers" in "".join(capsys.readouterr())


def test_the_labelling_page_shows_an_exported_task(round_trips, label_studio, tmp_path, capsys):
    """Headless Chromium, logged in as the test user, opens the labelling page of an annotated region task."""
    if lss.chromium() is None:
        if CI:
            pytest.fail("Chromium is required in CI: the Makefile's test target installs Debian's chromium")
        pytest.skip("headless Chromium not installed (make test installs Debian's chromium where it can)")
    from PIL import Image

    from alharness.live import campaign as live

    trip = round_trips("region", capsys)
    run = live.open_run(trip.run_dir)
    task = run.rounds[1][0]
    stem = run.facts.stems[int(task.query.image)]
    ls_id = trip.ls_tasks[task.id]
    names = ["paint inside", *sorted({run.facts.class_names[int(c)] for c in np.unique(run.answers[task.id].value)
                                      if c != run.facts.ignore_index})]
    # ready: the labelling canvas is drawn, an image is loaded in it (not only as the table's thumbnail), and the
    # page names the task's regions; the image's pixels come back, to be compared with the task's image file
    ready = ("(() => { const img = Array.from(document.images).find(i => !i.closest('.lsf-table__cell') &&"
             " i.complete && i.naturalWidth > 0 && (i.src.startsWith('blob:') || i.src.includes('images/%s.png')));"
             " const text = document.body.innerText;"
             " if (!(document.querySelector('canvas') && img && %s.every(n => text.includes(n)))) return null;"
             " const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;"
             " const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);"
             " return {width: c.width, height: c.height, header: text.includes(%s),"
             " pixels: Array.from(ctx.getImageData(0, 0, c.width, c.height).data)}; })()"
             % (stem, json.dumps(names), json.dumps("Paint every pixel inside")))
    shot = tmp_path / "label-studio-region-task.png"
    page = f"{label_studio.url}/projects/{trip.project}/data?task={ls_id}"
    seen = lss.screenshot(page, label_studio.session_cookie(), shot, ready)
    copy = os.environ.get("ALHARNESS_LS_SCREENSHOT")
    if copy:
        shutil.copy(shot, copy)
    assert (seen["width"], seen["height"], seen["header"]) == (16, 16, True), {k: seen[k] for k in ("width", "height", "header")}
    shown = np.array(seen["pixels"], np.uint8).reshape(16, 16, 4)[..., :3]
    np.testing.assert_array_equal(shown, np.asarray(Image.open(run.directory / "images" / f"{stem}.png").convert("RGB")))
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape == (1000, 1400, 3)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200  # a rendered page, not a blank one


def test_a_server_that_never_answers_is_stopped_in_time(tmp_path, monkeypatch):
    """The start is bounded and a server that never answers is stopped (its whole process group)."""
    fake = tmp_path / "label-studio"
    fake.write_text("#!/bin/sh\nsleep 600 &\nexec sleep 600\n")  # a server, and a child of its own, that never answer
    fake.chmod(0o755)
    monkeypatch.setenv("ALHARNESS_LABEL_STUDIO", str(fake))
    monkeypatch.setattr(lss, "START_TIMEOUT", 1.5)
    server = lss.LabelStudio(tmp_path, Path("/"))
    with pytest.raises(lss.LabelStudioError, match="did not answer within 1.5 s"):
        with server:
            pytest.fail("the server answered")
    assert server.proc.poll() is not None
    deadline = time.monotonic() + 10
    while _group_alive(server.proc.pid) and time.monotonic() < deadline:  # killed children may linger as zombies
        time.sleep(0.1)
    assert not _group_alive(server.proc.pid), "something of the server's process group is still running"


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is in the group."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
