"""Table 3 of "Active Learning for Image Segmentation with Binary User Feedback" (§4),
recomputed by the harness's cost model, and the hours a results directory spent.

    python benchmarks/binary_hours.py                              # print Table 3
    python benchmarks/binary_hours.py --results results/mini/binary  # and the measured hours
    python benchmarks/binary_hours.py --write results/reference/mini/binary/hours.md
    python benchmarks/binary_hours.py --results results/mini/binary --write results/reference/mini/binary/hours.md

Table 3 ("approximate total time, in hours, to be expended for annotation over
25 AL iterations") is, per dataset, the user study's time per annotation
(Table 1) x the annotations of one AL iteration x 25 iterations: a yes/no
answer per query (binary level), a region per query (region level) and 48
full images (pixel level). The time per annotation here is the price the
registered ``seconds`` cost model quotes for one ``ClassPresence``, one
``Region`` and one ``FullMask`` under its ``binary_feedback_<dataset>``
preset; only the protocol's counts and the paper's own figures are constants.

``--results DIR`` (a results directory of ``alharness bench
benchmarks/mini/binary.toml``) adds, per arm, the hours its campaigns spent
(final cost in the ``seconds`` metric / 3600, mean over seeds) and the hours
to reach 90 % and 95 % of full supervision (``leaderboard.per_campaign``).
With ``--write PAGE`` it also writes those rows to PAGE's ``.json`` sidecar,
from which a test re-renders the committed page (the results themselves are
not in git).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from alharness.contract.queries import ClassPresence, FullMask, Region
from alharness.registry import COSTS

# The paper's protocol (§4): AL iterations, queries per iteration (yes/no
# answers at binary level, regions at region level) and full images per
# iteration at pixel level.
PROTOCOL = {
    "iterations": 25,
    "images_per_iteration": 48,
    "queries_per_iteration": {"flickr": 400, "cityscapes": 200, "pascal": 200},
}
# The paper's Table 3 as printed (hours: binary, region, pixel level). Its
# PASCAL binary figure, 4.16, is 3 s x 200 x 25 = 4.1667 h truncated.
PAPER_TABLE3 = {
    "flickr": (5.56, 266.67, 156.0),
    "cityscapes": (5.56, 300.0, 750.0),
    "pascal": (4.16, 225.0, 364.0),
}
NAMES = {"flickr": "Flickr", "cityscapes": "Cityscapes", "pascal": "PASCAL"}
LEVELS = ("binary", "region", "pixel")
REACH = (0.9, 0.95)
COMMAND = "python benchmarks/binary_hours.py"


def table3() -> list[dict[str, Any]]:
    """One row per dataset: seconds per annotation quoted by the cost model, hours per level, the paper's hours."""
    rows = []
    iterations = PROTOCOL["iterations"]
    for dataset, queries in PROTOCOL["queries_per_iteration"].items():
        model = COSTS.create("seconds", preset=f"binary_feedback_{dataset}")
        seconds = {"binary": model.quote(ClassPresence(image=0, cls=1)),
                   "region": model.quote(Region(image=0, y=0, x=0, size=16)),
                   "pixel": model.quote(FullMask(image=0))}
        count = {"binary": queries, "region": queries, "pixel": PROTOCOL["images_per_iteration"]}
        hours = {lv: seconds[lv] * count[lv] * iterations / 3600 for lv in LEVELS}
        rows.append({"dataset": dataset, "seconds": seconds, "count": count, "hours": hours,
                     "paper": dict(zip(LEVELS, PAPER_TABLE3[dataset]))})
    return rows


def render_table3(rows: list[dict[str, Any]]) -> str:
    lines = ["| dataset | s per yes/no | s per region | s per image | queries / iteration | "
             "binary h (harness) | binary h (paper) | region h (harness) | region h (paper) | "
             "pixel h (harness) | pixel h (paper) | pixel / binary | region / binary |",
             "|---|" + "---:|" * 12]
    for r in rows:
        s, h, p = r["seconds"], r["hours"], r["paper"]
        lines.append(f"| {NAMES[r['dataset']]} | {s['binary']:g} | {s['region']:g} | {s['pixel']:g} | "
                     f"{r['count']['binary']} | "
                     + " | ".join(f"{h[lv]:.2f} | {p[lv]:g}" for lv in LEVELS)
                     + f" | {h['pixel'] / h['binary']:.1f} | {h['region'] / h['binary']:.1f} |")
    return "\n".join(lines)


def _reached(row: dict[str, Any]) -> str:
    """Mean hours over the seeds that reached the target, with how many did (a leaderboard row)."""
    if not row["reached"]:
        return "never"
    return f"{row['cost_to_reach_mean'] / 3600:.3g} ({row['reached']}/{row['seeds']})"


