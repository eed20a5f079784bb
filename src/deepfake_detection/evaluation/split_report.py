"""What every evaluation of a scored split leaves, whichever model scored it (a checkpoint or
an export): the predictions CSV, the figures, the per-source table, and the metrics beyond
the split's own (intervals, operating points, one-class rates, per source)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_detection.data.discovery import DatasetIndex
from deepfake_detection.metrics.predictions import Predictions
from deepfake_detection.reports.figures import (
    dataset_distribution_figure,
    per_source_figure,
    prediction_figures,
    save_figures,
)
from deepfake_detection.reports.operating_point_tables import (
    interval_metrics,
    one_class_of,
    scored_points,
)
from deepfake_detection.reports.per_source_tables import FIGURE_NAME as PER_SOURCE_FIGURE
from deepfake_detection.reports.per_source_tables import report_per_source


def report_split(
    output_dir: Path,
    predictions: Predictions,
    index: DatasetIndex,
    split: str,
    threshold: float,
    rule: str,
    operating_points: Mapping[str, Mapping[str, Any]] | None,
    tensorboard: Any = None,
) -> dict[str, Any]:
    """Write `predictions/<split>.csv`, the figures (also to `tensorboard` when given) and
    the per-source table into `output_dir`; return the metrics they add."""
    predictions.save_csv(output_dir / "predictions" / f"{split}.csv")
    figures = prediction_figures(predictions, threshold)
    figures["dataset_distribution"] = dataset_distribution_figure(index.counts())
    per_source = report_per_source(output_dir, predictions, index, split, threshold, rule)
    if per_source is not None:
        figures[PER_SOURCE_FIGURE] = per_source_figure(per_source)
    save_figures(figures, output_dir, tensorboard)
    metrics: dict[str, Any] = {
        **interval_metrics(predictions, split, {"acc": threshold}),
        "operating_points": scored_points(predictions, operating_points, threshold, rule),
        "one_class": one_class_of(predictions),
    }
    if per_source is not None:
        metrics["per_source"] = per_source
    return metrics
