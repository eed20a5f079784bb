"""`per_source.csv` and `per_source.md`: one row per source folder, then the mean over sources."""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepfake_detection.data.discovery import DatasetIndex
from deepfake_detection.files import atomic_write_bytes
from deepfake_detection.metrics.per_source import MEAN_METRICS, SOURCE_METRICS, per_source_metrics
from deepfake_detection.metrics.predictions import Predictions

log = logging.getLogger(__name__)

CSV_FILE, MARKDOWN_FILE, FIGURE_NAME = "per_source.csv", "per_source.md", "per_source"
#: Columns of the Markdown table: (metric, title).
TABLE_COLUMNS = (
    ("ap", "AP"),
    ("auroc", "AUROC"),
    ("acc", "acc"),
    ("real_acc", "real acc"),
    ("fake_acc", "fake acc"),
)


def _number(value: Any) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
    )


#: Columns of `per_source.csv`.
CSV_HEADER = ("source", "images", "fake", "real", *SOURCE_METRICS, "note")


def _cell(value: Any) -> Any:
    return "" if isinstance(value, float) and math.isnan(value) else value


def csv_rows(per_source: Mapping[str, Any]) -> list[list[Any]]:
    """One row per source, then `mean` (empty cells where a metric is undefined)."""
    rows = [
        [name, row["images"], row["fake"], row["real"]]
        + [_cell(row[m]) for m in SOURCE_METRICS]
        + [row["note"] or ""]
        for name, row in per_source["sources"].items()
    ]
    mean = per_source["mean"]
    total = sum(row["images"] for row in per_source["sources"].values())
    means = [_cell(mean[m]) if m in MEAN_METRICS else "" for m in SOURCE_METRICS]
    rows.append(["mean", total, "", "", *means, f"mean over {mean['sources']} sources"])
    return rows


def csv_text(rows: list[list[Any]], header: tuple[str, ...] = CSV_HEADER) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def markdown(per_source: Mapping[str, Any], header: str) -> str:
    titles = ["source", "images", "Fake", "Real", *(t for _, t in TABLE_COLUMNS), "note"]
    lines = [header, "", "| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for name, row in per_source["sources"].items():
        numbers = [_number(row[m]) for m, _ in TABLE_COLUMNS]
        counts = [str(row["images"]), str(row["fake"]), str(row["real"])]
        lines.append("| " + " | ".join([name, *counts, *numbers, row["note"] or ""]) + " |")
    mean = per_source["mean"]
    numbers = [f"**{_number(mean[m])}**" for m, _ in TABLE_COLUMNS]
    both = mean["sources_with_both_classes"]
    note = f"AP and AUROC over the {both} source(s) with both classes"
    lines.append("| " + " | ".join(["**mean**", "", "", "", *numbers, note]) + " |")
    return "\n".join(lines) + "\n"


def markdown_by_condition(conditions: Sequence[tuple[str, Mapping[str, Any]]], header: str) -> str:
    """AP and accuracy of every source under every condition: two tables, a column each."""
    labels = [label for label, _ in conditions]
    names = list(conditions[0][1]["sources"])
    lines = [header]
    for metric, title in (("ap", "AP"), ("acc", "Accuracy")):
        lines += ["", f"{title} per source", "", "| source | " + " | ".join(labels) + " |"]
        lines.append("|" + "---|" * (len(labels) + 1))
        for name in names:
            cells = [_number(ps["sources"][name][metric]) for _, ps in conditions]
            lines.append("| " + " | ".join([name, *cells]) + " |")
        means = [f"**{_number(ps['mean'][metric])}**" for _, ps in conditions]
        lines.append("| " + " | ".join(["**mean**", *means]) + " |")
    return "\n".join(lines) + "\n"


def write_per_source(output_dir: str | Path, per_source: Mapping[str, Any], header: str) -> str:
    """Write `per_source.csv` and `per_source.md` to `output_dir`; returns the Markdown."""
    table = markdown(per_source, header)
    atomic_write_bytes(Path(output_dir) / MARKDOWN_FILE, table.encode())
    atomic_write_bytes(Path(output_dir) / CSV_FILE, csv_text(csv_rows(per_source)).encode())
    return table


def report_per_source(
    output_dir: str | Path,
    predictions: Predictions,
    index: DatasetIndex,
    split: str,
    threshold: float,
    rule: str,
) -> dict[str, Any] | None:
    """Per-source metrics of a scored split, written as tables; None without source folders.

    The bar figure is left to the caller, which draws it with its other figures.
    """
    per_source = per_source_metrics(predictions, index.sources, threshold, index.source_depth)
    if per_source is None:
        return None
    header = (
        f"Per source: the {split} split of {index.root} ({len(predictions)} images), sources "
        f"are the folders {index.source_depth} level(s) below the split, threshold "
        f"{threshold:.6g} ({rule})."
    )
    log.info("%s", write_per_source(output_dir, per_source, header))
    return per_source
