"""`deepfake-evaluate perturb=...`: deterministic perturbations before the eval transform."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import compose_config, run_cli
from deepfake_detection.commands import EVALUATE
from deepfake_detection.data.perturb import Perturbation
from deepfake_detection.data.transforms import eval_transform
from deepfake_detection.errors import ConfigError

evaluate = EVALUATE.run  # the command: its config checked, then run


def run_evaluate(overrides: list[str], output_dir: Path) -> dict:
    evaluate(compose_config("evaluate", overrides, output_dir))
    return json.loads((output_dir / "metrics.json").read_text())


@pytest.fixture
def image() -> Image.Image:
    pixels = np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.parametrize(
    ("name", "severity"), [("jpeg", 30), ("blur", 2.0), ("resize", 0.25), ("noise", 0.1)]
)
def test_each_perturbation_changes_images_the_same_way_every_time(
    name: str, severity: float, image: Image.Image
) -> None:
    clean = eval_transform(32)(image)
    transform = eval_transform(32, perturbation=Perturbation(name, severity))
    torch.manual_seed(0)
    first = transform(image)
    torch.manual_seed(0)
    assert torch.equal(first, transform(image))
    assert first.shape == clean.shape and (first - clean).abs().mean() > 0.02
    assert torch.equal(eval_transform(32, perturbation=Perturbation()).__call__(image), clean)


@pytest.mark.parametrize(
    ("name", "severity", "message"),
    [
        ("jpeg", 0, "perturb.severity=0: for perturb=jpeg it is the JPEG quality, 1..100"),
        ("jpeg", 50.5, "perturb.severity=50.5: for perturb=jpeg"),
        ("blur", 0, "perturb.severity=0: for perturb=blur it is the Gaussian blur sigma"),
        ("resize", 1.5, "perturb.severity=1.5: for perturb=resize it is the downscale factor"),
        ("noise", None, "perturb.severity=None: for perturb=noise"),
        ("noise", 0, "perturb.severity=0: for perturb=noise it is the noise sigma"),
        ("fog", 1, "perturb=fog: unknown perturb option; choose one of: none, jpeg, blur"),
    ],
)
def test_bad_perturbations_are_one_line(name: str, severity, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        Perturbation(name, severity)
    assert str(error.value).startswith(message)


@pytest.mark.slow
def test_evaluate_under_a_perturbation(tiny_run: Path, tmp_path: Path) -> None:
    clean = run_evaluate([f"ckpt_path={tiny_run}"], tmp_path / "clean")
    assert clean["perturb"] == "clean"
    trained = json.loads((tiny_run / "metrics.json").read_text())
    assert clean["test/auroc"] == pytest.approx(trained["test/auroc"], abs=1e-6)

    args = [f"ckpt_path={tiny_run}", "perturb=noise", "perturb.severity=0.2"]
    noisy = run_evaluate(args, tmp_path / "noisy")
    again = run_evaluate([*args, "data.num_workers=2"], tmp_path / "again")
    assert noisy["perturb"] == "noise 0.2"
    assert noisy["test/loss"] != clean["test/loss"]
    assert {k: v for k, v in noisy.items() if k.startswith("test/")} == {
        k: v for k, v in again.items() if k.startswith("test/")
    }  # the noise is fixed per image, whichever worker loads it


@pytest.mark.slow
def test_cli_refuses_an_unknown_perturbation_in_one_line(tiny_run: Path, tmp_path: Path) -> None:
    result = run_cli(
        [f"ckpt_path={tiny_run}", "perturb=fog"], tmp_path, module="deepfake_detection.evaluate"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: perturb=fog: unknown perturb option; choose one of: blur, jpeg, noise, none, resize"
    ]


def test_a_bad_severity_is_refused_before_the_checkpoint_loads(tiny_run: Path) -> None:
    from deepfake_detection.evaluation.settings import validate_evaluate_config

    overrides = [f"ckpt_path={tiny_run}", "perturb=jpeg", "perturb.severity=0"]
    cfg = compose_config("evaluate", overrides, tiny_run.parent / "unused")
    with pytest.raises(ConfigError) as error:
        validate_evaluate_config(cfg)
    assert str(error.value) == "perturb.severity=0: for perturb=jpeg it is the JPEG quality, 1..100"
