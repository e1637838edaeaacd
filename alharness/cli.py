"""`alharness` command line: bench, leaderboard, plot, report, query, list."""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

from alharness.errors import AlharnessError, ConfigError
from alharness.live.cli import add_live_commands

EXIT_OK, EXIT_FAILED_CAMPAIGNS, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # as if killed by SIGPIPE


def _print_problems(problems: list[str]) -> None:
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)


def _results_dir(args: argparse.Namespace, bench) -> "str | Path":
    """``--out``, or results/<benchmark name>; a URI (s3://bucket/prefix, file:///...)
    is any pyarrow file system every node can write."""
    return (args.out if "://" in args.out else Path(args.out)) if args.out else Path("results") / bench.name


def _backend(args: argparse.Namespace):
    """The ``--backend`` asked for, with the Ray options (the local backend ignores them)."""
    from alharness.execution.backends import make_backend

    return make_backend(args.backend, address=args.address, num_cpus=args.num_cpus, retries=args.retries)


def cmd_bench(args: argparse.Namespace) -> int:
    from alharness.execution.benchmark import load_benchmark

    bench = load_benchmark(args.file, open_datasets=not args.no_data_check)  # validated before anything starts
    out = _results_dir(args, bench)
    upto = "up to " if bench.seeding is not None else ""  # adaptive seeding: waves decide how many run
    print(f"benchmark {bench.name!r}: {upto}{len(bench.specs)} campaigns -> {out}", file=sys.stderr)
    from alharness.results import reference_cache
    from alharness.execution.scheduler import run_benchmark

    backend = _backend(args)
    if args.check_learner:
        _check_learner(bench, out, backend, args)
    if not args.no_resume and (n := reference_cache.restore(out, bench.specs)):
        print(f"{n} full-supervision reference(s) reused from the cache ({reference_cache.cache_location()})", file=sys.stderr)
    summary = run_benchmark(
        bench, out, backend=backend, max_concurrent=args.workers,
        resume=not args.no_resume, attempts=args.attempts, progress=not args.quiet,
    )
    _print_problems(summary.problems)
    reference_cache.save(out, bench.specs)
    if summary.skipped:
        print(f"{summary.skipped} campaign(s) already finished in {out}; skipped (use --no-resume to rerun)", file=sys.stderr)
    rc = EXIT_OK
    if summary.failed:
        rc = EXIT_FAILED_CAMPAIGNS
        print(f"\n{len(summary.failed)} of {summary.total} campaign(s) FAILED (tracebacks: alharness query {out} "
              f"\"SELECT campaign_id, error FROM campaigns WHERE status = 'failed'\"):", file=sys.stderr)
        for f in summary.failed:
            print(f"  {f['campaign_id']}  {f['strategy']} on {f['dataset']} seed {f['seed']}: {f['error']}", file=sys.stderr)
    from alharness.results import leaderboard as report, store

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


def _check_learner(bench, out, backend, args: argparse.Namespace) -> dict:
    """Run the learner adequacy check; print its table; warn (stderr) per inadequate group."""
    from alharness.execution.adequacy import CHECK_FILE, check_learner, format_table, warnings

    result = check_learner(bench, out, backend=backend, seeds=args.check_seeds, tol=args.tolerance,
                           progress=not args.quiet, max_concurrent=args.workers)
    print(format_table(result), file=sys.stderr if args.func is cmd_bench else sys.stdout)
    for line in warnings(result):
        print(f"warning: {line}", file=sys.stderr)
    print(f"learner check: {out}/{CHECK_FILE}", file=sys.stderr)
    return result


def cmd_check_learner(args: argparse.Namespace) -> int:
    """Train each (dataset, learner)'s full-supervision reference at 1x/2x/4x steps and on 50 % of the masks."""
    from alharness.execution.benchmark import load_benchmark

    bench = load_benchmark(args.file)
    result = _check_learner(bench, _results_dir(args, bench), _backend(args), args)
    return EXIT_FAILED_CAMPAIGNS if result["failed"] else EXIT_OK


