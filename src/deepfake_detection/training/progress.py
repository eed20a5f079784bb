"""Progress as log lines, for output that is not a terminal (a log file, a cluster job).

A live progress bar only makes sense on a terminal; redirected, it shows nothing until an
epoch ends. `ProgressLog` writes a short line at a steady pace instead, and one line per
epoch with its metrics, to the console and the run's log file alike.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

from deepfake_detection.console import FILE_ONLY

log = logging.getLogger(__name__)

#: Per-epoch metrics shown in the epoch line, in this order.
EPOCH_METRICS = (("train", ("loss", "acc")), ("val", ("loss", "acc", "auroc")))


def duration(seconds: float) -> str:
    """`0:03:17`: whole seconds, as `datetime.timedelta` prints them."""
    if not math.isfinite(seconds):
        return "?"
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


def _batch_size(batch: Any) -> int:
    images = batch[0] if isinstance(batch, (list, tuple)) else batch
    return len(images)


class ProgressLog(Callback):
    """`epoch 2/10  step 120/400  412 img/s  ETA 0:03:17 (run 0:21:40)` every `every_s`.

    With `bar=True` a progress bar is on screen: it shows the steps, and the epoch lines go to
    the log file only (`FILE_ONLY`), since a line written under a live bar garbles it.
    """

    def __init__(self, every_s: float = 30.0, bar: bool = False) -> None:
        self.every_s = float(every_s)
        self.bar = bar
        self._extra = FILE_ONLY if bar else None
        self._epoch_start = self._last_line = 0.0
        self._steps = self._images_since_line = 0
        self._epoch_seconds: list[float] = []
        self._pending: int | None = None  # the finished epoch whose line is due
        #: Why training ended, once it has; the caller logs it after `fit` returns.
        self.end_line: str | None = None
        self._validated = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_pending_epoch(trainer)
        self._epoch_start = self._last_line = time.monotonic()
        self._steps = self._images_since_line = 0

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._steps += 1
        self._images_since_line += _batch_size(batch)
        now = time.monotonic()
        if self.bar or not trainer.is_global_zero or now - self._last_line < self.every_s:
            return
        # Every process runs its own share of the batches at about the same pace.
        rate = trainer.world_size * self._images_since_line / max(now - self._last_line, 1e-9)
        self._last_line, self._images_since_line = now, 0
        log.info(self._step_line(trainer, batch_idx, rate, now))

    def _step_line(self, trainer: L.Trainer, batch_idx: int, rate: float, now: float) -> str:
        total = trainer.num_training_batches
        epoch, epochs = trainer.current_epoch, trainer.max_epochs
        done = batch_idx + 1
        seconds_per_step = (now - self._epoch_start) / max(self._steps, 1)
        epoch_left = (total - done) * seconds_per_step if math.isfinite(total) else math.nan
        line = f"epoch {epoch + 1}/{epochs}  step {done}/{total}  {rate:.0f} img/s  "
        line += f"ETA {duration(epoch_left)}"
        if epochs is not None and epochs > epoch + 1:
            per_epoch = (
                sum(self._epoch_seconds) / len(self._epoch_seconds)
                if self._epoch_seconds
                else total * seconds_per_step
            )
            line += f" (run {duration(epoch_left + (epochs - epoch - 1) * per_epoch)})"
        return line

    # Lightning calls a callback's `on_train_epoch_end` before the module logs the epoch's
    # train metrics, so the epoch's line is written when the next epoch starts, or training ends.
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validated = not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_seconds.append(time.monotonic() - self._epoch_start)
        self._pending = trainer.current_epoch + 1

    def _log_pending_epoch(self, trainer: L.Trainer) -> None:
        if self._pending is None or not trainer.is_global_zero:
            return
        metrics = dict(trainer.callback_metrics)
        if not self._validated:  # metrics of an earlier validation: not this epoch's
            metrics = {k: v for k, v in metrics.items() if not k.startswith("val/")}
        log.info(
            "epoch %d/%s  %s  %s",
            self._pending,
            trainer.max_epochs,
            epoch_metrics_text(metrics),
            duration(self._epoch_seconds[-1]),
            extra=self._extra,
        )
        self._pending, self._validated = None, False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_pending_epoch(trainer)
        self.end_line = (
            f"training ended after epoch {trainer.current_epoch}/{trainer.max_epochs}: "
            f"{end_reason(trainer)}"
        )


def end_reason(trainer: L.Trainer) -> str:
    """Why fitting ended: early stopping (with its reason), or the epoch or step limit."""
    for callback in trainer.early_stopping_callbacks:
        if callback.stopping_reason != EarlyStoppingReason.NOT_STOPPED:
            message = callback.stopping_reason_message or callback.stopping_reason.value
            return f"early stopping: {message.replace(' Signaling Trainer to stop.', '')}"
    if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
        return f"max_steps={trainer.max_steps} reached"
    if trainer.max_epochs is not None and trainer.current_epoch >= trainer.max_epochs:
        return f"max_epochs={trainer.max_epochs} reached"
    return "stopped"


def epoch_metrics_text(metrics: Mapping[str, Any]) -> str:
    """`train loss 0.612 acc 0.671 | val loss 0.550 acc 0.710 auroc 0.803 (best 0.803)`."""
    parts = []
    for split, names in EPOCH_METRICS:
        keys = [(name, f"{split}/{name}") for name in names]
        values = [f"{name} {float(metrics[key]):.3f}" for name, key in keys if key in metrics]
        if values:
            parts.append(f"{split} " + " ".join(values))
    text = " | ".join(parts)
    if "val/auroc_best" in metrics:
        text += f" (best {float(metrics['val/auroc_best']):.3f})"
    return text
