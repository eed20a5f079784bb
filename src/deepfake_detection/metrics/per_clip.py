"""Video-level metrics: each clip's frame scores aggregated into one score per clip.

The field reports both (DeepfakeBench: frame-level AUC over every sampled frame, video-level
AUC over the mean frame score of each clip), and they differ, often by several points: a
number is only comparable with one of the same level, frames per clip and aggregation.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from deepfake_detection.metrics.predictions import Predictions

# `aggregate` is what scoring a clip needs (predict, the service): the metrics' imports
# (torchmetrics, half a second) wait until a clip metric is computed.

#: Metrics kept for the video level, from `compute_metrics`.
CLIP_METRICS = ("auroc", "ap", "eer", "acc", "real_acc", "fake_acc", "balanced_acc")


def aggregate(probs: list[float], how: str = "mean", topk: int = 4) -> float:
    """A clip's P(Fake) from its frames': their mean, median, highest, or the mean of the
    `topk` highest (a short manipulated stretch in a long clip still counts)."""
    if how == "median":
        return float(statistics.median(probs))
    if how == "max":
        return max(probs)
    if how == "topk_mean":
        top = sorted(probs, reverse=True)[:topk]
        return sum(top) / len(top)
    return sum(probs) / len(probs)


def clip_predictions(
    predictions: Predictions, clip_of: Mapping[str, str], how: str = "mean", topk: int = 4
) -> Predictions | None:
    """One row per clip (its path, its label, its frames' aggregate score), in the order the
    clips first appear; None when no scored image came from a clip."""
    frames: dict[str, list[float]] = {}
    labels: dict[str, int] = {}
    for path, prob, label in zip(
        predictions.paths, predictions.probs, predictions.targets, strict=True
    ):
        clip = clip_of.get(path)
        if clip is None:
            continue
        frames.setdefault(clip, []).append(float(prob))
        labels[clip] = int(label)
    if not frames:
        return None
    clips = tuple(frames)
    from deepfake_detection.metrics.predictions import Predictions

    return Predictions(
        torch.tensor([aggregate(frames[c], how, topk) for c in clips]),
        torch.tensor([labels[c] for c in clips]),
        clips,
    )


def clip_metrics(
    predictions: Predictions,
    clip_of: Mapping[str, str],
    threshold: float,
    how: str = "mean",
    topk: int = 4,
) -> dict[str, Any] | None:
    """{"clips", "frames", "aggregate", and `CLIP_METRICS` at `threshold`} over the clips
    of `predictions`; None without clips. The threshold is the frame-level one chosen on
    validation: a clip's aggregate is a P(Fake) on the same scale."""
    clips = clip_predictions(predictions, clip_of, how, topk)
    if clips is None:
        return None
    from deepfake_detection.metrics.binary import compute_metrics

    metrics = compute_metrics(clips.probs, clips.targets, threshold)
    return {
        "clips": len(clips),
        "frames": sum(1 for path in predictions.paths if path in clip_of),
        "fake": int(clips.targets.sum()),
        "real": len(clips) - int(clips.targets.sum()),
        "aggregate": how,
        "threshold": float(threshold),
        **{name: metrics[name] for name in CLIP_METRICS},
    }
