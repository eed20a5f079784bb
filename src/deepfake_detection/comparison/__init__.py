"""Compare training runs: one table of their metrics, the best run on validation within each
group of comparable runs, figures."""

from deepfake_detection.comparison.compare import ComparisonResult, compare_runs
from deepfake_detection.comparison.protocols import Grouping, group_runs
from deepfake_detection.comparison.runs import Run, RunsNotFoundError, find_runs, read_run
from deepfake_detection.comparison.table import best_run

__all__ = [
    "ComparisonResult",
    "Grouping",
    "Run",
    "RunsNotFoundError",
    "best_run",
    "compare_runs",
    "find_runs",
    "group_runs",
    "read_run",
]
