"""`deepfake-export format=onnx quantize=int8`: an 8-bit model, trusted only once it has been
checked against the float one on the run's test split.

CPU deployments of MobileNet-class models run 8-bit: weights and activations as integers,
about twice the throughput of float32 on ONNX Runtime. Static quantization (ONNX Runtime's
QDQ format, weights per channel) fixes each activation's range from calibration images, here
the training run's validation images; dynamic quantization (weights only, activation ranges
measured per batch) is the fallback where static cannot be applied. Quantization can cost
accuracy, so the result is scored on the run's test split beside the float model and kept
only when its AUROC and its accuracy at the validation threshold stay within the limits
(`quantization.max_auroc_drop`, `quantization.max_acc_drop`); otherwise the command refuses
with both sets of numbers.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.detector.file_scoring import score_files
from deepfake_detection.detector.formats import (
    Runner,
    embed_onnx_metadata,
    failure_reason,
    onnx_runner,
)
from deepfake_detection.detector.parity import labelled_split, split_images
from deepfake_detection.detector.spec import INPUT_NAME, ExportError, ExportSpec
from deepfake_detection.exporting.settings import QuantizationSettings
from deepfake_detection.metrics.binary import compute_metrics

log = logging.getLogger(__name__)

#: The INT8 model's file, beside the float `model.onnx` (its spec: `model.int8.json`).
INT8_FILE = "model.int8.onnx"
#: Calibration images per batch fed to ONNX Runtime's calibrator.
CALIBRATION_BATCH = 16


class _Calibration:
    """ONNX Runtime's `CalibrationDataReader`: the validation images, a batch at a time."""

    def __init__(self, inputs: np.ndarray) -> None:
        self.inputs, self.start = inputs, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.start >= len(self.inputs):
            return None
        batch = self.inputs[self.start : self.start + CALIBRATION_BATCH]
        self.start += CALIBRATION_BATCH
        return {INPUT_NAME: batch}

    def rewind(self) -> None:
        self.start = 0


def calibration_inputs(
    data: dict[str, Any], preprocessing: Preprocessing, count: int
) -> np.ndarray:
    """Up to `count` preprocessed images of the training run's validation split, both
    classes alike (every other one), as the exported model takes them."""
    tensors = []
    for path in split_images(data, "val", count):
        try:
            tensors.append(preprocessing.file(path).numpy())
        except Exception as err:  # a bad file is not needed to calibrate
            log.info("calibration: %s left out (%s)", path, failure_reason(err))
    if not tensors:
        raise ExportError(
            "quantize=int8 calibrates on the training run's validation images, which are not "
            "available (the dataset moved or is gone); use quantization.method=dynamic"
        )
    return np.ascontiguousarray(np.stack(tensors), dtype=np.float32)


def _quantize_static(source: Path, target: Path, inputs: np.ndarray, calibrate: str) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    with tempfile.TemporaryDirectory(prefix="quantize-", dir=target.parent) as folder:
        prepared = Path(folder) / "prepared.onnx"
        # Shape inference and graph clean-up first, as ONNX Runtime recommends.
        quant_pre_process(str(source), str(prepared))
        quantize_static(
            str(prepared),
            str(target),
            _Calibration(inputs),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[calibrate],
            extra_options={"CalibTensorRangeSymmetric": False},
        )


