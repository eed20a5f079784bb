"""INT8 export: quantized, checked against the float model on the test split, refused when it
loses accuracy; predict and serve take the INT8 file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import compose_config
from deepfake_detection.commands import EVALUATE, EXPORT, PREDICT
from deepfake_detection.detector.exported_model import load_detector
from deepfake_detection.detector.spec import ExportError
from deepfake_detection.errors import ConfigError
from deepfake_detection.exporting import quantize

pytestmark = pytest.mark.slow  # ONNX exports and quantization

#: Limits no quantization of the tiny model can miss: these tests check the mechanics.
LOOSE = ["quantization.max_auroc_drop=1", "quantization.max_acc_drop=1"]


def run_export(run_dir: Path, out: Path, *overrides: str) -> dict:
    return EXPORT.run(compose_config("export", [f"ckpt_path={run_dir}", *overrides], out))


@pytest.fixture(scope="module")
def int8_export(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8")
    run_export(tiny_run, out, "quantize=int8", *LOOSE)
    return out


def test_int8_export_writes_a_checked_model_beside_the_float_one(int8_export: Path) -> None:
    assert (int8_export / "model.onnx").is_file() and (int8_export / "model.json").is_file()
    spec = json.loads((int8_export / "model.int8.json").read_text())
    float_spec = json.loads((int8_export / "model.json").read_text())
    assert spec["model_file"] == "model.int8.onnx" and float_spec["quantization"] is None
    quantization = spec["quantization"]
    assert quantization["type"] == "int8" and quantization["method"] == "static"
    assert quantization["calibration_images"] == 12  # the tiny run's 6 + 6 validation images
    check = quantization["check"]
    assert check["images"] == 12 and check["passed"]
    assert check["threshold"] == spec["threshold"] == float_spec["threshold"]
    for model in ("float", "int8"):
        assert 0 <= check[model]["auroc"] <= 1 and 0 <= check[model]["acc"] <= 1
    # The weights are 8-bit: the file is smaller than the float one.
    assert (int8_export / "model.int8.onnx").stat().st_size < (
        int8_export / "model.onnx"
    ).stat().st_size


def test_predict_and_serve_take_the_int8_model(
    int8_export: Path, tiny_run: Path, tmp_path: Path
) -> None:
    images = tiny_run.parent / "data" / "test"
    outputs = {}
    for name in ("model.onnx", "model.int8.onnx"):
        out = tmp_path / name
        PREDICT.run(
            compose_config("predict", [f"ckpt_path={int8_export / name}", f"input={images}"], out)
        )
        outputs[name] = json.loads((out / "predict.json").read_text())
        rows = (out / "predictions.csv").read_text().splitlines()
        assert len(rows) == 13  # a header and the 12 test images
    assert outputs["model.int8.onnx"]["backend"] == "onnx"
    assert outputs["model.int8.onnx"]["threshold"] == outputs["model.onnx"]["threshold"]
    served = load_detector(
        compose_config("serve", [f"ckpt_path={int8_export / 'model.int8.onnx'}"], tmp_path)
    )
    batch = torch.zeros(2, 3, 32, 32)
    assert served.score(batch).shape == (2,)


def test_predict_with_an_export_needs_neither_lightning_nor_the_checkpoint(
    int8_export: Path, tiny_run: Path, tmp_path: Path
) -> None:
    """An exported model predicts in a process that never imports Lightning, torchmetrics or
    torchvision (which imports torch._dynamo): about a second of its start. Each line once."""
    out = tmp_path / "predict"
    images = tiny_run.parent / "data" / "test"
    code = textwrap.dedent(
        f"""
        import sys
        from deepfake_detection.commands import PREDICT
        sys.argv = ["deepfake-predict", "ckpt_path={int8_export / "model.int8.onnx"}",
                    "input={images}", "hydra.run.dir={out}"]
        try:
            PREDICT.cli()
        finally:
            print("imported:", sorted({{"lightning", "torchmetrics", "torchvision"}}
                                       & set(sys.modules)))
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "imported: []" in run.stdout
    assert json.loads((out / "predict.json").read_text())["images"] == 12
    assert "INFO:" not in run.stdout + run.stderr


