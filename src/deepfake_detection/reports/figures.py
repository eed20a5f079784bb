"""The figures of a run: one function per figure, each returning a matplotlib Figure.

Curves and the confusion matrix come from torchmetrics' own `.plot()`; the rest is plain
matplotlib. Everything renders with the headless Agg backend, so it works on servers.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from torchmetrics.classification import (  # noqa: E402
    BinaryConfusionMatrix,
    BinaryPrecisionRecallCurve,
    BinaryROC,
)

from deepfake_detection.data.images import load_rgb  # noqa: E402
from deepfake_detection.data.layout import CLASS_NAMES as LABEL_NAMES  # noqa: E402
from deepfake_detection.files import atomic_write_bytes  # noqa: E402
from deepfake_detection.metrics.predictions import Predictions  # noqa: E402

log = logging.getLogger(__name__)

CLASS_NAMES = tuple(LABEL_NAMES[label] for label in sorted(LABEL_NAMES))  # index = label
FIGURES_DIR = "figures"
#: The figures' metrics get every score already (gathered from all processes of a DDP run),
#: and only the first process draws: they must not wait for the others to sync.
LOCAL = {"sync_on_compute": False}


def confusion_matrix_figure(predictions: Predictions, threshold: float) -> Figure:
    metric = BinaryConfusionMatrix(threshold=threshold, **LOCAL)
    metric.update(predictions.probs, predictions.targets)
    fig, ax = metric.plot(labels=list(CLASS_NAMES))
    ax.set_title(f"Confusion matrix (Fake when P(Fake) > {threshold:.3g})")
    return fig


def roc_figure(predictions: Predictions) -> Figure:
    metric = BinaryROC(**LOCAL)
    metric.update(predictions.probs, predictions.targets)
    fig, ax = metric.plot(score=True)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    ax.set_title("ROC curve (Fake = positive)")
    return fig


def pr_figure(predictions: Predictions) -> Figure:
    metric = BinaryPrecisionRecallCurve(**LOCAL)
    metric.update(predictions.probs, predictions.targets)
    fig, ax = metric.plot(score=True)
    ax.axhline(float(predictions.targets.float().mean()), linestyle=":", color="grey")
    ax.set_title("Precision-recall curve (Fake = positive; dotted: chance)")
    return fig


def score_histogram_figure(predictions: Predictions, threshold: float) -> Figure:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    bins = torch.linspace(0, 1, 41).tolist()
    for label, name in enumerate(CLASS_NAMES):
        scores = predictions.probs[predictions.targets == label].numpy()
        ax.hist(scores, bins=bins, alpha=0.6, label=f"{name} (n={len(scores)})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="P(Fake)", ylabel="images", title="Score distribution per class")
    ax.legend()
    fig.tight_layout()
    return fig


def learning_curves_figure(history: Mapping[int, Mapping[str, float]]) -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = sorted(history)
    for ax, metric in zip(axes, ("loss", "acc"), strict=True):
        for split in ("train", "val"):
            key = f"{split}/{metric}"
            points = [(e, history[e][key]) for e in epochs if key in history[e]]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=split)
        ax.set(xlabel="epoch", ylabel=metric, title=f"{metric} per epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
    fig.tight_layout()
    return fig


def dataset_distribution_figure(counts: Mapping[str, Mapping[str, int]]) -> Figure:
    """Grouped bars of images per class in each split, with the counts written on them."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    splits = list(counts)
    width = 0.38
    for offset, name in zip((-width / 2, width / 2), ("Fake", "Real"), strict=True):
        values = [counts[split].get(name, 0) for split in splits]
        bars = ax.bar([i + offset for i in range(len(splits))], values, width, label=name)
        ax.bar_label(bars)
    ax.set_xticks(range(len(splits)), splits)
    ax.set(ylabel="images", title="Images per class and split")
    ax.legend()
    fig.tight_layout()
    return fig


