"""A trained detector, ready to score: from a run dir, a `.ckpt`, `model.onnx` or `model.pt2`.

`TrainedCheckpoint` is a checkpoint's detector with its temperature and threshold chosen (what
`predict` and `export` start from); `TrainedDetector` adds the preprocessing and a scoring
function on the chosen backend, whatever the source (what `predict backend=onnx` and the
service score with). Both load once, so a bad file stops a command with one line.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader, Dataset

import deepfake_detection
from deepfake_detection.data.demo import default_cache_dir
from deepfake_detection.data.images import BadImageError
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.data.scan import BadFile, stop_on_bad_image
from deepfake_detection.detector.decision import CheckpointSource, Decision
from deepfake_detection.detector.decision import decide as decide_on
from deepfake_detection.detector.formats import Runner, load_runner, torch_runner
from deepfake_detection.detector.image_scoring import (
    ImageInputs,
    ScoredImage,
    image_inputs,
    per_image,
    verdict_rule,
)
from deepfake_detection.detector.loading import (
    load_checkpoint,
    rebuild_detector,
    resolve_checkpoint,
    saved_data_arguments,
)
from deepfake_detection.detector.parity import parity, parity_inputs, write_checked
from deepfake_detection.detector.scoring import scoring_trainer
from deepfake_detection.detector.spec import MODEL_FILES, ExportError, ExportSpec, sha256_of
from deepfake_detection.errors import ConfigError, UserInputError
from deepfake_detection.faces.settings import DEFAULT_WARN_SMALL_FACE
from deepfake_detection.faces.stage import NoFaceError
from deepfake_detection.metrics.threshold_rules import parse_rule
from deepfake_detection.models.base import BaseDetector

log = logging.getLogger(__name__)

#: Exported files accepted as `ckpt_path`, and the format of each.
EXPORT_FORMATS = {".onnx": "onnx", ".pt2": "torch_export"}


def exported_copy(ckpt_file: Path, temperature: float) -> Path:
    """Where `backend=onnx` keeps a checkpoint's ONNX model between runs: keyed on the
    checkpoint's bytes, the temperature and the versions that write the file."""
    key = hashlib.sha256(
        f"{sha256_of(ckpt_file)}|{temperature!r}|{deepfake_detection.__version__}|"
        f"{torch.__version__}".encode()
    ).hexdigest()[:24]
    return default_cache_dir() / "onnx" / key / MODEL_FILES["onnx"]


