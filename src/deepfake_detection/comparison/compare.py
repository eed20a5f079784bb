"""Paths in, comparison out: find the runs, pick the best, write the table and figures.

Shared by `deepfake-compare` (`main`, its command line) and the Hydra callback that runs at
the end of a sweep.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from deepfake_detection.comparison.runs import Run, RunsNotFoundError, find_runs
from deepfake_detection.comparison.table import best_run, report_text, write_tables
from deepfake_detection.errors import one_line

#: Where a comparison of several paths goes, relative to the working directory.
DEFAULT_OUTPUT_ROOT = Path("outputs") / "compare"


@dataclass(frozen=True)
class ComparisonResult:
    """The runs compared, the best one (None when no run finished) and what was written."""

    runs: tuple[Run, ...]
    best: Run | None
    report: str  # the Markdown table and summary, as printed and saved in comparison.md
    output_dir: Path
    files: tuple[Path, ...]


def default_output_dir(paths: Sequence[str | Path], now: datetime | None = None) -> Path:
    """The one path given (a sweep keeps its own comparison), else a timestamped folder."""
    if len(paths) == 1:
        return Path(paths[0])
    stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    return DEFAULT_OUTPUT_ROOT / stamp


def compare_runs(
    paths: Sequence[str | Path], output_dir: str | Path | None = None, *, plots: bool = True
) -> ComparisonResult:
    """Compare every run under `paths`; raises RunsNotFoundError when there is none.

    Writes comparison.md and comparison.csv, and with `plots` roc_overlay.png and
    metrics_bar.png, into `output_dir` (default: see `default_output_dir`).
    """
    runs = find_runs(paths)
    best = best_run(runs)
    out = Path(output_dir) if output_dir is not None else default_output_dir(paths)
    files = write_tables(out, runs, best)
    if plots:
        from deepfake_detection.comparison.plots import write_plots  # seconds to import

        files += write_plots(runs, out, best)
    return ComparisonResult(tuple(runs), best, report_text(runs, best), out, tuple(files))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deepfake-compare",
        description="Compare training runs: one table, the best run on validation, figures. "
        "PATH is a sweep folder, a run folder, or a folder of them.",
        epilog="example: deepfake-compare multirun/<date>_<time>",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="where to look")
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="where to write the table and figures (default: the PATH when only one is "
        "given, else outputs/compare/<date>_<time>)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write the tables only (faster)")
    return parser.parse_args(argv)


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = compare_runs(args.paths, args.output_dir, plots=not args.no_plots)
    except RunsNotFoundError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. the output folder is not writable
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(result.report)
    names = ", ".join(path.name for path in result.files)
    print(f"wrote {names} to {_shown(result.output_dir)}{os.sep}")
    return 0
