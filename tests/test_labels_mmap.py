"""Pixel labels above ALHARNESS_LABELS_MMAP_BYTES live in a nameless memory-mapped
file on scratch: same rows, same checkpoints, nothing writable from the strategy process."""

from __future__ import annotations

import gc
import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest

from alharness.annotation.labels import MMAP_BYTES_ENV, SCRATCH_ENV, LabelState
from alharness.campaign.loop import run_campaign
from alharness.campaign.strategy_worker import recv_shared, send_shared
from conftest import result_columns, tiny_spec
from test_faults_checkpoint import _interrupted_then_resumed


def _maps_under(directory: Path) -> int:
    """Mappings of this process backed by files in ``directory`` (deleted ones included)."""
    return sum(str(directory) in line for line in Path("/proc/self/maps").read_text().splitlines())


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    d = tmp_path / "scratch"
    d.mkdir()
    monkeypatch.setenv(SCRATCH_ENV, str(d))
    return d


def _fill(state: LabelState) -> None:
    state.set_full_mask(1, np.arange(48, dtype=np.uint8).reshape(6, 8) % 3)
    state.set_pixels(3, (slice(0, 2), slice(1, 4)), np.full((2, 3), 2, np.uint8))
    state.set_image_labels(4, np.array([1, 0, 1], bool))


def test_above_the_threshold_the_pixels_are_a_nameless_map_with_the_same_bytes(scratch):
    ram = LabelState(5, (6, 8), 3, 255)
    mapped = LabelState(5, (6, 8), 3, 255, mmap_bytes=0)
    assert not ram.memory_mapped and mapped.memory_mapped
    assert list(scratch.iterdir()) == []  # unlinked as it was created: nothing to clean up by name
    assert _maps_under(scratch) == 1
    for s in (ram, mapped):
        _fill(s)
    assert np.array_equal(np.asarray(mapped.pixels), ram.pixels)
    assert mapped.digest() == ram.digest()
    assert mapped.labelled_pixel_fraction() == ram.labelled_pixel_fraction()
    assert list(mapped.labelled_images()) == list(ram.labelled_images()) == [1, 3]
    view = mapped.view()
    assert type(view.pixels) is np.ndarray and not view.pixels.flags.writeable
    assert getattr(view.pixels, "filename", None) is None
    del mapped, view, s
    gc.collect()
    assert _maps_under(scratch) == 0  # the space went back with the label state


def test_the_threshold_comes_from_the_environment(scratch, monkeypatch):
    monkeypatch.setenv(MMAP_BYTES_ENV, "240")  # 5 x 6 x 8 = 240 bytes of pixels
    assert LabelState(5, (6, 8), 3, 255).memory_mapped
    assert not LabelState(4, (6, 8), 3, 255).memory_mapped
    monkeypatch.setenv(MMAP_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match=MMAP_BYTES_ENV):
        LabelState(5, (6, 8), 3, 255)


def test_the_strategy_process_receives_a_read_only_copy_not_the_map(scratch):
    state = LabelState(64, (128, 160), 3, 255, mmap_bytes=0)  # 1.25 MiB: sent as a sealed memfd
    state.set_full_mask(1, np.arange(128 * 160, dtype=np.uint8).reshape(128, 160) % 3)
    a, b = multiprocessing.Pipe()
    send_shared(a, {"pixels": state.view().pixels})
    got = recv_shared(b)["pixels"]
    assert np.array_equal(got, np.asarray(state.pixels))
    assert not np.shares_memory(got, np.asarray(state.pixels))
    with pytest.raises(ValueError):
        got.setflags(write=True)  # the buffer itself is read-only there
    state.pixels[0, 0, 0] = 1
    assert got[0, 0, 0] == 255  # a copy, not the file
    assert len(pickle.dumps(state.view().pixels, protocol=5, buffer_callback=lambda _: False)) < 4096


