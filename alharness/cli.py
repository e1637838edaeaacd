"""`alharness` command line: bench, leaderboard, plot, report, query, list."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alharness.errors import AlharnessError

EXIT_OK, EXIT_FAILED_CAMPAIGNS, EXIT_USAGE = 0, 1, 2


def _print_problems(problems: list[str]) -> None:
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> int:
    from alharness.benchmark import load_benchmark

    bench = load_benchmark(args.file)  # validated before anything starts
    # A URI (s3://bucket/prefix, file:///...) is any pyarrow file system every node can write.
    out = (args.out if "://" in args.out else Path(args.out)) if args.out else Path("results") / bench.name
    print(f"benchmark {bench.name!r}: {len(bench.specs)} campaigns -> {out}", file=sys.stderr)
    from alharness.runner import run_benchmark

    summary = run_benchmark(
        bench, out, address=args.address, num_cpus=args.num_cpus, max_concurrent=args.workers,
        resume=not args.no_resume, retries=args.retries, attempts=args.attempts, progress=not args.quiet,
    )
    _print_problems(summary.problems)
    if summary.skipped:
        print(f"{summary.skipped} campaign(s) already finished in {out}; skipped (use --no-resume to rerun)", file=sys.stderr)
    rc = EXIT_OK
    if summary.failed:
        rc = EXIT_FAILED_CAMPAIGNS
        print(f"\n{len(summary.failed)} of {summary.total} campaign(s) FAILED (tracebacks: alharness query {out} "
              f"\"SELECT campaign_id, error FROM campaigns WHERE status = 'failed'\"):", file=sys.stderr)
        for f in summary.failed:
            print(f"  {f['campaign_id']}  {f['strategy']} on {f['dataset']} seed {f['seed']}: {f['error']}", file=sys.stderr)
    from alharness import report, store

    try:
        con, _ = store.connect(out)
    except AlharnessError as exc:
        print(f"no leaderboard: {exc}", file=sys.stderr)
        return rc or EXIT_FAILED_CAMPAIGNS
    print(report.format_leaderboard(report.leaderboard(con)))
    png = report.plot_learning_curves(con, out / "learning_curves.png" if isinstance(out, Path)
                                      else Path(f"{bench.name}_learning_curves.png"))
    print(f"results: {out}  (Parquet: campaigns/, rounds/, queries/)\nplot:    {png}")
    return rc


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from alharness import report, store

    con, res = store.connect(args.results)
    _print_problems(res.problems)
    print(report.format_leaderboard(report.leaderboard(con, args.cost_metric, args.reach), args.reach))
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    from alharness import report, store

    con, res = store.connect(args.results)
    _print_problems(res.problems)
    out = Path(args.out) if args.out else Path(args.results) / "learning_curves.png"
    print(report.plot_learning_curves(con, out, args.cost_metric))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from alharness.report_page import build_report

    html_path, md_path = build_report(args.results, args.out)
    print(f"report: {html_path}\n        {md_path}")
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    from alharness import store

    con, res = store.connect(args.results, require_rounds=False)
    _print_problems(res.problems)
    try:
        cur = con.execute(args.sql)
    except duckdb.Error as exc:
        raise AlharnessError(f"query failed: {str(exc).splitlines()[0]} (views: campaigns, rounds, queries)") from None
    if cur.description is None:
        return EXIT_OK
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    if args.csv:
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(names)
        w.writerows(rows)
        return EXIT_OK
    cells = [[str(v) for v in r] for r in rows]
    widths = [min(60, max(len(n), *(len(r[i]) for r in cells))) if cells else len(n) for i, n in enumerate(names)]
    print("  ".join(n.ljust(w) for n, w in zip(names, widths)))
    for r in cells:
        print("  ".join(c[:w].ljust(w) for c, w in zip(r, widths)))
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", file=sys.stderr)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from alharness.registry import REGISTRIES

    kinds = [args.kind] if args.kind else list(REGISTRIES)
    for kind in kinds:
        if len(kinds) > 1:
            print(f"# {kind}")
        entries = list(REGISTRIES[kind].entries())
        width = max((len(e.name) for e in entries), default=0)
        for e in entries:
            print(f"{e.name.ljust(width)}  {e.description}")
        if len(kinds) > 1:
            print()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alharness", description="Simulate and benchmark annotation strategies for image segmentation.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="run a benchmark file on Ray, then print the leaderboard and write a plot")
    b.add_argument("file", help="benchmark TOML, e.g. benchmarks/quickstart.toml")
    b.add_argument("--out", help="results directory (default: results/<benchmark name>)")
    b.add_argument("--address", help="Ray cluster address ('auto' for the cluster this node belongs to); default: start a local Ray")
    b.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    b.add_argument("--workers", type=int, help="at most this many campaigns in flight at once (default: as resources allow)")
    b.add_argument("--no-resume", action="store_true", help="rerun campaigns that already finished")
    b.add_argument("--retries", type=int, default=2, help="reruns of a campaign whose worker or node died (default: 2)")
    b.add_argument("--attempts", type=int, default=1,
                   help="runs in all of a campaign that raises, before it is recorded as failed (default: 1)")
    b.add_argument("--quiet", action="store_true", help="no progress display")
    b.set_defaults(func=cmd_bench)

    lb = sub.add_parser("leaderboard", help="rank strategies in a results directory")
    lb.add_argument("results", help="results directory written by 'alharness bench'")
    lb.add_argument("--cost-metric", help="score in this recorded cost metric (default: each campaign's budget metric)")
    lb.add_argument("--reach", type=float, default=0.9, help="fraction of the best final mIoU for 'cost to reach' (default 0.9)")
    lb.set_defaults(func=cmd_leaderboard)

    pl = sub.add_parser("plot", help="learning curves (mIoU vs cost, seed bands) as PNG")
    pl.add_argument("results")
    pl.add_argument("--out", help="PNG path (default: RESULTS/learning_curves.png)")
    pl.add_argument("--cost-metric")
    pl.set_defaults(func=cmd_plot)

    rp = sub.add_parser("report", help="one self-contained HTML page (plots embedded) and Markdown from a results directory")
    rp.add_argument("results", help="results directory written by 'alharness bench'")
    rp.add_argument("--out", help="output directory (default: RESULTS/report)")
    rp.set_defaults(func=cmd_report)

    q = sub.add_parser("query", help="run SQL on the views campaigns, rounds, queries (DuckDB)")
    q.add_argument("results")
    q.add_argument("sql")
    q.add_argument("--csv", action="store_true", help="print CSV")
    q.set_defaults(func=cmd_query)

    ls = sub.add_parser("list", help="registered plugins")
    ls.add_argument("kind", nargs="?", choices=["strategies", "datasets", "costs", "models"])
    ls.set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AlharnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted: finished campaigns are saved; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
