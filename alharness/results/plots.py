"""Every figure the package draws, and the only module that imports matplotlib or plotly.

Callers compute the numbers (leaderboard and report queries, sweep
summaries) and pass them in as plain data; each function here draws one
figure, writes it as PNG and returns its path. matplotlib is imported on
first use, with the non-interactive Agg backend, so importing the modules
that call these functions stays cheap and works without a display.
``*_interactive`` functions draw the same data with plotly for the HTML
report (hover shows the values) and return an HTML fragment; the page
embeds plotly.js once (``plotly_js``), so it still works offline as one file.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path, dpi: int) -> Path:
    """Write ``fig`` as PNG at ``path`` (its folder made if missing), close it and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return path


@dataclass(frozen=True)
class CurvePanel:
    """One learning-curve panel: a (dataset, budget, budget metric) with its mean-over-seeds curves.

    ``series`` maps a strategy label to its points ``(cost, mean mIoU, std)``
    in round order; ``reference`` is the full-supervision mIoU, if known.
    """

    dataset: str
    budget: float
    budget_metric: str
    series: Mapping[str, Sequence[tuple[float, float, float]]]
    reference: float | None = None


def learning_curves(panels: Sequence[CurvePanel], path: str | Path, cost_metric: str | None = None) -> Path:
    """mIoU against cost, one panel each, ±1 std bands; the full-supervision reference dashed.

    ``cost_metric`` names the x axis; ``None`` means each panel's budget metric.
    """
    plt = _pyplot()
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    legend_lines = sum(len(textwrap.wrap(label, 48)) for label in {label for p in panels for label in p.series})
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, (4.2 + 0.2 * legend_lines) * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for label, pts in sorted(panel.series.items()):
            xs, ys, sds = zip(*pts)
            line, = ax.plot(xs, ys, marker="o", ms=3, label=textwrap.fill(label, 48, subsequent_indent="  "))
            ax.fill_between(xs, [y - s for y, s in zip(ys, sds)], [y + s for y, s in zip(ys, sds)], color=line.get_color(), alpha=0.2)
        if panel.reference is not None:
            ax.axhline(panel.reference, color="0.3", ls="--", lw=1, label=f"full supervision ({panel.reference:.3f})")
        ax.set_title(f"{panel.dataset} (budget {panel.budget:g} {panel.budget_metric})", fontsize=10)
        ax.set_xlabel(f"cost spent ({cost_metric or panel.budget_metric})")
        ax.set_ylabel("test mIoU")
        ax.grid(alpha=0.3)
        # Below the axes: labels carry parameters and can be long.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1, frameon=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path, 110)