@pytest.mark.parametrize("strategy", ["entropy", "random"])
def test_a_campaign_with_mapped_labels_gives_the_same_rows(strategy, scratch, monkeypatch):
    spec = tiny_spec(strategy=strategy)
    plain = run_campaign(spec)
    monkeypatch.setenv(MMAP_BYTES_ENV, "0")
    maps: list[int] = []
    mapped = run_campaign(spec, on_round=lambda row: maps.append(_maps_under(scratch)))
    assert maps and min(maps) >= 1  # the labels were on scratch during every round
    assert result_columns(mapped.rows) == result_columns(plain.rows)
    assert len(mapped.queries) == len(plain.queries)
    gc.collect()
    assert _maps_under(scratch) == 0  # and gone once the campaign ended


def test_a_resumed_campaign_with_mapped_labels_gives_the_same_rows(scratch, monkeypatch, tmp_path):
    spec = tiny_spec(strategy="entropy", rounds=3)
    plain = run_campaign(spec)
    monkeypatch.setenv(MMAP_BYTES_ENV, "0")
    for stop in range(spec.rounds - 1):
        res, ck = _interrupted_then_resumed(spec, tmp_path / f"stop{stop}", stop)
        assert ck.resumed_round == stop
        assert result_columns(res.rows) == result_columns(plain.rows), f"rows differ after resuming from round {stop}"


def test_from_the_threshold_on_arrays_travel_as_nameless_read_only_scratch_files(scratch, monkeypatch):
    """Pool images and pixel labels at least ALHARNESS_LABELS_MMAP_BYTES reach the strategy process as a
    file on scratch unlinked at birth (page cache the kernel can reclaim), not as a memfd held in RAM."""
    from alharness.campaign.strategy_worker import spilled_if_large

    monkeypatch.setenv(MMAP_BYTES_ENV, str(2**20))
    big = np.arange(2**20, dtype=np.uint8).reshape(1024, 1024)
    small = np.arange(2**10, dtype=np.uint8)
    memfds = lambda: Path("/proc/self/maps").read_text().count("memfd:")  # noqa: E731
    before = memfds()
    a, b = multiprocessing.Pipe()
    send_shared(a, {"big": spilled_if_large(big), "small": spilled_if_large(small), "empty": spilled_if_large(big[:0])})
    got = recv_shared(b)
    assert np.array_equal(got["big"], big) and np.array_equal(got["small"], small) and got["empty"].shape == (0, 1024)
    assert not np.shares_memory(got["big"], big) and not got["big"].flags.writeable
    with pytest.raises(ValueError):
        got["big"].setflags(write=True)
    assert _maps_under(scratch) == 1  # the big array only; its file has no name there
    assert list(scratch.iterdir()) == []
    assert memfds() == before
    del got
    gc.collect()
    assert _maps_under(scratch) == 0


def test_a_campaign_whose_pool_and_labels_travel_through_scratch_gives_the_same_rows(scratch, monkeypatch):
    spec = tiny_spec(strategy="entropy", rounds=2)
    plain = run_campaign(spec)
    monkeypatch.setenv(MMAP_BYTES_ENV, "1")  # every array: the pool's images once, the labels every round
    spilled = run_campaign(spec)
    assert result_columns(spilled.rows) == result_columns(plain.rows)
    assert spilled.queries == plain.queries


def test_a_message_that_lost_its_shared_files_is_a_wire_error_not_the_end_of_the_peer():
    """The strategy process answers a request it cannot read with an error (WireError); only a closed
    pipe (EOFError) means the campaign process is gone."""
    import os
    import socket

    from alharness.campaign.strategy_worker import WireError

    a, b = multiprocessing.Pipe()
    a.send_bytes(pickle.dumps(("score", None)))
    sock = socket.socket(fileno=os.dup(a.fileno()))
    try:  # the header promises one shared file; none comes with it
        socket.send_fds(sock, [(0).to_bytes(4, "little") + (1).to_bytes(4, "little")], [])
    finally:
        sock.close()
    with pytest.raises(WireError, match="lost its shared buffers"):
        recv_shared(b)
    a.close()
    with pytest.raises(EOFError):
        recv_shared(b)
