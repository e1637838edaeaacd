"""Comparisons over stored results, computed in DuckDB: leaderboard and learning curves (drawn by ``plots``)."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

from alharness.errors import ResultsError
from alharness.results import plots
from alharness.campaign.reference import REFERENCE_STRATEGY

_METRIC = re.compile(r"^[A-Za-z0-9_]+$")


def _cost_axis(con, metric: str | None) -> tuple[str, str, bool]:
    """SQL for the cost axis: (x expression, metric-name expression, is_enforced).

    With no ``metric``, each campaign is scored in the metric its budget was
    enforced in; otherwise in ``metric``, which every campaign recorded.
    """
    cols = {r[0] for r in con.execute("DESCRIBE rounds").fetchall()}
    if metric is None:
        enforced = [m for (m,) in con.execute("SELECT DISTINCT budget_metric FROM rounds").fetchall()]
        for m in enforced:
            if not _METRIC.match(m) or f"spent_{m}" not in cols:
                raise ResultsError(f"results name budget metric {m!r} but have no spent_{m} column")
        x = "CASE " + " ".join(f"WHEN budget_metric = '{m}' THEN spent_{m}" for m in enforced) + " END"
        return x, "budget_metric", True
    if not _METRIC.match(metric) or f"spent_{metric}" not in cols:
        valid = sorted(c[len("spent_"):] for c in cols if c.startswith("spent_"))
        raise ResultsError(f"no cost metric {metric!r} in these results; recorded metrics: {', '.join(valid)}")
    return f"spent_{metric}", f"'{metric}'", False


def _has_column(con, table: str, column: str) -> bool:
    return column in {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}


def pricing_sql(con) -> str:
    """SQL for a campaign's pricing group: its ``cost_model`` label (the
    enforced metric and any non-default cost parameters) where the results
    record one, else its budget metric. Campaigns priced differently (a sweep
    over a cost ratio) are separate groups."""
    return "cost_model" if _has_column(con, "rounds", "cost_model") else "budget_metric"


def dataset_label_sql(con) -> str:
    """SQL for the ``rounds`` rows' dataset label: the dataset's name, plus
    every parameter (``p_dataset_*`` column) whose value differs between
    campaigns of that name in these results, e.g.
    ``synthetic_shapes(num_classes=3)``. Campaigns on differently configured
    datasets of one name are thus never averaged together; with one
    configuration per name the label is the bare name."""
    params = sorted(c for (c, *_) in con.execute("DESCRIBE rounds").fetchall() if c.startswith("p_dataset_"))
    if not params:
        return "dataset"
    text = {p: f"coalesce(CAST({p} AS VARCHAR), 'null')" for p in params}
    counts = con.execute(f"SELECT dataset, {', '.join(f'count(DISTINCT {t})' for t in text.values())} "
                         f"FROM rounds GROUP BY dataset").fetchall()
    cases = []
    for name, *n in counts:
        varying = [p for p, k in zip(params, n) if k > 1]
        if varying and _METRIC.match(str(name)):
            args = " || ',' || ".join(f"'{p[len('p_dataset_'):]}=' || {text[p]}" for p in varying)
            cases.append(f"WHEN dataset = '{name}' THEN dataset || '(' || {args} || ')'")
    return f"CASE {' '.join(cases)} ELSE dataset END" if cases else "dataset"


def _per_campaign_sql(con, cost_metric: str | None, reach: float) -> str:
    """SQL for one row per (non-reference) campaign with its curve metrics.

    ``auc``: area under the mIoU-vs-cost curve (trapezoids between rounds, the
    last value held to the end of the budget), divided by the budget, so 1.0
    means mIoU 1 from the first unit of cost. ``cost_to_reach``: the cost at
    which the campaign first reached ``reach`` × its full-supervision
    reference's final mIoU (the ``full_supervision`` campaign of the same
    dataset, learner and seed, see ``CampaignSpec.reference``); where a group
    (dataset, metric, budget) lacks references for some campaign, ``reach`` ×
    the best mean final mIoU among its strategies instead (``reach_of``).
    """
    # "span" is the cost range a curve is scored on: the enforced budget, or
    # for a re-scored metric the largest spend seen on that dataset and budget.
    x_expr, metric_name, own = _cost_axis(con, cost_metric)
    has_ref = _has_column(con, "rounds", "reference_id")
    ref_id = "reference_id" if has_ref else "CAST(NULL AS VARCHAR)"
    # Campaigns priced differently, or on differently configured datasets of one name, are separate groups.
    return f"""
    WITH base AS (
        SELECT {dataset_label_sql(con)} AS dataset, strategy, strategy_label, budget, seed, campaign_id, {ref_id} AS reference_id,
               {pricing_sql(con)} AS pricing,
               round, miou, {metric_name} AS metric, {x_expr} AS x
        FROM rounds
    ),
    ref AS (
        SELECT campaign_id AS reference_id, arg_max(miou, round) AS full_miou
        FROM base WHERE strategy = '{REFERENCE_STRATEGY}' GROUP BY campaign_id
    ),
    r AS (SELECT b.*, ref.full_miou FROM base b LEFT JOIN ref USING (reference_id)
          WHERE b.strategy <> '{REFERENCE_STRATEGY}'),
    norm AS (
        SELECT dataset, metric, pricing, budget,
               {"any_value(budget)" if own else "max(x)"} AS span,
               count(full_miou) = count(*) AS all_ref
        FROM r GROUP BY dataset, metric, pricing, budget
    ),
    seg AS (
        SELECT r.*, n.span,
               lead(x) OVER w AS x1, lead(miou) OVER w AS y1,
               row_number() OVER (PARTITION BY campaign_id ORDER BY round DESC) AS from_end
        FROM r JOIN norm n USING (dataset, metric, pricing, budget)
        WINDOW w AS (PARTITION BY campaign_id ORDER BY round)
    ),
    curve AS (
        SELECT dataset, metric, pricing, budget, strategy_label, seed, campaign_id, any_value(span) AS span,
               any_value(full_miou) AS full_miou,
               sum(CASE WHEN x1 IS NULL THEN greatest(span - x, 0) * miou ELSE (x1 - x) * (miou + y1) / 2 END)
                   / any_value(span) AS auc,
               max(CASE WHEN from_end = 1 THEN miou END) AS final_miou,
               max(CASE WHEN from_end = 1 THEN x END) AS final_cost
        FROM seg GROUP BY ALL
    ),
    best AS (
        SELECT dataset, metric, pricing, budget, max(m) AS best_final FROM (
            SELECT dataset, metric, pricing, budget, strategy_label, avg(final_miou) AS m FROM curve GROUP BY ALL
        ) GROUP BY ALL
    ),
    target AS (
        SELECT c.campaign_id, CASE WHEN n.all_ref THEN c.full_miou ELSE b.best_final END AS basis,
               CASE WHEN n.all_ref THEN 'full supervision' ELSE 'best' END AS reach_of
        FROM curve c JOIN best b USING (dataset, metric, pricing, budget) JOIN norm n USING (dataset, metric, pricing, budget)
    ),
    reach AS (
        SELECT r.campaign_id, min(r.x) AS cost_to_reach
        FROM r JOIN target t USING (campaign_id)
        WHERE r.miou >= {float(reach)} * t.basis
        GROUP BY r.campaign_id
    )
    SELECT c.*, t.reach_of, reach.cost_to_reach
    FROM curve c JOIN target t USING (campaign_id) LEFT JOIN reach USING (campaign_id)
    """


def per_campaign(con, cost_metric: str | None = None, reach: float = 0.9) -> list[dict[str, Any]]:
    """Curve metrics of every finished campaign except the references (see ``_per_campaign_sql``)."""
    cur = con.execute(_per_campaign_sql(con, cost_metric, reach) + " ORDER BY dataset, metric, pricing, budget, strategy_label, seed")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


#: per-campaign final scores a claim may compare (``final_scores``): the segmentation
#: network's and, under a two-network pipeline, the annotation network's (round rows)
SCORE_COLUMNS = ("miou", "ap50", "annotation_miou", "annotation_ap50")


def final_scores(con, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per finished non-reference campaign, the last round's value of each of ``columns``
    (``final_<column>``; None where the campaign did not record it), grouped as ``per_campaign`` groups."""
    unknown = [c for c in columns if c not in SCORE_COLUMNS]
    if unknown:
        raise ResultsError(f"no score column {', '.join(map(repr, unknown))}; scores: {', '.join(SCORE_COLUMNS)}")
    have = {r[0] for r in con.execute("DESCRIBE rounds").fetchall()}
    _, metric_name, _ = _cost_axis(con, None)
    finals = ", ".join(f"arg_max({c if c in have else 'CAST(NULL AS DOUBLE)'}, round) AS final_{c}" for c in columns)
    cur = con.execute(f"""
        SELECT dataset, metric, pricing, budget, strategy_label, seed, {finals} FROM (
            SELECT {dataset_label_sql(con)} AS dataset, {metric_name} AS metric, {pricing_sql(con)} AS pricing, *
            FROM rounds WHERE strategy <> '{REFERENCE_STRATEGY}')
        GROUP BY campaign_id, dataset, metric, pricing, budget, strategy_label, seed
        ORDER BY dataset, metric, pricing, budget, strategy_label, seed""")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def leaderboard(con, cost_metric: str | None = None, reach: float = 0.9) -> list[dict[str, Any]]:
    """One row per (dataset, cost metric, pricing, budget, strategy label), best AUC first.

    ``dataset`` is the dataset label (``dataset_label_sql``): the name, plus
    the parameters that differ between campaigns of that name, so datasets
    configured differently are never averaged as seeds of one row.
    ``pricing`` is the campaigns' ``cost_model`` label (the enforced metric
    and any non-default cost parameters), so a sweep over prices is never
    averaged together.

    Means and sample standard deviations over seeds of the per-campaign
    metrics (``per_campaign``); ``full_miou_mean`` is the mean final mIoU of
    the matching full-supervision references (null without them);
    ``cost_to_reach_mean`` averages over the seeds that reached the target
    (``reached`` counts them).
    """
    sql = f"""
    WITH pc AS ({_per_campaign_sql(con, cost_metric, reach)})
    SELECT dataset, metric AS cost_metric, pricing, budget, strategy_label AS strategy,
           count(*) AS seeds,
           avg(final_miou) AS final_miou_mean, coalesce(stddev_samp(final_miou), 0) AS final_miou_std,
           avg(auc) AS auc_mean, coalesce(stddev_samp(auc), 0) AS auc_std,
           avg(final_cost) AS final_cost_mean,
           avg(cost_to_reach) AS cost_to_reach_mean, count(cost_to_reach) AS reached,
           avg(full_miou) AS full_miou_mean, any_value(reach_of) AS reach_of,
           avg(final_miou - full_miou) AS _excess_mean, stddev_samp(final_miou - full_miou) AS _excess_std,
           count(final_miou - full_miou) AS _excess_n
    FROM pc
    GROUP BY ALL
    ORDER BY dataset, cost_metric, pricing, budget, auc_mean DESC, strategy
    """
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    rows = []
    for values in cur.fetchall():
        r = dict(zip(names, values))
        excess = [r.pop(k) for k in ("_excess_mean", "_excess_std", "_excess_n")]
        r["beats_full"] = beats_full_supervision(*excess)
        rows.append(r)
    return rows


