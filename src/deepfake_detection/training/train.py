"""The training command's task: fit, test the best checkpoint, write the run's outputs.

Config → datamodule/model → `trainer.fit` (`fit`), then the best checkpoint, chosen on
validation, is tested and the run's artifacts are written (`final_test`).
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from deepfake_detection.reports.summaries import train_summary
from deepfake_detection.training.final_test import test_best_checkpoint
from deepfake_detection.training.fit import FinishedRun, fit
from deepfake_detection.training.launch import sweep_job_as_single_run

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, write the run's outputs and print a short summary.

    Returns the value of `cfg.optimized_metric`, which a Hydra sweeper maximises.
    """
    # A sweep job's DDP processes run this job alone (see training/launch.py).
    with sweep_job_as_single_run(cfg.paths.output_dir) as job:
        run = fit(cfg)
        job.trainer = getattr(run, "trainer", None)
        if isinstance(run, FinishedRun):
            metrics = run.metrics
        else:
            metrics = test_best_checkpoint(run)
            if run.trainer.is_global_zero:
                log.info(train_summary(metrics, run.output_dir, *_log_file_and_next_steps()))
    return metrics.get(cfg.get("optimized_metric") or "")


def _log_file_and_next_steps() -> tuple[str, bool]:
    """The run's log file, which Hydra names after the job (not `task_name`, which presets
    change), and whether to suggest next commands: not for a sweep's jobs."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return "train.log", True
    hydra_cfg = HydraConfig.get()
    return f"{hydra_cfg.job.name}.log", hydra_cfg.mode != RunMode.MULTIRUN
