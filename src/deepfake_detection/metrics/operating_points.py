"""Operating points: the thresholds people deploy at, chosen on validation scores.

A detector is deployed at a threshold, and which one matters as much as its AUROC: a
trust-and-safety queue wants at most 1 % of real photos flagged (`val_fpr:0.01`), a screening
step wants 95 % of fakes caught (`val_tpr:0.95`). Each rule is applied to the training run's
validation scores, never to the scores being evaluated, and the same rule names are used by
`threshold=` (evaluate, robustness, export, predict, serve) and by `operating_point=`.

Rules, on P(Fake) with "Fake when score > threshold":

- `val`: Youden's J (`metrics.threshold.youden_threshold`);
- `val_eer`: where the false-positive and false-negative rates meet;
- `val_fpr:<f>`: the lowest threshold that flags at most a fraction f of validation reals;
- `val_tpr:<t>`: the highest threshold that still flags at least a fraction t of validation
  fakes;
- a number: that threshold (`fixed`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchmetrics.functional.classification import binary_roc

from deepfake_detection.metrics.threshold import youden_threshold
from deepfake_detection.metrics.threshold_rules import (
    STANDARD_RULES,
    TPR_AT_FPR,
    ThresholdRule,
    parse_rule,
)


def _split(probs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    probs = probs.detach().float().flatten().cpu()
    targets = targets.detach().long().flatten().cpu()
    if not 0 < int(targets.sum()) < targets.numel():
        raise ValueError("choosing a threshold needs both Fake and Real images")
    return probs, targets


#: The threshold below a score of exactly 0: "score > threshold" must still flag it.
BELOW_ZERO = -1e-6


def _just_below(score: torch.Tensor, probs: torch.Tensor) -> float:
    """A threshold that keeps `score` on the Fake side and moves nothing else across: the
    midpoint to the next lower score, or that lower score itself when float32 rounds the
    midpoint back up (as `youden_threshold` does); below a score of 0, `BELOW_ZERO`."""
    lower = probs[probs < score]
    if not lower.numel():
        return float(score) / 2 if float(score) > 0 else BELOW_ZERO
    below = lower.max()
    midpoint = (score + below) / 2
    return float(midpoint if below < midpoint < score else below)


def _just_above(score: torch.Tensor, probs: torch.Tensor) -> float:
    """A threshold that keeps `score` on the Real side and moves nothing else across: the
    midpoint to the next higher score, so a rescoring that differs in the last digits (an
    exported model) does not flip the image at the threshold; the score itself when there is
    none or float32 rounds the midpoint onto an end."""
    higher = probs[probs > score]
    if not higher.numel():
        return float(score)
    above = higher.min()
    midpoint = (score + above) / 2
    return float(midpoint if score < midpoint < above else score)


def fpr_threshold(probs: torch.Tensor, targets: torch.Tensor, rate: float) -> float:
    """The lowest threshold at which at most `rate` of the reals score above it.

    With k = floor(rate * reals) false positives allowed, the (k+1)-th highest real score
    must not be flagged: "score > threshold" then flags at most k reals (fewer on ties). The
    threshold sits halfway to the next higher score, which flags the same images.
    """
    probs, targets = _split(probs, targets)
    reals = torch.sort(probs[targets == 0], descending=True).values
    allowed = math.floor(rate * len(reals) + 1e-9)
    if allowed >= len(reals):
        return BELOW_ZERO
    return _just_above(reals[allowed], probs)


def tpr_threshold(probs: torch.Tensor, targets: torch.Tensor, rate: float) -> float:
    """The highest threshold at which at least `rate` of the fakes score above it."""
    probs, targets = _split(probs, targets)
    fakes = torch.sort(probs[targets == 1], descending=True).values
    needed = max(1, math.ceil(rate * len(fakes) - 1e-9))
    return _just_below(fakes[needed - 1], probs)


def eer_threshold(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """The ROC point where the false-positive and false-negative rates are closest."""
    probs, targets = _split(probs, targets)
    fpr, tpr, thresholds = binary_roc(probs, targets)
    best = int(torch.argmin((fpr - (1 - tpr)).abs()))
    return _just_below(thresholds[best].clamp(max=1.0), probs) if best else 1.0


def threshold_for(rule: ThresholdRule, probs: torch.Tensor, targets: torch.Tensor) -> float:
    """The threshold `rule` picks on validation scores (a fixed rule ignores them)."""
    if rule.kind == "fixed":
        return float(rule.value)
    if rule.kind == "val":
        return youden_threshold(probs, targets)
    if rule.kind == "val_eer":
        return eer_threshold(probs, targets)
    if rule.kind == "val_fpr":
        return fpr_threshold(probs, targets, float(rule.value))
    return tpr_threshold(probs, targets, float(rule.value))


def rates_at(probs: torch.Tensor, targets: torch.Tensor, threshold: float) -> dict[str, Any]:
    """FPR (reals flagged), TPR (fakes flagged) and their counts at `threshold`; a rate of an
    absent class is None."""
    probs = probs.detach().float().flatten().cpu()
    targets = targets.detach().long().flatten().cpu()
    flagged = probs > threshold
    reals, fakes = int((targets == 0).sum()), int((targets == 1).sum())
    false_pos = int((flagged & (targets == 0)).sum())
    true_pos = int((flagged & (targets == 1)).sum())
    return {
        "threshold": float(threshold),
        "fpr": false_pos / reals if reals else None,
        "tpr": true_pos / fakes if fakes else None,
        "false_positives": false_pos,
        "reals": reals,
        "detected": true_pos,
        "fakes": fakes,
    }


def validation_points(
    probs: torch.Tensor, targets: torch.Tensor, rules: tuple[str, ...] = STANDARD_RULES
) -> dict[str, dict[str, Any]]:
    """{rule: its threshold with the validation FPR and TPR there}, for each rule."""
    points = {}
    for name in dict.fromkeys(rules):
        rule = parse_rule(name)
        points[rule.name] = rates_at(probs, targets, threshold_for(rule, probs, targets))
    return points


def tpr_at_fpr(probs: torch.Tensor, targets: torch.Tensor, fpr: float) -> float:
    """The highest TPR on the ROC curve with a false-positive rate of at most `fpr`
    (no interpolation: an achievable operating point). NaN without both classes."""
    probs = probs.detach().float().flatten().cpu()
    targets = targets.detach().long().flatten().cpu()
    if not 0 < int(targets.sum()) < targets.numel():
        return math.nan
    rates, tpr, _ = binary_roc(probs, targets)
    allowed = rates <= fpr + 1e-12
    return float(tpr[allowed].max()) if bool(allowed.any()) else 0.0


#: `tpr@fpr0.01` and `tpr@fpr0.001`: the names of the TPR at each of `TPR_AT_FPR`.
TPR_KEYS = tuple(f"tpr@fpr{fpr:g}" for fpr in TPR_AT_FPR)


def tpr_at_fpr_metrics(probs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """`tpr@fpr0.01`, `tpr@fpr0.001`: the low-false-positive end of the ROC curve."""
    return {
        key: tpr_at_fpr(probs, targets, fpr) for key, fpr in zip(TPR_KEYS, TPR_AT_FPR, strict=True)
    }
