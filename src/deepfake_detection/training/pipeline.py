"""Config → datamodule/model → trainer → metrics and artifacts, for one run."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from deepfake_detection.checkpoints import SafeAtomicCheckpointIO
from deepfake_detection.data.datamodule import auto_num_workers
from deepfake_detection.data.scan import write_skipped_files
from deepfake_detection.evaluation.figures import (
    dataset_distribution_figure,
    learning_curves_figure,
    prediction_figures,
    save_figures,
)
from deepfake_detection.evaluation.inference import score_split
from deepfake_detection.evaluation.predictions import Predictions
from deepfake_detection.evaluation.threshold import THRESHOLD_RULE, youden_threshold
from deepfake_detection.files import (
    METRICS_FILE,
    RESOLVED_CONFIG_FILE,
    atomic_write_bytes,
    read_json,
    write_json,
)
from deepfake_detection.training.artifacts import save_state_dict
from deepfake_detection.training.callbacks import (
    ConfigInCheckpoint,
    EpochSeeding,
    InterruptCheckpoint,
    RelocatedRunDir,
    RestoredEarlyStop,
    TrainingClock,
    last_epoch_checkpoint,
)
from deepfake_detection.training.hparams import log_hparams, run_hparams
from deepfake_detection.training.resume import LAST_CHECKPOINT, ResumePlan, resumed_config
from deepfake_detection.validation import validate_train_config

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.pth"
PREDICTIONS_DIR = "predictions"


def _callbacks(cfg: DictConfig, resolved: dict, resume: ResumePlan | None) -> list[Callback]:
    callbacks: list[Callback] = [
        instantiate(cfg.checkpoint),  # first: the one `trainer.checkpoint_callback` returns
        last_epoch_checkpoint(str(Path(cfg.paths.output_dir) / LAST_CHECKPOINT.parent)),
        ConfigInCheckpoint(resolved),
    ]
    if cfg.get("early_stopping"):
        callbacks.append(instantiate(cfg.early_stopping))
    if resume is not None:
        callbacks += [RelocatedRunDir(resume.old_dir, resume.run_dir), RestoredEarlyStop()]
    return callbacks


def _relative(path: str, start: Path) -> str:
    """`path` relative to the run dir when inside it, so the run dir can be moved."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(start.resolve()))
    except ValueError:
        return str(resolved)


def _val_threshold(predictions: Predictions) -> float | None:
    """Youden's J threshold on validation scores; None when validation lacks a class."""
    try:
        return youden_threshold(predictions.probs, predictions.targets)
    except ValueError as err:
        log.warning("no validation threshold: %s", err)
        return None


def _command_line_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, and write `model.pth` and `metrics.json`.

    Returns the value of `cfg.optimized_metric`, which a Hydra sweeper maximises.
    """
    validate_train_config(cfg)  # every key, before anything is built or written
    resume = None
    if cfg.get("resume"):
        resume = resumed_config(cfg, _command_line_overrides())
        cfg = resume.cfg
        validate_train_config(cfg)
        if resume.finished:
            log.info("%s had finished: its metrics are in %s", resume.run_dir, METRICS_FILE)
            return read_json(Path(resume.run_dir) / METRICS_FILE).get(cfg.optimized_metric or "")
        # It trains again: until it ends, it is an unfinished run (which a resume continues).
        (Path(resume.run_dir) / METRICS_FILE).unlink(missing_ok=True)
    output_dir = Path(cfg.paths.output_dir)
    if cfg.data.get("num_workers") is None:
        # Record the count used: worker seeds follow it, so a resume elsewhere reuses it.
        cfg.data.num_workers = auto_num_workers()
    # Hydra saves the config with its interpolations; store the values this run really used
    # (environment variables, automatic defaults) so the run dir documents itself.
    resolved = OmegaConf.to_container(cfg, resolve=True)
    atomic_write_bytes(output_dir / RESOLVED_CONFIG_FILE, OmegaConf.to_yaml(resolved).encode())
    L.seed_everything(cfg.seed, workers=True)

    clock, notice = TrainingClock(), InterruptCheckpoint(str(output_dir))
    with notice.guard():  # Ctrl+C while images are checked: the run dir can be resumed too
        datamodule = instantiate(cfg.data)
        log.info("data: %s", datamodule.describe())  # indexes and checks every image
        write_skipped_files(output_dir, datamodule.skipped)
        model = instantiate(cfg.model)
    counts = model.parameter_counts()
    log.info(
        "model: %s, freeze=%s, params trainable %d / total %d",
        model.model_name,
        model.freeze_spec.name,
        counts["params/trainable"],
        counts["params/total"],
    )

    callbacks = [*_callbacks(cfg, resolved, resume), EpochSeeding(cfg.seed), clock, notice]
    checkpoint = next(cb for cb in callbacks if isinstance(cb, ModelCheckpoint))
    logger = instantiate(cfg.logger)
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger, plugins=[SafeAtomicCheckpointIO()]
    )
    if resume is None:
        logger.log_metrics({k: float(v) for k, v in counts.items()}, step=0)

    with notice.guard():
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume.checkpoint if resume else None)
    train_seconds = clock.seconds
    # Read from the metric's state, which a resumed fit restores even with nothing left to do.
    best_auroc = float(model.val_auroc_best.max_value)
    val_auroc_best = best_auroc if best_auroc != float("-inf") else None
    history = dict(model.history)  # loading the best checkpoint below rewinds it

    best_path = checkpoint.best_model_path or None
    if best_path is None:
        log.warning("no best checkpoint was saved (e.g. fast_dev_run): testing current weights")
    with notice.guard():
        test_predictions = score_split(trainer, model, datamodule, "test", ckpt_path=best_path)
        test_metrics = model.test_results
        # Same weights, validation split: its scores choose the `threshold=val` of `evaluate`.
        val_predictions = score_split(trainer, model, datamodule, "val", log_metrics=False)
    save_state_dict(output_dir / WEIGHTS_FILE, model.net)
    for split, predictions in (("test", test_predictions), ("val", val_predictions)):
        predictions.save_csv(output_dir / PREDICTIONS_DIR / f"{split}.csv")

    figures = {
        **prediction_figures(test_predictions, model.test_threshold),
        "learning_curves": learning_curves_figure(history),
        "dataset_distribution": dataset_distribution_figure(datamodule.index.counts()),
    }
    save_figures(figures, output_dir, getattr(logger, "experiment", None), trainer.global_step)

    best_score = checkpoint.best_model_score
    metrics = {
        **test_metrics,
        "val/auroc_best": val_auroc_best,
        "val/threshold": _val_threshold(val_predictions),
        "val/threshold_rule": THRESHOLD_RULE,
        "best/monitor": checkpoint.monitor,
        "best/score": float(best_score) if best_score is not None else None,
        "best/checkpoint": _relative(best_path, output_dir) if best_path else None,
        "epochs": trainer.current_epoch,
        "train_seconds": round(train_seconds, 3),
        "data/skipped": len(datamodule.skipped),
        **counts,
        "hparams": run_hparams(cfg, model, datamodule.image_size),
    }
    log_hparams(logger, metrics["hparams"], metrics)
    write_json(output_dir / METRICS_FILE, metrics)
    log.info("test metrics of the best checkpoint: %s", test_metrics)
    log.info("outputs in %s", output_dir)
    return metrics.get(cfg.get("optimized_metric") or "")