def confident_mistakes_figure(
    predictions: Predictions, threshold: float, count: int = 16, thumbnail: int = 128
) -> Figure:
    """The misclassified images the model was most sure about: where to look for label noise.

    The thumbnails are pasted into one picture, each under a band for its caption, and drawn
    on one axes: a grid of one axes per image took most of a short run's figure time.
    """
    predicted = (predictions.probs > threshold).long()
    wrong = torch.nonzero(predicted != predictions.targets).flatten()
    confidence = (predictions.probs[wrong] - threshold).abs()
    chosen = wrong[torch.argsort(confidence, descending=True)][:count].tolist()
    columns = max(1, min(4, len(chosen)))
    rows = max(1, math.ceil(len(chosen) / columns))
    band, gap = thumbnail // 3, thumbnail // 8  # caption band above, margin around each
    cell_w, cell_h = thumbnail + 2 * gap, band + thumbnail + 2 * gap
    canvas = np.full((rows * cell_h, columns * cell_w, 3), 255, dtype=np.uint8)
    captions = []
    for n, i in enumerate(chosen):
        row, column = divmod(n, columns)
        left, top = column * cell_w + gap, row * cell_h + gap + band
        path = predictions.paths[i]
        try:
            pixels = np.asarray(ImageOps.contain(load_rgb(path), (thumbnail, thumbnail)))
            height, width = pixels.shape[:2]
            x = left + (thumbnail - width) // 2
            canvas[top : top + height, x : x + width] = pixels
        except Exception as err:  # a file gone since the test pass must not cost the report
            log.warning("cannot show %s in the mistakes grid: %s", path, err)
        truth = CLASS_NAMES[int(predictions.targets[i])]
        name = Path(path).name
        name = name if len(name) <= 26 else f"{name[:12]}…{name[-12:]}"
        caption = f"{name}\n{truth}, P(Fake)={float(predictions.probs[i]):.3f}"
        captions.append((left + thumbnail / 2, top - 3, caption))
    inches = 1 / 100  # per canvas pixel at the 100 dpi `render_pngs` uses: drawn at its size
    fig, ax = plt.subplots(figsize=(canvas.shape[1] * inches, canvas.shape[0] * inches + 0.5))
    ax.imshow(canvas)
    ax.axis("off")
    for x, y, caption in captions:
        ax.text(x, y, caption, ha="center", va="bottom", fontsize=8)
    if not chosen:
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"Most confident mistakes ({len(chosen)} of {len(wrong)})")
    fig.tight_layout()
    return fig


def prediction_figures(predictions: Predictions, threshold: float) -> dict[str, Figure]:
    """Every figure that needs only the scores of one split; no ROC or PR curve for a split
    of one class (a false-positive audit), which has none."""
    both = len(set(predictions.targets.tolist())) == 2
    figures = {
        "confusion_matrix": confusion_matrix_figure(predictions, threshold),
        "roc_curve": roc_figure(predictions) if both else None,
        "pr_curve": pr_figure(predictions) if both else None,
        "score_histogram": score_histogram_figure(predictions, threshold),
        "confident_mistakes": confident_mistakes_figure(predictions, threshold),
    }
    return {name: figure for name, figure in figures.items() if figure is not None}


