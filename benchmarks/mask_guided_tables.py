"""Tables 3-4 of the mask-guided paper from a beta-sweep results directory.

    python benchmarks/mask_guided_tables.py results/mask_guided_synthetic [more dirs] [--metric ap50] [--plot out.png]

Prints, per dataset, one Markdown table: rows "Random subset" and beta = 0.0
... 1.0, columns the oracle (true IoU score, Table 3) and the predicted IoU
score (Table 4), each the final round's test metric as mean ± std over seeds
(x100, as the paper prints AP), the mean IoU score of the images each
selection picked (from the strategies' diagnostics) and their mean number
of objects (Fig. 5; from the seconds each mask was charged: t_Full =
classes x 1 s + objects x 79 s). The first row is the
network trained on the N initial random masks alone (round 0).

``--basis`` prints Tables 5-8 instead: per selection, the annotation and the
segmentation network's final AP (and mIoU), and the annotation budget in
the paper's seconds (IL+C for the weak pool included) as hours and days.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from alharness.results.store import connect


def _cell(values: list[float]) -> str:
    v = np.array([x for x in values if x is not None], float) * 100
    if v.size == 0:
        return "–"
    return f"{v.mean():.1f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.1f}"


def tables(where: str, metric: str = "ap50") -> str:
    con, _ = connect(where)
    rows = con.execute(
        f"SELECT dataset, strategy, p_strategy_beta, seed, round, {metric}, diagnostics, "
        "n_full_mask, campaign_id FROM rounds ORDER BY ALL").fetchall()
    # Objects per selected image: seconds of each mask bought after round 0 (79 s per object).
    objects = dict(con.execute(
        "SELECT campaign_id, avg(floor(cost_seconds / 79)) FROM queries "
        "WHERE query_type = 'full_mask' AND round > 0 GROUP BY campaign_id").fetchall())
    out = []
    for dataset in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == dataset]
        last = max(r[4] for r in mine if r[1] != "full_supervision")
        final = [r for r in mine if r[4] == last and r[1] != "full_supervision"]
        n0 = sorted({r[7] for r in mine if r[4] == 0 and r[1] != "full_supervision"})
        n1 = sorted({r[7] for r in final})

        def pick(strategy, beta=None):
            return [r for r in final if r[1] == strategy and (beta is None or abs((r[2] or 0) - beta) < 1e-9)]

        def selected(rs):
            v = [json.loads(r[6]).get("mean_score_selected") for r in rs]
            v = [x for x in v if x is not None]
            o = [objects[r[8]] for r in rs if r[8] in objects]
            return (f"{np.mean(v):.2f}" if v else "–") + " / " + (f"{np.mean(o):.1f}" if o else "–")

        out.append(f"### {dataset}: {metric} (x100) after round {last}, N = {n0} initial + selected = {n1} masks\n")
        out.append("| selection | oracle (true IoU score) | Δ vs random | score / objects picked | predicted IoU score "
                   "| Δ vs random | score / objects picked |")
        out.append("|---|---|---|---|---|---|---|")
        initial = [r for r in mine if r[4] == 0 and r[1] != "full_supervision"]
        full = [r for r in mine if r[1] == "full_supervision"]
        if full:
            last_full = max(r[4] for r in full)
            cells = _cell([r[5] for r in full if r[4] == last_full])
            out.append(f"| Full supervision (every pool mask) | {cells} | | | {cells} | | |")
        # Paired by seed: every strategy of a seed shares the initial masks and training seeds.
        first = {r[3]: r[5] for r in initial}
        out.append(f"| N initial only (round 0) | {_cell(list(first.values()))} | | | | | |")
        rnd = pick("mask_guided_random")
        base = {r[3]: r[5] for r in rnd}

        def delta(rs):
            return _cell([r[5] - base[r[3]] for r in rs if r[3] in base and r[5] is not None and base[r[3]] is not None])

        out.append(f"| Random subset | {_cell([r[5] for r in rnd])} | | {selected(rnd)} | {_cell([r[5] for r in rnd])} | | |")
        betas = sorted({r[2] for r in final if r[1] == "mask_guided" and r[2] is not None})
        for b in betas:
            o, p = pick("mask_guided_oracle", b), pick("mask_guided", b)
            out.append(f"| β = {b:.1f} | {_cell([r[5] for r in o])} | {delta(o)} | {selected(o)} | {_cell([r[5] for r in p])} "
                       f"| {delta(p)} | {selected(p)} |")
        out.append("")
    return "\n".join(out)


def plot(wheres: list[str], out: str, metric: str = "ap50") -> None:
    """Paired Δ vs random (mean ± std over seeds) against β, oracle and predicted, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(wheres), figsize=(5 * len(wheres), 3.6), squeeze=False)
    for ax, where in zip(axes[0], wheres):
        con, _ = connect(where)
        rows = con.execute(f"SELECT dataset, strategy, p_strategy_beta, seed, {metric} FROM rounds "
                           "WHERE round = 1 AND strategy LIKE 'mask_guided%'").fetchall()
        base = {r[3]: r[4] for r in rows if r[1] == "mask_guided_random"}
        for strategy, label in (("mask_guided_oracle", "oracle (true IoU score)"), ("mask_guided", "predicted IoU score")):
            betas = sorted({r[2] for r in rows if r[1] == strategy})
            d = [[100 * (r[4] - base[r[3]]) for r in rows if r[1] == strategy and r[2] == b and r[3] in base] for b in betas]
            mean = np.array([np.mean(x) for x in d])
            std = np.array([np.std(x, ddof=1) if len(x) > 1 else 0.0 for x in d])
            ax.plot(betas, mean, marker="o", label=label)
            ax.fill_between(betas, mean - std, mean + std, alpha=0.15)
        ax.axhline(0, color="grey", lw=1, ls="--")
        ax.set_title(rows[0][0] if rows else where)
        ax.set_xlabel("β (IoU score the selection aims at)")
        ax.set_ylabel(f"{metric} − random (x100, paired by seed)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def basis_tables(where: str) -> str:
    con, _ = connect(where)
    rows = con.execute(
        "SELECT dataset, strategy_label, seed, annotation_ap50, ap50, annotation_miou, miou, spent_seconds, "
        "n_full_mask, n_labels_with_counts FROM rounds WHERE round = (SELECT max(round) FROM rounds) ORDER BY ALL").fetchall()
    out = []
    for dataset in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == dataset]
        out.append(f"### {dataset}: final round, mean ± std over seeds (AP and mIoU x100)\n")
        out.append("| selection | masks | IL+C | annotation AP50 | segmentation AP50 | annotation mIoU | segmentation mIoU "
                   "| budget (hours) | budget (days) |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for label in sorted({r[1] for r in mine}):
            rs = [r for r in mine if r[1] == label]
            sec = np.array([r[7] for r in rs], float)
            out.append(f"| {label} | {np.mean([r[8] for r in rs]):.0f} | {np.mean([r[9] for r in rs]):.0f} | "
                       f"{_cell([r[3] for r in rs])} | {_cell([r[4] for r in rs])} | {_cell([r[5] for r in rs])} | "
                       f"{_cell([r[6] for r in rs])} | {sec.mean() / 3600:.2f} | {sec.mean() / 86400:.3f} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--plot", metavar="PNG", help="also plot the paired delta vs random against beta (one panel per results dir)")
    ap.add_argument("--metric", default="ap50", choices=["ap50", "miou", "annotation_ap50", "annotation_miou"])
    ap.add_argument("--basis", action="store_true", help="Tables 5-8: annotation vs segmentation network, budget")
    args = ap.parse_args(argv)
    for where in args.results:
        print(basis_tables(where) if args.basis else tables(where, args.metric))
    if args.plot:
        plot(args.results, args.plot, args.metric)
    return 0


if __name__ == "__main__":
    sys.exit(main())