def _add_check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check-seeds", type=int, default=1, help="seeds of the learner check (default: the first one)")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="mIoU gain from doubling the steps below which the learner counts as converged (default 0.01)")


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from alharness.results import leaderboard as report, store

    con, res = store.connect(args.results)
    _print_problems(res.problems)
    print(report.format_leaderboard(report.leaderboard(con, args.cost_metric, args.reach), args.reach))
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    from alharness.results import leaderboard as report, store

    con, res = store.connect(args.results)
    _print_problems(res.problems)
    out = Path(args.out) if args.out else Path(args.results) / "learning_curves.png"
    print(report.plot_learning_curves(con, out, args.cost_metric))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from alharness.results.report_page import build_report

    claims = ()
    if args.claims:
        from alharness.execution.benchmark import load_benchmark

        claims = load_benchmark(args.claims, open_datasets=False).claims
        if not claims:
            raise ConfigError(f"{args.claims}: no [[claims]] tables to judge")
    html_path, md_path = build_report(args.results, args.out, claims)
    print(f"report: {html_path}\n        {md_path}")
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    from alharness.results import store

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
        entries = REGISTRIES[kind].catalogue()  # imports no plugin when a listing is cached
        width = max((len(name) for name, _ in entries), default=0)
        for name, description in entries:
            print(f"{name.ljust(width)}  {description}")
        if len(kinds) > 1:
            print()
    return EXIT_OK


def _numbers(text: str, kind=float) -> list:
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise AlharnessError(f"expected a comma-separated list of numbers, got {text!r}") from None


