"""A scored split at each operating point: what a deployment at that threshold would do.

Each validation operating point (`metrics.operating_points`) is applied to the scored split:
its false-positive rate on the reals and detection rate on the fakes, each with a 95 % Wilson
interval. A split of only real images (a false-positive audit) has no AUROC, but this table
is exactly what it is for: "at 1 % validation FPR, 3.2 % [2.0, 5.1] of these photos are
flagged".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepfake_detection.metrics.operating_points import rates_at
from deepfake_detection.metrics.predictions import Predictions
from deepfake_detection.metrics.uncertainty import bootstrap_intervals, wilson_interval


def own_point_name(threshold: float, rule: str) -> str:
    """How the command's own threshold is named among the operating points."""
    return f"fixed:{threshold:g}" if rule == "fixed" else rule


def one_class_of(predictions: Predictions) -> str | None:
    """`real` or `fake` when the scored images are all of one class, else None."""
    labels = set(predictions.targets.tolist())
    if labels == {0}:
        return "real"
    if labels == {1}:
        return "fake"
    return None


def scored_points(
    predictions: Predictions,
    points: Mapping[str, Mapping[str, Any]] | None,
    threshold: float,
    rule: str,
) -> dict[str, dict[str, Any]]:
    """{name: threshold, validation FPR/TPR, and this split's FPR/TPR with intervals}, for
    each validation operating point and the command's own threshold."""
    entries: dict[str, Mapping[str, Any]] = dict(points or {})
    entries.setdefault(own_point_name(threshold, rule), {"threshold": threshold})
    table = {}
    for name, point in entries.items():
        rates = rates_at(predictions.probs, predictions.targets, point["threshold"])
        table[name] = {
            "threshold": rates["threshold"],
            "val_fpr": point.get("fpr"),
            "val_tpr": point.get("tpr"),
            "fpr": rates["fpr"],
            "fpr_ci": wilson_interval(rates["false_positives"], rates["reals"]),
            "tpr": rates["tpr"],
            "tpr_ci": wilson_interval(rates["detected"], rates["fakes"]),
            "false_positives": rates["false_positives"],
            "reals": rates["reals"],
            "detected": rates["detected"],
            "fakes": rates["fakes"],
        }
    return table


def interval_metrics(
    predictions: Predictions, split: str, thresholds: Mapping[str, float]
) -> dict[str, list[float] | None]:
    """`<split>/auroc_ci`, `<split>/ap_ci` and `<split>/<acc name>_ci` (bootstrap, 95 %)."""
    found = bootstrap_intervals(predictions.probs, predictions.targets, thresholds)
    return {f"{split}/{name}_ci": interval for name, interval in found.items()}