def learning_curves_interactive(panels: Sequence[CurvePanel], cost_metric: str | None = None, div_id: str = "curves") -> str:
    """``learning_curves`` as an interactive plotly figure: an HTML ``<div>`` (without plotly.js,
    see ``plotly_js``). Hovering a point shows the strategy, the cost and mean ± std mIoU;
    clicking a legend entry hides that strategy in every panel. ``div_id`` names the figure's
    element (unique per page; fixed, so the same results give the same page)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"{p.dataset} (budget {p.budget:g} {p.budget_metric})" for p in panels],
                        horizontal_spacing=0.06, vertical_spacing=0.12 if rows > 1 else 0.2)
    colour = _plotly_colours({label for p in panels for label in p.series})
    shown: set[str] = set()
    for k, panel in enumerate(panels):
        at = {"row": k // cols + 1, "col": k % cols + 1}
        for label, pts in sorted(panel.series.items()):
            xs, ys, sds = (list(v) for v in zip(*pts))
            band = colour[label].replace("rgb(", "rgba(").replace(")", ", 0.2)")
            fig.add_trace(go.Scatter(x=xs + xs[::-1], y=[y + d for y, d in zip(ys, sds)] + [y - d for y, d in zip(ys, sds)][::-1],
                                     fill="toself", fillcolor=band, line={"width": 0}, hoverinfo="skip",
                                     legendgroup=label, showlegend=False), **at)
            fig.add_trace(go.Scatter(x=xs, y=ys, customdata=sds, mode="lines+markers", name=label, legendgroup=label,
                                     line={"color": colour[label]}, marker={"size": 5}, showlegend=label not in shown,
                                     hovertemplate=f"<b>{label}</b><br>cost %{{x:.4g}}<br>mIoU %{{y:.3f}} ± %{{customdata:.3f}}<extra></extra>"),
                          **at)
            shown.add(label)
        if panel.reference is not None:
            xs = [x for pts in panel.series.values() for x, _, _ in pts] or [0.0]
            fig.add_trace(go.Scatter(x=[min(xs), max(xs)], y=[panel.reference] * 2, mode="lines", name="full supervision",
                                     legendgroup="full supervision", showlegend="full supervision" not in shown,
                                     line={"color": "rgb(80, 80, 80)", "dash": "dash", "width": 1},
                                     hovertemplate=f"full supervision: mIoU {panel.reference:.3f}<extra></extra>"), **at)
            shown.add("full supervision")
        fig.update_xaxes(title_text=f"cost spent ({cost_metric or panel.budget_metric})", **at)
        fig.update_yaxes(title_text="test mIoU", **at)
    fig.update_layout(height=380 * rows + 60, margin={"t": 40, "b": 40}, template="plotly_white",
                      legend={"orientation": "h", "y": -0.15 if rows == 1 else -0.05})
    return _plotly_div(fig, div_id)


def _plotly_colours(names) -> dict[str, str]:
    """A fixed plotly colour per name (sorted), the same in every panel of a figure."""
    from plotly.colors import DEFAULT_PLOTLY_COLORS

    return {n: DEFAULT_PLOTLY_COLORS[i % len(DEFAULT_PLOTLY_COLORS)] for i, n in enumerate(sorted(names))}


def _plotly_div(fig, div_id: str) -> str:
    """``fig`` as an HTML ``<div>`` with the id ``div_id``, without plotly.js (see ``plotly_js``)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def plotly_js() -> str:
    """plotly.js itself, to inline once in a page that holds ``*_interactive`` figures."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def rank_lines(by_value: Mapping[Any, Mapping[str, float]], parameter: str, path: str | Path) -> Path:
    """Rank of each strategy (1 = best, drawn on top) at each value of a cost parameter, in ``by_value``'s order."""
    plt = _pyplot()
    values = list(by_value)
    strategies = sorted({s for v in by_value.values() for s in v})
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for s in strategies:
        ax.plot(range(len(values)), [by_value[v].get(s, np.nan) for v in values], marker="o", label=s)
    ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_xlabel(parameter)
    ax.set_ylabel("rank by AUC (1 = best)")
    ax.invert_yaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return _save(fig, path, 100)


def rank_lines_interactive(by_value: Mapping[Any, Mapping[str, float]], parameter: str, div_id: str = "ranks") -> str:
    """``rank_lines`` as an interactive plotly figure (an HTML ``<div>``, see ``learning_curves_interactive``).
    Hovering a point shows the strategy, the parameter's value and the rank; the values stay
    categories in ``by_value``'s order."""
    import plotly.graph_objects as go

    values = [str(v) for v in by_value]
    strategies = sorted({s for v in by_value.values() for s in v})
    colour = _plotly_colours(strategies)
    fig = go.Figure()
    for s in strategies:
        fig.add_trace(go.Scatter(x=values, y=[by_value[v].get(s) for v in by_value], mode="lines+markers", name=s,
                                 line={"color": colour[s]}, marker={"size": 7},
                                 hovertemplate=f"<b>{s}</b><br>{parameter} = %{{x}}<br>rank %{{y:g}}<extra></extra>"))
    fig.update_xaxes(title_text=parameter, type="category", categoryorder="array", categoryarray=values)
    fig.update_yaxes(title_text="rank by AUC (1 = best)", autorange="reversed", dtick=1)
    fig.update_layout(height=420, margin={"t": 30, "b": 40}, template="plotly_white")
    return _plotly_div(fig, div_id)


def _short(label: str, width: int = 34) -> str:
    """A strategy label cut to a panel title's width."""
    return label if len(label) <= width else label[:width - 1] + "…"