def cmd_surface(args: argparse.Namespace) -> int:
    """Ground-truth m(C, S) on a grid (full-or-weak Fig. 6) as campaigns on Ray, reduced to surface.parquet."""
    from alharness.execution.benchmark import Benchmark, load_benchmark
    from alharness.studies.surface import collect_surface, surface_specs

    bench = load_benchmark(args.file)
    specs = surface_specs(bench, _numbers(args.labels, int), _numbers(args.masks, int), _numbers(args.seeds, int))
    out = Path(args.out) if args.out else Path("results") / f"{bench.name}-surface"
    print(f"surface of {bench.name!r}: {len(specs)} campaigns -> {out}", file=sys.stderr)
    from alharness.execution.backends.ray import run_benchmark

    summary = run_benchmark(Benchmark(f"{bench.name}-surface", "budget-performance surface", tuple(specs), args.file),
                            out, address=args.address, num_cpus=args.num_cpus, max_concurrent=args.workers,
                            progress=not args.quiet)
    _print_problems(summary.problems)
    print(collect_surface(out))
    return EXIT_FAILED_CAMPAIGNS if summary.failed else EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    """Replay the GP allocation and the fixed baselines on a stored surface over alpha_s × T × budget × seed."""
    from alharness.studies.surface import Surface
    from alharness.studies.sweep import plot_sweep, run_sweep, write_sweep

    surface = Surface.load(args.surface)
    rows = run_sweep(surface, alpha_s=_numbers(args.alpha_s), T=_numbers(args.T, int),
                     budgets=_numbers(args.budgets) if args.budgets else None, seeds=range(args.seeds),
                     initial_fraction=args.initial_fraction, samples=args.samples, gp_iters=args.gp_iters,
                     workers=args.workers, schedule=args.gp_schedule)
    out = Path(args.out) if args.out else Path(args.surface) / "sweep"
    print(write_sweep(rows, out))
    for path in plot_sweep(rows, out):
        print(path)
    return EXIT_OK


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    """Where and how wide the campaigns run (bench and surface)."""
    p.add_argument("--address", help="Ray cluster address ('auto' for the cluster this node belongs to); default: start a local Ray")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--workers", type=int, help="at most this many campaigns in flight at once (default: as resources allow)")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def cmd_bench_dry_run(args: argparse.Namespace) -> int:
    """``bench --dry-run``: validate, expand the grid, print the campaigns and their memory estimate; run nothing."""
    from alharness.execution.benchmark import load_benchmark
    from alharness.execution.estimate import dry_run

    bench = load_benchmark(args.file, open_datasets=not args.no_data_check)
    print(dry_run(bench, open_datasets=not args.no_data_check, memory_per_campaign_gib=args.memory_per_campaign,
                  workers=args.workers, node_cpus=args.num_cpus))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alharness", description="Simulate and benchmark annotation strategies for image segmentation.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="run a benchmark file on Ray, then print the leaderboard and write a plot")
    b.add_argument("file", help="benchmark TOML, e.g. benchmarks/quickstart.toml")
    b.add_argument("--dry-run", dest="func", action="store_const", const=cmd_bench_dry_run,
                   help="validate, print the campaigns and a per-campaign memory estimate (and whether it fits); "
                        "schedule nothing, write nothing")
    b.add_argument("--memory-per-campaign", type=float, metavar="GIB",
                   help="with --dry-run: compare with this much memory per campaign (default: this node's share)")
    b.add_argument("--out", help="results directory (default: results/<benchmark name>)")
    b.add_argument("--no-resume", action="store_true", help="rerun campaigns that already finished")
    b.add_argument("--no-data-check", action="store_true",
                   help="do not open each dataset here before scheduling (its files exist only on the cluster's nodes)")
    b.add_argument("--retries", type=int, default=2, help="reruns of a campaign whose worker or node died (default: 2)")
    b.add_argument("--attempts", type=int, default=1,
                   help="runs in all of a campaign that raises, before it is recorded as failed (default: 1)")
    b.add_argument("--backend", choices=["local", "ray"], default="ray",
                   help="where campaigns run: Ray tasks, or one at a time in this process for debugging (default: ray; "
                        "--address, --num-cpus and --retries are Ray's)")
    b.add_argument("--check-learner", action="store_true",
                   help="first run the learner adequacy check (see 'alharness check-learner'); warn per under-trained group")
    _add_check_options(b)
    _add_ray_options(b)
    b.set_defaults(func=cmd_bench)

    cl = sub.add_parser("check-learner", help="is the learner converged? full supervision at 1x/2x/4x steps and on 50 %% "
                                              "of the masks; writes RESULTS/learner_check.json")
    cl.add_argument("file", help="benchmark TOML")
    cl.add_argument("--out", help="results directory (default: results/<benchmark name>)")
    cl.add_argument("--backend", choices=["local", "ray"], default="ray", help="where the campaigns run (default: ray)")
    cl.add_argument("--retries", type=int, default=2, help="reruns of a campaign whose worker or node died (default: 2)")
    _add_check_options(cl)
    _add_ray_options(cl)
    cl.set_defaults(func=cmd_check_learner)

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
    rp.add_argument("--claims", metavar="FILE", help="benchmark TOML whose [[claims]] the report judges first "
                    "(confirmed / contradicted / not detectable at this scale; also claims.md, claims.json)")
    rp.set_defaults(func=cmd_report)

    q = sub.add_parser("query", help="run SQL on the views campaigns, rounds, queries (DuckDB)")
    q.add_argument("results")
    q.add_argument("sql")
    q.add_argument("--csv", action="store_true", help="print CSV")
    q.set_defaults(func=cmd_query)

    sf = sub.add_parser("surface", help="ground-truth m(C, S) on a grid of label and mask counts, K seeds a point, on Ray")
    sf.add_argument("file", help="benchmark TOML: its first dataset, learner and costs are used")
    sf.add_argument("--labels", default="0,50,100,200,400", help="image-label counts C (comma-separated)")
    sf.add_argument("--masks", default="0,5,10,20,40", help="mask counts S (comma-separated)")
    sf.add_argument("--seeds", default="0,1", help="seeds per point (comma-separated)")
    sf.add_argument("--out", help="results directory (default: results/<benchmark name>-surface)")
    _add_ray_options(sf)
    sf.set_defaults(func=cmd_surface)

    sw = sub.add_parser("sweep", help="replay the GP allocation vs fixed proportions on a stored surface (Figs. 4, 5)")
    sw.add_argument("surface", help="surface.parquet or the directory holding it ('alharness surface')")
    sw.add_argument("--alpha-s", default="5,12,25,50", help="mask prices in label equivalents (default: 5,12,25,50)")
    sw.add_argument("--T", default="3,5,8,10", help="numbers of installments (default: 3,5,8,10)")
    sw.add_argument("--budgets", help="budgets (default: 5 from 2 B0 to what the surface holds, per alpha_s)")
    sw.add_argument("--seeds", type=int, default=3, help="seeds per setting (default 3)")
    sw.add_argument("--initial-fraction", type=float, default=0.08, help="(C0, S0) as a share of the pool (default 0.08)")
    sw.add_argument("--samples", type=int, default=8, help="utility samples M per round (default 8)")
    sw.add_argument("--gp-iters", type=int, default=100, help="Adam steps per GP fit (default 100)")
    sw.add_argument("--gp-schedule", choices=("exact", "warm"), default="exact",
                    help="GP fits: 'exact' (the allocation step's, default) or 'warm' (replay only: from the previous "
                         "round's hyperparameters to convergence, faster, decisions differ)")
    sw.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    sw.add_argument("--out", help="output directory (default: SURFACE_DIR/sweep)")
    sw.set_defaults(func=cmd_sweep)

    ls = sub.add_parser("list", help="registered plugins")
    ls.add_argument("kind", nargs="?", choices=["strategies", "datasets", "costs", "models", "pipelines"])
    ls.set_defaults(func=cmd_list)

    add_live_commands(sub)
    return p


def _reader_went_away() -> int:
    """stdout's reader closed the pipe (``alharness list | head``): stop
    quietly, as shell tools do, with SIGPIPE's conventional status."""
    try:  # later writes, and the flush at exit, go nowhere instead of raising again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not as a traceback at exit
        return rc
    except BrokenPipeError:
        return _reader_went_away()
    except AlharnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted: finished campaigns are saved; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
