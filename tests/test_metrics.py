"""The one metrics function and the validation threshold, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from deepfake_detection.metrics.binary import compute_metrics, equal_error_rate
from deepfake_detection.metrics.threshold import youden_threshold

# Scores sit mid-bin for the 15-bin calibration error, so each falls in its own bin.
PROBS = torch.tensor([0.12, 0.42, 0.38, 0.82, 0.72, 0.22])
TARGETS = torch.tensor([0, 0, 1, 1, 1, 0])


def test_every_metric_matches_hand_computed_values() -> None:
    m = compute_metrics(PROBS, TARGETS, threshold=0.5)
    # Called Fake (> 0.5): 0.82 and 0.72, both Fake. Missed Fake: 0.38.
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 0, 3, 1)
    assert m["acc"] == pytest.approx(5 / 6)
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(0.8)
    assert m["real_acc"] == pytest.approx(1.0)
    assert m["fake_acc"] == pytest.approx(2 / 3)
    assert m["balanced_acc"] == pytest.approx(5 / 6)
    # 8 of the 9 (Fake, Real) pairs are ranked correctly; 0.38 < 0.42 is the exception.
    assert m["auroc"] == pytest.approx(8 / 9, abs=1e-6)
    # Ranked: F F R F R R -> precision at each Fake: 1, 1, 3/4.
    assert m["ap"] == pytest.approx((1 + 1 + 0.75) / 3, abs=1e-6)
    # After 0.42 is called Fake: FPR = 1/3 and FNR = 1/3.
    assert m["eer"] == pytest.approx(1 / 3, abs=1e-6)
    # One score per bin: ECE is the mean |label - score|.
    expected_ece = (0.12 + 0.42 + 0.62 + 0.18 + 0.28 + 0.22) / 6
    assert m["ece"] == pytest.approx(expected_ece, abs=1e-6)
    assert m["threshold"] == 0.5


def test_threshold_changes_the_counts_but_not_the_ranking_metrics() -> None:
    low = compute_metrics(PROBS, TARGETS, threshold=0.3)
    high = compute_metrics(PROBS, TARGETS, threshold=0.5)
    assert (low["tp"], low["fp"], low["tn"], low["fn"]) == (3, 1, 2, 0)
    assert low["recall"] == 1.0 and low["precision"] == pytest.approx(0.75)
    for name in ("auroc", "ap", "eer", "ece"):
        assert low[name] == high[name]


def test_eer_interpolates_between_roc_points() -> None:
    # ROC (FPR, TPR): (0,.5) (1/3,.5) (2/3,.5) (2/3,1): FNR stays .5 while FPR passes .5.
    probs = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    targets = torch.tensor([1, 0, 0, 1, 0])
    assert equal_error_rate(probs, targets) == pytest.approx(0.5, abs=1e-6)


def test_perfect_and_inverted_scores() -> None:
    targets = torch.tensor([0, 0, 1, 1])
    perfect = compute_metrics(torch.tensor([0.1, 0.2, 0.8, 0.9]), targets)
    assert perfect["auroc"] == 1.0 and perfect["eer"] == 0.0 and perfect["acc"] == 1.0
    inverted = compute_metrics(torch.tensor([0.9, 0.8, 0.2, 0.1]), targets)
    assert inverted["auroc"] == 0.0 and inverted["eer"] == 1.0 and inverted["acc"] == 0.0


def test_single_class_leaves_ranking_metrics_undefined() -> None:
    m = compute_metrics(torch.tensor([0.2, 0.7]), torch.tensor([1, 1]))
    assert math.isnan(m["auroc"]) and math.isnan(m["eer"]) and math.isnan(m["ap"])
    assert m["tp"] == 1 and m["fn"] == 1
    # No Real image: Real accuracy is undefined, not 0, and so is the balanced accuracy.
    assert m["fake_acc"] == 0.5 and math.isnan(m["real_acc"]) and math.isnan(m["balanced_acc"])


def test_mismatched_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="as many scores as targets"):
        compute_metrics(torch.tensor([0.2, 0.7]), torch.tensor([1]))


def test_youden_threshold_sits_between_the_chosen_score_and_the_next() -> None:
    # J peaks at 0.9 (TPR .5, FPR 0); the next score down is 0.8.
    probs = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    targets = torch.tensor([1, 0, 0, 1, 0])
    threshold = youden_threshold(probs, targets)
    assert threshold == pytest.approx(0.85)
    m = compute_metrics(probs, targets, threshold)
    assert (m["tp"], m["fp"]) == (1, 0)


def test_youden_threshold_follows_shifted_scores() -> None:
    # Every score is above 0.5, yet they separate the classes perfectly at ~0.95.
    probs = torch.tensor([0.91, 0.92, 0.93, 0.97, 0.98, 0.99])
    targets = torch.tensor([0, 0, 0, 1, 1, 1])
    threshold = youden_threshold(probs, targets)
    assert threshold == pytest.approx(0.95)
    assert compute_metrics(probs, targets, threshold)["acc"] == 1.0
    assert compute_metrics(probs, targets, 0.5)["acc"] == 0.5


def test_youden_threshold_survives_neighbouring_float32_scores() -> None:
    # The midpoint of 1.0 and the float32 just below it rounds back to 1.0 in float32.
    below_one = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0))
    probs = torch.stack([below_one, below_one, torch.tensor(1.0), torch.tensor(1.0)])
    targets = torch.tensor([0, 0, 1, 1])
    threshold = youden_threshold(probs, targets)
    m = compute_metrics(probs, targets, threshold)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 0, 2, 0)


def test_youden_threshold_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both Fake and Real"):
        youden_threshold(torch.tensor([0.2, 0.7]), torch.tensor([0, 0]))


def test_undefined_metrics_are_written_as_json_null(tmp_path) -> None:
    import json

    from deepfake_detection.files import write_json

    metrics = compute_metrics(torch.tensor([0.2, 0.7]), torch.tensor([1, 1]))
    path = write_json(tmp_path / "metrics.json", {"test": metrics})
    loaded = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(name))
    assert loaded["test"]["auroc"] is None and loaded["test"]["tp"] == 1