def robustness_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """AUROC and accuracy against severity level, one line per perturbation, from clean.

    `rows` are `deepfake-robustness` rows: `perturbation`, `severity`, `auroc`, `acc`; the
    first is the clean one.
    """
    clean = rows[0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = list(dict.fromkeys(r["perturbation"] for r in rows[1:]))
    panels = ((axes[0], "auroc", "AUROC"), (axes[1], "acc", "accuracy at the fixed threshold"))
    for ax, metric, title in panels:
        for name in names:
            mine = [r for r in rows[1:] if r["perturbation"] == name]
            severities = ", ".join(f"{r['severity']:g}" for r in mine)
            ax.plot(
                range(len(mine) + 1),
                [clean[metric], *(r[metric] for r in mine)],
                marker="o",
                label=f"{name} ({severities})",
            )
        ax.set(title=title, xlabel="severity level (0 = clean)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def per_source_figure(per_source: Mapping[str, Any]) -> Figure:
    """AP and accuracy per source, side by side, with their means over sources as lines.

    `per_source` is `metrics.per_source.per_source_metrics`' result. A source with one
    class has no AP bar (its accuracy stays).
    """
    rows = per_source["sources"]
    names = list(rows)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(names) + 2.0), 4.2))
    width = 0.4
    positions = range(len(names))
    for offset, metric, label in ((-width / 2, "ap", "AP"), (width / 2, "acc", "accuracy")):
        values = [rows[name][metric] for name in names]
        bars = ax.bar(
            [p + offset for p in positions],
            [0.0 if math.isnan(v) else v for v in values],
            width,
            label=f"{label} (mean {per_source['mean'][metric]:.3f})",
        )
        ax.axhline(per_source["mean"][metric], color=bars.patches[0].get_facecolor(), ls="--")
        for position, value in zip(positions, values, strict=True):
            if math.isnan(value):  # one class only: no AP
                ax.text(position + offset, 0.02, "n/a", ha="center", fontsize=8, rotation=90)
    tilted = len(names) > 6
    ax.set_xticks(
        list(positions), names, rotation=45 if tilted else 0, ha="right" if tilted else "center"
    )
    ax.set(ylim=(0, 1.05), ylabel="score", title="Per source: AP and accuracy (dashed: mean)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def synthetic_fakes_figure(examples: Sequence[tuple[Image.Image, Image.Image, Any]]) -> Figure:
    """Rows of (real image, the synthetic fake made from it, its blending mask or, for an
    up-sampling fake, the difference from the real image x4): what `synth` trains on."""
    import numpy as np

    fig, axes = plt.subplots(len(examples), 3, figsize=(7.5, 2.6 * len(examples)), squeeze=False)
    for row, (real, fake, info) in zip(axes, examples, strict=True):
        if "mask" in info:
            third, title = info["mask"], "blending mask"
        else:
            difference = np.abs(np.asarray(fake, np.float32) - np.asarray(real, np.float32))
            third = np.clip(difference * 4, 0, 255).astype(np.uint8)
            title = f"|fake - real| x4 ({info.get('operation', '')})"
        for ax, picture, name in zip(
            row, (real, fake, third), ("real", f"synthetic ({info['family']})", title), strict=True
        ):
            ax.imshow(picture, cmap="gray" if np.ndim(picture) == 2 else None, vmin=0)
            ax.set_title(name, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    return fig


def timeline_figure(
    times: Sequence[float],
    probs: Sequence[float | None],
    threshold: float,
    title: str,
    video_prob: float | None = None,
) -> Figure:
    """A clip's P(Fake) against time, with the threshold (and the clip's own score): where
    in a video the detector sees a fake. Frames left out (no face) are marked on the axis."""
    fig, ax = plt.subplots(figsize=(8.0, 3.2))
    shown = [(t, p) for t, p in zip(times, probs, strict=True) if p is not None]
    if shown:
        ax.plot(*zip(*shown, strict=True), marker="o", markersize=3, label="frame P(Fake)")
    missing = [t for t, p in zip(times, probs, strict=True) if p is None]
    if missing:
        ax.plot(missing, [0.0] * len(missing), "x", color="grey", label="no face: left out")
    ax.axhline(threshold, color="red", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    if video_prob is not None:
        ax.axhline(video_prob, color="black", ls=":", lw=1, label=f"clip {video_prob:.3f}")
    ax.set(ylim=(-0.03, 1.03), xlabel="time (s)", ylabel="P(Fake)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the curve
    fig.tight_layout()
    return fig


def save_figures(
    figures: Mapping[str, Figure],
    output_dir: str | Path,
    tensorboard=None,
    step: int = 0,
    folder: str = FIGURES_DIR,
) -> list[Path]:
    """Write each figure to `<output_dir>/<folder>/<name>.png`, log it, and free it.

    `tensorboard` is a `SummaryWriter` (a TensorBoard logger's `.experiment`); each figure
    appears there under `figures/<name>`, as the same PNG: rendered once.
    """
    return save_pngs(render_pngs(figures), output_dir, tensorboard, step, folder)


def render_pngs(figures: Mapping[str, Figure]) -> dict[str, bytes]:
    """Each figure as PNG bytes, rendered once; the figures are freed."""
    pngs = {}
    for name, fig in figures.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        pngs[name] = buffer.getvalue()
        plt.close(fig)
    return pngs


def save_pngs(
    pngs: Mapping[str, bytes],
    output_dir: str | Path,
    tensorboard=None,
    step: int = 0,
    folder: str = FIGURES_DIR,
) -> list[Path]:
    """`render_pngs`' output to `<output_dir>/<folder>/<name>.png` and to TensorBoard."""
    paths = []
    for name, png in pngs.items():
        paths.append(atomic_write_bytes(Path(output_dir) / folder / f"{name}.png", png))
        if tensorboard is not None:
            _log_png(tensorboard, f"figures/{name}", png, step)
    return paths


def _log_png(writer, tag: str, png: bytes, step: int) -> None:
    """An encoded PNG as a TensorBoard image, as `SummaryWriter.add_image` would log it,
    without decoding and encoding it again."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    width, height = Image.open(io.BytesIO(png)).size
    image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
    summary = Summary(value=[Summary.Value(tag=tag, image=image)])
    file_writer = writer._get_file_writer()
    if file_writer is not None:  # None on the processes of a DDP run other than rank 0
        file_writer.add_summary(summary, global_step=step)
