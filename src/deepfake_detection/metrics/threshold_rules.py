"""Threshold rules as a config writes them: `0.5`, `val`, `val_eer`, `val_fpr:0.01`,
`val_tpr:0.95` (see `metrics.operating_points` for what each picks).

Kept free of torch: commands check `threshold=` and `operating_point=` before loading it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: The operating points every evaluation reports and every export carries, in this order.
STANDARD_RULES = ("val", "val_eer", "val_fpr:0.01", "val_fpr:0.001", "val_tpr:0.95")
#: The false-positive rates at which every evaluation reports the true-positive rate.
TPR_AT_FPR = (0.01, 0.001)
#: Rule names whose argument is a rate in (0, 1).
RATE_RULES = ("val_fpr", "val_tpr")
NAMED_RULES = ("val", "val_eer")
EXPECTED = "a number in [0, 1], val, val_eer, val_fpr:<rate> or val_tpr:<rate> (rate in (0, 1))"


@dataclass(frozen=True)
class ThresholdRule:
    """A parsed `threshold=` value: a fixed number or a rule applied to validation scores."""

    kind: str  # "fixed", "val", "val_eer", "val_fpr" or "val_tpr"
    value: float | None = None  # the number (fixed) or the rate (val_fpr, val_tpr)

    @property
    def name(self) -> str:
        """The rule as written in a config: `0.5`, `val`, `val_fpr:0.01`."""
        if self.kind == "fixed":
            return f"{self.value:g}"
        if self.kind in RATE_RULES:
            return f"{self.kind}:{self.value:g}"
        return self.kind

    @property
    def on_validation(self) -> bool:
        return self.kind != "fixed"


def rule_problem(value: Any) -> str | None:
    """Why `value` is not a threshold rule, or None when it is one."""
    try:
        parse_rule(value)
    except ValueError as err:
        return str(err)
    return None


def parse_rule(value: Any) -> ThresholdRule:
    """A `threshold=` / `operating_point=` value as a rule; ValueError says what is wrong."""
    if isinstance(value, bool):
        raise ValueError(f"expected {EXPECTED}")
    if isinstance(value, int | float):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"a fixed threshold must be in [0, 1], got {value}")
        return ThresholdRule("fixed", float(value))
    text = str(value).strip()
    if text in NAMED_RULES:
        return ThresholdRule(text)
    name, sep, rate = text.partition(":")
    if sep and name in RATE_RULES:
        try:
            number = float(rate)
        except ValueError:
            number = math.nan
        if not 0.0 < number < 1.0:
            raise ValueError(f"{name}:<rate> needs a rate in (0, 1), e.g. {name}:0.01")
        return ThresholdRule(name, number)
    raise ValueError(f"expected {EXPECTED}")


def describe_rule(rule: ThresholdRule) -> str:
    """The rule in words, for logs and summaries."""
    if rule.kind == "fixed":
        return "a fixed threshold"
    if rule.kind == "val":
        return "Youden's J (the best balanced accuracy)"
    if rule.kind == "val_eer":
        return "the equal error rate"
    if rule.kind == "val_fpr":
        return f"at most {rule.value:.3g} of the reals flagged"
    return f"at least {rule.value:.3g} of the fakes flagged"
