"""Stopping a fit on a signal with a resumable checkpoint: Ctrl+C, SIGTERM, and a cluster
job's time-limit signal, which is then handed to the launcher's requeue."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import AsyncCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning_utilities.core.apply_func import apply_to_collection

from deepfake_detection.seeding import rng_states, set_rng_states
from deepfake_detection.training.resume import LAST_CHECKPOINT, TrainingInterrupted

log = logging.getLogger(__name__)


def wait_for_checkpoint_writes(trainer: L.Trainer) -> None:
    """Block until every checkpoint handed to a background writer is on disk; raise its error."""
    checkpoint_io = trainer.strategy.checkpoint_io
    if isinstance(checkpoint_io, AsyncCheckpointIO):
        checkpoint_io.teardown()  # waits, raises a failed write; the next save starts anew


#: The signal a cluster job gets before its time limit from submitit (`--signal=USR2@...`).
#: Caught only where a launcher installed a handler for it, and passed on to that handler
#: once the checkpoint is saved.
REQUEUE_SIGNAL = signal.SIGUSR2


#: Signals that stop training, least telling first: a time-limit stop must reach the
#: launcher, so it wins when processes got different ones.
STOP_PRIORITY: tuple[str | None, ...] = (None, "SIGINT", "SIGTERM", REQUEUE_SIGNAL.name)


def _on_cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().cpu()


class InterruptCheckpoint(Callback):
    """Ctrl+C or SIGTERM: finish the current batch, save a resumable checkpoint, stop.

    While training, both signals only set a flag. At the end of the next batch the full
    training state is written atomically to `last.ckpt`, with what an epoch-end checkpoint
    does not need: the batch position (kept by the training loader, see `EpochSeededLoader`),
    the process's random generators (dropout) and the epoch's running train metrics. A resume
    then continues with the next batch and ends exactly where an uninterrupted run would. A
    second signal stops at once, from the last checkpoint written.

    The batch that ends the epoch, one that runs validation, and one inside a gradient
    accumulation window are not save points: the stop then waits for the next batch that is
    (at worst, the next epoch's start, just after the epoch-end checkpoint was written).
    """

    STATE_KEY = "interrupted_mid_epoch"

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.interrupted_by: str | None = None
        self._requested: str | None = None
        #: Whether `_requested` is this process's own signal (else another process's).
        self._requested_here = False
        self._saving = False
        self._previous_handlers: dict[int, Any] = {}
        self._restored_rngs: dict[str, Any] | None = None

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn Lightning's exit after an interrupt into `TrainingInterrupted`."""
        try:
            yield
        except BaseException as err:
            # After a signal anything may surface, not only Lightning's own exit: a worker
            # killed by a signal sent to the whole process group, for instance.
            if self.interrupted_by is None and isinstance(err, KeyboardInterrupt):
                self.interrupted_by = "SIGINT"  # outside the fit, e.g. while checking images
            if self.interrupted_by is None:
                raise
            if isinstance(err, SystemExit) and self.interrupted_by == REQUEUE_SIGNAL.name:
                raise  # the launcher's requeue exit: its status tells it what was done
            raise TrainingInterrupted(self.interrupted_by, Path(self.run_dir)) from None

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._requested_here:  # asked twice: stop now
            self.interrupted_by = name
            raise KeyboardInterrupt
        self._requested, self._requested_here = name, True
        log.warning(
            "%s: stopping after this batch, once its checkpoint is saved "
            "(send it again to stop at once)",
            name,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restored_rngs is not None:
            # A fit resumed mid-epoch goes on without the epoch-start hooks (no reseeding).
            set_rng_states(self._restored_rngs)
            self._restored_rngs = None
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may handle signals; Lightning's defaults apply
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        if callable(signal.getsignal(REQUEUE_SIGNAL)):
            # A cluster job's launcher (submitit) requeues the job on it: save first.
            self._previous_handlers[REQUEUE_SIGNAL] = signal.signal(REQUEUE_SIGNAL, self._on_signal)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        requeue = self._previous_handlers.get(REQUEUE_SIGNAL)
        self._restore_handlers()
        if self._requested == REQUEUE_SIGNAL.name and callable(requeue):
            # The time limit is near and the test phase may not fit in it: requeue now.
            # The requeued job finds training done (last.ckpt) and goes on with the test.
            log.warning("%s came as training ended: requeueing before the test", self._requested)
            wait_for_checkpoint_writes(trainer)
            self.interrupted_by = self._requested
            requeue(REQUEUE_SIGNAL, None)
        if self._requested:
            log.warning("%s came as training ended: finishing the run", self._requested)
            self._requested, self._requested_here = None, False

    def _stop(self, trainer: L.Trainer, where: str) -> None:
        self.interrupted_by = self._requested
        log.warning(
            "%s: stopped %s; resume with `python -m train resume=%s`",
            self.interrupted_by,
            where,
            self.run_dir,
        )
        requeue = self._previous_handlers.get(REQUEUE_SIGNAL)
        if self.interrupted_by == REQUEUE_SIGNAL.name and callable(requeue):
            # The checkpoint is on disk: now the launcher may requeue the job (and exit);
            # the requeued job continues in place (`resume.requeued_run_dir`).
            self._restore_handlers()
            requeue(REQUEUE_SIGNAL, None)
        if self.interrupted_by == "SIGINT":
            raise KeyboardInterrupt
        raise SIGTERMException

    def _stop_requested(self, trainer: L.Trainer) -> bool:
        """Whether any process was signalled: with several, all must save and stop together.

        All learn the most telling signal any of them got (the time-limit one first), so the
        first process hands a time-limit stop on to the launcher even if its own signal is
        yet to come.
        """
        if trainer.world_size == 1:
            return self._requested is not None
        mine = STOP_PRIORITY.index(self._requested) if self._requested in STOP_PRIORITY else 0
        code = trainer.strategy.reduce(
            torch.tensor(mine, device=trainer.strategy.root_device), reduce_op="max"
        )
        agreed = STOP_PRIORITY[int(code)]
        if agreed is not None and agreed != self._requested:
            self._requested = agreed  # another process's signal (or a more telling one)
        return agreed is not None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stop_requested(trainer):  # the previous epoch's end was just saved
            self._stop(trainer, f"before epoch {trainer.current_epoch}")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        if not self._stop_requested(trainer):
            return
        done = i + 1
        val_every = trainer.val_check_batch
        if (
            done >= trainer.num_training_batches
            or done % trainer.accumulate_grad_batches
            or (isinstance(val_every, int) and done % val_every == 0)
        ):
            return
        self._saving = True
        try:
            trainer.save_checkpoint(Path(self.run_dir) / LAST_CHECKPOINT, weights_only=False)
            wait_for_checkpoint_writes(trainer)  # the process ends next: the file must be there
        except Exception as err:  # still stop: the last epoch-end checkpoint is intact
            log.error(
                "could not save the interrupt checkpoint (%s): a resume redoes the epoch", err
            )
            self._stop(trainer, f"in epoch {trainer.current_epoch}")
        finally:
            self._saving = False
        self._stop(trainer, f"after batch {done} of epoch {trainer.current_epoch}")

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._saving:
            # Each process has counted its own shard of the epoch so far: keep them all, so
            # each continues from its own count (every process runs this, in step).
            mine = apply_to_collection(pl_module.train_epoch_state(), torch.Tensor, _on_cpu)
            every = [mine]
            if trainer.world_size > 1:
                every = [None] * trainer.world_size
                torch.distributed.all_gather_object(every, mine)
            checkpoint[self.STATE_KEY] = {
                "rngs": rng_states(),
                "train_metrics": mine,
                "train_metrics_per_process": every,
                "world_size": trainer.world_size,
            }

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = checkpoint.get(self.STATE_KEY)
        if state is not None:
            every = state.get("train_metrics_per_process") or [state["train_metrics"]]
            mine = every[trainer.global_rank] if len(every) == trainer.world_size else every[0]
            device = pl_module.device
            pl_module.load_train_epoch_state(
                apply_to_collection(mine, torch.Tensor, lambda t: t.to(device))
            )
            self._restored_rngs = state["rngs"]
            stopped_with = int(state.get("world_size", 1))
            if stopped_with != trainer.world_size:
                # Each process's shard of the epoch, and the batches it had trained, follow
                # the number of processes: the rest of that epoch cannot be the same.
                log.warning(
                    "the run stopped mid-epoch with %d process(es) and resumes with %d: the "
                    "rest of that epoch differs from an uninterrupted run (the next epochs "
                    "follow the new count); resume with trainer.devices=%d to match it",
                    stopped_with,
                    trainer.world_size,
                    stopped_with,
                )

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handlers()
        if self.interrupted_by is None and self._requested is None:
            if isinstance(exception, KeyboardInterrupt):
                self.interrupted_by = "SIGINT"  # outside the training loop
            elif isinstance(exception, SIGTERMException) or trainer.received_sigterm:
                self.interrupted_by = "SIGTERM"
        elif self.interrupted_by is None:
            self.interrupted_by = self._requested  # e.g. a worker died of the signal
