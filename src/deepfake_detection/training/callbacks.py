"""Lightning callbacks specific to this project."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from deepfake_detection.training.resume import TrainingInterrupted

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


def _epoch_seed(seed: int, epoch: int) -> int:
    # Distinct, reproducible seeds per epoch; kept below 2**32 for NumPy.
    return (seed * 1_000_003 + epoch * 7_919 + 1) % 2**32


class EpochSeeding(Callback):
    """Re-seed every RNG at the start of each training epoch from (seed, epoch).

    An epoch's shuffling, augmentation and dropout then depend only on the seed and the epoch
    number, not on everything that ran before. That is what makes a run resumed from an
    epoch-end checkpoint finish with exactly the metrics of an uninterrupted one.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed = _epoch_seed(self.seed, trainer.current_epoch)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # every CUDA device too


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
        except (SystemExit, KeyboardInterrupt):
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
