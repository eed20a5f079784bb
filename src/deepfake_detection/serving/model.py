"""What the service scores with: a checkpoint (PyTorch or ONNX Runtime) or an exported file.

Loaded once, before the server starts, so a bad checkpoint stops start-up with one line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

import deepfake_detection
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.errors import ConfigError, UserInputError
from deepfake_detection.evaluation.checkpoint import load_checkpoint, rebuild_detector
from deepfake_detection.evaluation.pipeline import ReadyModel
from deepfake_detection.exporting.formats import Runner, load_runner, torch_runner
from deepfake_detection.exporting.pipeline import onnx_runner_for
from deepfake_detection.exporting.spec import ExportSpec, sha256_of
from deepfake_detection.models.base import BaseDetector

log = logging.getLogger(__name__)

#: Exported files the service accepts as `ckpt_path`, and the backend each one runs on.
EXPORT_BACKENDS = {".onnx": "onnx", ".pt2": "torch_export"}


@dataclass
class ServedModel:
    """A model ready to score preprocessed batches, with how to preprocess and decide."""

    model_name: str
    backend: str
    source: str
    preprocessing: Preprocessing
    threshold: float
    threshold_rule: str
    temperature: float | None
    score: Runner
    #: The PyTorch detector for Grad-CAM, when its checkpoint is at hand; else None.
    detector: BaseDetector | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def label(self, prob: float) -> str:
        return "Fake" if prob > self.threshold else "Real"

    def info(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "backend": self.backend,
            "source": self.source,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "temperature": self.temperature,
            "image_size": self.preprocessing.image_size,
            "preprocessing": self.preprocessing.describe(),
            "classes": {"0": "Real", "1": "Fake"},
            "positive_class": "Fake",
            "explain": self.detector is not None,
            "package_version": deepfake_detection.__version__,
            **self.extra,
        }


def _max_pixels(cfg: DictConfig, preprocessing: Preprocessing) -> Preprocessing:
    given = cfg.get("data", {}).get("max_image_pixels")
    return preprocessing if given is None else replace(preprocessing, max_pixels=int(given))


def _from_checkpoint(cfg: DictConfig, backend: str) -> ServedModel:
    ready = ReadyModel.load(cfg)
    model = ready.model.cpu().eval()
    temperature = ready.temperature or 1.0
    preprocessing = _max_pixels(cfg, Preprocessing.of_data(ready.data))
    if backend == "onnx":  # exported into this command's output dir, checked for parity
        score = onnx_runner_for(ready, preprocessing, Path(cfg.paths.output_dir))
    else:
        score = torch_runner(model, temperature)
    return ServedModel(
        model_name=model.model_name,
        backend=backend,
        source=str(ready.ckpt_file),
        preprocessing=preprocessing,
        threshold=ready.threshold,
        threshold_rule=ready.rule,
        temperature=ready.temperature,
        score=score,
        detector=model,
    )


def _explainer_from(spec: ExportSpec) -> BaseDetector | None:
    """The export's source checkpoint as a PyTorch detector (for Grad-CAM), if it still loads."""
    path = Path(spec.source_checkpoint)
    if not path.is_file():
        log.info("Grad-CAM is off: the export's source checkpoint %s is gone", path)
        return None
    if spec.source_sha256 and sha256_of(path) != spec.source_sha256:
        log.warning(
            "Grad-CAM is off: %s changed since the export, its heatmaps would not match", path
        )
        return None
    try:
        detector = rebuild_detector(load_checkpoint(path), path)
    except UserInputError as err:
        log.warning("Grad-CAM is off: %s", err)
        return None
    return detector.cpu().eval()


def _from_export(cfg: DictConfig, path: Path, backend: str | None) -> ServedModel:
    fmt = EXPORT_BACKENDS[path.suffix.lower()]
    if backend not in (None, "onnx" if fmt == "onnx" else "torch"):
        raise ConfigError(
            f"backend={backend}: ckpt_path={path} is a {fmt} file; "
            f"use backend={'onnx' if fmt == 'onnx' else 'torch'} or leave backend unset"
        )
    spec = ExportSpec.load(path)
    threshold, rule = spec.threshold, spec.threshold_rule
    if cfg.threshold != "val":
        threshold, rule = float(cfg.threshold), "fixed"
    return ServedModel(
        model_name=spec.model,
        backend=fmt,
        source=str(path),
        preprocessing=_max_pixels(cfg, Preprocessing.from_description(spec.preprocessing)),
        threshold=threshold,
        threshold_rule=rule,
        temperature=spec.temperature,
        score=load_runner(path, fmt),
        detector=_explainer_from(spec),
        extra={"sha256": spec.sha256},
    )


def load_served_model(cfg: DictConfig) -> ServedModel:
    """`cfg.ckpt_path` (run dir, .ckpt, model.onnx or model.pt2) on `cfg.backend`."""
    path = Path(str(cfg.ckpt_path)).expanduser()
    backend = cfg.get("backend")
    if path.suffix.lower() in EXPORT_BACKENDS:
        if cfg.get("calibration", "none") != "none":
            raise ConfigError(
                f"calibration={cfg.calibration}: an exported model has its temperature built in; "
                "export it with calibration=temperature instead"
            )
        return _from_export(cfg, path, backend)
    return _from_checkpoint(cfg, backend or "torch")
