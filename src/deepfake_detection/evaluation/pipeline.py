"""Checkpoint + any Fake/Real dataset → metrics.json, per-image scores and figures."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from deepfake_detection.config import auto_precision
from deepfake_detection.console import is_terminal
from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.data.discovery import SPLIT_ALIASES
from deepfake_detection.data.layout import split_children
from deepfake_detection.data.scan import write_skipped_files
from deepfake_detection.data.splitting import SPLIT_LISTS_DIR, read_split_lists
from deepfake_detection.errors import ConfigError, UserInputError
from deepfake_detection.evaluation.best_checkpoint import PREDICTIONS_DIR
from deepfake_detection.evaluation.checkpoint import (
    load_checkpoint,
    rebuild_detector,
    resolve_checkpoint,
    saved_data_arguments,
)
from deepfake_detection.evaluation.figures import (
    dataset_distribution_figure,
    per_source_figure,
    prediction_figures,
    save_figures,
)
from deepfake_detection.evaluation.inference import score_split
from deepfake_detection.evaluation.per_source import FIGURE_NAME as PER_SOURCE_FIGURE
from deepfake_detection.evaluation.per_source import report_per_source
from deepfake_detection.evaluation.summary import evaluate_summary
from deepfake_detection.files import METRICS_FILE, read_json, write_json
from deepfake_detection.metrics.calibration import (
    apply_temperature,
    fit_temperature,
    moved_threshold,
)
from deepfake_detection.metrics.predictions import Predictions
from deepfake_detection.metrics.threshold import THRESHOLD_RULE, youden_threshold
from deepfake_detection.models.base import BaseDetector

log = logging.getLogger(__name__)

#: `data.*` keys of `evaluate` that replace the training run's values when not null.
DATA_OVERRIDES = (
    "root",
    "image_size",
    "batch_size",
    "num_workers",
    "class_aliases",
    "source_depth",
    "split_lists",
)
#: The subset that only says how to read images, so it applies to the training run's own
#: validation split too (`threshold=val`).
READING_OVERRIDES = ("num_workers", "on_bad_image", "max_image_pixels")


def _given(overrides: DictConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: overrides[k] for k in keys if overrides.get(k) is not None}


def split_name(value: str) -> str:
    for split, aliases in SPLIT_ALIASES.items():
        if str(value).lower() in (split, *aliases):
            return split
    raise ConfigError(f"data.split={value}: choose one of: {', '.join(SPLIT_ALIASES)}")


def scoring_datamodule(
    train_data: dict[str, Any], overrides: DictConfig, split: str, perturb: Any = None
) -> DeepfakeDataModule:
    """The training run's data settings, with the given overrides, reading only `split`."""
    data = {**train_data, **_given(overrides, DATA_OVERRIDES + READING_OVERRIDES)}
    required = [split]
    if same_folder(overrides.get("root"), train_data.get("root")):
        if is_flat_root(train_data.get("root")):
            # The training run's own flat root: split as in training (pinned by its recorded
            # file lists when it has them), not scored whole.
            required = list(dict.fromkeys(["train", "test", split]))
    elif overrides.get("split_lists") is None:
        # Another dataset: the training run's file lists name files of its own.
        data["split_lists"] = None
    perturb = OmegaConf.to_container(perturb) if OmegaConf.is_config(perturb) else perturb
    return DeepfakeDataModule(
        **{**data, "required_splits": required, "used_splits": [split], "perturb": perturb}
    )


def is_flat_root(root: str | None) -> bool:
    """Whether `root` has class folders but no split folders (a demo set never does)."""
    if root in (None, "") or not Path(root).expanduser().is_dir():
        return False
    return not split_children(Path(root).expanduser())


def same_folder(given: str | None, trained: str | None) -> bool:
    """Whether `data.root=given` is the training run's root (or not given at all)."""
    if given in (None, ""):
        return True
    if trained in (None, ""):
        return False
    return Path(given).expanduser().resolve() == Path(trained).expanduser().resolve()


def warn_about_training_files(
    run_dir: Path | None, datamodule: DeepfakeDataModule, split: str
) -> None:
    """Warn when another root holds files at the paths of the run's recorded training files.

    That is what the training run's flat dataset looks like after being moved or copied:
    scored whole, its training images would inflate every metric.
    """
    lists_dir = run_dir / SPLIT_LISTS_DIR if run_dir is not None else None
    if datamodule.split_lists or lists_dir is None or not (lists_dir / "train.txt").is_file():
        return
    trained = set(read_split_lists(lists_dir).get("train", []))
    index = datamodule.index
    scored = [path.relative_to(index.root).as_posix() for path, _ in index.splits[split]]
    overlap = sum(1 for path in scored if path in trained)
    if overlap:
        log.warning(
            "%d of the %d scored files have the paths of this run's training images: if "
            "%s is the training data moved, give data.split_lists=%s to score its recorded "
            "%s split",
            overlap,
            len(scored),
            index.root,
            lists_dir,
            split,
        )