def _quantize_dynamic(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def quantize_file(
    source: Path, target: Path, settings: QuantizationSettings, inputs: np.ndarray | None
) -> str:
    """Write the INT8 model of `source` to `target`; returns the method used (`static`, or
    `dynamic` when asked or when static fails under `method=auto`)."""
    if settings.method in ("auto", "static"):
        try:
            assert inputs is not None
            _quantize_static(source, target, inputs, settings.calibrate)
            return "static"
        except Exception as err:
            if settings.method == "static":
                raise ExportError(
                    f"quantize=int8: static quantization failed ({failure_reason(err)}); "
                    "quantization.method=dynamic quantizes the weights only"
                ) from None
            log.warning(
                "static quantization failed (%s): quantizing the weights only (dynamic)",
                failure_reason(err),
            )
    try:
        _quantize_dynamic(source, target)
    except Exception as err:
        raise ExportError(f"quantize=int8: quantization failed ({failure_reason(err)})") from None
    return "dynamic"


def _scores(
    runner: Runner, preprocessing: Preprocessing, samples: list[tuple[Path, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """P(Fake) and labels of the readable files of `samples`."""
    labels = {str(path): label for path, label in samples}
    scored, _ = score_files(runner, preprocessing, [p for p, _ in samples], 32, 0, "skip", None)
    probs = torch.tensor([s.prob for s in scored], dtype=torch.float32)
    targets = torch.tensor([labels[s.name] for s in scored])
    return probs, targets


def accuracy_check(
    float_file: Path,
    int8_file: Path,
    data: dict[str, Any],
    preprocessing: Preprocessing,
    threshold: float,
    settings: QuantizationSettings,
) -> dict[str, Any]:
    """Both models on the run's test split: AUROC and accuracy at `threshold` (the
    validation threshold), and whether the INT8 model stays within the limits."""
    samples = labelled_split(data, "test")
    if not samples or len({label for _, label in samples}) < 2:
        raise ExportError(
            "quantize=int8: the training run's test split is needed to check the INT8 model "
            "against the float one, and it is not available (the dataset moved or is gone)"
        )
    numbers: dict[str, Any] = {"images": 0, "threshold": threshold}
    for name, path in (("float", float_file), ("int8", int8_file)):
        started = time.perf_counter()
        probs, targets = _scores(onnx_runner(path), preprocessing, samples)
        metrics = compute_metrics(probs, targets, threshold)
        numbers[name] = {"auroc": metrics["auroc"], "acc": metrics["acc"]}
        numbers["images"] = len(probs)
        log.info(
            "%s model on the test split: AUROC %.4f, acc %.4f at %.4g (%.1f s)",
            name,
            metrics["auroc"],
            metrics["acc"],
            threshold,
            time.perf_counter() - started,
        )
    auroc_drop = numbers["float"]["auroc"] - numbers["int8"]["auroc"]
    acc_change = abs(numbers["float"]["acc"] - numbers["int8"]["acc"])
    numbers.update(
        auroc_drop=auroc_drop,
        acc_change=acc_change,
        passed=auroc_drop <= settings.max_auroc_drop and acc_change <= settings.max_acc_drop,
        limits={"max_auroc_drop": settings.max_auroc_drop, "max_acc_drop": settings.max_acc_drop},
    )
    return numbers


def _refusal(numbers: dict[str, Any]) -> str:
    f, q = numbers["float"], numbers["int8"]
    return (
        f"quantize=int8 refused: on the run's test split ({numbers['images']} images) the INT8 "
        f"model has AUROC {q['auroc']:.4f} and accuracy {q['acc']:.4f} at the validation "
        f"threshold {numbers['threshold']:.4g}, against {f['auroc']:.4f} and {f['acc']:.4f} "
        f"for the float model (limits: AUROC down by at most "
        f"{numbers['limits']['max_auroc_drop']:g}, accuracy within "
        f"{numbers['limits']['max_acc_drop']:g}); the float model.onnx is kept. Try "
        "quantization.calibrate=percentile or entropy, or more quantization.calibration_images"
    )


def export_int8(
    float_file: Path,
    spec: ExportSpec,
    data: dict[str, Any],
    preprocessing: Preprocessing,
    settings: QuantizationSettings,
) -> tuple[Path, ExportSpec]:
    """Quantize the checked float export `float_file` into `model.int8.onnx` with its spec,
    after the accuracy check; on a refusal or failure no INT8 file is left behind."""
    target = float_file.with_name(INT8_FILE)
    inputs = None
    if settings.method != "dynamic":
        inputs = calibration_inputs(data, preprocessing, settings.calibration_images)
    started = time.perf_counter()
    try:
        method = quantize_file(float_file, target, settings, inputs)
        log.info("quantized (%s) in %.1f s", method, time.perf_counter() - started)
        numbers = accuracy_check(float_file, target, data, preprocessing, spec.threshold, settings)
        if not numbers["passed"]:
            raise ExportError(_refusal(numbers))
        quantized = replace(
            spec,
            parity={**spec.parity, "model": f"{float_file.name} (float), before quantization"},
            quantization={
                "type": "int8",
                "method": method,
                "calibration_images": 0 if inputs is None else len(inputs),
                "calibrate": settings.calibrate if method == "static" else None,
                "float_model": float_file.name,
                "check": numbers,
            },
        )
        embed_onnx_metadata(target, quantized.embedded())
        return target, quantized
    except BaseException:
        target.unlink(missing_ok=True)
        raise