@dataclass
class TrainedCheckpoint:
    """A checkpoint's detector with its temperature and threshold chosen."""

    ckpt_file: Path
    run_dir: Path | None
    checkpoint: dict[str, Any]
    model: BaseDetector
    #: The training run's data settings (`DeepfakeDataModule` arguments).
    data: dict[str, Any]
    trainer: L.Trainer
    #: The command's config: its `threshold` and `calibration` decide.
    cfg: DictConfig
    decision: Decision | None = None

    @property
    def decided(self) -> Decision:
        if self.decision is None:
            raise RuntimeError("the checkpoint's threshold has not been chosen: call decide()")
        return self.decision

    @property
    def threshold(self) -> float:
        return self.decided.threshold

    @property
    def rule(self) -> str:
        return self.decided.rule

    @property
    def temperature(self) -> float | None:
        return self.decided.temperature

    @classmethod
    def load(cls, cfg: DictConfig, logger: Any = False, decide: bool = True) -> TrainedCheckpoint:
        """Load `cfg.ckpt_path`; apply `cfg.calibration` and `cfg.threshold` unless `decide`
        is false (then call `decide()` once the scored data has been checked)."""
        ckpt_file, run_dir = resolve_checkpoint(cfg.ckpt_path)
        checkpoint = load_checkpoint(ckpt_file)
        model = rebuild_detector(checkpoint, ckpt_file)
        data = saved_data_arguments(checkpoint, ckpt_file, run_dir)
        trainer = scoring_trainer(cfg.trainer, checkpoint, logger)
        trained = cls(ckpt_file, run_dir, checkpoint, model, data, trainer, cfg)
        if decide:
            trained.decide()
        return trained

    def decide(self, points: bool | None = None) -> Decision:
        """Choose the temperature and threshold (on the training run's validation split), and
        the validation operating points: always with `points`, never with `points=False`,
        and when None only if the validation scores are saved beside the checkpoint."""
        source = CheckpointSource(
            self.cfg, self.checkpoint, self.ckpt_file, self.run_dir, self.trainer, self.model
        )
        self.decision = decide_on(source, points)
        return self.decision

    def onnx_runner(self, preprocessing: Preprocessing, output_dir: Path) -> Runner:
        """The model as ONNX, checked against PyTorch on its run's test images: the
        `backend=onnx` of `predict` and the service. Exported once per checkpoint (and
        temperature) into the user cache and reused while it still passes the check;
        into `output_dir` when the cache cannot be written."""
        inputs, where = parity_inputs(self.data, "test", 8, preprocessing)
        model = self.model.cpu().eval()
        divisor = self.decided.divisor
        cached = exported_copy(self.ckpt_file, divisor)
        if cached.is_file():
            try:
                runner = load_runner(cached, "onnx")
                difference = parity("onnx", model, divisor, runner, inputs)
            except ExportError as err:
                log.info("backend=onnx: exporting again: %s", err)
            else:
                log.info(
                    "backend=onnx: %s, exported before; max |ΔP(Fake)| %.3g against PyTorch on %s",
                    cached,
                    difference,
                    where,
                )
                return runner
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            model_file = cached
        except OSError:
            model_file = output_dir / MODEL_FILES["onnx"]
            model_file.parent.mkdir(parents=True, exist_ok=True)
        staged = model_file.with_name(f".{model_file.name}.{os.getpid()}.onnx")
        runner, difference = write_checked(model, divisor, "onnx", staged, inputs)
        os.replace(staged, model_file)  # whole or not at all, even beside another process
        log.info(
            "backend=onnx: %s, max |ΔP(Fake)| %.3g against PyTorch on %s",
            model_file,
            difference,
            where,
        )
        return runner  # its session holds the model: the rename does not touch it


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


class _InputsOrReason(Dataset):
    """Each file's model inputs (one per face with the face stage), or the reason it gives
    none: one decoding pass, in the DataLoader's workers."""

    def __init__(
        self, files: list[Path], preprocessing: Preprocessing, warn_small_face: float | None
    ) -> None:
        self.files, self.preprocessing = files, preprocessing
        self.warn_small_face = warn_small_face

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[ImageInputs | None, int, str, bool]:
        """(inputs, index, "", False), or (None, index, the reason, whether it is only that
        the image has no face, under `face.on_missing=skip`)."""
        path = self.files[index]
        try:
            image = self.preprocessing.decode_file(path)
            given = image_inputs(self.preprocessing, image, path, self.warn_small_face)
            return given, index, "", False
        except BadImageError as err:
            return None, index, err.reason, isinstance(err, NoFaceError)


def _collate(items: list[tuple[ImageInputs | None, int, str, bool]]):
    good = [(given, index) for given, index, _, _ in items if given is not None]
    bad = [(index, reason, faceless) for given, index, reason, faceless in items if given is None]
    tensors = [tensor for given, _ in good for tensor in given.inputs]
    return (torch.stack(tensors) if tensors else None), good, bad


