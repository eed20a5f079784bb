"""How a trained checkpoint decides: its temperature (`calibration=`) and threshold (`threshold=`).

Both are chosen on the training run's validation split, never on the images being scored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.data.split_fingerprint import split_fingerprint
from deepfake_detection.detector.loading import saved_data_arguments
from deepfake_detection.detector.scoring import score_split
from deepfake_detection.errors import ConfigError, UserInputError
from deepfake_detection.files import METRICS_FILE, PREDICTIONS_DIR, read_json
from deepfake_detection.metrics.calibration import (
    apply_temperature,
    fit_temperature,
    moved_threshold,
)
from deepfake_detection.metrics.operating_points import threshold_for, validation_points
from deepfake_detection.metrics.predictions import Predictions
from deepfake_detection.metrics.threshold_rules import STANDARD_RULES, describe_rule, parse_rule
from deepfake_detection.models.base import BaseDetector

log = logging.getLogger(__name__)

#: The subset of `data.*` that only says how to read images, so it applies to the training
#: run's own validation split too (`threshold=val`).
READING_OVERRIDES = ("num_workers", "on_bad_image", "max_image_pixels")


def given(overrides: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The `keys` of a command's `data` node that are set (not null)."""
    return {k: overrides[k] for k in keys if overrides.get(k) is not None}


@dataclass
class CheckpointSource:
    """A checkpoint being scored, with what choosing its threshold or temperature needs:
    the command's config, the loaded checkpoint and its run dir, the scoring Trainer."""

    cfg: DictConfig
    checkpoint: dict[str, Any]
    ckpt_file: Path
    run_dir: Path | None
    trainer: L.Trainer
    model: BaseDetector
    #: The validation scores of `model` before any temperature, once they have been read.
    raw_validation: Predictions | None = None


@dataclass(frozen=True)
class Decision:
    """A checkpoint's decision rule: P(Fake) = sigmoid(logit / temperature) > threshold."""

    threshold: float
    #: How the threshold was chosen: `fixed` or the validation rule.
    rule: str
    #: The fitted temperature under `calibration=temperature`, else None (1).
    temperature: float | None
    #: {rule: threshold, validation FPR and TPR} of the standard operating points, on
    #: scores at this temperature; None when they were not computed.
    operating_points: dict[str, dict[str, Any]] | None = None
    #: The validation files they were chosen on (root, fingerprint, class counts).
    validation: dict[str, Any] | None = None

    @property
    def divisor(self) -> float:
        return self.temperature or 1.0


def is_best_of_run(run_dir: Path | None, ckpt_file: Path) -> bool:
    """Whether `ckpt_file` is the best checkpoint its training run tested and reported on."""
    if run_dir is None:
        return False
    best = read_json(run_dir / METRICS_FILE).get("best/checkpoint")
    return bool(best) and (run_dir / best).resolve() == ckpt_file.resolve()


def training_validation_scores(source: CheckpointSource, temperature: float = 1.0) -> Predictions:
    """P(Fake) of the training run's own validation split, as `model` scores it at
    `temperature`.

    Read once: training saved them for its best checkpoint; otherwise the split is scored
    with the training run's data settings (not the overrides of this command). A temperature
    is applied to the raw scores, which needs no second pass.
    """
    if source.raw_validation is None:
        source.raw_validation = _raw_validation_scores(source)
    raw = source.raw_validation
    if temperature == 1.0:
        return raw
    return Predictions(apply_temperature(raw.probs, temperature), raw.targets, raw.paths)


def _raw_validation_scores(source: CheckpointSource) -> Predictions:
    run_dir = source.run_dir
    saved = run_dir / PREDICTIONS_DIR / "val.csv" if run_dir is not None else None
    if saved and saved.is_file() and is_best_of_run(run_dir, source.ckpt_file):
        return Predictions.load_csv(saved)
    train_data = saved_data_arguments(source.checkpoint, source.ckpt_file, run_dir)
    train_data.update(given(source.cfg.data, READING_OVERRIDES), used_splits=["val"])
    try:
        datamodule = DeepfakeDataModule(**train_data)
        scored = score_split(source.trainer, source.model, datamodule, "val", log_metrics=False)
    except UserInputError as err:
        raise ConfigError(f"the training run's validation split failed: {err}") from None
    return scored.predictions


