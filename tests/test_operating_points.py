"""Operating points, TPR at low FPR, bootstrap and Wilson intervals: the numbers that make
results comparable."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from deepfake_detection.metrics.binary import compute_metrics
from deepfake_detection.metrics.operating_points import (
    rates_at,
    threshold_for,
    tpr_at_fpr,
    validation_points,
)
from deepfake_detection.metrics.threshold import youden_threshold
from deepfake_detection.metrics.threshold_rules import STANDARD_RULES, parse_rule, rule_problem
from deepfake_detection.metrics.uncertainty import (
    bootstrap_intervals,
    weighted_auroc_ap,
    wilson_interval,
)


def scores(n: int = 2000, seed: int = 0, separation: float = 1.5, ties: bool = False):
    generator = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, generator=generator) < 0.5).long()
    probs = torch.sigmoid(torch.randn(n, generator=generator) + separation * targets)
    if ties:
        probs = (probs * 40).round() / 40
    return probs.float(), targets


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("val", "val", None),
        ("val_eer", "val_eer", None),
        ("val_fpr:0.01", "val_fpr", 0.01),
        ("val_tpr:0.95", "val_tpr", 0.95),
        ("val_fpr:1e-3", "val_fpr", 0.001),
        (0.3, "fixed", 0.3),
        (1, "fixed", 1.0),
    ],
)
def test_rules_parse(text, kind: str, value) -> None:
    rule = parse_rule(text)
    assert (rule.kind, rule.value) == (kind, value)
    if kind != "fixed":  # a number is written as a number, not as its name
        assert parse_rule(rule.name) == rule


@pytest.mark.parametrize(
    "bad", ["val_fpr", "val_fpr:0", "val_fpr:1", "val_tpr:x", "best", 1.5, True]
)
def test_bad_rules_say_what_is_expected(bad) -> None:
    assert rule_problem(bad) is not None


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rate", [0.01, 0.05, 0.2])
@pytest.mark.parametrize("ties", [False, True])
def test_val_fpr_flags_at_most_that_share_of_validation_reals(
    seed: int, rate: float, ties: bool
) -> None:
    probs, targets = scores(seed=seed, ties=ties)
    threshold = threshold_for(parse_rule(f"val_fpr:{rate}"), probs, targets)
    reals = probs[targets == 0]
    assert int((reals > threshold).sum()) <= math.floor(rate * len(reals) + 1e-9)
    # And no lower threshold flags the same images: below the (k+1)-th highest real score a
    # real more is flagged, and between that score and the threshold there is no score.
    kept = torch.sort(reals, descending=True).values[math.floor(rate * len(reals) + 1e-9)]
    assert kept <= threshold
    assert not bool(((probs > kept) & (probs <= threshold)).any())


def test_rules_flag_scores_at_the_ends_of_the_range() -> None:
    probs = torch.tensor([0.0, 0.0, 0.2, 1.0, 1.0, 0.0])
    targets = torch.tensor([1, 1, 0, 1, 0, 0])
    # Every fake flagged, the two at exactly 0 included.
    threshold = threshold_for(parse_rule("val_tpr:0.99"), probs, targets)
    assert bool((probs[targets == 1] > threshold).all())
    # A real at exactly 1 cannot be left unflagged, and nothing is flagged to try.
    assert (
        rates_at(probs, targets, threshold_for(parse_rule("val_fpr:0.01"), probs, targets))[
            "false_positives"
        ]
        <= 1
    )


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rate", [0.5, 0.9, 0.95, 0.99])
def test_val_tpr_flags_at_least_that_share_of_validation_fakes(seed: int, rate: float) -> None:
    probs, targets = scores(seed=seed, ties=seed % 2 == 1)
    threshold = threshold_for(parse_rule(f"val_tpr:{rate}"), probs, targets)
    fakes = probs[targets == 1]
    assert int((fakes > threshold).sum()) >= math.ceil(rate * len(fakes) - 1e-9)


def test_val_eer_balances_the_two_error_rates_and_val_is_youden() -> None:
    probs, targets = scores()
    at = rates_at(probs, targets, threshold_for(parse_rule("val_eer"), probs, targets))
    assert abs(at["fpr"] - (1 - at["tpr"])) < 0.01
    assert threshold_for(parse_rule("val"), probs, targets) == youden_threshold(probs, targets)
    assert threshold_for(parse_rule(0.7), probs, targets) == 0.7


def test_validation_points_hold_every_standard_rule_in_order() -> None:
    probs, targets = scores()
    points = validation_points(probs, targets)
    assert list(points) == list(STANDARD_RULES)
    assert points["val_fpr:0.01"]["fpr"] <= 0.01 and points["val_tpr:0.95"]["tpr"] >= 0.95
    with pytest.raises(ValueError, match="both Fake and Real"):
        validation_points(probs[targets == 0], targets[targets == 0])


def test_tpr_at_fpr_is_an_achievable_point_of_the_roc_curve() -> None:
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.95, 0.5, 0.6, 0.7, 0.8, 0.9])
    targets = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    # One real (0.95) outranks every fake: at 0 % FPR no fake is caught; at 20 % all are.
    assert tpr_at_fpr(probs, targets, 0.0) == 0.0
    assert tpr_at_fpr(probs, targets, 0.1) == 0.0
    assert tpr_at_fpr(probs, targets, 0.2) == 1.0
    metrics = compute_metrics(probs, targets)
    assert metrics["tpr@fpr0.01"] == 0.0 and metrics["tpr@fpr0.001"] == 0.0
    one_class = compute_metrics(probs[:5], targets[:5])
    assert math.isnan(one_class["tpr@fpr0.01"])


def test_weighted_metrics_match_torchmetrics_on_the_sample_itself() -> None:
    probs, targets = scores(ties=True)
    distinct, position = torch.unique(probs.double(), return_inverse=True)
    pos = torch.zeros(1, len(distinct), dtype=torch.float64)
    neg = torch.zeros_like(pos)
    pos.scatter_add_(1, position[None], (targets == 1).double()[None])
    neg.scatter_add_(1, position[None], (targets == 0).double()[None])
    auroc, ap = weighted_auroc_ap(pos, neg)
    assert float(auroc) == pytest.approx(float(binary_auroc(probs, targets)), abs=1e-6)
    assert float(ap) == pytest.approx(float(binary_average_precision(probs, targets)), abs=1e-6)


def test_bootstrap_intervals_are_reproducible_and_stable_under_the_seed() -> None:
    probs, targets = scores(n=1000)
    first = bootstrap_intervals(probs, targets, {"acc": 0.5}, seed=0)
    assert first == bootstrap_intervals(probs, targets, {"acc": 0.5}, seed=0)
    auroc = float(binary_auroc(probs, targets))
    low, high = first["auroc"]
    assert low < auroc < high and 0.01 < high - low < 0.1
    for seed in (1, 2, 3):
        other = bootstrap_intervals(probs, targets, {"acc": 0.5}, seed=seed)
        assert other != first  # another seed, other resamples
        for name in ("auroc", "ap", "acc"):
            assert other[name][0] == pytest.approx(first[name][0], abs=0.01)
            assert other[name][1] == pytest.approx(first[name][1], abs=0.01)


def test_bootstrap_interval_narrows_with_more_images_and_covers_the_truth() -> None:
    small, large = scores(n=300, seed=4), scores(n=6000, seed=4)
    width = lambda found: found["auroc"][1] - found["auroc"][0]  # noqa: E731
    assert width(bootstrap_intervals(*large, {})) < width(bootstrap_intervals(*small, {})) / 2
    # The population AUROC of this score model, from a very large sample.
    truth = float(binary_auroc(*scores(n=200_000, seed=9)))
    low, high = bootstrap_intervals(*large, {})["auroc"]
    assert low < truth < high


def test_bootstrap_of_one_class_keeps_accuracy_only() -> None:
    probs, targets = scores(n=200)
    reals = targets == 0
    found = bootstrap_intervals(probs[reals], targets[reals], {"acc": 0.5})
    assert found["auroc"] is None and found["ap"] is None
    assert 0 <= found["acc"][0] <= found["acc"][1] <= 1


def test_wilson_interval() -> None:
    # Known values: 0 of 200 (the "rule of three" neighbourhood) and 5 of 100.
    low, high = wilson_interval(0, 200)
    assert low == 0.0 and high == pytest.approx(0.01884, abs=1e-4)
    low, high = wilson_interval(5, 100)
    assert (low, high) == pytest.approx((0.02154, 0.11175), abs=1e-4)
    assert wilson_interval(50, 50)[1] == 1.0
    assert wilson_interval(0, 0) is None