def score_files(
    score: Runner,
    preprocessing: Preprocessing,
    files: list[Path],
    batch_size: int,
    num_workers: int,
    on_bad_image: str,
    warn_small_face: float | None = DEFAULT_WARN_SMALL_FACE,
) -> tuple[list[ScoredImage], list[BadFile]]:
    """(each scored file's verdict and faces, the files skipped) by `score`: decoded, face
    cropped and scored in one pass, DataLoader workers preparing while the model scores;
    bad files (and, under `face.on_missing=skip`, faceless ones) are counted as they turn
    up, or stop the pass under `on_bad_image=error`."""
    loader = DataLoader(
        _InputsOrReason(files, preprocessing, warn_small_face),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    verdict = verdict_rule(preprocessing)
    scored: list[ScoredImage] = []
    skipped: list[BadFile] = []
    for batch, good, bad in loader:
        for index, reason, faceless in bad:
            if on_bad_image == "error" and not faceless:  # a faceless image is not a bad one
                raise stop_on_bad_image(files[index], reason)
            skipped.append((str(files[index]), reason))
        probs = score(batch).tolist() if batch is not None else []
        for (given, index), own in zip(good, per_image(probs, [g for g, _ in good]), strict=True):
            scored.append(ScoredImage.of(str(files[index]), given, own, verdict))
    if skipped:
        log.warning("skipped %d file(s), e.g. %s: %s", len(skipped), *skipped[0])
    return scored, skipped


def device_runner(model: BaseDetector, temperature: float, trainer: L.Trainer) -> Runner:
    """The detector's forward on the device and precision the command's `trainer.*` chose:
    P(Fake) in float32 on the CPU."""
    device = trainer.strategy.root_device
    model = model.to(device).eval()

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), trainer.precision_plugin.forward_context():
            logits = model(batch.to(device))
        return torch.sigmoid(logits.float() / temperature).cpu()

    return run


def _for_command(cfg: DictConfig, preprocessing: Preprocessing) -> Preprocessing:
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


def with_operating_point(cfg: DictConfig) -> DictConfig:
    """`operating_point=<rule>` replaces `threshold` (a checkpoint computes any rule); a
    threshold left null (the service's "the model's own") is `val` for a checkpoint."""
    point = cfg.get("operating_point")
    if point is None and cfg.get("threshold") is not None:
        return cfg
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.threshold = str(point) if point is not None else "val"
    return cfg


def from_checkpoint(cfg: DictConfig, backend: str) -> TrainedDetector:
    """`cfg.ckpt_path` (run dir or `.ckpt`) on `backend`: `torch`, or `onnx` (exported into
    the command's output dir and checked for parity first)."""
    trained = TrainedCheckpoint.load(with_operating_point(cfg))
    model = trained.model.cpu().eval()
    preprocessing = _for_command(cfg, Preprocessing.of_data(trained.data))
    if backend == "onnx":
        score = trained.onnx_runner(preprocessing, Path(cfg.paths.output_dir))
    else:
        score = torch_runner(model, trained.decided.divisor)
    return TrainedDetector(
        model_name=model.model_name,
        backend=backend,
        source=str(trained.ckpt_file),
        preprocessing=preprocessing,
        threshold=trained.threshold,
        threshold_rule=trained.rule,
        temperature=trained.temperature,
        score=score,
        detector=model,
        operating_points=trained.decided.operating_points,
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


def from_export(cfg: DictConfig, path: Path, backend: str | None) -> TrainedDetector:
    """An exported `model.onnx` / `model.pt2` with the spec written beside it."""
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
        preprocessing=_for_command(cfg, Preprocessing.from_description(spec.preprocessing)),
        threshold=threshold,
        threshold_rule=rule,
        temperature=spec.temperature,
        score=load_runner(path, fmt),
        detector=_explainer_from(spec),
        extra={"sha256": spec.sha256},
        operating_points=spec.operating_points,
    )


def load_detector(cfg: DictConfig) -> TrainedDetector:
    """`cfg.ckpt_path` (run dir, .ckpt, model.onnx or model.pt2) on `cfg.backend`."""
    path = Path(str(cfg.ckpt_path)).expanduser()
    backend = cfg.get("backend")
    if path.suffix.lower() in EXPORT_FORMATS:
        return from_export(cfg, path, backend)
    return from_checkpoint(cfg, backend or "torch")
