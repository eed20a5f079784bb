"""Paths in, comparison out: find the runs, pick the best, write the table and figures.

Shared by `deepfake-compare` (`main`, its command line) and the Hydra callback that runs at
the end of a sweep.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from deepfake_detection.comparison.paired import paired_deltas
from deepfake_detection.comparison.protocols import (
    MIXED_PROTOCOLS,
    Grouping,
    MixedProtocols,
    group_runs,
)
from deepfake_detection.comparison.runs import Run, find_runs
from deepfake_detection.comparison.table import Outcome, best_runs, report_text, write_tables
from deepfake_detection.errors import UserInputError, one_line

#: Where a comparison of several paths goes, relative to the working directory.
DEFAULT_OUTPUT_ROOT = Path("outputs") / "compare"
#: The `compare.<key>=<value>` settings the command line takes, and their allowed values.
SETTINGS: dict[str, tuple[str, ...]] = {"mixed_protocols": MIXED_PROTOCOLS}
_SETTING = re.compile(r"compare\.(?P<key>[^=]*)=(?P<value>.*)", re.DOTALL)


class SettingError(UserInputError):
    """A `compare.<key>=<value>` argument with an unknown key or a value it does not take."""


@dataclass(frozen=True)
class ComparisonResult:
    """The runs compared, their protocol groups, the best run of each ranking, and what was
    written. `best` is the one best run when all runs were ranked together (one group, or
    `mixed_protocols=allow`), else None: there is no single best across protocols."""

    runs: tuple[Run, ...]
    best: Run | None
    report: str  # the Markdown table and summary, as printed and saved in comparison.md
    output_dir: Path
    files: tuple[Path, ...]
    bests: tuple[Run, ...] = ()
    grouping: Grouping | None = None


def default_output_dir(paths: Sequence[str | Path], now: datetime | None = None) -> Path:
    """The one path given (a sweep keeps its own comparison), else a timestamped folder."""
    if len(paths) == 1:
        return Path(paths[0])
    stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    return DEFAULT_OUTPUT_ROOT / stamp


def compare_runs(
    paths: Sequence[str | Path],
    output_dir: str | Path | None = None,
    *,
    plots: bool = True,
    mixed_protocols: MixedProtocols | str = "refuse",
) -> ComparisonResult:
    """Compare every run under `paths`; raises RunsNotFoundError when there is none.

    Runs are grouped by protocol and the best run is chosen within each group, unless
    `mixed_protocols` is `allow` (one ranking of all runs); runs of the best run's group
    that saved predictions for the same test images get a paired bootstrap of their AUROC
    difference to it. Writes comparison.md and
    comparison.csv, and with `plots` roc_overlay.png and metrics_bar.png, into `output_dir`
    (default: see `default_output_dir`).
    """
    runs = find_runs(paths)
    grouping = group_runs(runs, mixed_protocols)
    bests = best_runs(grouping)
    outcome = Outcome(grouping, bests, paired_deltas(grouping, bests))
    single = len(grouping.rankings) == 1 and len(bests) == 1
    out = Path(output_dir) if output_dir is not None else default_output_dir(paths)
    files = write_tables(out, runs, outcome)
    if plots:
        from deepfake_detection.comparison.plots import write_plots  # seconds to import

        files += write_plots(runs, out, bests, grouping)
    report = report_text(runs, outcome)
    return ComparisonResult(
        tuple(runs), bests[0] if single else None, report, out, tuple(files), bests, grouping
    )


def split_settings(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """`compare.<key>=<value>` arguments out of `argv`, checked, and the rest in order.

    Written like Hydra overrides, so that the sweep callback's setting and the command's read
    alike; raises SettingError naming the key and the values it takes.
    """
    settings: dict[str, str] = {}
    rest: list[str] = []
    for arg in argv:
        match = _SETTING.fullmatch(arg)
        if match is None:
            rest.append(arg)
            continue
        key, value = match["key"], match["value"]
        if key not in SETTINGS:
            known = ", ".join(f"compare.{k} ({'|'.join(v)})" for k, v in SETTINGS.items())
            raise SettingError(f"compare.{key}: unknown key; known: {known}")
        if value not in SETTINGS[key]:
            allowed = " or ".join(SETTINGS[key])
            raise SettingError(f"compare.{key}={value}: must be {allowed}")
        settings[key] = value
    return settings, rest


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Paths and options; raises SettingError for a bad `compare.<key>=<value>`."""
    settings, rest = split_settings(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="deepfake-compare",
        description="Compare training runs: one table, the best run on validation, figures. "
        "PATH is a sweep folder, a run folder, or a folder of them. Runs are grouped by the "
        "data and settings they were tested with; each group has its own best run.",
        epilog="example: deepfake-compare multirun/<date>_<time>; "
        "compare.mixed_protocols=allow (among the paths) ranks all groups together "
        "(default: refuse)",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="where to look")
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="where to write the table and figures (default: the PATH when only one is "
        "given, else outputs/compare/<date>_<time>)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write the tables only (faster)")
    args = parser.parse_args(rest)
    args.mixed_protocols = settings.get("mixed_protocols", "refuse")
    return args


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        result = compare_runs(
            args.paths,
            args.output_dir,
            plots=not args.no_plots,
            mixed_protocols=args.mixed_protocols,
        )
    except UserInputError as err:  # no runs found, or a bad compare.<key>=<value>
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. the output folder is not writable
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(result.report)
    names = ", ".join(path.name for path in result.files)
    print(f"wrote {names} to {_shown(result.output_dir)}{os.sep}")
    return 0