def scoring_precision(cfg: DictConfig, checkpoint: dict[str, Any]) -> str:
    """The given precision; else the training run's when it is full precision (it runs on any
    device and reproduces the run's numbers); else the automatic choice for this machine."""
    if cfg.trainer.get("precision") is not None:
        return str(cfg.trainer.precision)
    trained = str(checkpoint["config"].get("trainer", {}).get("precision", ""))
    return trained if trained in {"32-true", "32", "64-true", "64"} else auto_precision()


def scoring_trainer(cfg: DictConfig, checkpoint: dict[str, Any], logger: Any = False) -> L.Trainer:
    """A Trainer that only scores: the device the user asked for, no checkpoints written."""
    return L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        precision=scoring_precision(cfg, checkpoint),
        logger=logger,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=is_terminal(),
        # The data module's loaders give each process its own images, each scored once.
        use_distributed_sampler=False,
    )


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


def _is_best_of_run(run_dir: Path | None, ckpt_file: Path) -> bool:
    """Whether `ckpt_file` is the best checkpoint its training run tested and reported on."""
    if run_dir is None:
        return False
    best = read_json(run_dir / METRICS_FILE).get("best/checkpoint")
    return bool(best) and (run_dir / best).resolve() == ckpt_file.resolve()


def training_validation_scores(source: CheckpointSource) -> Predictions:
    """P(Fake) of the training run's own validation split, as `model` scores it now.

    Read once: training saved them for its best checkpoint; otherwise the split is scored
    with the training run's data settings (not the overrides of this command). A temperature
    set since is applied to them, which needs no second pass.
    """
    if source.raw_validation is None:
        source.raw_validation = _raw_validation_scores(source)
    raw, temperature = source.raw_validation, source.model.score_temperature
    if temperature == 1.0:
        return raw
    return Predictions(apply_temperature(raw.probs, temperature), raw.targets, raw.paths)


def _raw_validation_scores(source: CheckpointSource) -> Predictions:
    run_dir, model = source.run_dir, source.model
    saved = run_dir / PREDICTIONS_DIR / "val.csv" if run_dir is not None else None
    if saved and saved.is_file() and _is_best_of_run(run_dir, source.ckpt_file):
        return Predictions.load_csv(saved)
    train_data = saved_data_arguments(source.checkpoint, source.ckpt_file, run_dir)
    train_data.update(_given(source.cfg.data, READING_OVERRIDES), used_splits=["val"])
    temperature, model.score_temperature = model.score_temperature, 1.0
    try:
        datamodule = DeepfakeDataModule(**train_data)
        return score_split(source.trainer, model, datamodule, "val", log_metrics=False)
    except UserInputError as err:
        raise ConfigError(f"the training run's validation split failed: {err}") from None
    finally:
        model.score_temperature = temperature


def calibrate(source: CheckpointSource) -> float | None:
    """`calibration=temperature`: fit T on the training run's validation split (never on the
    scored labels) and make the model divide its logit by it. None without calibration."""
    if source.cfg.get("calibration", "none") == "none":
        return None
    scores = training_validation_scores(source)
    try:
        temperature = fit_temperature(scores.probs, scores.targets)
    except ValueError as err:
        raise ConfigError(f"calibration=temperature: {err} in the validation split") from None
    source.model.score_temperature = temperature
    log.info(
        "calibration=temperature: T = %.4f, fitted on %d validation images",
        temperature,
        len(scores),
    )
    return temperature


def choose_threshold(source: CheckpointSource) -> tuple[float, str]:
    """(threshold, how it was chosen). `val` never looks at the evaluated labels."""
    value = source.cfg.threshold
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"threshold={value}: must be in [0, 1], or `val`")
        return float(value), "fixed"
    if value != "val":
        raise ConfigError(f"threshold={value}: must be a number in [0, 1], or `val`")
    run_dir = source.run_dir
    stored = read_json(run_dir / METRICS_FILE).get("val/threshold") if run_dir else None
    if stored is not None and _is_best_of_run(run_dir, source.ckpt_file):
        threshold = moved_threshold(stored, source.model.score_temperature)
        log.info(
            "threshold=val: %.6f, chosen on validation when this checkpoint was trained", threshold
        )
        return threshold, THRESHOLD_RULE
    scores = training_validation_scores(source)
    try:
        threshold = youden_threshold(scores.probs, scores.targets)
    except ValueError as err:
        raise ConfigError(
            f"threshold=val needs the training run's validation split, which failed: {err}"
        ) from None
    log.info("threshold=val: %.6f, Youden's J on the training run's validation split", threshold)
    return threshold, THRESHOLD_RULE


