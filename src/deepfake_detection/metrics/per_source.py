"""Metrics per source folder (one generator, one dataset) and their mean over sources.

CNNDetection-style benchmarks quote accuracy and average precision per generator and their
means (mAP, mean accuracy): one pooled number hides a generator the detector misses entirely.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from deepfake_detection.metrics.binary import compute_metrics
from deepfake_detection.metrics.predictions import Predictions

#: Metrics kept per source, from `compute_metrics`.
SOURCE_METRICS = (
    "ap",
    "auroc",
    "acc",
    "real_acc",
    "fake_acc",
    "balanced_acc",
    "precision",
    "recall",
    "f1",
    "eer",
)
#: Metrics averaged over sources; a source where one is undefined (one class) is left out.
MEAN_METRICS = ("ap", "auroc", "acc", "balanced_acc", "real_acc", "fake_acc", "eer")


def _mean(values: list[float]) -> float:
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return sum(defined) / len(defined) if defined else float("nan")


def mean_over(rows: Iterable[Mapping[str, Any]], names: Iterable[str]) -> dict[str, float]:
    """Each metric of `names` averaged over `rows` (sources, datasets), each row weighing
    the same; a row where a metric is undefined (None or NaN) is left out of its mean."""
    rows = list(rows)
    return {name: _mean([row.get(name) for row in rows]) for name in names}


def per_source_metrics(
    predictions: Predictions,
    sources: Mapping[str, str],
    threshold: float,
    depth: int = 1,
) -> dict[str, Any] | None:
    """{"depth", "sources": {name: metrics}, "mean": {...}}; None when there are no sources.

    `sources` maps each image path to its source (`DatasetIndex.sources`). A source with
    images of one class only has accuracy but no AUROC or AP: those are NaN, with a note,
    and the mean of each metric is over the sources where it is defined.
    """
    names = [sources.get(path, "") for path in predictions.paths]
    if not any(names):
        return None
    rows: dict[str, dict[str, Any]] = {}
    for source in sorted(set(names)):
        picked = torch.tensor([i for i, name in enumerate(names) if name == source])
        targets = predictions.targets[picked]
        metrics = compute_metrics(predictions.probs[picked], targets, threshold)
        fake = int(targets.sum())
        real = len(picked) - fake
        note = None
        if not fake or not real:
            note = f"only {'Real' if not fake else 'Fake'} images: no AUROC or AP"
        rows[source or "(no source)"] = {
            "images": len(picked),
            "fake": fake,
            "real": real,
            **{name: metrics[name] for name in SOURCE_METRICS},
            "note": note,
        }
    mean = mean_over(rows.values(), MEAN_METRICS)
    mean["sources"] = len(rows)
    mean["sources_with_both_classes"] = sum(1 for row in rows.values() if row["note"] is None)
    return {"depth": depth, "threshold": float(threshold), "sources": rows, "mean": mean}