def test_a_quantization_that_loses_accuracy_is_refused(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_runner = quantize.onnx_runner

    def broken_int8(path: Path, *args, **kwargs):
        runner = real_runner(path, *args, **kwargs)
        if path.name != quantize.INT8_FILE:
            return runner
        return lambda batch: 1 - runner(batch)  # every ranking reversed

    monkeypatch.setattr(quantize, "onnx_runner", broken_int8)
    with pytest.raises(ExportError) as refused:
        run_export(tiny_run, tmp_path, "quantize=int8")
    message = str(refused.value)
    assert message.startswith("quantize=int8 refused: on the run's test split (12 images)")
    assert "against" in message and "for the float model" in message
    assert not (tmp_path / "model.int8.onnx").exists()
    assert not (tmp_path / "model.int8.json").exists()
    assert (tmp_path / "model.onnx").is_file()  # the float export stands


def test_dynamic_quantization_needs_no_calibration(tiny_run: Path, tmp_path: Path) -> None:
    run_export(tiny_run, tmp_path, "quantize=int8", "quantization.method=dynamic", *LOOSE)
    spec = json.loads((tmp_path / "model.int8.json").read_text())
    assert spec["quantization"]["method"] == "dynamic"
    assert spec["quantization"]["calibration_images"] == 0


def test_int8_needs_onnx_and_the_runs_test_split(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="quantize=int8: an INT8 model is written with format"):
        run_export(tiny_run, tmp_path / "a", "quantize=int8", "format=torch_export")
    # The training run's dataset is gone: nothing to calibrate on, nothing to check on.
    monkeypatch.setattr(quantize, "labelled_split", lambda data, split: [])
    monkeypatch.setattr(quantize, "split_images", lambda data, split, count: [])
    with pytest.raises(ExportError, match="validation images, which are not available"):
        run_export(tiny_run, tmp_path / "b", "quantize=int8", *LOOSE)
    with pytest.raises(ExportError, match="test split is needed to check the INT8 model"):
        run_export(tiny_run, tmp_path / "c", "quantize=int8", "quantization.method=dynamic")
    assert not (tmp_path / "c" / "model.int8.onnx").exists()


def test_evaluate_scores_an_exported_model_as_it_ships(
    int8_export: Path, tiny_run: Path, tmp_path: Path
) -> None:
    trained = json.loads((tiny_run / "metrics.json").read_text())
    results = {}
    for name in ("model.onnx", "model.int8.onnx"):
        EVALUATE.run(
            compose_config("evaluate", [f"ckpt_path={int8_export / name}"], tmp_path / name)
        )
        results[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    float_metrics, int8_metrics = results["model.onnx"], results["model.int8.onnx"]
    # The float export on the run's own test split: the training run's numbers.
    assert float_metrics["test/auroc"] == pytest.approx(trained["test/auroc"], abs=1e-4)
    assert (
        float_metrics["protocol"]["data"]["fingerprint"]
        == (trained["protocol"]["data"]["fingerprint"])
    )
    check = json.loads((int8_export / "model.int8.json").read_text())["quantization"]["check"]
    assert int8_metrics["test/auroc"] == pytest.approx(check["int8"]["auroc"], abs=1e-6)
    assert int8_metrics["quantization"]["type"] == "int8"
    assert int8_metrics["protocol"]["checkpoint"]["rule"] == "an exported model"
    assert set(int8_metrics["operating_points"]) >= {"val", "val_fpr:0.01"}
    with pytest.raises(ConfigError, match="perturbations are applied with a checkpoint"):
        EVALUATE.run(
            compose_config(
                "evaluate",
                [f"ckpt_path={int8_export / 'model.onnx'}", "perturb=jpeg"],
                tmp_path / "perturbed",
            )
        )
