"""The campaign loop: a pure function of a CampaignSpec, no Ray.

round 0: the strategy's initial batch is bought, the model trained and
evaluated. Each later round: predict on the pool (only what the strategy
needs) → propose → the oracle checks, answers and charges → train → evaluate
on the test split. One row per round.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from alharness.annotation.costs import build_cost_models
from alharness.datasets.base import SplitData, make_pool_view
from alharness.errors import ConfigError, PluginError
from alharness.annotation.labels import LabelState
from alharness.learner import Learner, services as learner_services
from alharness.learner.pipeline import make_learner
from alharness.learner.services import pool_outputs
from alharness.annotation.noise import Annotator
from alharness.metrics import MaskAP, confusion_matrix, mean_iou, per_class_iou
from alharness.annotation.oracle import Oracle
from alharness.annotation.oracle_experiments import check_oracle_needs, oracle_outputs
from alharness.contract.queries import QUERY_TYPES
from alharness.registry import DATASETS, STRATEGIES
from alharness.seeding import derive_int_seed, derive_rng
from alharness.campaign.spec import CampaignSpec
from alharness.campaign.scoring import loop_outputs
from alharness.campaign.context import make_context
from alharness.contract.strategy import LOOP_NEEDS, NEEDS, ORACLE_NEEDS, Strategy

if TYPE_CHECKING:
    from alharness.campaign.checkpoint import Checkpointer

# Columns that measure where and how fast a campaign ran; they differ between
# identical runs. Everything else in a row is a deterministic result.
TIMING_COLUMNS = ("train_s", "predict_s", "select_s", "oracle_s", "eval_s", "round_s")
# Networks a learner may score besides its main one (``extra_networks()``,
# e.g. BASIS's annotation network): every row has ``<name>_miou`` and
# ``<name>_ap50`` (null when absent), so tables of mixed campaigns share columns.
EXTRA_NETWORK_COLUMNS = ("annotation",)


@dataclass
class CampaignResult:
    spec: CampaignSpec
    rows: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0


def _evaluate(learner: Learner, test: SplitData) -> tuple[float, list[float], float | None]:
    """Test mIoU, per-class IoU and, on datasets with instances, mask AP at IoU 0.5
    (instances: connected components of each predicted class)."""
    cm = np.zeros((test.num_classes, test.num_classes), np.int64)
    ap = MaskAP(test.num_classes, 0.5) if test.instances is not None else None
    for start, probs, _ in learner.predict_batches(test.images):
        pred = probs.argmax(1)
        cm += confusion_matrix(pred, test.masks[start : start + len(pred)], test.num_classes, test.ignore_index)
        if ap is not None:
            for k in range(len(pred)):
                ap.add(probs[k], test.masks[start + k], test.ignore_index, test.instances[start + k])
    return mean_iou(cm), [float(v) for v in per_class_iou(cm)], None if ap is None else ap.value()


def run_campaign(spec: CampaignSpec, on_round: Callable[[dict[str, Any]], None] | None = None,
                 checkpoint: "Checkpointer | None" = None) -> CampaignResult:
    """Run one campaign to the end and return its round rows and query log.

    ``checkpoint``: resume after its last saved round, save after every round
    (alharness.campaign.checkpoint; a resumed campaign's rows equal an uninterrupted run's)."""
    t_start = time.perf_counter()
    dataset = DATASETS.create(spec.dataset, **spec.dataset_params)
    pool, test = dataset.split("train"), dataset.split("test")
    val_split = dataset.split("val") if spec.validation != "none" else None
    pool_view = make_pool_view(pool, dataset.class_names)
    del dataset  # nothing below may reach other splits through it
    if val_split is not None and len(val_split) == 0:
        raise ConfigError(f"validation = {spec.validation!r}, but dataset {spec.dataset!r} has an empty val split")

    cost_models = build_cost_models(spec.costs)
    annotator = Annotator(spec.noise, derive_rng(spec.seed, "noise")) if spec.noise.active else None
    oracle = Oracle(pool, cost_models, spec.budget_metric, spec.budget, annotator)
    strategy: Strategy = STRATEGIES.create(spec.strategy, **spec.strategy_params)
    needs = frozenset(getattr(strategy, "needs", frozenset()))
    # Oracle experiments only: the pool truth stays on the harness side, for the statistic alone.
    oracle_truth = pool if check_oracle_needs(strategy, needs, spec.strategy) else None
    del pool
    if spec.validation == "charged":
        oracle.charge_validation(val_split)
    # Held-out data reaches the learner (early stopping), never the strategy.
    val = (val_split.images, val_split.masks) if val_split is not None and spec.learner.patience > 0 else None
    state = LabelState(len(pool_view), pool_view.image_shape, pool_view.num_classes, pool_view.ignore_index)
    learner = make_learner(spec.learner, pool_view.num_classes, pool_view.ignore_index)
    if needs - NEEDS - ORACLE_NEEDS - LOOP_NEEDS:
        raise PluginError(f"strategy {spec.strategy!r} needs {sorted(needs - NEEDS - ORACLE_NEEDS - LOOP_NEEDS)}; "
                          f"the loop provides {sorted(NEEDS | LOOP_NEEDS)} (and, to oracle experiments, {sorted(ORACLE_NEEDS)})")
    # A head the strategy needs but the learner does not build fails now, not after round 0 trained.
    learner_services.check_needs(spec.learner, needs - ORACLE_NEEDS - LOOP_NEEDS, who=f"strategy {spec.strategy!r}")
    # Loop services (train_and_score): bought labels and the val split only, never the test split.
    services = loop_outputs(needs, spec.learner, pool_view.images, state, val_split, spec.validation,
                            pool_view.num_classes, pool_view.ignore_index, who=f"strategy {spec.strategy!r}")

    base = {
        "benchmark": spec.benchmark,
        "campaign_id": spec.campaign_id,
        # The full-supervision campaign this one is measured against (its own
        # id for a reference campaign); the leaderboard joins on it.
        "reference_id": spec.reference().campaign_id,
        "dataset": spec.dataset,
        "strategy": spec.strategy,
        "strategy_label": spec.strategy_label,
        "cost_model": spec.cost_label,
        "budget_metric": spec.budget_metric,
        "budget": spec.budget,
        "validation": spec.validation,
        "seed": spec.seed,
        "oracle_experiment": bool(getattr(strategy, "oracle_experiment", False)),
        **spec.param_columns(),
    }
    result = CampaignResult(spec)
    spent_after_initial = 0.0
    miou, class_iou, ap50, fit = 0.0, [], None, {"train_steps": 0, "final_loss": float("nan")}
    extra_scores: dict[str, Any] = {}
    parts = dict(state=state, oracle=oracle, learner=learner, strategy=strategy, annotator=annotator)
    resumed = checkpoint.resume(**parts) if checkpoint is not None else None
    first = 0
    if resumed is not None:
        first, result.rows, (spent_after_initial, miou, class_iou, ap50, extra_scores, fit) = resumed
    for rnd in range(first, spec.rounds + 1):
        t_round = time.perf_counter()
        # Budget schedule: round 0 may spend the whole budget on the initial
        # batch; later rounds spread what is left evenly, carrying over
        # whatever an earlier round did not spend.
        if rnd == 0 or strategy.paces_itself:  # a self-pacing strategy chooses its own installments
            allowance = spec.budget - oracle.spent
        else:
            target = spent_after_initial + (spec.budget - spent_after_initial) * rnd / spec.rounds
            allowance = max(0.0, min(target, spec.budget) - oracle.spent)

        t0 = time.perf_counter()
        outputs = pool_outputs(learner.services, pool_view.images, needs - ORACLE_NEEDS - LOOP_NEEDS) if rnd > 0 else {}
        outputs.update(services)
        if rnd > 0 and oracle_truth is not None:
            outputs.update(oracle_outputs(learner.services, pool_view.images, oracle_truth, needs, oracle.cost_models))
        predict_s = time.perf_counter() - t0

        ctx = make_context(pool_view, state, oracle, rnd, spec.rounds, allowance,
                           derive_rng(spec.seed, "strategy", rnd), spec.initial_masks, outputs)
        t0 = time.perf_counter()
        batch = strategy.initial(ctx) if rnd == 0 else strategy.propose(ctx)
        select_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        oracle.answer(batch, strategy=spec.strategy, round=rnd, state=state, limit=allowance)
        oracle_s = time.perf_counter() - t0
        if rnd == 0:
            spent_after_initial = oracle.spent

        train_s = eval_s = 0.0
        if rnd == 0 or batch:
            t0 = time.perf_counter()
            fit = learner.fit(pool_view.images, state, seed=derive_int_seed(spec.seed, "train", rnd), val=val)
            train_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            miou, class_iou, ap50 = _evaluate(learner, test)
            extra_scores = {}
            for name, net in learner.extra_networks().items():
                extra_scores[f"{name}_miou"], _, extra_scores[f"{name}_ap50"] = _evaluate(net, test)
            eval_s = time.perf_counter() - t0
        # else: nothing new was bought, so the model and its score carry over.

        row = {
            **base,
            "round": rnd,
            **{f"spent_{m}": oracle.ledger.total(m) for m in cost_models},
            **{f"n_{kind}": oracle.ledger.count(kind) for kind in QUERY_TYPES},
            "batch_size": len(batch),
            "n_noisy": sum(e.noisy for e in oracle.ledger),
            "labelled_pixel_fraction": state.labelled_pixel_fraction(),
            "miou": miou,
            "per_class_iou": class_iou,
            "ap50": ap50,
            **{f"{n}_{m}": None for n in EXTRA_NETWORK_COLUMNS for m in ("miou", "ap50")},
            **extra_scores,
            "train_steps": int(fit["train_steps"]),
            "train_loss": float(fit["final_loss"]),
            "val_miou": None if fit.get("val_miou") is None else float(fit["val_miou"]),  # null without a val split
            "train_s": train_s,
            "predict_s": predict_s,
            "select_s": select_s,
            "oracle_s": oracle_s,
            "eval_s": eval_s,
            "round_s": time.perf_counter() - t_round,
            "diagnostics": json.dumps(strategy.diagnostics(), sort_keys=True, default=str),
        }
        result.rows.append(row)
        if checkpoint is not None:
            # Every value the loop carries into the next round (a new one must be added here too).
            checkpoint.save(rnd, result.rows, (spent_after_initial, miou, class_iou, ap50, extra_scores, fit), **parts)
        if on_round is not None:
            on_round(row)

    result.queries = [{"campaign_id": spec.campaign_id, **r} for r in oracle.ledger.records()]
    result.wall_s = time.perf_counter() - t_start
    return result
