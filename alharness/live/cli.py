"""``alharness live``: start, import, next, status (and shadow), each saying what to do next."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from alharness.live.formats import FORMATS

if TYPE_CHECKING:  # the campaign module loads torch: only when a command runs
    from alharness.live import campaign as live

EXIT_OK = 0


def _money(run: live.LiveRun, v: float) -> str:
    return f"{v:g} {run.spec.budget_metric}"


def _score(row: dict) -> str:
    return "no test folder, no score" if row.get("miou") is None else f"test mIoU {row['miou']:.3f}"


def _round_files(run: live.LiveRun, rnd: int) -> list[str]:
    d = run.directory / "tasks" / f"round-{rnd:03d}"
    if run.config["format"] == "coco":
        return [f"  {d / 'coco.json'}  (COCO: images, categories and the tasks to answer)"]
    kinds = sorted({t.query.kind for t in run.rounds[rnd]})
    return [f"  {d / f'{k}.json'}  -> a Label Studio project with labelling config "
            f"{run.directory / 'label-studio' / f'{k}.xml'}" for k in kinds]


def next_step(run: live.LiveRun) -> list[str]:
    """Where the campaign stands and the command to run next."""
    from alharness.live.campaign import counts

    d = run.directory
    if run.finished:
        return [f"campaign finished after round {run.spec.rounds}: {_score(run.state.rows[-1])}, spent "
                f"{_money(run, run.state.oracle.spent)} of {_money(run, run.spec.budget)}",
                f"next: alharness leaderboard {d}   |   alharness report {d}"]
    rnd = run.open_round
    if rnd is None:
        return [f"no round is open yet: alharness live next {d}"]
    tasks, pending = run.rounds[rnd], run.pending(rnd)
    lines = [f"round {rnd} of {run.spec.rounds}: {len(tasks) - len(pending)} of {len(tasks)} tasks answered "
             f"({counts(tasks)}); spent {_money(run, run.state.oracle.spent)} of {_money(run, run.spec.budget)}"]
    if not pending:
        return lines + [f"next: alharness live next {d}   (train, evaluate, propose round {rnd + 1})"
                        if rnd < run.spec.rounds else f"next: alharness live next {d}   (train and evaluate: the last round)"]
    how = ("import each file into its project, annotate, export the project as JSON"
           if run.config["format"] == "label-studio" else "annotate, write the answers as a COCO answers file (docs/live.md)")
    return lines + ["tasks:", *_round_files(run, rnd), f"next: {how}, then", f"  alharness live import {d} EXPORT.json",
                    f"  (or, to answer from ground-truth masks: alharness live shadow {d} MASKS_DIR --out EXPORT.json)"]


def cmd_start(args: argparse.Namespace) -> int:
    from alharness.live.start import start

    run, notes = start({k: getattr(args, k) for k in ("file", "strategy", "images", "out", "masks", "test", "format",
                                                       "classes", "size", "resize", "budget", "seed", "image_url")})
    print(f"live campaign {run.directory}: {run.spec.strategy_label}, budget {_money(run, run.spec.budget)}, "
          f"rounds 0..{run.spec.rounds}, {len(run.facts.stems)} images, classes {', '.join(run.facts.class_names)}")
    for n in notes:
        print(f"note: {n}")
    _closed(run, 0)
    print("\n".join(next_step(run)))
    return EXIT_OK


def _closed(run: live.LiveRun, since: int) -> None:
    for row in run.state.rows[since:]:
        print(f"round {row['round']} closed: {_score(row)}, spent {_money(run, row[f'spent_{run.spec.budget_metric}'])}"
              + (f", {row['unanswered']} task(s) left unbought" if row.get("unanswered") else ""))


def cmd_import(args: argparse.Namespace) -> int:
    from alharness.live import campaign as live

    run = live.open_run(args.dir)
    answers = live.import_export(run, args.export)
    leads = [a.lead_time for a in answers if a.lead_time is not None]
    lead = f", {sum(leads):g} s of annotation time" if leads else ""
    print(f"recorded {len(answers)} answer(s) from {args.export}{lead}")
    print("\n".join(next_step(run)))
    return EXIT_OK


def cmd_next(args: argparse.Namespace) -> int:
    from alharness.live import campaign as live

    run = live.open_run(args.dir)
    before = len(run.state.rows)
    live.advance(run, skip_missing=args.skip_missing)
    _closed(run, before)
    print("\n".join(next_step(run)))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from alharness.live import campaign as live

    run = live.open_run(args.dir)
    print(f"live campaign {run.directory}: {run.spec.strategy_label}, budget {_money(run, run.spec.budget)}, "
          f"format {run.config['format']}")
    _closed(run, 0)
    print("\n".join(next_step(run)))
    return EXIT_OK


def cmd_shadow(args: argparse.Namespace) -> int:
    from alharness.live import campaign as live
    from alharness.live.formats import write_json
    from alharness.live.shadow import shadow_export

    run = live.open_run(args.dir)
    doc, n = shadow_export(run, args.masks, args.format)
    out = Path(args.out)
    write_json(out, doc)
    print(f"wrote {n} answer(s) from the ground truth in {args.masks} to {out}")
    print(f"next: alharness live import {run.directory} {out}")
    return EXIT_OK


def cmd_costs_fit(args: argparse.Namespace) -> int:
    from alharness.live.times import fit_seconds, prices_toml

    fit = fit_seconds(args.sources)
    width = max(len(k) for k in fit)
    print(f"{'query type'.ljust(width)}  answers    mean s      sd  median  10-90 %")
    for k, s in fit.items():
        print(f"{k.ljust(width)}  {s['n']:7d}  {s['mean']:7.4g} {s['std']:7.3g} {s['median']:7.4g}  {s['p10']:.4g}-{s['p90']:.4g}")
    table = prices_toml(fit)
    print(f"\n{table}")
    if args.out:
        Path(args.out).write_text(table)
        print(f"wrote {args.out}")
    print("next: paste the table into a benchmark file to price simulated answers with these times")
    return EXIT_OK


def _add_costs_command(subparsers: argparse._SubParsersAction) -> None:
    cs = subparsers.add_parser("costs", help="annotation costs measured in live campaigns")
    sub = cs.add_subparsers(dest="costs_command", required=True)
    f = sub.add_parser("fit", help="seconds per query type (mean and spread) from measured lead times")
    f.add_argument("sources", nargs="+", help="Label Studio JSON exports, or live run directories")
    f.add_argument("--out", help="also write the [costs.seconds] table to this file")
    f.set_defaults(func=cmd_costs_fit)


def add_live_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``alharness live ...`` (a live campaign's subcommands) and ``alharness costs fit``, on the CLI's subparsers."""
    _add_costs_command(subparsers)
    lv = subparsers.add_parser("live", help="run a strategy with real annotators (Label Studio or COCO files)",
                               description="A live campaign: the strategy's rounds with answers from annotation "
                                           "exports (docs/live.md).")
    sub = lv.add_subparsers(dest="live_command", required=True)
    s = sub.add_parser("start", help="start a live campaign: its first round's tasks")
    s.add_argument("file", help="benchmark TOML whose campaign of --strategy to run (learner, costs, budget, rounds, seed)")
    s.add_argument("--strategy", required=True, help="strategy name, or its label in a grid (e.g. 'fixed_proportion(mask_fraction=0.5)')")
    s.add_argument("--images", required=True, help="folder of the unlabelled images (the pool)")
    s.add_argument("--out", required=True, help="the run directory (new, or the same as before to resume)")
    s.add_argument("--masks", help="folder of masks already labelled (<stem>.png, class ids, 255 void): round 0")
    s.add_argument("--test", help="labelled test folder (images/, masks/) to score each round on")
    s.add_argument("--format", choices=FORMATS, default="label-studio", help="task format (default label-studio)")
    s.add_argument("--classes", help="class names: a file (one per line) or a,b,c (default: classes.txt beside the images)")
    s.add_argument("--size", type=int, nargs="+", help="H [W]: the campaign's resolution (default: the benchmark dataset's size)")
    s.add_argument("--resize", choices=["crop", "resize"], help="fit images by centre crop (default) or stretching")
    s.add_argument("--budget", type=float, help="which of the benchmark's budgets (default: the first)")
    s.add_argument("--seed", type=int, help="which of the benchmark's seeds (default: the first)")
    s.add_argument("--image-url", help="URL prefix of the images in Label Studio tasks "
                                       "(default: /data/local-files/?d=<run dir>/images/, Label Studio's local files)")
    s.set_defaults(func=cmd_start)
    i = sub.add_parser("import", help="record the answers of an export (Label Studio JSON or COCO answers)")
    i.add_argument("dir", help="the run directory")
    i.add_argument("export", help="the export file")
    i.set_defaults(func=cmd_import)
    n = sub.add_parser("next", help="close the round (train, evaluate) and propose the next one")
    n.add_argument("dir", help="the run directory")
    n.add_argument("--skip-missing", action="store_true", help="close the round although some tasks are unanswered (they stay unbought)")
    n.set_defaults(func=cmd_next)
    st = sub.add_parser("status", help="where a live campaign stands, and what to do next")
    st.add_argument("dir", help="the run directory")
    st.set_defaults(func=cmd_status)
    sh = sub.add_parser("shadow", help="answer the open round from ground-truth masks, as an export (shadow mode)")
    sh.add_argument("dir", help="the run directory")
    sh.add_argument("masks", help="folder of ground-truth masks, <stem>.png for every pool image")
    sh.add_argument("--out", required=True, help="the export file to write")
    sh.add_argument("--format", choices=FORMATS, help="export format (default: the campaign's)")
    sh.set_defaults(func=cmd_shadow)
    return lv
