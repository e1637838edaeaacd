"""Per-round checkpoints: a campaign interrupted after any round and resumed
produces exactly the rows and query log of an uninterrupted run (CPU)."""

from __future__ import annotations

import io

import pytest

from alharness.campaign.loop import run_campaign
from alharness.campaign.checkpoint import Checkpointer
from alharness.results.store import Location
from conftest import TINY_LEARNER, result_columns, tiny_spec


class Interrupt(Exception):
    pass


def _interrupted_then_resumed(spec, where, stop_after: int):
    """Run until round ``stop_after`` has been checkpointed, die, resume with a fresh checkpointer."""
    def die(row):
        if row["round"] == stop_after:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_campaign(spec, on_round=die, checkpoint=Checkpointer(Location(where), spec.campaign_id))
    ck = Checkpointer(Location(where), spec.campaign_id)
    res = run_campaign(spec, checkpoint=ck)
    return res, ck


# Stateful cases: MetaBox keeps its fixed meta set between rounds; noise draws
# from one generator across rounds; warm_start continues from last round's weights.
CASES = {
    "entropy": dict(strategy="entropy"),
    "metabox+noise": dict(strategy="metabox", budget=80, noise={"flip_rate": 0.2, "boundary_px": 1},
                          strategy_params={"box_size": 6, "boxes_per_round": 3, "initial_images": 1, "meta_images": 1,
                                           "n_estimators": 10}),
    "binary_ee+warm": dict(strategy="binary_ee", rounds=3, learner={**TINY_LEARNER, "warm_start": True}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_resumed_campaign_equals_uninterrupted_run(case, tmp_path):
    spec = tiny_spec(**CASES[case])
    plain = run_campaign(spec)
    for stop in range(spec.rounds):  # after every round but the last
        res, ck = _interrupted_then_resumed(spec, tmp_path / f"stop{stop}", stop)
        assert ck.resumed_round == stop
        assert ck.saves == spec.rounds - stop - 1  # only the remaining rounds ran (the last one is not saved)
        assert result_columns(res.rows) == result_columns(plain.rows), f"rows differ after resuming from round {stop}"
        assert res.queries == plain.queries or _same_queries(res.queries, plain.queries)


def _same_queries(a, b):
    import numpy as np

    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(np.asarray(x[k]), np.asarray(y[k])) for k in x) for x, y in zip(a, b))


def test_finished_checkpoint_replays_the_last_round_and_bad_checkpoints_start_over(tmp_path):
    spec = tiny_spec()
    ck = Checkpointer(Location(tmp_path), spec.campaign_id)
    first = run_campaign(spec, checkpoint=ck)
    assert ck.saves == spec.rounds  # every round but the last (its checkpoint would go on commit)
    # A campaign that finished but whose results were never committed (driver
    # died before writing them): the rerun replays only the last round, to the same rows.
    again = Checkpointer(Location(tmp_path), spec.campaign_id)
    res = run_campaign(spec, checkpoint=again)
    assert again.resumed_round == spec.rounds - 1 and again.saves == 0
    assert result_columns(res.rows) == result_columns(first.rows) and len(res.queries) == len(first.queries)
    # Half-written or foreign checkpoints are not trusted.
    path = tmp_path / "checkpoints" / f"{spec.campaign_id}.ckpt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        assert Checkpointer(Location(tmp_path), spec.campaign_id).load() is None
    other = tiny_spec(seed=1)
    path.rename(tmp_path / "checkpoints" / f"{other.campaign_id}.ckpt")
    run_campaign(spec, checkpoint=Checkpointer(Location(tmp_path), spec.campaign_id))
    (tmp_path / "checkpoints" / f"{spec.campaign_id}.ckpt").rename(tmp_path / "checkpoints" / f"{other.campaign_id}.ckpt")
    with pytest.warns(UserWarning, match="another campaign"):
        assert Checkpointer(Location(tmp_path), other.campaign_id).load() is None


