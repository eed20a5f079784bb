"""The binary metrics every split reports, from torchmetrics, with Fake as the positive class."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
)


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
