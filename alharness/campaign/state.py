"""What a campaign carries from one round to the next.

``CampaignState`` is the one object the loop mutates between rounds and
the one object a checkpoint saves and restores
(alharness.campaign.checkpoint). Its handles (labels, oracle, learner,
strategy, annotator) are live objects the checkpoint packs in its own way;
every other field is a plain picklable value saved as it is, so a field
added here is checkpointed without touching the checkpoint code.

The state lives on the harness side: the strategy never receives it, only
the context built from it each round (alharness.campaign.context).

The learner trains only on what the ledger holds: ``labels_digest`` is the
label state's digest after the oracle's last answer (``record_labels``), and
``verify_labels`` fails the campaign with ``LabelStateError`` when the label
state differs from it, or when its full (or held-out) masks are not the ledger's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from alharness.annotation.labels import LabelState
from alharness.annotation.noise import Annotator
from alharness.annotation.oracle import Oracle
from alharness.campaign.strategy_worker import StrategyHandle
from alharness.contract.queries import HELD_OUT_MASK, FullMask
from alharness.errors import AlharnessError
from alharness.learner import Learner

# Live objects, checkpointed through their own state (not pickled as fields).
HANDLES = ("labels", "oracle", "learner", "strategy", "annotator")


class LabelStateError(AlharnessError):
    """The label state disagrees with the ledger: labels were written outside the oracle."""


def _untrained_fit() -> dict[str, Any]:
    return {"train_steps": 0, "final_loss": float("nan")}


@dataclass
class CampaignState:
    """The labels bought, the oracle and its ledger, the model, the strategy
    and the loop's own values after the last finished round."""

    labels: LabelState
    oracle: Oracle
    learner: Learner
    strategy: StrategyHandle  # in a strategy process or in this one (alharness.campaign.strategy_worker)
    annotator: Annotator | None  # the noise generator, the only RNG that runs across rounds
    rows: list[dict[str, Any]] = field(default_factory=list)
    next_round: int = 0
    # What round 0 spent; later rounds spread the rest of the budget evenly.
    spent_after_initial: float = 0.0
    # The last evaluation: a round that buys nothing keeps the model, so its row repeats these.
    miou: float = 0.0
    class_iou: list[float] = field(default_factory=list)
    ap50: float | None = None
    extra_scores: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=_untrained_fit)
    # The label state's digest after the oracle's last answer (LabelState.digest).
    labels_digest: str = ""

    def record_labels(self) -> None:
        """After the oracle wrote its answers: the digest the labels must keep until its next answer."""
        self.labels_digest = self.labels.digest()

    def verify_labels(self, when: str) -> None:
        """LabelStateError unless the label state is what the oracle's answers made it."""
        if self.labels.digest() != self.labels_digest:
            raise LabelStateError(
                f"the label state changed outside the oracle ({when}): it no longer matches what the ledger "
                "bought, so the campaign is failed (never ranked); strategies must treat ctx.labels as read-only")
        # The ledger's count, not its entries: reading them back costs O(answers).
        ledger = self.oracle.ledger
        for what, flags, kind in (("full", self.labels.has_full_mask, FullMask.kind),
                                  ("held-out", self.labels.held_out, HELD_OUT_MASK)):
            if int(np.count_nonzero(flags)) != ledger.count(kind):
                raise LabelStateError(f"the label state holds {int(np.count_nonzero(flags))} {what} masks but the "
                                      f"ledger bought {ledger.count(kind)} ({when}); the campaign is failed")

    def carried(self) -> dict[str, Any]:
        """The plain values (everything but the handles), by field name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in HANDLES}

    def restore(self, carried: dict[str, Any]) -> None:
        """Put back values from ``carried()``."""
        for name, value in carried.items():
            if name in HANDLES:
                raise ValueError(f"{name!r} is a handle, not a carried value")
            setattr(self, name, value)