def calibrate(source: CheckpointSource) -> float | None:
    """`calibration=temperature`: fit T on the training run's validation split (never on the
    scored labels). None without calibration."""
    if source.cfg.get("calibration", "none") == "none":
        return None
    scores = training_validation_scores(source)
    try:
        temperature = fit_temperature(scores.probs, scores.targets)
    except ValueError as err:
        raise ConfigError(f"calibration=temperature: {err} in the validation split") from None
    log.info(
        "calibration=temperature: T = %.4f, fitted on %d validation images",
        temperature,
        len(scores),
    )
    return temperature


def _stored_youden(source: CheckpointSource, temperature: float) -> float | None:
    """`threshold=val` as training chose it for its best checkpoint (no file read twice)."""
    run_dir = source.run_dir
    stored = read_json(run_dir / METRICS_FILE).get("val/threshold") if run_dir else None
    if stored is None or not is_best_of_run(run_dir, source.ckpt_file):
        return None
    return moved_threshold(stored, temperature)


def choose_threshold(source: CheckpointSource, temperature: float = 1.0) -> tuple[float, str]:
    """(threshold, the rule that chose it: `fixed`, `val`, `val_fpr:0.01`, ...) for scores at
    `temperature`. A validation rule never looks at the evaluated labels."""
    rule = parse_rule(source.cfg.threshold)
    if rule.kind == "fixed":
        return float(rule.value), "fixed"
    if rule.kind == "val":
        stored = _stored_youden(source, temperature)
        if stored is not None:
            log.info(
                "threshold=val: %.6f, chosen on validation when this checkpoint was trained",
                stored,
            )
            return stored, rule.name
    scores = training_validation_scores(source, temperature)
    try:
        threshold = threshold_for(rule, scores.probs, scores.targets)
    except ValueError as err:
        raise ConfigError(
            f"threshold={rule.name} needs the training run's validation split, which failed: {err}"
        ) from None
    log.info(
        "threshold=%s: %.6f, %s on the training run's validation split",
        rule.name,
        threshold,
        describe_rule(rule),
    )
    return threshold, rule.name


def validation_is_at_hand(source: CheckpointSource) -> bool:
    """Whether the validation scores are read already or saved beside the checkpoint, so the
    operating points cost no scoring pass."""
    if source.raw_validation is not None:
        return True
    run_dir = source.run_dir
    saved = run_dir / PREDICTIONS_DIR / "val.csv" if run_dir is not None else None
    return bool(saved and saved.is_file() and is_best_of_run(run_dir, source.ckpt_file))


def operating_points(
    source: CheckpointSource, temperature: float, chosen: str | None = None
) -> dict[str, dict[str, Any]] | None:
    """The standard operating points (and `chosen`, when it is another validation rule) on
    the training run's validation split at `temperature`: each one's threshold and its
    validation FPR and TPR. None, with a warning, when the validation split cannot be read
    or lacks a class."""
    rules = tuple(STANDARD_RULES)
    if chosen not in (None, "fixed"):
        rules += (parse_rule(chosen).name,)
    try:
        scores = training_validation_scores(source, temperature)
        return validation_points(scores.probs, scores.targets, rules)
    except (UserInputError, ValueError) as err:
        log.warning("no validation operating points: %s", err)
        return None


def validation_record(source: CheckpointSource) -> dict[str, Any] | None:
    """Which validation files the threshold and operating points were chosen on, when their
    scores were read: as training recorded them for its best checkpoint (wherever the
    dataset is now), else fingerprinted from the files the scores name."""
    scores = source.raw_validation
    if scores is None:
        return None
    run_dir = source.run_dir
    if is_best_of_run(run_dir, source.ckpt_file):
        recorded = read_json(run_dir / METRICS_FILE).get("protocol", {}).get("validation")
        if isinstance(recorded, dict):
            return recorded
    root = saved_data_arguments(source.checkpoint, source.ckpt_file, source.run_dir).get("root")
    if not root:
        return None
    samples = [
        (Path(path), int(label))
        for path, label in zip(scores.paths, scores.targets.tolist(), strict=True)
    ]
    return {"root": str(root), "split": "val", **split_fingerprint(root, samples)}


def decide(source: CheckpointSource, points: bool | None = None) -> Decision:
    """Apply the command's `calibration` and `threshold` to the checkpoint, with the
    validation operating points when `points` is true, or when None and they are at hand."""
    temperature = calibrate(source)
    threshold, rule = choose_threshold(source, temperature or 1.0)
    wanted = validation_is_at_hand(source) if points is None else points
    found = operating_points(source, temperature or 1.0, rule) if wanted else None
    return Decision(threshold, rule, temperature, found, validation_record(source))
