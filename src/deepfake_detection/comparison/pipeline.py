"""Paths in, comparison out: find the runs, pick the best, write the table and figures.

Shared by `deepfake-compare` and the Hydra callback that runs at the end of a sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from deepfake_detection.comparison.report import best_run, report_text, write_tables
from deepfake_detection.comparison.runs import Run, find_runs

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