@dataclass
class ReadyModel:
    """A checkpoint's detector with its temperature and threshold chosen: what `predict`,
    `export` and the service start from."""

    ckpt_file: Path
    run_dir: Path | None
    checkpoint: dict[str, Any]
    model: BaseDetector
    #: The training run's data settings (`DeepfakeDataModule` arguments).
    data: dict[str, Any]
    trainer: L.Trainer
    threshold: float
    rule: str
    temperature: float | None

    @classmethod
    def load(cls, cfg: DictConfig) -> ReadyModel:
        """Load `cfg.ckpt_path`; apply `cfg.calibration` and `cfg.threshold`."""
        ckpt_file, run_dir = resolve_checkpoint(cfg.ckpt_path)
        checkpoint = load_checkpoint(ckpt_file)
        model = rebuild_detector(checkpoint, ckpt_file)
        data = saved_data_arguments(checkpoint, ckpt_file, run_dir)
        trainer = scoring_trainer(cfg, checkpoint)
        source = CheckpointSource(cfg, checkpoint, ckpt_file, run_dir, trainer, model)
        temperature = calibrate(source)
        threshold, rule = choose_threshold(source)
        return cls(
            ckpt_file, run_dir, checkpoint, model, data, trainer, threshold, rule, temperature
        )


@dataclass
class ScoringJob:
    """A checkpoint's model, one split of a dataset, a scoring Trainer and its threshold:
    what every command that scores a labelled split starts from."""

    output_dir: Path
    split: str
    ckpt_file: Path
    model: BaseDetector
    datamodule: DeepfakeDataModule
    trainer: L.Trainer
    logger: TensorBoardLogger
    threshold: float
    rule: str
    #: The fitted temperature under `calibration=temperature`, else None.
    temperature: float | None

    @classmethod
    def start(cls, cfg: DictConfig) -> ScoringJob:
        """Load `cfg.ckpt_path`, index and check `cfg.data.split`, choose the threshold."""
        output_dir = Path(cfg.paths.output_dir)
        split = split_name(cfg.data.split)
        ckpt_file, run_dir = resolve_checkpoint(cfg.ckpt_path)
        checkpoint = load_checkpoint(ckpt_file)
        model = rebuild_detector(checkpoint, ckpt_file)
        datamodule = scoring_datamodule(
            saved_data_arguments(checkpoint, ckpt_file, run_dir),
            cfg.data,
            split,
            cfg.get("perturb"),
        )
        log.info("checkpoint: %s (%s)", ckpt_file, model.model_name)
        log.info("data: %s", datamodule.describe())  # indexes and checks every image
        warn_about_training_files(run_dir, datamodule, split)
        write_skipped_files(output_dir, datamodule.skipped)
        logger = TensorBoardLogger(str(output_dir), name="tensorboard", version="")
        trainer = scoring_trainer(cfg, checkpoint, logger)
        source = CheckpointSource(cfg, checkpoint, ckpt_file, run_dir, trainer, model)
        temperature = calibrate(source)
        threshold, rule = choose_threshold(source)
        return cls(
            output_dir,
            split,
            ckpt_file,
            model,
            datamodule,
            trainer,
            logger,
            threshold,
            rule,
            temperature,
        )


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score one split of a dataset with a trained checkpoint; returns the metrics written."""
    job = ScoringJob.start(cfg)
    output_dir, split, model, datamodule = job.output_dir, job.split, job.model, job.datamodule
    trainer, logger, threshold, rule = job.trainer, job.logger, job.threshold, job.rule
    if rule != "fixed" and split == "val" and cfg.data.get("root") is None:
        log.warning("threshold=val on the validation split: these metrics are optimistic")
    model.test_threshold = threshold
    predictions = score_split(trainer, model, datamodule, split)
    predictions.save_csv(output_dir / "predictions" / f"{split}.csv")

    figures = prediction_figures(predictions, threshold)
    figures["dataset_distribution"] = dataset_distribution_figure(datamodule.index.counts())
    per_source = report_per_source(
        output_dir, predictions, datamodule.index, split, threshold, rule
    )
    if per_source is not None:
        figures[PER_SOURCE_FIGURE] = per_source_figure(per_source)
    save_figures(figures, output_dir, logger.experiment)

    metrics = {
        **model.test_results,
        "threshold": threshold,
        "threshold/rule": rule,
        "checkpoint": str(job.ckpt_file),
        "model": model.model_name,
        "data/root": str(datamodule.index.root),
        "data/split": split,
        "perturb": datamodule.perturbation.label,
        "calibration": cfg.get("calibration", "none"),
        "temperature": job.temperature,
        "data/images": len(predictions),
        "data/image_size": datamodule.image_size,
        "data/skipped": len(datamodule.skipped),
    }
    if per_source is not None:
        metrics["per_source"] = per_source
    write_json(output_dir / METRICS_FILE, metrics)
    log.info(evaluate_summary(metrics, split, output_dir))
    return metrics
