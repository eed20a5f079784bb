"""Compare training runs: `deepfake-compare multirun/<date>_<time> [more paths]`.

Prints a Markdown table of every run found (failed and unfinished ones included), picks the
best run on validation AUROC, and writes comparison.md, comparison.csv, roc_overlay.png and
metrics_bar.png.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from deepfake_detection.comparison import RunsNotFoundError, compare_runs
from deepfake_detection.errors import one_line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deepfake-compare",
        description="Compare training runs: a sweep folder, run folders, or folders of them.",
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


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
