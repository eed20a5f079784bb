"""Config → datamodule/model → `trainer.fit`, for one run (`final_test` then tests its best
checkpoint)."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.utils.deterministic
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from deepfake_detection.checkpoint_io import (
    BackgroundCheckpointIO,
    SafeAtomicCheckpointIO,
    safe_torch_load,
)
from deepfake_detection.console import is_first_process, show_progress_bar
from deepfake_detection.data.datamodule import DeepfakeDataModule, auto_num_workers
from deepfake_detection.data.scan import write_skipped_files
from deepfake_detection.data.splitting import SPLIT_LISTS_DIR, write_split_lists
from deepfake_detection.files import (
    METRICS_FILE,
    RESOLVED_CONFIG_FILE,
    atomic_write_bytes,
    read_json,
)
from deepfake_detection.models.base import BaseDetector
from deepfake_detection.reports.figures import save_figures, synthetic_fakes_figure
from deepfake_detection.training.cached_fit import attach_feature_cache, detach_feature_cache
from deepfake_detection.training.callbacks import (
    ConfigInCheckpoint,
    EpochSeeding,
    RelocatedRunDir,
    RestoredEarlyStop,
    TrainingClock,
    last_epoch_checkpoint,
)
from deepfake_detection.training.interrupts import InterruptCheckpoint
from deepfake_detection.training.loggers import (
    instantiate_loggers,
    share_figures,
    tensorboard_writer,
)
from deepfake_detection.training.progress import ProgressLog
from deepfake_detection.training.resume import (
    LAST_CHECKPOINT,
    ResumePlan,
    requeued_run_dir,
    resumed_config,
)
from deepfake_detection.training.selection import SelectionSet
from deepfake_detection.training.settings import validate_train_config
from deepfake_detection.training.validation_sources import ValidationSources

log = logging.getLogger(__name__)


@dataclass
class FittedRun:
    """A fitted run, with what testing its best checkpoint needs."""

    cfg: DictConfig
    output_dir: Path
    trainer: L.Trainer
    model: BaseDetector
    datamodule: DeepfakeDataModule
    checkpoint: ModelCheckpoint
    #: The run's loggers (`logger=`; several with `logger=many`), possibly none.
    loggers: list[Logger]
    notice: InterruptCheckpoint
    counts: dict[str, int]
    #: Per-epoch train/val loss and accuracy (testing the best checkpoint rewinds the model's).
    history: dict[int, dict[str, float]]
    val_auroc_best: float | None
    train_seconds: float
    #: Per-epoch seconds and image counts, and other timed phases (`metrics.json` `timing`).
    timing: dict[str, Any]


@dataclass
class FinishedRun:
    """A resumed run that had already finished: nothing to fit, its metrics stand."""

    metrics: dict[str, Any]


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


def _command_line_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _describe_model(model: BaseDetector, counts: dict[str, int], image_size: int) -> str:
    spec = model.freeze_spec
    freeze = f"{spec.name}, n={spec.n}" if spec.name == "last_n" else spec.name
    gflops = model.flops_per_image(image_size) / 1e9
    return (
        f"model: {model.display_name} (freeze={freeze}): {counts['params/total']:,} params, "
        f"{counts['params/trainable']:,} trainable; {gflops:.3g} GFLOPs per {image_size} px image"
    )


def _progress_bar(cfg: DictConfig) -> bool:
    """Lightning's progress bar on a terminal (`progress.bar=auto`); else progress lines."""
    return bool(cfg.trainer.get("enable_progress_bar", show_progress_bar(cfg.progress.bar)))


def _compile(cfg: DictConfig, model: BaseDetector) -> None:
    if not cfg.get("compile"):
        return
    if model.cached_depth is not None:
        log.warning(
            "compile=true: not applied, training reads the feature cache and runs only the "
            "trainable layers; compiling would cost time for the final scoring alone"
        )
        return
    # In place: `net`'s parameters and state_dict keys stay as they are.
    model.net.compile()
    log.info("compile: torch.compile compiles the network on its first batches")


