"""`deepfake-robustness`: one split scored clean and under a grid of perturbations.

Every row uses the same threshold (the validation threshold or a given number), chosen once
on clean data: a score distribution that moves under blur must show as lost accuracy, not be
hidden by a threshold re-chosen per row. The split is decoded once and perturbed in memory.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from deepfake_detection.data.dataset import decode_all
from deepfake_detection.data.perturb import Perturbation
from deepfake_detection.errors import ConfigError
from deepfake_detection.evaluation.evaluate import ScoringJob
from deepfake_detection.files import METRICS_FILE, atomic_write_bytes, write_json
from deepfake_detection.metrics.binary import compute_metrics
from deepfake_detection.metrics.per_source import per_source_metrics
from deepfake_detection.metrics.uncertainty import bootstrap_intervals
from deepfake_detection.reports import per_source_tables as tables
from deepfake_detection.reports.figures import robustness_figure, save_figures

log = logging.getLogger(__name__)

CSV_FILE, MARKDOWN_FILE, FIGURE_NAME = "robustness.csv", "robustness.md", "robustness"
#: Columns of a row, after the perturbation and its severity.
ROW_METRICS = ("auroc", "ap", "acc", "balanced_acc", "eer")
#: Also kept per row in metrics.json, with the rows' bootstrap intervals.
RECORD_METRICS = ("real_acc", "fake_acc", "tpr@fpr0.01", "tpr@fpr0.001")


def perturbation_grid(grid: Mapping[str, Sequence[float]]) -> list[Perturbation]:
    """Clean first, then every (perturbation, severity) of `grid`, in its order."""
    if not isinstance(grid, Mapping) or not grid:
        raise ConfigError("grid: must map perturbations to lists of severities, e.g. jpeg: [50]")
    rows = [Perturbation()]
    for name, severities in grid.items():
        if isinstance(severities, str) or not isinstance(severities, Sequence) or not severities:
            raise ConfigError(f"grid.{name}={severities}: must be a non-empty list of severities")
        rows += [Perturbation(str(name), severity) for severity in severities]
    return rows


def row_values(perturbation: Perturbation, metrics: Mapping[str, float]) -> dict[str, Any]:
    return {
        "perturbation": perturbation.name if perturbation.name != "none" else "clean",
        "severity": perturbation.severity,
        **{name: metrics[name] for name in ROW_METRICS},
    }


def _interval(row: Mapping[str, Any], name: str) -> str:
    interval = row.get(f"{name}_ci")
    return f"{interval[0]:.4f}–{interval[1]:.4f}" if interval else ""


def markdown(rows: Sequence[Mapping[str, Any]], header: str) -> str:
    """The table of robustness.md; an AUROC interval column when the rows carry one."""
    intervals = any(row.get("auroc_ci") for row in rows)
    titles = ("perturbation", "severity", "AUROC", "AP", "acc", "balanced acc", "EER")
    if intervals:
        titles = (*titles, "AUROC 95 % CI")
    lines = [header, "", "| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for row in rows:
        severity = "" if row["severity"] is None else f"{row['severity']:g}"
        numbers = [f"{row[name]:.4f}" for name in ROW_METRICS]
        if intervals:
            numbers.append(_interval(row, "auroc"))
        lines.append("| " + " | ".join([row["perturbation"], severity, *numbers]) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[Mapping[str, Any]], threshold: float) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["perturbation", "severity", *ROW_METRICS, "threshold"])
    for row in rows:
        severity = "" if row["severity"] is None else row["severity"]
        writer.writerow([row["perturbation"], severity, *(row[m] for m in ROW_METRICS), threshold])
    return buffer.getvalue()


def _condition(row: Mapping[str, Any]) -> str:
    return row["perturbation"] + ("" if row["severity"] is None else f" {row['severity']:g}")


def _write_per_source(
    output_dir: Path, by_condition: Sequence[tuple[Mapping[str, Any], dict]], header: str
) -> None:
    """`per_source.csv` (a row per condition and source) and `per_source.md` (a column per
    condition): which generator's detection breaks first under which perturbation."""
    lines = [
        [row["perturbation"], "" if row["severity"] is None else row["severity"], *line]
        for row, per_source in by_condition
        for line in tables.csv_rows(per_source)
    ]
    text = tables.csv_text(lines, ("perturbation", "severity", *tables.CSV_HEADER))
    atomic_write_bytes(output_dir / tables.CSV_FILE, text.encode())
    table = tables.markdown_by_condition([(_condition(r), ps) for r, ps in by_condition], header)
    atomic_write_bytes(output_dir / tables.MARKDOWN_FILE, table.encode())


def robustness(cfg: DictConfig) -> list[dict[str, Any]]:
    """Score `data.split` clean and under every perturbation of `cfg.grid`; returns the rows."""
    grid = perturbation_grid(cfg.grid)
    job = ScoringJob.start(cfg)
    datamodule, split = job.datamodule, job.split
    threshold, rule = job.trained.threshold, job.trained.rule
    decoded = decode_all(
        datamodule.index.splits[split], datamodule.max_image_pixels, datamodule.read_from
    )
    rows, by_condition, records = [], [], []
    for perturbation in grid:
        predictions = job.score(
            log_metrics=False, perturbation=perturbation, decoded=decoded
        ).predictions
        metrics = compute_metrics(predictions.probs, predictions.targets, threshold)
        rows.append(row_values(perturbation, metrics))
        intervals = bootstrap_intervals(predictions.probs, predictions.targets, {"acc": threshold})
        records.append(
            {
                **rows[-1],
                **{name: metrics[name] for name in RECORD_METRICS},
                **{f"{name}_ci": interval for name, interval in intervals.items()},
            }
        )
        index = datamodule.index
        per_source = per_source_metrics(predictions, index.sources, threshold, index.source_depth)
        if per_source is not None:
            by_condition.append((rows[-1], per_source))
        log.info("%s: AUROC %.4f, acc %.4f", perturbation.label, metrics["auroc"], metrics["acc"])

    header = (
        f"Robustness of {job.trained.ckpt_file} on the {split} split of {datamodule.index.root} "
        f"({len(decoded)} images), every row at threshold {threshold:.6g} ({rule})."
    )
    table = markdown(records, header)
    output_dir = job.output_dir
    atomic_write_bytes(output_dir / MARKDOWN_FILE, table.encode())
    atomic_write_bytes(output_dir / CSV_FILE, csv_text(rows, threshold).encode())
    if by_condition:
        _write_per_source(output_dir, by_condition, header)
    protocol = job.protocol(cfg)
    protocol["perturbation"] = [_condition(row) for row in rows]
    write_json(
        output_dir / METRICS_FILE,
        {
            "rows": records,
            "threshold": threshold,
            "threshold/rule": rule,
            "checkpoint": str(job.trained.ckpt_file),
            "model": job.trained.model.model_name,
            "data/root": str(datamodule.index.root),
            "data/split": split,
            "data/images": len(decoded),
            "protocol": protocol,
        },
    )
    figure = {FIGURE_NAME: robustness_figure(rows)}
    save_figures(figure, output_dir, job.logger.experiment, folder="")
    job.logger.experiment.add_text("robustness", table)
    log.info("%s\noutputs in %s", table, output_dir)
    return rows
