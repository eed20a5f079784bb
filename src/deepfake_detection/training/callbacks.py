"""Lightning callbacks specific to this project."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.utilities.exceptions import SIGTERMException

from deepfake_detection.seeding import epoch_seed, seed_global_rngs
from deepfake_detection.training.resume import LAST_CHECKPOINT, TrainingInterrupted, relocate

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

    Dropout, and augmentation when images are decoded in the main process, then depend only
    on the seed and the epoch number. The shuffle order and the DataLoader workers' seeds are
    seeded where each epoch's iterator is made (`EpochSeededLoader`), because Lightning makes
    the first iterator of a fit before this hook runs.
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
    """Wall time spent fitting, summed over the interrupted and resumed parts of a run."""

    def __init__(self) -> None:
        self.elapsed_before = 0.0
        self._started: float | None = None

    @property
    def seconds(self) -> float:
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self.elapsed_before + running

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.elapsed_before, self._started = self.seconds, None

    def state_dict(self) -> dict[str, float]:
        return {"elapsed_seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.elapsed_before = float(state_dict.get("elapsed_seconds", 0.0))


class InterruptNotice(Callback):
    """Say how to resume when Ctrl+C or SIGTERM stops a fit.

    Lightning stops at the end of the current batch on SIGTERM, or at once on Ctrl+C; the
    last end-of-epoch checkpoint (`last.ckpt`, written atomically) is what a resume starts
    from, so the interrupted epoch is redone from its start.
    """

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.interrupted_by: str | None = None

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn Lightning's exit after an interrupt into `TrainingInterrupted`."""
        try:
            yield
        except BaseException:
            # After a signal anything may surface, not only Lightning's own exit: a SIGTERM
            # sent to the process group also kills the DataLoader workers, for instance.
            if self.interrupted_by is None:
                raise
            raise TrainingInterrupted(self.interrupted_by, Path(self.run_dir)) from None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.interrupted_by = "SIGINT"
        elif isinstance(exception, SIGTERMException) or trainer.received_sigterm:
            self.interrupted_by = "SIGTERM"
        else:
            return
        log.warning(
            "%s at epoch %d: resume with `python -m train resume=%s`",
            self.interrupted_by,
            trainer.current_epoch,
            self.run_dir,
        )