def test_resume_restores_the_campaign_state_by_name(tmp_path):
    """Checkpointer.save(state) / resume(state) round-trip every carried field;
    no checkpoint leaves the fresh state alone; an old-format file is ignored."""
    import torch

    from alharness.campaign.checkpoint import FORMAT
    from alharness.campaign.loop import run_round, setup_campaign

    spec = tiny_spec(strategy="entropy")
    plain = run_campaign(spec)
    ck = Checkpointer(Location(tmp_path), spec.campaign_id)
    _, fresh = setup_campaign(spec)
    assert ck.resume(fresh) is False and fresh.next_round == 0 and fresh.rows == [] and ck.resumed_round is None
    setup, state = setup_campaign(spec)
    run_round(setup, state, 0)
    ck.save(state)
    setup, resumed = setup_campaign(spec)
    assert Checkpointer(Location(tmp_path), spec.campaign_id).resume(resumed) is True
    carried, saved = resumed.carried(), state.carried()
    assert carried.keys() == saved.keys() and "rows" in carried and "next_round" in carried
    assert resumed.next_round == 1 and result_columns(resumed.rows) == result_columns(plain.rows[:1])
    assert {k: v for k, v in carried.items() if k != "rows"} == {k: v for k, v in saved.items() if k != "rows"}
    assert result_columns([run_round(setup, resumed, 1)]) == result_columns(plain.rows[1:2])
    # A checkpoint of the format before CampaignState (a positional tuple) is not trusted.
    buf = io.BytesIO()
    torch.save({"format": FORMAT - 1, "campaign_id": spec.campaign_id, "round": 0, "carried": (0.0,)}, buf)
    ck.location.write_bytes(ck.rel, buf.getvalue())
    with pytest.warns(UserWarning, match="another campaign or format"):
        assert Checkpointer(Location(tmp_path), spec.campaign_id).resume(setup_campaign(spec)[1]) is False


@pytest.mark.parametrize("first, then", [(True, False), (False, True)], ids=["process-then-in", "in-then-process"])
def test_a_checkpoint_resumes_in_either_strategy_mode(first, then, tmp_path):
    """The strategy's state travels as a pickle from its process, as a dict in
    process; either resumes the other (MetaBox keeps its meta set in its state)."""
    case = CASES["metabox+noise"]
    plain = run_campaign(tiny_spec(**case))

    def die(row):
        raise Interrupt

    with pytest.raises(Interrupt):
        run_campaign(tiny_spec(**case, strategy_process=first), on_round=die,
                     checkpoint=Checkpointer(Location(tmp_path), plain.spec.campaign_id))
    ck = Checkpointer(Location(tmp_path), plain.spec.campaign_id)
    res = run_campaign(tiny_spec(**case, strategy_process=then), checkpoint=ck)
    assert ck.resumed_round == 0 and result_columns(res.rows) == result_columns(plain.rows)


def test_a_checkpoint_whose_labels_disagree_with_its_ledger_fails_the_campaign(tmp_path):
    import torch

    from alharness.campaign.state import LabelStateError

    spec = tiny_spec(rounds=2)
    with pytest.raises(Interrupt):
        run_campaign(spec, on_round=lambda row: (_ for _ in ()).throw(Interrupt()),
                     checkpoint=Checkpointer(Location(tmp_path), spec.campaign_id))
    ck = Checkpointer(Location(tmp_path), spec.campaign_id)
    snap = ck.load()
    snap["labels"]["image_labels"][:] = 1  # every class present in every image: labels nobody bought
    buf = io.BytesIO()
    torch.save(snap, buf)
    ck.location.write_bytes(ck.rel, buf.getvalue())
    with pytest.raises(LabelStateError, match="after resuming from the checkpoint"):
        run_campaign(spec, checkpoint=Checkpointer(Location(tmp_path), spec.campaign_id))
