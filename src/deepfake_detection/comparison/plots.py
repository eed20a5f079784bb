"""Figures of a comparison: ROC curves overlaid, and test metrics side by side.

Imported only when figures are asked for: torchmetrics and matplotlib take seconds to import.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works without a display, e.g. over ssh or in a sweep

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torchmetrics.classification import BinaryROC  # noqa: E402

from deepfake_detection.comparison.protocols import Grouping  # noqa: E402
from deepfake_detection.comparison.runs import Run, read_predictions  # noqa: E402
from deepfake_detection.comparison.table import (  # noqa: E402
    BEST_MARKER,
    SELECTION_METRIC,
    format_value,
    setup_label,
)
from deepfake_detection.files import atomic_write_bytes  # noqa: E402

log = logging.getLogger(__name__)

ROC_FILE = "roc_overlay.png"
BAR_FILE = "metrics_bar.png"
BAR_METRICS = (
    ("test/acc", "accuracy"),
    ("test/precision", "precision"),
    ("test/recall", "recall"),
    ("test/f1", "F1"),
    ("test/auroc", "AUROC"),
)


def _save(fig: Figure, path: Path) -> Path:
    """Render in memory first, so a failed render never leaves a broken PNG behind."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def _label(run: Run, grouping: Grouping) -> str:
    """The run, its setup, and its protocol group when there are several: curves measured
    on different data must not be read as one ranking."""
    setup = setup_label(run)
    label = f"{run.name} ({setup})" if setup else run.name
    return f"{label} [{grouping.label(run)}]" if len(grouping.groups) > 1 else label


def _is_best(run: Run, bests: Sequence[Run]) -> bool:
    return any(run is best for best in bests)


def _tick(run: Run, bests: Sequence[Run], grouping: Grouping) -> str:
    name = f"{run.name} {BEST_MARKER}" if _is_best(run, bests) else run.name
    if len(grouping.groups) > 1:
        name += f" [{grouping.label(run)}]"
    setup = setup_label(run)
    return f"{name}\n{setup}" if setup else name


def roc_curve(run: Run) -> tuple[torch.Tensor, torch.Tensor, float] | None:
    """False and true positive rates on the test split, and the AUROC to show with them.

    The AUROC is the one in metrics.json, like the table's; the area under the curve only
    stands in when metrics.json lacks it. None when the run saved no usable predictions.
    """
    try:
        predictions = read_predictions(run)
    except (OSError, ValueError) as err:
        log.warning("run %s: skipped in the ROC plot: %s", run.name, err)
        return None
    if predictions is None:
        return None
    labels, probs = predictions
    if len(set(labels)) < 2:
        log.warning("run %s: skipped in the ROC plot: the test set has one class", run.name)
        return None
    roc = BinaryROC()
    roc.update(torch.tensor(probs, dtype=torch.float32), torch.tensor(labels))
    fpr, tpr, _ = roc.compute()
    auroc = run.metric("test/auroc")
    if not isinstance(auroc, int | float):
        auroc = float(torch.trapezoid(tpr, fpr))
    return fpr, tpr, float(auroc)


def plot_roc_overlay(runs: Sequence[Run], output_dir: Path, grouping: Grouping) -> Path | None:
    """One ROC curve per finished run that saved `predictions/test.csv`."""
    path = output_dir / ROC_FILE
    curves = [(run, roc_curve(run)) for run in runs if run.status == "ok"]
    curves = [(run, curve) for run, curve in curves if curve is not None]
    if not curves:
        path.unlink(missing_ok=True)  # an old figure would no longer match the table
        log.warning("no finished run has predictions/test.csv: no %s", ROC_FILE)
        return None
    fig, ax = plt.subplots(figsize=(6.5, 6))
    try:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
        for run, (fpr, tpr, auroc) in curves:
            label = f"{_label(run, grouping)}  AUROC {auroc:.4f}"
            ax.plot(fpr.numpy(), tpr.numpy(), linewidth=1.5, label=label)
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (Real called Fake)")
        ax.set(ylabel="true positive rate (Fake caught)", title="ROC on the test split")
        ax.legend(loc="lower right", fontsize="small")
        ax.grid(alpha=0.3)
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_metrics_bar(
    runs: Sequence[Run], output_dir: Path, bests: Sequence[Run], grouping: Grouping
) -> Path | None:
    """Test accuracy, precision, recall, F1 and AUROC of each finished run, grouped by run."""
    path = output_dir / BAR_FILE
    finished = [run for run in runs if run.status == "ok"]
    if not finished:
        path.unlink(missing_ok=True)
        log.warning("no finished run: no %s", BAR_FILE)
        return None
    width = 0.8 / len(BAR_METRICS)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(finished) + 3.5), 4.5))
    try:
        for i, (key, name) in enumerate(BAR_METRICS):
            values = [run.metric(key) for run in finished]
            values = [v if isinstance(v, int | float) else math.nan for v in values]
            shift = (i - (len(BAR_METRICS) - 1) / 2) * width
            ax.bar([x + shift for x in range(len(finished))], values, width=width, label=name)
        ticks = [_tick(run, bests, grouping) for run in finished]
        many = len(finished) > 5
        ax.set_xticks(range(len(finished)), ticks, rotation=30 if many else 0, fontsize="small")
        ax.set(ylim=(0, 1.05), ylabel="score on the test split")
        title = "Test metrics per run"
        if len(bests) == 1:
            val = format_value(bests[0].metric(SELECTION_METRIC), "metric")
            title += f" ({BEST_MARKER} best on val AUROC: {bests[0].name}, {val})"
        elif bests:
            title += f" ({BEST_MARKER} best on val AUROC within each protocol [group])"
        ax.set_title(title, fontsize="medium")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
        ax.grid(axis="y", alpha=0.3)
        return _save(fig, path)
    finally:
        plt.close(fig)


def write_plots(
    runs: Sequence[Run], output_dir: Path, bests: Sequence[Run], grouping: Grouping
) -> list[Path]:
    written = [
        plot_roc_overlay(runs, output_dir, grouping),
        plot_metrics_bar(runs, output_dir, bests, grouping),
    ]
    return [path for path in written if path is not None]
