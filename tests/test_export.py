"""`deepfake-export`: ONNX and torch.export files that score like the PyTorch model."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import compose_config, run_cli
from deepfake_detection.commands import PREDICT
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.detector import formats
from deepfake_detection.detector.formats import (
    ProbabilityModel,
    load_runner,
    onnx_metadata,
    write_torch_export,
)
from deepfake_detection.detector.parity import check_parity, parity_inputs
from deepfake_detection.detector.spec import ExportError, ExportSpec, sha256_of
from deepfake_detection.exporting.export import export
from deepfake_detection.models import MobileNetV2Detector

predict = PREDICT.run  # the command: its config checked, then run

TOLERANCE = {"onnx": 1e-4, "torch_export": 1e-6}


def run_export(run_dir: Path, out: Path, *overrides: str) -> dict:
    return export(compose_config("export", [f"ckpt_path={run_dir}", *overrides], out))


def predicted(run_dir: Path, images: Path, out: Path) -> dict[str, float]:
    predict(compose_config("predict", [f"ckpt_path={run_dir}", f"input={images}"], out))
    with open(out / "predictions.csv", newline="") as handle:
        return {row["path"]: float(row["prob_fake"]) for row in csv.DictReader(handle)}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torch_export"])
@pytest.mark.parametrize("run", ["tiny_run", "tiny_mobilenet_run"])
def test_exported_model_scores_every_image_as_predict_does(
    run: str, fmt: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    run_dir: Path = request.getfixturevalue(run)
    result = run_export(run_dir, tmp_path / "export", f"format={fmt}")
    model_file = Path(result["model_file"])
    assert model_file.name == {"onnx": "model.onnx", "torch_export": "model.pt2"}[fmt]
    assert result["max_abs_diff"] <= TOLERANCE[fmt] and result["images"] == 8

    spec = ExportSpec.load(model_file)  # checks the SHA-256 too
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert spec.threshold == pytest.approx(metrics["val/threshold"])
    assert spec.classes == {"0": "Real", "1": "Fake"} and spec.positive_class == "Fake"
    assert spec.preprocessing["image_size"] == 32 and spec.preprocessing["resize_to"] == 37
    assert Path(spec.source_checkpoint) == (run_dir / metrics["best/checkpoint"]).resolve()
    assert "training run's test split" in spec.parity["source"]

    # The whole test split, in one batch of a size export never saw, through the file alone.
    images = run_dir.parent / "data" / "test"
    expected = predicted(run_dir, images, tmp_path / "predict")
    preprocessing = Preprocessing.from_description(spec.preprocessing)
    paths = sorted(expected)
    probs = load_runner(model_file, fmt)(torch.stack([preprocessing.file(p) for p in paths]))
    assert len(paths) == {"tiny_run": 12, "tiny_mobilenet_run": 8}[run]
    for path, prob in zip(paths, probs.tolist(), strict=True):
        assert prob == pytest.approx(expected[path], abs=TOLERANCE[fmt])
    if fmt == "onnx":
        embedded = onnx_metadata(model_file)
        assert embedded["threshold"] == spec.threshold and embedded["parity"] == spec.parity


@pytest.mark.slow
@pytest.mark.parametrize(
    "freeze", [{"name": "none"}, {"name": "backbone"}, {"name": "last_n", "n": 3}]
)
def test_every_freeze_strategy_exports_in_eval_mode(freeze: dict, tmp_path: Path) -> None:
    torch.manual_seed(0)
    detector = MobileNetV2Detector(pretrained=False, freeze=freeze).train()
    detector.eval()
    inputs = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        reference = torch.sigmoid(detector(inputs))
    path = tmp_path / "model.pt2"
    write_torch_export(ProbabilityModel(detector).eval(), inputs[:2], path)
    assert check_parity("torch_export", reference, load_runner(path, "torch_export")(inputs)) < 1e-6
    assert detector.training is False


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torch_export"])
def test_a_parity_failure_is_an_error_and_leaves_no_model(
    fmt: str, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = load_runner

    def off_by_a_little(path: Path, fmt: str):
        runner = real(path, fmt)
        return lambda batch: runner(batch) + 2 * TOLERANCE[fmt]

    monkeypatch.setattr("deepfake_detection.detector.parity.load_runner", off_by_a_little)
    out = tmp_path / "export"
    with pytest.raises(ExportError, match=f"parity check failed: format={fmt}"):
        run_export(tiny_run, out, f"format={fmt}")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == []


@pytest.mark.slow
def test_one_parity_image_still_exports_a_dynamic_batch(tiny_run: Path, tmp_path: Path) -> None:
    result = run_export(tiny_run, tmp_path / "export", "format=torch_export", "parity.images=1")
    runner = load_runner(Path(result["model_file"]), "torch_export")
    assert result["images"] == 1 and runner(torch.zeros(5, 3, 32, 32)).shape == (5,)


def test_parity_uses_generated_images_when_the_split_is_gone(tmp_path: Path) -> None:
    data = {"root": str(tmp_path / "deleted"), "image_size": 32}
    inputs, where = parity_inputs(data, "test", 5, Preprocessing(32))
    assert inputs.shape == (5, 3, 32, 32) and "generated" in where
    again, _ = parity_inputs(data, "test", 5, Preprocessing(32))
    assert torch.equal(inputs, again)


@pytest.mark.slow
def test_a_changed_model_file_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    result = run_export(tiny_run, tmp_path / "export", "format=torch_export")
    model_file = Path(result["model_file"])
    assert ExportSpec.load(model_file).sha256 == sha256_of(model_file)
    with open(model_file, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ExportError, match="SHA-256 differs"):
        ExportSpec.load(model_file)
    (model_file.with_suffix(".json")).unlink()
    with pytest.raises(ExportError, match="no model.json beside it"):
        ExportSpec.load(model_file)


@pytest.mark.slow
def test_temperature_is_built_into_the_exported_model(tiny_run: Path, tmp_path: Path) -> None:
    result = run_export(
        tiny_run, tmp_path / "export", "format=torch_export", "calibration=temperature"
    )
    spec = ExportSpec.load(Path(result["model_file"]))
    assert spec.temperature is not None and spec.temperature != 1.0
    assert result["max_abs_diff"] <= 1e-6


@pytest.mark.slow
def test_export_command_writes_into_its_run_dir(tiny_run: Path, tmp_path: Path) -> None:
    run = run_cli(
        [f"ckpt_path={tiny_run}", "format=torch_export", "hydra.run.dir=exported"],
        tmp_path,
        module="deepfake_detection.export",
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "exported" / "model.pt2").is_file()
    assert "parity: max |ΔP(Fake)|" in run.stdout + run.stderr
    bad = run_cli([f"ckpt_path={tiny_run}", "format=tflite"], tmp_path, "deepfake_detection.export")
    assert bad.returncode == 2 and "format=tflite" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_onnx_needs_its_packages_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "onnxscript", None)
    with pytest.raises(ExportError, match=r"pip install 'deepfake-detection\[export\]'"):
        formats.write_onnx(None, torch.zeros(1), Path("unused.onnx"))  # type: ignore[arg-type]


@pytest.mark.slow
def test_copy_of_an_export_still_loads(tiny_run: Path, tmp_path: Path) -> None:
    result = run_export(tiny_run, tmp_path / "export", "format=onnx")
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "export", moved)
    spec = ExportSpec.load(moved / "model.onnx")
    assert spec.model_file == "model.onnx" and result["tolerance"] == 1e-4
