"""Video-level results of a scored split: `predictions/<split>_videos.csv` (one row per clip)
and the metrics block beside the frame-level ones, with a log line that shows both."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake_detection.files import PREDICTIONS_DIR
from deepfake_detection.metrics.per_clip import clip_metrics, clip_predictions
from deepfake_detection.metrics.predictions import Predictions

log = logging.getLogger(__name__)


def report_per_clip(
    output_dir: Path | None,
    predictions: Predictions,
    clip_of: Mapping[str, str],
    split: str,
    threshold: float,
    how: str = "mean",
    topk: int = 4,
    frame_metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The video-level metrics of `predictions`' clips at `threshold`, their scores saved
    to `predictions/<split>_videos.csv` under `output_dir` (None: not saved); None when no
    scored image came from a clip."""
    metrics = clip_metrics(predictions, clip_of, threshold, how, topk)
    if metrics is None:
        return None
    if output_dir is not None:
        clips = clip_predictions(predictions, clip_of, how, topk)
        assert clips is not None
        clips.save_csv(Path(output_dir) / PREDICTIONS_DIR / f"{split}_videos.csv")
    frames = ""
    if frame_metrics is not None and f"{split}/auroc" in frame_metrics:
        frames = f" (frame level: AUROC {frame_metrics[f'{split}/auroc']:.4f})"
    log.info(
        "%s, video level: %d clips (%d frames, %s of each): AUROC %.4f, AP %.4f, EER %.4f, "
        "acc %.4f at threshold %.4g%s",
        split,
        metrics["clips"],
        metrics["frames"],
        how,
        metrics["auroc"],
        metrics["ap"],
        metrics["eer"],
        metrics["acc"],
        threshold,
        frames,
    )
    return metrics


def flat(split: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """`<split>_video/<name>` keys, beside the frame-level `<split>/<name>` ones."""
    return {f"{split}_video/{name}": value for name, value in metrics.items()}
