"""Comparisons over stored results, computed in DuckDB: leaderboard and learning-curve plot."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path
from typing import Any

from alharness.errors import ResultsError

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


def leaderboard(con, cost_metric: str | None = None, reach: float = 0.9) -> list[dict[str, Any]]:
    """One row per (dataset, cost metric, budget, strategy label), best first.

    ``auc``: area under the mIoU-vs-cost curve (trapezoids between rounds, the
    last value held to the end of the budget), divided by the budget, so 1.0
    means mIoU 1 from the first unit of cost. ``cost_to_reach``: mean cost at
    which a seed first reached ``reach`` × the best mean final mIoU among
    strategies on that dataset and budget (seeds that never reached it are
    counted in ``reached``).
    """
    # "span" is the cost range a curve is scored on: the enforced budget, or
    # for a re-scored metric the largest spend seen on that dataset and budget.
    x_expr, metric_name, own = _cost_axis(con, cost_metric)
    sql = f"""
    WITH r AS (
        SELECT dataset, strategy_label, budget, seed, campaign_id, round, miou,
               {metric_name} AS metric, {x_expr} AS x
        FROM rounds
    ),
    norm AS (
        SELECT dataset, metric, budget,
               {"any_value(budget)" if own else "max(x)"} AS span
        FROM r GROUP BY dataset, metric, budget
    ),
    seg AS (
        SELECT r.*, n.span,
               lead(x) OVER w AS x1, lead(miou) OVER w AS y1,
               row_number() OVER (PARTITION BY campaign_id ORDER BY round DESC) AS from_end
        FROM r JOIN norm n USING (dataset, metric, budget)
        WINDOW w AS (PARTITION BY campaign_id ORDER BY round)
    ),
    per_campaign AS (
        SELECT dataset, metric, budget, strategy_label, seed, campaign_id, any_value(span) AS span,
               sum(CASE WHEN x1 IS NULL THEN greatest(span - x, 0) * miou ELSE (x1 - x) * (miou + y1) / 2 END)
                   / any_value(span) AS auc,
               max(CASE WHEN from_end = 1 THEN miou END) AS final_miou,
               max(CASE WHEN from_end = 1 THEN x END) AS final_cost
        FROM seg GROUP BY ALL
    ),
    best AS (
        SELECT dataset, metric, budget, max(m) AS best_final FROM (
            SELECT dataset, metric, budget, strategy_label, avg(final_miou) AS m FROM per_campaign GROUP BY ALL
        ) GROUP BY ALL
    ),
    reach AS (
        SELECT r.campaign_id, min(r.x) AS cost_to_reach
        FROM r JOIN best b USING (dataset, metric, budget)
        WHERE r.miou >= {float(reach)} * b.best_final
        GROUP BY r.campaign_id
    )
    SELECT p.dataset, p.metric AS cost_metric, p.budget, p.strategy_label AS strategy,
           count(*) AS seeds,
           avg(final_miou) AS final_miou_mean, coalesce(stddev_samp(final_miou), 0) AS final_miou_std,
           avg(auc) AS auc_mean, coalesce(stddev_samp(auc), 0) AS auc_std,
           avg(final_cost) AS final_cost_mean,
           avg(cost_to_reach) AS cost_to_reach_mean, count(cost_to_reach) AS reached
    FROM per_campaign p LEFT JOIN reach USING (campaign_id)
    GROUP BY ALL
    ORDER BY dataset, cost_metric, budget, auc_mean DESC, strategy
    """
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def format_leaderboard(rows: list[dict[str, Any]], reach: float = 0.9) -> str:
    """Plain-text tables, one per (dataset, cost metric, budget)."""
    if not rows:
        return "(no results)"
    out: list[str] = []
    key = None
    headers = ["rank", "strategy", "seeds", "final mIoU", "AUC/budget", f"cost to {reach:.0%} of best", "final cost"]
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

    for r in rows:
        k = (r["dataset"], r["cost_metric"], r["budget"])
        if k != key:
            flush()
            key = k
            out.append(f"dataset {r['dataset']} | cost metric {r['cost_metric']} | budget {r['budget']:g}")
        reach_txt = "never" if r["reached"] == 0 else f"{r['cost_to_reach_mean']:.4g} ({r['reached']}/{r['seeds']})"
        table.append([
            str(len(table) + 1),
            r["strategy"],
            str(r["seeds"]),
            f"{r['final_miou_mean']:.3f} ± {r['final_miou_std']:.3f}",
            f"{r['auc_mean']:.3f} ± {r['auc_std']:.3f}",
            reach_txt,
            f"{r['final_cost_mean']:.4g}",
        ])
    flush()
    return "\n".join(out).rstrip() + "\n"


def plot_learning_curves(con, path: str | Path, cost_metric: str | None = None) -> Path:
    """mIoU against cost, mean over seeds with a ±1 std band, one panel per (dataset, budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_expr, _, _ = _cost_axis(con, cost_metric)
    data = con.execute(f"""
        SELECT dataset, budget, budget_metric, strategy_label, round,
               avg({x_expr}) AS x, avg(miou) AS y, coalesce(stddev_samp(miou), 0) AS sd, count(*) AS n
        FROM rounds GROUP BY ALL ORDER BY dataset, budget, strategy_label, round
    """).fetchall()
    panels = sorted({(d, b, m) for d, b, m, *_ in data})
    if not panels:
        raise ResultsError("nothing to plot")
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    legend_lines = sum(len(textwrap.wrap(label, 48)) for label in {row[3] for row in data})
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, (4.2 + 0.2 * legend_lines) * rows), squeeze=False)
    for ax, (d, b, m) in zip(axes.flat, panels):
        series: dict[str, list[tuple]] = {}
        for dd, bb, mm, label, _rnd, xv, yv, sd, _n in data:
            if (dd, bb, mm) == (d, b, m):
                series.setdefault(label, []).append((xv, yv, sd))
        for label, pts in sorted(series.items()):
            xs, ys, sds = zip(*pts)
            line, = ax.plot(xs, ys, marker="o", ms=3, label=textwrap.fill(label, 48, subsequent_indent="  "))
            ax.fill_between(xs, [y - s for y, s in zip(ys, sds)], [y + s for y, s in zip(ys, sds)], color=line.get_color(), alpha=0.2)
        ax.set_title(f"{d} (budget {b:g} {m})", fontsize=10)
        ax.set_xlabel(f"cost spent ({cost_metric or m})")
        ax.set_ylabel("test mIoU")
        ax.grid(alpha=0.3)
        # Below the axes: labels carry parameters and can be long.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1, frameon=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
