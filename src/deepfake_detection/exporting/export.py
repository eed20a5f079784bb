"""`deepfake-export`: a trained checkpoint → model file + `model.json`, checked for parity."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

import deepfake_detection
from deepfake_detection.data.discovery import split_name
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.detector.formats import embed_onnx_metadata, load_runner
from deepfake_detection.detector.parity import TOLERANCES, parity, parity_inputs, write_checked
from deepfake_detection.detector.spec import MODEL_FILES, ExportError, ExportSpec, sha256_of
from deepfake_detection.detector.trained import TrainedCheckpoint
from deepfake_detection.exporting.quantize import export_int8
from deepfake_detection.exporting.settings import QuantizationSettings
from deepfake_detection.models import registry
from deepfake_detection.reports.protocol import (
    checkpoint_record,
    preprocessing_record,
    protocol_record,
)

log = logging.getLogger(__name__)


def _quantized(
    model_file: Path,
    spec: ExportSpec,
    data: dict[str, Any],
    preprocessing: Preprocessing,
    settings: QuantizationSettings,
) -> dict[str, Any]:
    """`quantize=int8`: model.int8.onnx and its spec beside the checked float model."""
    int8_file, int8_spec = export_int8(model_file, spec, data, preprocessing, settings)
    int8_spec_path = int8_spec.save(int8_file)
    check = int8_spec.quantization["check"]
    log.info(
        "INT8 (%s): %s (%.1f MB) and %s; on the test split AUROC %.4f (float %.4f), acc "
        "%.4f (float %.4f) at the validation threshold",
        int8_spec.quantization["method"],
        int8_file,
        int8_file.stat().st_size / 1e6,
        int8_spec_path.name,
        check["int8"]["auroc"],
        check["float"]["auroc"],
        check["int8"]["acc"],
        check["float"]["acc"],
    )
    return {"int8_file": str(int8_file), "int8_spec_file": str(int8_spec_path), "check": check}


def export(cfg: DictConfig) -> dict[str, Any]:
    """Write the model in `cfg.format`, check it against PyTorch, write its spec."""
    fmt = str(cfg.format)
    output_dir = Path(cfg.paths.output_dir)
    trained = TrainedCheckpoint.load(cfg, decide=False)
    decision = trained.decide(points=True)
    ckpt_file, data, temperature = trained.ckpt_file, trained.data, trained.temperature
    threshold, rule = trained.threshold, trained.rule
    model = trained.model.cpu().eval()
    preprocessing = Preprocessing.of_data(data)
    split = split_name(cfg.parity.split)
    inputs, where = parity_inputs(data, split, int(cfg.parity.images), preprocessing)

    output_dir.mkdir(parents=True, exist_ok=True)
    model_file = output_dir / MODEL_FILES[fmt]
    log.info("exporting %s (%s) to %s", ckpt_file, model.model_name, model_file)
    _, difference = write_checked(model, temperature or 1.0, fmt, model_file, inputs)
    spec = ExportSpec(
        format=fmt,
        model=registry.of(model).name,
        preprocessing=preprocessing.describe(),
        threshold=threshold,
        threshold_rule=rule,
        temperature=temperature,
        source_checkpoint=str(ckpt_file.resolve()),
        source_sha256=sha256_of(ckpt_file),
        operating_points=decision.operating_points,
        protocol=protocol_record(
            data=decision.validation,
            preprocessing=preprocessing_record(preprocessing),
            checkpoint=checkpoint_record(ckpt_file, trained.run_dir, trained.checkpoint),
            threshold={"rule": rule, "value": threshold},
            calibration={"method": cfg.get("calibration", "none"), "temperature": temperature},
            perturbation="clean",
            backbone_library=model.backbone_library,
        ),
        package_version=deepfake_detection.__version__,
        torch_version=torch.__version__,
        parity={
            "images": len(inputs),
            "source": where,
            "max_abs_diff": difference,
            "tolerance": TOLERANCES[fmt],
            "reference": "PyTorch, float32, CPU",
        },
    )
    inner = getattr(model.net, "weights_normalisation", None)
    if inner is not None:
        # The input stays ImageNet-normalised; the network maps it to its weights' own.
        spec.input = {**spec.input, "renormalised_inside_to": inner}
    if fmt == "onnx":
        embed_onnx_metadata(model_file, spec.embedded())
        # What ships is the rewritten file: check that one again.
        try:
            parity(fmt, model, temperature or 1.0, load_runner(model_file, fmt), inputs)
        except ExportError:
            model_file.unlink(missing_ok=True)
            raise
    spec_path = spec.save(model_file)
    size_mb = model_file.stat().st_size / 1e6
    result = {"model_file": str(model_file), "spec_file": str(spec_path), **spec.parity}
    if cfg.get("quantize", "none") == "int8":
        settings = QuantizationSettings.of(cfg.get("quantization"))
        result.update(_quantized(model_file, spec, data, preprocessing, settings))
    log.info(
        "parity: max |ΔP(Fake)| = %.3g on %s (tolerance %g)", difference, where, TOLERANCES[fmt]
    )
    log.info(
        "exported %s: %s (%.1f MB) and %s; threshold %.6g (%s)",
        fmt,
        model_file,
        size_mb,
        spec_path.name,
        threshold,
        rule,
    )
    served = result.get("int8_file") or (model_file if fmt == "onnx" else ckpt_file)
    log.info("serve it: deepfake-serve ckpt_path=%s", served)
    return result
