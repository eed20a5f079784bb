"""The detector a scoring command holds, and loading it from whatever the user gives.

`TrainedDetector` is a model ready to score preprocessed batches, with how to preprocess
images and decide on their scores: what `predict`, `evaluate` on an export and the service
use. `load_detector` makes one from a run dir or `.ckpt` (through `trained.py`, with
Lightning) or from an exported `model.onnx` / `model.int8.onnx` / `model.pt2` and the spec
beside it. An export needs neither Lightning nor the checkpoint, so this module imports
neither: predicting with an exported model starts about a second sooner.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

import deepfake_detection
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.detector.formats import Runner, load_runner
from deepfake_detection.detector.spec import ExportSpec, sha256_of
from deepfake_detection.errors import ConfigError, UserInputError
from deepfake_detection.metrics.threshold_rules import parse_rule

if TYPE_CHECKING:
    from deepfake_detection.models.base import BaseDetector

log = logging.getLogger(__name__)

#: Exported files accepted as `ckpt_path`, and the format of each.
EXPORT_FORMATS = {".onnx": "onnx", ".pt2": "torch_export"}


@dataclass
class TrainedDetector:
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
    #: {rule: threshold, validation FPR and TPR}: the thresholds a request may choose.
    operating_points: dict[str, dict[str, Any]] | None = None

    def label(self, prob: float) -> str:
        return "Fake" if prob > self.threshold else "Real"

    def threshold_of(self, operating_point: str | None) -> float:
        """The threshold of a named operating point (None: the one in use); `ConfigError`
        names the ones there are."""
        if operating_point is None or operating_point == self.threshold_rule:
            return self.threshold
        return point_threshold(self.operating_points, operating_point, self.source)

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
            "operating_points": self.operating_points or {},
            "package_version": deepfake_detection.__version__,
            **self.extra,
        }


def for_command(cfg: DictConfig, preprocessing: Preprocessing) -> Preprocessing:
    """The model's preprocessing with the command's `data.max_image_pixels` and `face.*`."""
    given = cfg.get("data", {}).get("max_image_pixels")
    if given is not None:
        preprocessing = replace(preprocessing, max_pixels=int(given))
    face = cfg.get("face")
    return preprocessing.with_face(OmegaConf.to_container(face) if face is not None else None)


def point_threshold(
    points: dict[str, dict[str, Any]] | None, name: str, source: str | Path
) -> float:
    """The threshold of operating point `name` among `points`; a `ConfigError` lists them."""
    wanted = parse_rule(name).name
    if points and wanted in points:
        return float(points[wanted]["threshold"])
    known = ", ".join(points or {}) or "none recorded (an export made before they were)"
    raise ConfigError(f"operating_point={name}: {source} has no such point; it has: {known}")


#: Rule names older exports recorded, and what they are called now.
LEGACY_RULES = {"youden_j": "val"}


def export_decision(spec: ExportSpec, asked: Any, path: Path) -> tuple[float, str]:
    """(threshold, rule) of an exported model: its own unless `asked` (a number, or one of
    the operating points it recorded; its own rule by name gives its own threshold)."""
    own = LEGACY_RULES.get(spec.threshold_rule, spec.threshold_rule)
    if asked is None:
        return spec.threshold, own
    wanted = parse_rule(asked)
    if wanted.kind == "fixed":
        return float(wanted.value), "fixed"
    if wanted.name == own:
        return spec.threshold, own
    return point_threshold(spec.operating_points, wanted.name, path), wanted.name


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
    from deepfake_detection.detector.loading import load_checkpoint, rebuild_detector

    try:
        detector = rebuild_detector(load_checkpoint(path), path)
    except UserInputError as err:
        log.warning("Grad-CAM is off: %s", err)
        return None
    return detector.cpu().eval()


def from_export(
    cfg: DictConfig, path: Path, backend: str | None, explain: bool = True
) -> TrainedDetector:
    """An exported `model.onnx` / `model.pt2` with the spec written beside it; with
    `explain`, its source checkpoint too (for Grad-CAM), when it is still there."""
    if cfg.get("calibration", "none") != "none":
        raise ConfigError(
            f"calibration={cfg.calibration}: an exported model has its temperature built in; "
            "export it with calibration=temperature instead"
        )
    fmt = EXPORT_FORMATS[path.suffix.lower()]
    if backend not in (None, "onnx" if fmt == "onnx" else "torch"):
        raise ConfigError(
            f"backend={backend}: ckpt_path={path} is a {fmt} file; "
            f"use backend={'onnx' if fmt == 'onnx' else 'torch'} or leave backend unset"
        )
    spec = ExportSpec.load(path)
    threshold, rule = export_decision(
        spec, cfg.get("operating_point") or cfg.get("threshold"), path
    )
    return TrainedDetector(
        model_name=spec.model,
        backend=fmt,
        source=str(path),
        preprocessing=for_command(cfg, Preprocessing.from_description(spec.preprocessing)),
        threshold=threshold,
        threshold_rule=rule,
        temperature=spec.temperature,
        score=load_runner(path, fmt),
        detector=_explainer_from(spec) if explain else None,
        extra={"sha256": spec.sha256},
        operating_points=spec.operating_points,
    )


def load_detector(cfg: DictConfig, explain: bool = True) -> TrainedDetector:
    """`cfg.ckpt_path` (run dir, .ckpt, model.onnx or model.pt2) on `cfg.backend`. Without
    `explain`, an export's source checkpoint is not loaded (nothing will draw Grad-CAM)."""
    path = Path(str(cfg.ckpt_path)).expanduser()
    backend = cfg.get("backend")
    if path.suffix.lower() in EXPORT_FORMATS:
        return from_export(cfg, path, backend, explain)
    from deepfake_detection.detector.trained import from_checkpoint  # Lightning: only here

    return from_checkpoint(cfg, backend or "torch")
