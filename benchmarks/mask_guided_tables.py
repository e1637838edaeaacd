"""Tables 3-4 of the mask-guided paper from a beta-sweep results directory.

    python benchmarks/mask_guided_tables.py results/mask_guided_synthetic [--metric ap50]

Prints, per dataset, one Markdown table: rows "Random subset" and beta = 0.0
... 1.0, columns the oracle (true IoU score, Table 3) and the predicted IoU
score (Table 4), each the final round's test metric as mean ± std over seeds
(x100, as the paper prints AP), and the mean IoU score of the images each
selection picked (from the strategies' diagnostics). The first row is the
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

from alharness.store import connect


def _cell(values: list[float]) -> str:
    v = np.array([x for x in values if x is not None], float) * 100
    if v.size == 0:
        return "–"
    return f"{v.mean():.1f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.1f}"


def tables(where: str, metric: str = "ap50") -> str:
    con, _ = connect(where)
    rows = con.execute(
        f"SELECT dataset, strategy, p_strategy_beta, seed, round, {metric}, diagnostics, "
        "n_full_mask FROM rounds ORDER BY ALL").fetchall()
    out = []
    for dataset in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == dataset]
        last = max(r[4] for r in mine)
        final = [r for r in mine if r[4] == last]
        n0 = sorted({r[7] for r in mine if r[4] == 0})
        n1 = sorted({r[7] for r in final})

        def pick(strategy, beta=None):
            return [r for r in final if r[1] == strategy and (beta is None or abs((r[2] or 0) - beta) < 1e-9)]

        def selected(rs):
            v = [json.loads(r[6]).get("mean_score_selected") for r in rs]
            v = [x for x in v if x is not None]
            return f"{np.mean(v):.2f}" if v else "–"

        out.append(f"### {dataset}: {metric} (x100) after round {last}, N = {n0} initial + selected = {n1} masks\n")
        out.append("| selection | oracle (true IoU score) | mean score picked | predicted IoU score | mean score picked |")
        out.append("|---|---|---|---|---|")
        initial = [r for r in mine if r[4] == 0]
        out.append(f"| N initial only (round 0) | {_cell([r[5] for r in initial])} | | | |")
        rnd = pick("mask_guided_random")
        out.append(f"| Random subset | {_cell([r[5] for r in rnd])} | | {_cell([r[5] for r in rnd])} | |")
        betas = sorted({r[2] for r in final if r[1] == "mask_guided" and r[2] is not None})
        for b in betas:
            o, p = pick("mask_guided_oracle", b), pick("mask_guided", b)
            out.append(f"| β = {b:.1f} | {_cell([r[5] for r in o])} | {selected(o)} | {_cell([r[5] for r in p])} | {selected(p)} |")
        out.append("")
    return "\n".join(out)


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
    ap.add_argument("results")
    ap.add_argument("--metric", default="ap50", choices=["ap50", "miou", "annotation_ap50", "annotation_miou"])
    ap.add_argument("--basis", action="store_true", help="Tables 5-8: annotation vs segmentation network, budget")
    args = ap.parse_args(argv)
    print(basis_tables(args.results) if args.basis else tables(args.results, args.metric))
    return 0


if __name__ == "__main__":
    sys.exit(main())
