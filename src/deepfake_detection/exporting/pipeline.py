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
    failure_reason,
    load_runner,
    temporary_path,
    torch_runner,
)
from deepfake_detection.exporting.parity import TOLERANCES, check_parity, parity_inputs
from deepfake_detection.exporting.spec import MODEL_FILES, ExportError, ExportSpec, sha256_of
from deepfake_detection.models.base import BaseDetector

log = logging.getLogger(__name__)


def write_checked(
    model: BaseDetector, temperature: float, fmt: str, model_file: Path, inputs: torch.Tensor
) -> tuple[Runner, float]:
    """Write `model` as `fmt` and load it back; returns (its runner, the largest |ΔP(Fake)|
    against PyTorch on `inputs`). On any failure no file is left behind."""
    module = ProbabilityModel(model, temperature).eval()
    # torch.export specialises a dimension whose example size is 1: give it two images.
    example = inputs[:4] if len(inputs) >= 2 else inputs.repeat(2, 1, 1, 1)
    try:
        try:
            WRITERS[fmt](module, example, model_file)
        except ExportError:
            raise
        except Exception as err:
            raise ExportError(f"format={fmt}: export failed ({failure_reason(err)})") from None
        runner = load_runner(model_file, fmt)
        return runner, parity(fmt, model, temperature, runner, inputs)
    except BaseException:
        for leftover in (model_file, temporary_path(model_file)):
            leftover.unlink(missing_ok=True)
        raise


def parity(
    fmt: str, model: BaseDetector, temperature: float, runner: Runner, inputs: torch.Tensor
) -> float:
    """Largest |ΔP(Fake)| between `runner` and PyTorch, for the whole batch and one image."""
    reference = torch_runner(model, temperature)(inputs)
    return max(
        check_parity(fmt, reference, runner(inputs)),
        check_parity(fmt, reference[:1], runner(inputs[:1])),
    )


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
        source_sha256=sha256_of(ckpt_file),
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
        # What ships is the rewritten file: check that one again.
        try:
            parity(fmt, model, temperature or 1.0, load_runner(model_file, fmt), inputs)
        except ExportError:
            model_file.unlink(missing_ok=True)
            raise
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
