"""Shadow mode: a live round trip on images whose ground truth is known.

``shadow_export`` answers the open round's tasks from ground-truth masks
with exactly the values the simulation's oracle gives
(``alharness.annotation.answers.answer``) and writes them as the chosen
annotation tool would export them, so that ``alharness live import`` reads
them like annotators' work. Run on a dataset with ground truth, export →
shadow answers → import → next reproduces the simulated campaign with the
same seed: the same label state, the same ledger (in every metric the
live campaign can price) and the same rows. Each answer's ``lead_time`` is
the simulated annotator's seconds (the ``seconds`` cost model on the truth).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from alharness.annotation.answers import answer
from alharness.annotation.truth import PoolTruth
from alharness.datasets.base import IGNORE_INDEX, SplitData
from alharness.live import formats
from alharness.live.campaign import LiveRun
from alharness.live.images import load_masks
from alharness.live.tasks import LiveError


def ground_truth(run: LiveRun, masks_dir: str | Path) -> PoolTruth:
    """The pool's ground truth from a folder of masks (one ``<stem>.png`` per pool image)."""
    cfg, facts = run.config, run.facts
    masks = load_masks(Path(masks_dir), list(facts.stems), [tuple(s) for s in cfg["sources"]], facts.image_shape,
                       cfg["resize"], facts.num_classes, every=True)
    pool = run.setup.pool_view
    return PoolTruth(SplitData(dataset_ids=np.arange(len(pool)), images=pool.images, instances=None,
                               masks=np.stack([masks[i] for i in range(len(pool))]), num_classes=facts.num_classes,
                               ignore_index=IGNORE_INDEX))


def shadow_export(run: LiveRun, masks_dir: str | Path, fmt: str | None = None) -> tuple[Any, int]:
    """An export answering every pending task of the open round from ground truth, and how many it answers."""
    if run.open_round is None:
        raise LiveError(f"{run.directory}: no round is open (finished, or not started)")
    truth = ground_truth(run, masks_dir)
    seconds = run.state.oracle.cost_models.get("seconds")
    answered = []
    for t in run.pending():
        image = truth.image(int(t.query.image))
        lead = None
        if seconds is not None:
            try:
                lead = float(seconds.cost(t.query, image))
            except Exception:  # a query type the seconds model does not price: no simulated time
                lead = None
        answered.append((t, answer(t.query, image), lead))
    info = {"description": f"shadow answers for live campaign {run.config['run']}, round {run.open_round}"}
    return formats.answers_export(fmt or run.config["format"], answered, run.facts, image_url=run.config["image_url"],
                                  info=info), len(answered)
