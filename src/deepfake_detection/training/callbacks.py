"""Lightning callbacks of a fit: the config in each checkpoint, per-epoch seeding, a moved
run dir, early stopping across a resume, timing. Stopping on a signal is `interrupts`."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

from deepfake_detection.seeding import epoch_seed, seed_global_rngs
from deepfake_detection.training.resume import LAST_CHECKPOINT, relocate

log = logging.getLogger(__name__)


class ConfigInCheckpoint(Callback):
    """Store the fully resolved run config in every checkpoint.

    A checkpoint is then enough to rebuild its model and data pipeline, even after the run
    directory's `.hydra/` folder is gone.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["config"] = self.config


def last_epoch_checkpoint(dirpath: str) -> ModelCheckpoint:
    """`last.ckpt`, rewritten at the end of every epoch: what `resume=<run dir>` continues from.

    Lightning's own `save_last=True` refreshes it only when a best checkpoint is saved, i.e.
    when the monitored metric improved; a resume would then redo every epoch since. Saving at
    the train epoch's end, after any validation, makes every epoch end a clean resume point
    even when validation runs every few epochs or several times per epoch.
    """
    return ModelCheckpoint(
        dirpath=dirpath,
        filename=LAST_CHECKPOINT.stem,
        monitor=None,
        save_top_k=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )


class EpochSeeding(Callback):
    """Re-seed the global RNGs at the start of each training epoch from (seed, epoch).

    Dropout then depends only on the seed and the epoch number. Shuffling and augmentation
    are seeded by the training loader itself (`EpochSeededLoader`), per image.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed_global_rngs(epoch_seed(self.seed, trainer.current_epoch))


class RelocatedRunDir(Callback):
    """Point restored callback states (best checkpoint paths) at a run dir that was moved.

    Lightning's `ModelCheckpoint` keeps absolute paths; restored as they are, a moved run would
    test a best checkpoint that is no longer there and write new ones to the old folder.
    """

    def __init__(self, old_dir: str, new_dir: str) -> None:
        self.old_dir, self.new_dir = old_dir, new_dir

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Called before any callback loads its state from `checkpoint["callbacks"]`.
        checkpoint["callbacks"] = relocate(checkpoint["callbacks"], self.old_dir, self.new_dir)


class RestoredEarlyStop(Callback):
    """Keep a run that early stopping had ended ended when it is resumed.

    Lightning restores `EarlyStopping`'s counters but not the trainer's stop flag, so a resumed
    run (e.g. one interrupted while testing) would otherwise train another epoch.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for callback in trainer.callbacks:
            if (
                isinstance(callback, EarlyStopping)
                and callback.stopping_reason != EarlyStoppingReason.NOT_STOPPED
            ):
                log.info(
                    "early stopping had ended this run at epoch %d (%s): not training further",
                    callback.stopped_epoch,
                    callback.stopping_reason.name.lower(),
                )
                trainer.should_stop = True


class TrainingClock(Callback):
    """Wall time spent fitting, summed over the interrupted and resumed parts of a run, and
    each epoch's training and validation time and image count (`metrics.json` `timing`).

    Per-epoch figures separate the first epoch, which pays for warm-up (worker start, lazy
    initialisation), from the steady rate of later ones. A feature cache is built before the
    fit starts: `metrics.json` has its time apart (`feature_cache_s`).
    """

    def __init__(self) -> None:
        self.elapsed_before = 0.0
        self._started: float | None = None
        #: One row per epoch: epoch (from 1), train_s, train_images, val_s.
        self.epochs: list[dict[str, float]] = []
        self._epoch_start: float | None = None
        self._val_start: float | None = None

    @property
    def seconds(self) -> float:
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self.elapsed_before + running

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.elapsed_before, self._started = self.seconds, None

    def _row(self, trainer: L.Trainer) -> dict[str, float]:
        epoch = trainer.current_epoch + 1
        if not self.epochs or self.epochs[-1]["epoch"] != epoch:
            self.epochs.append({"epoch": epoch, "train_s": 0.0, "train_images": 0, "val_s": 0.0})
        return self.epochs[-1]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._row(trainer)
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._row(trainer)["train_images"] += len(batch[1])

    def _stop_train_clock(self, trainer: L.Trainer) -> None:
        if self._epoch_start is not None:
            self._row(trainer)["train_s"] += time.perf_counter() - self._epoch_start
            self._epoch_start = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._stop_train_clock(trainer)
            self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val_start is not None and not trainer.sanity_checking:
            self._row(trainer)["val_s"] += time.perf_counter() - self._val_start
            self._val_start = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._epoch_start is None:  # training goes on after a validation within the epoch
            self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_train_clock(trainer)

    def timing(self) -> dict[str, Any]:
        """Seconds and images per epoch, rounded, for `metrics.json`."""
        rows = [
            {**row, "train_s": round(row["train_s"], 3), "val_s": round(row["val_s"], 3)}
            for row in self.epochs
        ]
        return {"fit_s": round(self.seconds, 3), "epochs": rows}

    def state_dict(self) -> dict[str, Any]:
        rows = [dict(row) for row in self.epochs]
        if self._epoch_start is not None and rows:  # saved mid-epoch: the part run so far
            rows[-1]["train_s"] += time.perf_counter() - self._epoch_start
        return {"elapsed_seconds": self.seconds, "epochs": rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.elapsed_before = float(state_dict.get("elapsed_seconds", 0.0))
        self.epochs = [dict(row) for row in state_dict.get("epochs", [])]
