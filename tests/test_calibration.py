"""Temperature scaling: fitted on validation, it changes confidence, never rankings or calls."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from conftest import compose_config
from deepfake_detection.commands import EVALUATE, PREDICT
from deepfake_detection.metrics.calibration import (
    apply_temperature,
    fit_temperature,
    moved_threshold,
)

evaluate = EVALUATE.run  # the command: its config checked, then run
predict = PREDICT.run  # the command: its config checked, then run


def run(command, name: str, overrides: list[str], output_dir: Path, summary: str) -> dict:
    command(compose_config(name, overrides, output_dir))
    return json.loads((output_dir / summary).read_text())


def test_fit_recovers_an_overconfident_models_temperature() -> None:
    generator = torch.Generator().manual_seed(0)
    honest = torch.randn(20000, generator=generator) * 2  # logits whose sigmoid is the truth
    targets = torch.bernoulli(torch.sigmoid(honest), generator=generator)
    overconfident = torch.sigmoid(3.0 * honest)
    assert fit_temperature(overconfident, targets) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(torch.sigmoid(honest), targets) == pytest.approx(1.0, rel=0.05)
    with pytest.raises(ValueError, match="both Fake and Real"):
        fit_temperature(torch.tensor([0.2, 0.9]), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="separate Fake from Real perfectly"):
        fit_temperature(torch.tensor([0.1, 0.4, 0.6, 0.9]), torch.tensor([0, 0, 1, 1]))


def test_calibrated_calls_at_the_moved_threshold_are_the_same() -> None:
    probs = torch.rand(1000, generator=torch.Generator().manual_seed(1))
    for temperature in (0.4, 1.0, 2.5):
        calibrated = apply_temperature(probs, temperature)
        threshold = moved_threshold(0.62, temperature)
        assert torch.equal(probs > 0.62, calibrated > threshold)
        ranked = calibrated[probs.argsort()]  # monotone: no ranking changes (ties aside)
        assert bool((ranked[1:] >= ranked[:-1]).all())


@pytest.mark.slow  # several scoring passes: over a second
def test_evaluate_with_temperature_scaling(tiny_run: Path, tmp_path: Path) -> None:
    def metrics(*overrides: str) -> dict:
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        return run(evaluate, "evaluate", [f"ckpt_path={tiny_run}", *overrides], out, "metrics.json")

    plain, scaled = metrics("threshold=val"), metrics("threshold=val", "calibration=temperature")
    assert plain["calibration"] == "none" and plain["temperature"] is None
    assert scaled["calibration"] == "temperature" and scaled["temperature"] > 0
    assert scaled["test/auroc"] == pytest.approx(plain["test/auroc"], abs=1e-6)
    for name in ("acc", "tp", "fp", "tn", "fn"):  # the same decisions at threshold=val
        assert scaled[f"test/{name}"] == plain[f"test/{name}"], name
    # Fitted to minimise the validation NLL, so no worse there than the raw scores.
    plain_val = metrics("data.split=val")
    scaled_val = metrics("data.split=val", "calibration=temperature")
    assert scaled_val["val/loss"] <= plain_val["val/loss"] + 1e-6


def test_predict_with_temperature_scaling(tiny_run: Path, tmp_path: Path) -> None:
    images = tiny_run.parent / "data" / "test"
    base = [f"ckpt_path={tiny_run}", f"input={images}", "threshold=val"]
    plain = run(predict, "predict", base, tmp_path / "a", "predict.json")
    scaled = run(
        predict, "predict", [*base, "calibration=temperature"], tmp_path / "b", "predict.json"
    )
    assert scaled["temperature"] > 0 and (scaled["fake"], scaled["real"]) == (
        plain["fake"],
        plain["real"],
    )

    def calls(folder: str) -> dict[str, tuple[str, float]]:
        with open(tmp_path / folder / "predictions.csv", newline="") as handle:
            return {
                r["path"]: (r["prediction"], float(r["prob_fake"])) for r in csv.DictReader(handle)
            }

    before, after = calls("a"), calls("b")
    assert {p: c for p, (c, _) in before.items()} == {p: c for p, (c, _) in after.items()}
    assert before != after  # the probabilities themselves moved
