"""The binary metrics we report, with Fake as the positive class and P(Fake) as the score.

Two entry points: `binary_metrics` streams the cheap per-epoch metrics during fitting, and
`compute_metrics` is the one function that computes every test metric from all predictions,
used by training's test phase and by `evaluate` alike.
"""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
)
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_calibration_error,
    binary_roc,
    binary_stat_scores,
)

from deepfake_detection.metrics.operating_points import TPR_KEYS, tpr_at_fpr_metrics

#: Bins of the expected calibration error.
ECE_BINS = 15


def binary_metrics(split: str, threshold: float = 0.5) -> MetricCollection:
    """One collection per split, logged as `<split>/<name>`; fed with P(Fake) and int targets."""
    return MetricCollection(
        {
            "acc": BinaryAccuracy(threshold=threshold),
            "precision": BinaryPrecision(threshold=threshold),
            "recall": BinaryRecall(threshold=threshold),
            "f1": BinaryF1Score(threshold=threshold),
            "auroc": BinaryAUROC(),
        },
        prefix=f"{split}/",
    )


def _ratio(numerator: float, denominator: float) -> float:
    # torchmetrics' convention: an undefined ratio (no positives predicted, say) counts as 0.
    return numerator / denominator if denominator else 0.0


def equal_error_rate(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """The rate where false-positive and false-negative rates meet on the ROC curve.

    Linearly interpolated between the two ROC points that bracket the crossing, so it does
    not jump with the granularity of a small test set.
    """
    fpr, tpr, _ = binary_roc(probs, targets.long())
    fpr, fnr = fpr.double(), 1.0 - tpr.double()
    gap = fpr - fnr  # rises from -1 (threshold above every score) to +1
    crossing = int(torch.nonzero(gap >= 0)[0])
    if crossing == 0 or gap[crossing] == 0:
        return float(fpr[crossing])
    before, after = gap[crossing - 1], gap[crossing]
    weight = before / (before - after)
    return float(fpr[crossing - 1] + weight * (fpr[crossing] - fpr[crossing - 1]))


def auroc_of(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """AUROC of P(Fake) scores against 0/1 targets; NaN when one class is absent. Alone, for
    what needs only it after every epoch (a tenth of `compute_metrics`' time)."""
    targets = targets.long().flatten()
    if not 0 < int(targets.sum()) < targets.numel():
        return float("nan")
    return float(binary_auroc(probs.float().flatten(), targets))


def compute_metrics(
    probs: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5
) -> dict[str, float]:
    """Every test metric of P(Fake) scores against 0/1 targets.

    An image is called Fake when its score is above `threshold`. Threshold-free metrics
    (AUROC, AP, EER, the TPR at 1 % and 0.1 % FPR) and the calibration error ignore it.
    `ece` is torchmetrics' binary calibration error: the L1 gap between P(Fake) and the
    observed Fake rate, over `ECE_BINS` equal-width bins.
    """
    probs = probs.detach().float().flatten().cpu()
    targets = targets.detach().long().flatten().cpu()
    if probs.numel() != targets.numel() or probs.numel() == 0:
        raise ValueError(
            f"need as many scores as targets, got {probs.numel()} and {targets.numel()}"
        )
    tp, fp, tn, fn, _ = (int(v) for v in binary_stat_scores(probs, targets, threshold=threshold))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    both_classes = 0 < int(targets.sum()) < targets.numel()
    nan = float("nan")
    # A class that is absent has no accuracy (NaN), rather than a misleading 0.
    real_acc = tn / (tn + fp) if tn + fp else nan
    fake_acc = tp / (tp + fn) if tp + fn else nan
    return {
        "acc": _ratio(tp + tn, tp + fp + tn + fn),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "auroc": auroc_of(probs, targets),
        "ap": float(binary_average_precision(probs, targets)) if both_classes else nan,
        "eer": equal_error_rate(probs, targets) if both_classes else nan,
        "real_acc": real_acc,
        "fake_acc": fake_acc,
        "balanced_acc": (real_acc + fake_acc) / 2,
        **(tpr_at_fpr_metrics(probs, targets) if both_classes else dict.fromkeys(TPR_KEYS, nan)),
        "ece": float(binary_calibration_error(probs, targets, n_bins=ECE_BINS, norm="l1")),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "threshold": float(threshold),
    }
