"""The audit's figures: class counts, common image sizes, and duplicates within/across splits."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works without a display, e.g. over ssh

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from deepfake_detection.auditing.audit_report import AuditReport  # noqa: E402
from deepfake_detection.auditing.inventory import LABELS  # noqa: E402
from deepfake_detection.files import atomic_write_bytes  # noqa: E402

CLASS_COUNTS_FILE = "class_counts.png"
IMAGE_SIZES_FILE = "image_sizes.png"
DUPLICATES_FILE = "duplicates.png"
#: Bars of the image size figure; the rest are summed into one "other" bar.
TOP_SIZES = 15

_COLOURS = {"Fake": "tab:red", "Real": "tab:blue"}


def _save(fig: Figure, path: Path) -> Path:
    """Render in memory first, so a failed render never leaves a broken PNG behind."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def class_counts_figure(report: AuditReport) -> Figure:
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(report.splits), 4))
    x = np.arange(len(report.splits))
    width = 0.8 / len(LABELS)
    for k, label in enumerate(LABELS):
        counts = [report.counts[split][label] for split in report.splits]
        bars = ax.bar(x + (k - (len(LABELS) - 1) / 2) * width, counts, width, label=label)
        for bar in bars:
            bar.set_color(_COLOURS.get(label))
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, report.splits)
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Images per split and class")
    ax.legend()
    return fig


def image_sizes_figure(report: AuditReport) -> Figure:
    sizes = list(report.image_sizes["overall"].items())
    shown = sizes[:TOP_SIZES]
    other = sum(n for _, n in sizes[TOP_SIZES:])
    if other:
        shown.append((f"{len(sizes) - TOP_SIZES} other sizes", other))
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.35 * max(1, len(shown))))
    if not shown:
        ax.text(0.5, 0.5, "no readable images", ha="center", va="center")
        ax.set_axis_off()
        return fig
    names = [name for name, _ in shown][::-1]
    bars = ax.barh(names, [n for _, n in shown][::-1], color="tab:gray")
    ax.bar_label(bars, fontsize=8)
    ax.set_xlabel("images")
    ax.set_title("Most common image sizes (width x height)")
    return fig


def duplicates_figure(report: AuditReport) -> Figure:
    summary = report.summary
    names = ["exact groups\nwithin a split", "exact groups\nacross splits"]
    values = [
        summary["exact_groups"] - summary["exact_cross_split_groups"],
        summary["exact_cross_split_groups"],
    ]
    if report.near_checked:
        names += ["near pairs\nwithin a split", "near pairs\nacross splits"]
        values += [
            summary["near_pairs"] - summary["near_cross_split_pairs"],
            summary["near_cross_split_pairs"],
        ]
    colours = ["tab:gray", "tab:red"] * (len(values) // 2)
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(values), 4))
    bars = ax.bar(names, values, color=colours)
    ax.bar_label(bars, fontsize=8)
    ax.set_ylabel("count")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Duplicates (red: shared across splits, i.e. leakage)")
    return fig


def save_figures(report: AuditReport, output_dir: Path) -> list[Path]:
    figures = {
        CLASS_COUNTS_FILE: class_counts_figure,
        IMAGE_SIZES_FILE: image_sizes_figure,
        DUPLICATES_FILE: duplicates_figure,
    }
    return [_save(draw(report), output_dir / name) for name, draw in figures.items()]