def beats_full_supervision(mean: float | None, std: float | None, n: int) -> bool:
    """Whether a strategy's final mIoU beats its own seeds' full-supervision references by
    more than seed noise: the mean paired excess above two standard errors (at least 2 seeds).
    Full supervision buys every mask, so a strategy above it means the learner, not the
    strategy, is the limit ("learner inadequate", issue 18 part 1)."""
    if n < 2 or mean is None or std is None or not math.isfinite(mean) or not math.isfinite(std):
        return False
    return mean - 2 * std / math.sqrt(n) > 0


def learner_inadequate(rows: list[dict[str, Any]]) -> dict[tuple, list[str]]:
    """Per group (dataset, cost metric, pricing, budget) of per-campaign rows (``per_campaign``),
    the strategies that beat full supervision by more than seed noise (``beats_full_supervision``)."""
    diffs: dict[tuple, dict[str, list[float]]] = {}
    for r in rows:
        if r.get("full_miou") is not None and r.get("final_miou") is not None:
            key = (r["dataset"], r["metric"], r["pricing"], r["budget"])
            diffs.setdefault(key, {}).setdefault(r["strategy_label"], []).append(r["final_miou"] - r["full_miou"])
    out: dict[tuple, list[str]] = {}
    for key, by_strategy in diffs.items():
        above = [s for s, d in sorted(by_strategy.items()) if len(d) >= 2
                 and beats_full_supervision(statistics.fmean(d), statistics.stdev(d), len(d))]
        if above:
            out[key] = above
    return out



