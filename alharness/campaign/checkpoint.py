"""Per-round campaign checkpoints, next to the results.

After every finished round but the last, the campaign loop saves everything
that the remaining rounds depend on, so a campaign whose worker or node died
(or whose driver was killed) continues from its last saved round and, on
CPU, produces exactly the rows an uninterrupted run produces (the last
round's checkpoint would be deleted as soon as the results are committed, so
it is not written: a driver killed in between reruns that round, to the same
rows):

* the label state (pixels stored only for images with a label, held-out
  flags included),
* the ledger (every charged answer; totals and the duplicate-query keys
  are rebuilt from it by pickling the Ledger object),
* the annotator-noise generator's state (the only RNG that runs across
  rounds; every other stream is derived per round from the spec's seed,
  ``alharness.seeding``) and torch's global RNG state,
* the learner's state: its networks' weights and every attribute
  (round r+1's predictions come from round r's model; with
  ``warm_start`` training continues from it too),
* the strategy's own state (see the contract below), pickled where the
  strategy runs (its process or this one) and kept here as an opaque blob,
* every other field of the loop's ``CampaignState``
  (alharness.campaign.state): the rows so far, the next round, what round 0
  spent and the last scores, saved by name.

Strategy contract: whatever a strategy keeps between rounds lives in its
instance attributes. ``Strategy.get_state()`` returns it (default: a copy
of ``vars(self)``) and ``Strategy.set_state(state)`` puts it back on a
freshly constructed instance. The checkpoint pickles that state, so a
strategy holding something unpicklable (an open file, a CUDA stream) must
override both. MetaBox's fixed meta set, the LP strategies' diagnostics and
every other built-in strategy's state work with the default.

A checkpoint is one file ``checkpoints/<campaign_id>.ckpt``, replaced
atomically each round (the location's ``write_bytes``); the scheduler deletes
it once the campaign's results are committed. A checkpoint that cannot be
read, or that belongs to another campaign or format, is ignored and the
campaign starts over (never silently mixes states).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np


if TYPE_CHECKING:
    from alharness.campaign.state import CampaignState

# 3: the carried values include the label state's digest, and the strategy's
# state may be a pickle from its process (2: without; 1: a positional tuple).
FORMAT = 3


class ByteLocation(Protocol):
    """Where checkpoints are kept: a results location (``alharness.results.store.Location``
    satisfies this; the campaign layer needs only these four calls, not the store)."""

    def write_bytes(self, rel: str, data: bytes, *, durable: bool = True) -> None: ...
    def read_bytes(self, rel: str) -> bytes | None: ...
    def delete(self, rel: str) -> None: ...
    def path(self, rel: str) -> str: ...


def _pack_labels(state) -> dict[str, Any]:
    # Pixel labels are (N, H, W); a campaign labels a few images, so keep
    # only their rows (a 3000-image Cityscapes pool is 1.5 GB dense), found a
    # few images at a time and copied out as plain arrays (the pixels may be
    # a memory map on scratch, alharness.annotation.labels, which the
    # checkpoint must not refer to).
    rows = state.labelled_images()
    return {"rows": rows, "pixels": np.asarray(state.pixels)[rows], "image_labels": state.image_labels.copy(),
            "has_full_mask": state.has_full_mask.copy(), "counts": state.counts.copy(),
            "boxes": {k: v.copy() for k, v in state.boxes.items()}, "held_out": state.held_out.copy()}


def _unpack_labels(packed: dict[str, Any], state) -> None:
    state.pixels[...] = state.ignore_index
    state.pixels[packed["rows"]] = packed["pixels"]
    state.image_labels[...] = packed["image_labels"]
    state.has_full_mask[...] = packed["has_full_mask"]
    state.counts[...] = packed["counts"]
    state.boxes = dict(packed["boxes"])
    # A checkpoint from before held-out purchases holds none.
    state.held_out[...] = packed.get("held_out", False)


def _learner_state(learner) -> dict[str, Any]:
    """Every attribute of the learner. Its network goes as a state dict
    (weights and batch-norm statistics): pickling the nn.Module object itself
    cost ~60 ms per save on a tiny U-Net, a third of a minimal campaign. A
    learner inside a pipeline (BASIS keeps an annotation and a segmentation
    learner) is captured the same way."""
    from alharness.learner.learner import Learner

    state: dict[str, Any] = {}
    for key, value in vars(learner).items():
        if isinstance(learner, Learner) and key == "model" and value is not None:
            state[key] = _Weights({k: v.detach().clone() for k, v in value.state_dict().items()})
        elif isinstance(value, Learner):
            state[key] = _Nested(_learner_state(value))
        else:
            state[key] = value
    return state


def _set_learner_state(learner, state: dict[str, Any]) -> None:
    for key, value in state.items():
        if isinstance(value, _Weights):
            # The architecture does not depend on the seed; the weights replace the init.
            net, _ = learner._build(0)
            net.load_state_dict(value.tensors)
            net.eval()
            value = net
        elif isinstance(value, _Nested):
            _set_learner_state(getattr(learner, key), value.state)
            continue
        setattr(learner, key, value)


@dataclass
class _Weights:
    tensors: dict


@dataclass
class _Nested:
    state: dict


class Checkpointer:
    """Saves and loads one campaign's per-round checkpoint at a results location."""

    def __init__(self, location: "ByteLocation", campaign_id: str):
        self.location = location
        self.campaign_id = campaign_id
        self.rel = f"checkpoints/{campaign_id}.ckpt"
        # The round the campaign resumed after (None: it started from scratch).
        self.resumed_round: int | None = None
        self.saves = 0

    # -- the loop's two calls -------------------------------------------------
    def save(self, state: "CampaignState") -> None:
        """After a finished round: write everything the next rounds need."""
        import torch

        snap = {
            "format": FORMAT,
            "campaign_id": self.campaign_id,
            # Rows so far, next round, last scores: every plain field, by name.
            "carried": state.carried(),
            "labels": _pack_labels(state.labels),
            "ledger": state.oracle.ledger,
            "annotator_rng": None if state.annotator is None else state.annotator.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "learner": _learner_state(state.learner),
            "strategy": state.strategy.get_state(),
        }
        buf = io.BytesIO()
        torch.save(snap, buf)
        self.location.write_bytes(self.rel, buf.getvalue(), durable=False)
        self.saves += 1

    def resume(self, state: "CampaignState") -> bool:
        """Restore the last checkpoint into a freshly built campaign state.

        Returns False (``state`` untouched) when there is no usable checkpoint.
        """
        import torch

        snap = self.load()
        if snap is None:
            return False
        _unpack_labels(snap["labels"], state.labels)
        state.oracle.ledger = snap["ledger"]
        if state.annotator is not None and snap["annotator_rng"] is not None:
            state.annotator.rng.bit_generator.state = snap["annotator_rng"]
        _set_learner_state(state.learner, snap["learner"])
        state.strategy.set_state(snap["strategy"])
        torch.set_rng_state(snap["torch_rng"])
        state.restore(snap["carried"])
        self.resumed_round = state.next_round - 1
        return True

    # -- file ---------------------------------------------------------------------
    def load(self) -> dict[str, Any] | None:
        import torch

        data = self.location.read_bytes(self.rel)
        if data is None:
            return None
        try:
            # Networks come back on the device they were saved from when it exists here.
            snap = torch.load(io.BytesIO(data), weights_only=False, map_location=None if torch.cuda.is_available() else "cpu")
        except Exception as exc:  # a truncated or foreign file: start over rather than guess
            warnings.warn(f"{self.location.path(self.rel)}: unreadable checkpoint ({type(exc).__name__}); starting over")
            return None
        if not isinstance(snap, dict) or snap.get("format") != FORMAT or snap.get("campaign_id") != self.campaign_id:
            warnings.warn(f"{self.location.path(self.rel)}: checkpoint of another campaign or format; starting over")
            return None
        return snap

    def delete(self) -> None:
        self.location.delete(self.rel)


def delete_checkpoints(location: "ByteLocation", campaign_ids) -> None:
    """Remove the checkpoints of campaigns whose results are committed."""
    loc = location
    for cid in campaign_ids:
        loc.delete(f"checkpoints/{cid}.ckpt")
