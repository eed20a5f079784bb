"""A checkpoint's detector, ready to score: from a run dir or a `.ckpt`.

`TrainedCheckpoint` is a checkpoint's detector with its temperature and threshold chosen (what
`predict` and `export` start from); `from_checkpoint` makes it the `TrainedDetector` a scoring
command holds, on the chosen backend (`exported_model.py` makes one from an exported file).
Both load once, so a bad file stops a command with one line.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, open_dict

import deepfake_detection
from deepfake_detection.data.demo import default_cache_dir
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.detector.decision import CheckpointSource, Decision
from deepfake_detection.detector.decision import decide as decide_on
from deepfake_detection.detector.exported_model import TrainedDetector, for_command
from deepfake_detection.detector.formats import Runner, load_runner, torch_runner
from deepfake_detection.detector.loading import (
    load_checkpoint,
    rebuild_detector,
    resolve_checkpoint,
    saved_data_arguments,
)
from deepfake_detection.detector.parity import parity, parity_inputs, write_checked
from deepfake_detection.detector.scoring import scoring_trainer
from deepfake_detection.detector.spec import MODEL_FILES, ExportError, sha256_of
from deepfake_detection.models.base import BaseDetector

log = logging.getLogger(__name__)


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
    preprocessing = for_command(cfg, Preprocessing.of_data(trained.data))
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
