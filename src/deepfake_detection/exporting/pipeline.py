"""`deepfake-export`: a trained checkpoint → model file + `model.json`, checked for parity."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

import deepfake_detection
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.evaluation.pipeline import ReadyModel, split_name
from deepfake_detection.exporting.formats import (
    WRITERS,
    ProbabilityModel,
    Runner,
    embed_onnx_metadata,
    load_runner,
)
from deepfake_detection.exporting.parity import TOLERANCES, check_parity, parity_inputs
from deepfake_detection.exporting.spec import MODEL_FILES, ExportError, ExportSpec
from deepfake_detection.models.base import BaseDetector
from deepfake_detection.validation import validate_export_config

log = logging.getLogger(__name__)


def reference_probs(
    model: torch.nn.Module, inputs: torch.Tensor, temperature: float
) -> torch.Tensor:
    """P(Fake) as `predict` computes it: the detector's own forward, in float32."""
    with torch.no_grad():
        return torch.sigmoid(model(inputs).float() / temperature)


def write_checked(
    model: BaseDetector, temperature: float, fmt: str, model_file: Path, inputs: torch.Tensor
) -> tuple[Runner, float]:
    """Write `model` as `fmt` and load it back; returns (its runner, the largest |ΔP(Fake)|
    against PyTorch on `inputs`). A failed parity check deletes the file and raises."""
    module = ProbabilityModel(model, temperature).eval()
    try:
        WRITERS[fmt](module, inputs[: max(2, min(len(inputs), 4))], model_file)
    except ExportError:
        raise
    except Exception as err:
        reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
        raise ExportError(f"format={fmt}: export failed ({type(err).__name__}: {reason})") from None
    runner = load_runner(model_file, fmt)
    reference = reference_probs(model, inputs, temperature)
    try:
        difference = max(
            check_parity(fmt, reference, runner(inputs)),  # the whole batch
            check_parity(fmt, reference[:1], runner(inputs[:1])),  # and one image alone
        )
    except ExportError:
        model_file.unlink(missing_ok=True)
        raise
    return runner, difference


def onnx_runner_for(ready: ReadyModel, preprocessing: Preprocessing, output_dir: Path) -> Runner:
    """`ready`'s model as ONNX in `output_dir`, checked on its run's test images: the
    `backend=onnx` of `predict` and the service."""
    inputs, where = parity_inputs(ready.data, "test", 8, preprocessing)
    model_file = output_dir / MODEL_FILES["onnx"]
    model_file.parent.mkdir(parents=True, exist_ok=True)
    model = ready.model.cpu().eval()
    runner, difference = write_checked(model, ready.temperature or 1.0, "onnx", model_file, inputs)
    log.info(
        "backend=onnx: %s, max |ΔP(Fake)| %.3g against PyTorch on %s", model_file, difference, where
    )
    return runner


def export(cfg: DictConfig) -> dict[str, Any]:
    """Write the model in `cfg.format`, check it against PyTorch, write its spec."""
    validate_export_config(cfg)
    fmt = str(cfg.format)
    output_dir = Path(cfg.paths.output_dir)
    ready = ReadyModel.load(cfg)
    ckpt_file, data, temperature = ready.ckpt_file, ready.data, ready.temperature
    threshold, rule = ready.threshold, ready.rule
    model = ready.model.cpu().eval()
    preprocessing = Preprocessing.of_data(data)
    split = split_name(cfg.parity.split)
    inputs, where = parity_inputs(data, split, int(cfg.parity.images), preprocessing)

    output_dir.mkdir(parents=True, exist_ok=True)
    model_file = output_dir / MODEL_FILES[fmt]
    log.info("exporting %s (%s) to %s", ckpt_file, model.model_name, model_file)
    _, difference = write_checked(model, temperature or 1.0, fmt, model_file, inputs)
    spec = ExportSpec(
        format=fmt,
        model=model.model_name,
        preprocessing=preprocessing.describe(),
        threshold=threshold,
        threshold_rule=rule,
        temperature=temperature,
        source_checkpoint=str(ckpt_file.resolve()),
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
    if fmt == "onnx":
        embed_onnx_metadata(model_file, spec.embedded())
    spec_path = spec.save(model_file)
    size_mb = model_file.stat().st_size / 1e6
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
    log.info("serve it: deepfake-serve ckpt_path=%s", model_file if fmt == "onnx" else ckpt_file)
    return {"model_file": str(model_file), "spec_file": str(spec_path), **spec.parity}