def format_leaderboard(rows: list[dict[str, Any]], reach: float = 0.9) -> str:
    """Plain-text tables, one per (dataset, cost metric, budget)."""
    if not rows:
        return "(no results)"
    out: list[str] = []
    key = None
    headers = ["rank", "strategy", "seeds", "final mIoU", "AUC/budget", f"cost to {reach:.0%}", "final cost"]
    table: list[list[str]] = []

    def flush() -> None:
        if not table:
            return
        widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(headers)]
        out.append("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        out.append("  ".join("-" * w for w in widths))
        out.extend("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table)
        out.append("")
        table.clear()

    def group(r: dict[str, Any]) -> tuple:
        return r["dataset"], r["cost_metric"], r["pricing"], r["budget"]

    above: dict[tuple, list[str]] = {}
    for r in rows:
        if r.get("beats_full"):
            above.setdefault(group(r), []).append(r["strategy"])
    for r in rows:
        k = group(r)
        if k != key:
            flush()
            key = k
            priced = "" if r["pricing"] == r["cost_metric"] else f" | priced {r['pricing']}"
            out.append(f"dataset {r['dataset']} | cost metric {r['cost_metric']}{priced} | budget {r['budget']:g}")
            if k in above:
                out.append(f"LEARNER INADEQUATE: {', '.join(above[k])} beat full supervision by more than seed noise "
                           "(marked *), so the learner, not the strategy, is the limit here; see `alharness check-learner`")
            if r["reach_of"] == "full supervision":
                out.append(f"cost to {reach:.0%}: of full supervision (final mIoU {r['full_miou_mean']:.3f} with every mask)")
            else:
                out.append(f"cost to {reach:.0%}: of the best strategy's final mIoU (no full-supervision reference; "
                           f"set reference = true under [benchmark])")
        reach_txt = "never" if r["reached"] == 0 else f"{r['cost_to_reach_mean']:.4g} ({r['reached']}/{r['seeds']})"
        table.append([
            str(len(table) + 1),
            r["strategy"] + (" *" if r.get("beats_full") else ""),
            str(r["seeds"]),
            f"{r['final_miou_mean']:.3f} ± {r['final_miou_std']:.3f}",
            f"{r['auc_mean']:.3f} ± {r['auc_std']:.3f}",
            reach_txt,
            f"{r['final_cost_mean']:.4g}",
        ])
    flush()
    return "\n".join(out).rstrip() + "\n"


def learning_curve_panels(con, cost_metric: str | None = None) -> list[plots.CurvePanel]:
    """Mean mIoU (± std over seeds) per round against mean cost, one panel per (dataset, budget, budget metric),
    with the dataset's full-supervision mIoU where the results hold the reference."""
    x_expr, _, _ = _cost_axis(con, cost_metric)
    dataset = dataset_label_sql(con)
    data = con.execute(f"""
        SELECT {dataset} AS dataset, budget, budget_metric, strategy_label, round,
               avg({x_expr}) AS x, avg(miou) AS y, coalesce(stddev_samp(miou), 0) AS sd, count(*) AS n
        FROM rounds WHERE strategy <> '{REFERENCE_STRATEGY}'
        GROUP BY ALL ORDER BY dataset, budget, strategy_label, round
    """).fetchall()
    full = dict(con.execute(f"""
        SELECT dataset, avg(m) FROM (SELECT {dataset} AS dataset, campaign_id, arg_max(miou, round) AS m FROM rounds
                                     WHERE strategy = '{REFERENCE_STRATEGY}' GROUP BY ALL) GROUP BY dataset
    """).fetchall())
    panels = []
    for d, b, m in sorted({(d, b, m) for d, b, m, *_ in data}):
        series: dict[str, list[tuple]] = {}
        for dd, bb, mm, label, _rnd, xv, yv, sd, _n in data:
            if (dd, bb, mm) == (d, b, m):
                series.setdefault(label, []).append((xv, yv, sd))
        panels.append(plots.CurvePanel(d, b, m, series, full.get(d)))
    return panels


def plot_learning_curves(con, path: str | Path, cost_metric: str | None = None,
                         panels: "list[plots.CurvePanel] | None" = None) -> Path:
    """mIoU against cost, mean over seeds with a ±1 std band, one panel per (dataset, budget);
    the full-supervision reference, where present, as a dashed line. ``panels``: the
    ``learning_curve_panels`` already computed, if the caller has them."""
    panels = learning_curve_panels(con, cost_metric) if panels is None else panels
    if not panels:
        raise ResultsError("nothing to plot")
    return plots.learning_curves(panels, path, cost_metric)