def measured(where: str | Path) -> list[dict[str, Any]]:
    """Per (dataset, pricing, budget, arm): seeds, mean hours spent and hours to each ``REACH``,
    from the leaderboard scored in seconds (``leaderboard.leaderboard``), arms by name."""
    from alharness.results.leaderboard import leaderboard
    from alharness.results.store import connect

    con, _ = connect(str(where))
    key = lambda r: (r["dataset"], r["pricing"], r["budget"], r["strategy"])  # noqa: E731
    boards = {x: {key(r): r for r in leaderboard(con, cost_metric="seconds", reach=x)} for x in REACH}
    return [{"dataset": r["dataset"], "pricing": r["pricing"], "budget": r["budget"], "strategy": r["strategy"],
             "seeds": r["seeds"], "reach_of": r["reach_of"], "hours": r["final_cost_mean"] / 3600,
             "reach": {x: boards[x][k] for x in REACH}}
            for k, r in sorted(boards[REACH[0]].items())]


def render_measured(rows: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    key = None
    for r in rows:
        if (r["dataset"], r["pricing"], r["budget"]) != key:
            key = (r["dataset"], r["pricing"], r["budget"])
            if lines:
                lines.append("")
            lines += [f"Dataset {r['dataset']}, priced {r['pricing']}, budget {r['budget']:g} s; "
                      f"targets are fractions of {r['reach_of']}'s final mIoU.", "",
                      "| arm | seeds | hours spent | " + " | ".join(f"hours to {x:.0%}" for x in REACH) + " |",
                      "|---|---:|---:|" + "---:|" * len(REACH)]
        lines.append(f"| {r['strategy']} | {r['seeds']} | {r['hours']:.3g} | "
                     + " | ".join(_reached(r["reach"][x]) for x in REACH) + " |")
    return "\n".join(lines)


def sidecar(write: str | Path) -> Path:
    """Where ``--write PAGE --results DIR`` keeps the measured rows the page was rendered from (``hours.json``)."""
    return Path(write).with_suffix(".json")


def save_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """The measured rows as JSON (reach targets as text keys), so the committed page can be re-rendered."""
    plain = [{**r, "reach": {str(x): b for x, b in r["reach"].items()}} for r in rows]
    path.write_text(json.dumps(plain, indent=1, default=str) + "\n")


def load_rows(path: Path) -> list[dict[str, Any]]:
    """``save_rows``'s rows back, reach targets as numbers."""
    return [{**r, "reach": {float(x): b for x, b in r["reach"].items()}} for r in json.loads(path.read_text())]


def markdown(results: str | None = None, write: str | None = None, rows: list[dict[str, Any]] | None = None) -> str:
    """The page; with ``results`` the measured table too (from ``rows`` where given, else read from ``results``)."""
    cmd = COMMAND + (f" --results {results}" if results else "") + (f" --write {write}" if write else "")
    parts = ["# Annotation hours (binary-user-feedback paper, §4, Table 3)", "",
             "Total hours = the time per annotation quoted by the harness's `seconds` cost model "
             "(presets `binary_feedback_<dataset>`, the user study's Table 1) x annotations per AL iteration "
             f"(binary and region level: the query budget; pixel level: {PROTOCOL['images_per_iteration']} images) "
             f"x {PROTOCOL['iterations']} iterations, beside the paper's Table 3 (its PASCAL binary 4.16 is "
             "4.1667 truncated).", "",
             "## Table 3: harness against paper", "", render_table3(table3()), "",
             "## Hours spent by the benchmark's arms", ""]
    if results:
        parts.append(render_measured(measured(results) if rows is None else rows))
    else:
        parts += ["The measured table needs `--results DIR`, a results directory of the mini benchmark:", "",
                  "    alharness bench benchmarks/mini/binary.toml --out results/mini/binary",
                  f"    {COMMAND} --results results/mini/binary" + (f" --write {write}" if write else "")]
    parts += ["", "Regenerate:", "", f"    {cmd}", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", help="results directory of alharness bench benchmarks/mini/binary.toml")
    ap.add_argument("--write", help="write the Markdown here instead of printing it")
    args = ap.parse_args(argv)
    rows = measured(args.results) if args.results else None
    text = markdown(args.results, args.write, rows)
    if args.write:
        Path(args.write).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write).write_text(text)
        if rows is not None:
            save_rows(rows, sidecar(args.write))
        elif sidecar(args.write).exists():
            sidecar(args.write).unlink()  # the page no longer quotes measured rows
        print(f"wrote {args.write}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