def query_mix(by_label: Mapping[str, Mapping[str, Mapping[int, tuple[float, float]]]], path: str | Path) -> Path:
    """Per strategy: answers per round stacked by query type (top) and cumulative spend per type (bottom).

    ``by_label[strategy][query_type][round] = (answers, spend)``, means over seeds.
    """
    plt = _pyplot()
    from matplotlib.patches import Patch

    labels = sorted(by_label)
    qtypes = sorted({q for v in by_label.values() for q in v})
    colors = {q: plt.cm.tab10(i % 10) for i, q in enumerate(qtypes)}
    fig, axes = plt.subplots(2, len(labels), figsize=(3.6 * len(labels) + 1.5, 5.8), squeeze=False)
    for j, label in enumerate(labels):
        rounds = sorted({r for q in by_label[label].values() for r in q})
        bottom_n = np.zeros(len(rounds))
        for q in qtypes:
            if q not in by_label[label]:
                continue  # keep each panel to the types this strategy bought
            vals = by_label[label][q]
            n = np.array([vals.get(r, (0, 0))[0] for r in rounds], float)
            axes[0, j].bar(rounds, n, bottom=bottom_n, color=colors[q], label=q)
            bottom_n += n
            spend = np.cumsum([vals.get(r, (0, 0))[1] or 0 for r in rounds])
            axes[1, j].plot(rounds, spend, marker="o", ms=3, color=colors[q], label=q)
        axes[0, j].set_title(_short(label), fontsize=8)
        axes[0, j].set_ylabel("answers per round" if j == 0 else "")
        axes[1, j].set_ylabel("cumulative spend (enforced metric)" if j == 0 else "", fontsize=8)
        axes[1, j].set_xlabel("round")
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
    handles, names = [Patch(color=colors[q]) for q in qtypes], qtypes
    fig.legend(handles, names, loc="lower center", ncol=min(len(qtypes), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, path, 90)


def query_mix_interactive(by_label: Mapping[str, Mapping[str, Mapping[int, tuple[float, float]]]], div_id: str = "query-mix") -> str:
    """``query_mix`` as an interactive plotly figure (an HTML ``<div>``, see ``learning_curves_interactive``):
    per strategy, answers per round stacked by query type above, cumulative spend per type below
    (up to four strategies side by side, then another pair of rows). Hovering shows the strategy,
    the round, the query type and its answers, or its spend that round and so far; clicking a
    legend entry hides that query type everywhere."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels = sorted(by_label)
    colour = _plotly_colours({q for v in by_label.values() for q in v})
    cols = min(4, len(labels))
    pairs = math.ceil(len(labels) / cols)
    titles: list[str] = []
    for k in range(pairs):
        row = [_short(label) for label in labels[k * cols:(k + 1) * cols]]
        titles += row + [""] * (cols - len(row)) + [""] * cols
    fig = make_subplots(rows=2 * pairs, cols=cols, subplot_titles=titles, horizontal_spacing=0.05,
                        vertical_spacing=0.08 if pairs > 1 else 0.12)
    shown: set[str] = set()
    for j, label in enumerate(labels):
        top, bottom = {"row": 2 * (j // cols) + 1, "col": j % cols + 1}, {"row": 2 * (j // cols) + 2, "col": j % cols + 1}
        rounds = sorted({r for q in by_label[label].values() for r in q})
        for q in sorted(by_label[label]):  # each panel only the types this strategy bought
            vals = by_label[label][q]
            n = [vals.get(r, (0, 0))[0] for r in rounds]
            spend = [vals.get(r, (0, 0))[1] or 0 for r in rounds]
            head = f"<b>{label}</b><br>round %{{x}}<br>{q}: "
            fig.add_trace(go.Bar(x=rounds, y=n, name=q, legendgroup=q, showlegend=q not in shown, marker={"color": colour[q]},
                                 hovertemplate=head + "%{y:.4g} answers<extra></extra>"), **top)
            fig.add_trace(go.Scatter(x=rounds, y=np.cumsum(spend).tolist(), customdata=spend, mode="lines+markers", name=q,
                                     legendgroup=q, showlegend=False, line={"color": colour[q]}, marker={"size": 5},
                                     hovertemplate=head + "spent %{customdata:.4g} this round, %{y:.4g} so far<extra></extra>"),
                          **bottom)
            shown.add(q)
        fig.update_xaxes(dtick=1, **top)
        fig.update_xaxes(title_text="round", dtick=1, **bottom)
        if j % cols == 0:
            fig.update_yaxes(title_text="answers per round", **top)
            fig.update_yaxes(title_text="cumulative spend (enforced metric)", **bottom)
    fig.update_layout(barmode="stack", height=560 * pairs + 60, margin={"t": 40, "b": 40}, template="plotly_white",
                      legend={"orientation": "h", "y": -0.12 if pairs == 1 else -0.05})
    for a in fig.layout.annotations:  # subplot titles: strategy labels can be long
        a.font.size = 11
    return _plotly_div(fig, div_id)


def query_thumbnails(shown: Sequence[tuple[int, Any, Sequence[Mapping[str, Any]]]], title: str, path: str | Path) -> Path:
    """Images with the queries on them drawn: region boxes red, clicked pixels yellow, full masks a green frame.

    ``shown`` holds ``(image index, image array (C, H, W) or (H, W), query-log rows on that image)``.
    """
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, len(shown), figsize=(2.6 * len(shown), 2.9), squeeze=False)
    for ax, (img_idx, image, queries) in zip(axes.flat, shown):
        img = np.asarray(image, dtype=np.float32)
        img = img.transpose(1, 2, 0) if img.ndim == 3 and img.shape[0] in (1, 3) else img
        lo, hi = float(img.min()), float(img.max())
        ax.imshow(np.squeeze((img - lo) / (hi - lo + 1e-9)), cmap="gray")
        notes = []
        for q in queries:
            if q.get("box") is not None:
                y0, x0, y1, x1 = q["box"]
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="#ff3030", lw=1.5))
            elif q.get("pixels") is not None:
                pts = np.asarray(q["pixels"])
                ax.scatter(pts[:, 1], pts[:, 0], s=8, c="#ffd000", edgecolors="k", linewidths=0.3)
            elif q["query_type"] == "full_mask":
                h, w = img.shape[:2]
                ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, ec="#20c020", lw=3))
                notes.append("full mask")
            else:
                notes.append(q["query_type"] + (f" c{q['cls']}" if q.get("cls") is not None else ""))
        ax.set_title(f"image {img_idx}" + (f"\n{', '.join(sorted(set(notes)))}" if notes else ""), fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path, 90)


@dataclass(frozen=True)
class SweepPanel:
    """Mean utilities over seeds per budget at one (alpha_s, T) of a sweep (Fig. 4 panel).

    ``fixed`` holds ``(share in percent, means)`` in increasing share; ``gp`` is ``(means, stds)``.
    """

    alpha_s: float
    T: int
    budgets: Sequence[float]
    fixed: Sequence[tuple[str, np.ndarray]]
    gp: tuple[np.ndarray, np.ndarray]
    estimated_best_fixed: np.ndarray


def sweep_by_alpha(panels: Sequence[SweepPanel], path: str | Path) -> Path:
    """Fig. 4: one panel per mask price, fixed shares (blue, darker = more masks), GP (orange band), est.-best-fixed (red)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0), squeeze=False)
    for ax, p in zip(axes[0], panels):
        for i, (share, m) in enumerate(p.fixed):
            ax.plot(p.budgets, m, color="tab:blue", alpha=0.25 + 0.75 * i / max(len(p.fixed) - 1, 1), lw=1)
            ax.annotate(share + "%", (p.budgets[-1], m[-1]), fontsize=6, color="tab:blue")
        m, s = p.gp
        ax.plot(p.budgets, m, color="tab:orange", lw=2, label="GP (Alg. 2)")
        ax.fill_between(p.budgets, m - s, m + s, color="tab:orange", alpha=0.25)
        ax.plot(p.budgets, p.estimated_best_fixed, "o", color="tab:red", ms=4, label="estimated-best-fixed")
        ax.set_title(f"alpha_s = {p.alpha_s:g}, T = {p.T}", fontsize=9)
        ax.set_xlabel("budget (label equivalents)")
    axes[0][0].set_ylabel("expected mIoU (surface)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, 120)


def sweep_by_T(alpha_s: float, budgets: Sequence[float], best_fixed: Sequence[float],
               gp: Sequence[tuple[int, np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """Fig. 5: the GP allocation per number of installments T (``(T, means, stds)``) against the best fixed share in hindsight."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(budgets, best_fixed, "--", color="tab:blue", label="best fixed (hindsight)")
    for t, m, s in gp:
        line, = ax.plot(budgets, m, lw=1.5, label=f"GP, T = {t}")
        ax.fill_between(budgets, m - s, m + s, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("budget (label equivalents)")
    ax.set_ylabel("expected mIoU (surface)")
    ax.set_title(f"alpha_s = {alpha_s:g}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, 120)
