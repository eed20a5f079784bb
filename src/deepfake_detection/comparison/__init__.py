"""Compare training runs: one table of their metrics, the best run on validation, figures."""

from deepfake_detection.comparison.compare import ComparisonResult, compare_runs
from deepfake_detection.comparison.runs import Run, RunsNotFoundError, find_runs, read_run
from deepfake_detection.comparison.table import best_run

__all__ = [
    "ComparisonResult",
    "Run",
    "RunsNotFoundError",
    "best_run",
    "compare_runs",
    "find_runs",
    "read_run",
]
