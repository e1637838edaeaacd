"""Regenerate the computed readings (verdicts.md / verdicts.json) of the committed references.

    python benchmarks/reference_readings.py [NAME=RESULTS_DIR ...]

For each ``results/reference/<name>/`` the Parquet results are looked for in
RESULTS_DIR when given, else in the reference folder itself, else in
``results/<name>/`` (where the README's regenerate commands write them). The
Parquet results are not committed (too large), so on a fresh checkout every
reference is reported as "no results": rerun its README's commands first,
then this script, then commit the verdict files and quote them in the README
(issue 18, part 3). Exit 1 when some reference had no results.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alharness.results import store
from alharness.results.report_page import compute_verdicts, write_verdicts

ROOT = Path(__file__).resolve().parent.parent
REFERENCES = ROOT / "results" / "reference"


def _results_for(name: str, given: dict[str, Path]) -> Path | None:
    for candidate in (given.get(name), REFERENCES / name, ROOT / "results" / name):
        if candidate is not None and (candidate / "rounds").is_dir():
            return candidate
    return None


def regenerate(given: dict[str, Path]) -> list[str]:
    """Write the verdict files of every reference that has its results; return the names that have none."""
    missing = []
    for ref in sorted(p for p in REFERENCES.iterdir() if p.is_dir()):
        results = _results_for(ref.name, given)
        if results is None:
            missing.append(ref.name)
            continue
        con, scanned = store.connect(results)
        _, found = compute_verdicts(con)
        write_verdicts(found, ref)
        print(f"{ref.name}: {len(found)} verdicts from {results} -> {ref / 'verdicts.md'}"
              + (f" ({len(scanned.problems)} unreadable files left out)" if scanned.problems else ""))
    return missing


def main(argv: list[str]) -> int:
    given = {}
    for arg in argv:
        name, sep, path = arg.partition("=")
        if not sep:
            print(f"expected NAME=RESULTS_DIR, got {arg!r}", file=sys.stderr)
            return 2
        given[name] = Path(path)
    missing = regenerate(given)
    for name in missing:
        print(f"{name}: no results (no rounds/ in results/reference/{name} or results/{name}); "
              f"rerun the commands in results/reference/{name}/README.md first", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