def fit(cfg: DictConfig) -> FittedRun | FinishedRun:
    """Build the datamodule, model and trainer from `cfg` and fit; or continue a run in place.

    `cfg` has been checked by the command; a resumed run's saved config, with the command
    line's overrides on it, is checked here before anything is built or written.
    """
    resume = None
    overrides = _command_line_overrides()
    if not cfg.get("resume") and (requeued := requeued_run_dir(cfg)) is not None:
        # A cluster job requeued after its time-limit signal: the same job, run again in
        # the same dir, continues where the signal stopped it.
        log.info("requeued job: continuing %s in place", requeued)
        OmegaConf.update(cfg, "resume", str(requeued), force_add=True)
        overrides = []  # the job's own overrides made the saved config already
    if cfg.get("resume"):
        resume = resumed_config(cfg, overrides)
        cfg = resume.cfg
        validate_train_config(cfg)
        if resume.finished:
            log.info("%s had finished: its metrics are in %s", resume.run_dir, METRICS_FILE)
            return FinishedRun(read_json(Path(resume.run_dir) / METRICS_FILE))
        # It trains again: until it ends, it is an unfinished run (which a resume continues).
        if is_first_process():
            (Path(resume.run_dir) / METRICS_FILE).unlink(missing_ok=True)
        recorded = Path(resume.run_dir) / SPLIT_LISTS_DIR
        if recorded.is_dir() and not cfg.data.get("split_lists"):
            # Exactly the files it was split into, even if the folders have changed since.
            OmegaConf.update(cfg, "data.split_lists", str(recorded), force_add=True)
        # It continues in its own checkpoint folder, which Lightning would warn is not empty.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* is not empty")
    output_dir = Path(cfg.paths.output_dir)
    if cfg.data.get("num_workers") is None:
        # Record the count used: worker seeds follow it, so a resume elsewhere reuses it.
        cfg.data.num_workers = auto_num_workers()
    # Hydra saves the config with its interpolations; store the values this run really used
    # (environment variables, automatic defaults) so the run dir documents itself.
    resolved = OmegaConf.to_container(cfg, resolve=True)
    # Every process of a distributed run executes this; the first one writes the run's files.
    writer = is_first_process()
    if writer:
        atomic_write_bytes(output_dir / RESOLVED_CONFIG_FILE, OmegaConf.to_yaml(resolved).encode())
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    clock, notice = TrainingClock(), InterruptCheckpoint(str(output_dir))
    with notice.guard():  # Ctrl+C while images are checked: the run dir can be resumed too
        datamodule = instantiate(cfg.data)
        log.info("data: %s", datamodule.describe())  # indexes and checks every image
        log.info("augment: %s", datamodule.augment.describe())
        if datamodule.synth is not None:
            log.info("synth: %s", datamodule.synth.describe())
        index = datamodule.index
        if writer:
            write_skipped_files(output_dir, datamodule.skipped)
        own_lists = output_dir / SPLIT_LISTS_DIR
        recorded = cfg.data.get("split_lists") and Path(cfg.data.split_lists) == own_lists
        if writer and index.derived and not recorded:  # splits not read from folders
            write_split_lists(output_dir, index.root, index.derived, index.derived_how)
        model = instantiate(cfg.model)
    counts = model.parameter_counts()
    log.info(_describe_model(model, counts, datamodule.image_size))
    if warning := model.freeze_warning():
        log.warning(warning)

    bar = _progress_bar(cfg)
    progress = ProgressLog(cfg.progress.every_s, bar=bar)
    callbacks = _callbacks(cfg, resolved, resume)
    callbacks.append(ValidationSources(datamodule))
    if datamodule.select_on:
        callbacks.append(SelectionSet(datamodule, datamodule.select_on))
    callbacks += [EpochSeeding(cfg.seed), clock, notice, progress]
    checkpoint = next(cb for cb in callbacks if isinstance(cb, ModelCheckpoint))
    loggers = instantiate_loggers(cfg.get("logger"))
    if writer and datamodule.synth is not None:
        examples = {"synthetic_fakes": synthetic_fakes_figure(datamodule.synthetic_examples())}
        written = save_figures(examples, output_dir, tensorboard_writer(loggers))
        share_figures(loggers, written)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        # Checkpoints are written in a thread from a copy taken at the save point, while
        # training goes on; the fit waits for the last write before it returns.
        plugins=[BackgroundCheckpointIO(SafeAtomicCheckpointIO())],
        enable_progress_bar=bar,
    )
    # `trainer.deterministic` turns on deterministic algorithms, which also fill every new
    # tensor with NaN to expose reads of uninitialised memory: a fifth of a CPU training step
    # of MobileNetV2. The algorithms stay deterministic; no correct op reads that memory.
    torch.utils.deterministic.fill_uninitialized_memory = False
    if resume is None and writer:
        for logger in loggers:
            logger.log_metrics({k: float(v) for k, v in counts.items()}, step=0)

    with notice.guard():
        if resume is not None and datamodule.feature_cache.enabled:
            # The frozen weights the store is computed from are the run's, not a new
            # build's (whose `model.weights_path` a resume may point elsewhere).
            state = safe_torch_load(resume.checkpoint)["state_dict"]
            model.load_state_dict(state)
        cache_timing = attach_feature_cache(model, datamodule)
        _compile(cfg, model)
        try:
            trainer.fit(
                model, datamodule=datamodule, ckpt_path=resume.checkpoint if resume else None
            )
        finally:
            detach_feature_cache(model, datamodule)
    if progress.end_line and trainer.is_global_zero:
        log.info(progress.end_line)  # after the fit: a progress bar has closed by now
    # Read from the metric's state, which a resumed fit restores even with nothing left to do.
    best_auroc = float(model.val_auroc_best.max_value)
    return FittedRun(
        cfg=cfg,
        output_dir=output_dir,
        trainer=trainer,
        model=model,
        datamodule=datamodule,
        checkpoint=checkpoint,
        loggers=loggers,
        notice=notice,
        counts=counts,
        history=dict(model.history),
        val_auroc_best=best_auroc if best_auroc != float("-inf") else None,
        train_seconds=clock.seconds + cache_timing.get("feature_cache_s", 0.0),
        timing={**clock.timing(), **cache_timing},
    )
