"""What a campaign carries from one round to the next.

``CampaignState`` is the one object the loop mutates between rounds and
the one object a checkpoint saves and restores
(alharness.campaign.checkpoint). Its handles (labels, oracle, learner,
strategy, annotator) are live objects the checkpoint packs in its own way;
every other field is a plain picklable value saved as it is, so a field
added here is checkpointed without touching the checkpoint code.

The state lives on the harness side: the strategy never receives it, only
the context built from it each round (alharness.campaign.context).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from alharness.annotation.labels import LabelState
from alharness.annotation.noise import Annotator
from alharness.annotation.oracle import Oracle
from alharness.contract.strategy import Strategy
from alharness.learner import Learner

# Live objects, checkpointed through their own state (not pickled as fields).
HANDLES = ("labels", "oracle", "learner", "strategy", "annotator")


def _untrained_fit() -> dict[str, Any]:
    return {"train_steps": 0, "final_loss": float("nan")}


@dataclass
class CampaignState:
    """The labels bought, the oracle and its ledger, the model, the strategy
    and the loop's own values after the last finished round."""

    labels: LabelState
    oracle: Oracle
    learner: Learner
    strategy: Strategy
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

    def carried(self) -> dict[str, Any]:
        """The plain values (everything but the handles), by field name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in HANDLES}

    def restore(self, carried: dict[str, Any]) -> None:
        """Put back values from ``carried()``."""
        for name, value in carried.items():
            if name in HANDLES:
                raise ValueError(f"{name!r} is a handle, not a carried value")
            setattr(self, name, value)
