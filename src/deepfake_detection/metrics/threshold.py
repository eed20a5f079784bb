"""Choosing a decision threshold on validation scores (never on test labels)."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_roc

#: The rule name of Youden's J (`threshold=val`), recorded next to the value in metrics.json.
THRESHOLD_RULE = "val"


def youden_threshold(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """The threshold maximising Youden's J = TPR - FPR (equivalently balanced accuracy).

    J is maximised at one of the scores; we return the midpoint between that score and the
    next lower one, so the rule "Fake when score > threshold" keeps exactly the ROC point
    that was chosen and is robust to rounding.
    """
    probs = probs.detach().float().flatten().cpu()
    targets = targets.detach().long().flatten().cpu()
    if not 0 < int(targets.sum()) < targets.numel():
        raise ValueError("choosing a threshold needs both Fake and Real images")
    fpr, tpr, thresholds = binary_roc(probs, targets)
    best = int(torch.argmax(tpr - fpr))
    chosen = thresholds[best]
    below = thresholds[best + 1] if best + 1 < len(thresholds) else torch.zeros_like(chosen)
    # Scores are compared in float32: a midpoint of two neighbouring float32 values can round
    # back up to `chosen`. Then `below` itself keeps the same split (score > below).
    midpoint = (chosen + below) / 2
    return float(midpoint if below < midpoint < chosen else below)
