"""Train a detector, then test its best checkpoint: `python -m train [overrides]`.

Config → datamodule/model → `trainer.fit` (`training`), then the best checkpoint, chosen on
validation, is tested and the run's artifacts are written (`evaluation`).
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from deepfake_detection.cli import check_groups_or_fail, command_line_overrides, fail, run_task
from deepfake_detection.config import config_dir, register_resolvers
from deepfake_detection.console import setup_console
from deepfake_detection.errors import UserInputError
from deepfake_detection.training.resume import check_resume_dir, overridable_on_resume

log = logging.getLogger(__name__)
register_resolvers()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_task(train, cfg)


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, write the run's outputs and print a short summary.

    Returns the value of `cfg.optimized_metric`, which a Hydra sweeper maximises.
    """
    # Every key, once, before anything is built: the `model.*` rules are those of the
    # architecture `cfg` selects, so checking imports the models (and torch).
    from deepfake_detection.training.settings import validate_train_config

    validate_train_config(cfg)
    setup_console()
    from deepfake_detection.evaluation.best_checkpoint import test_best_checkpoint
    from deepfake_detection.evaluation.summary import train_summary
    from deepfake_detection.training.launch import sweep_job_as_single_run
    from deepfake_detection.training.pipeline import FinishedRun, fit

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


def _resume_dir(overrides: list[str]) -> str | None:
    values = [o.removeprefix("resume=") for o in overrides if o.startswith("resume=")]
    return values[-1] if values and values[-1] not in ("", "null") else None


def _force_resume_overrides(argv: list[str]) -> list[str]:
    """`key=value` -> `++key=value` for the keys a resumed run may change.

    They go on the run's saved config, which may have keys the default config lacks (e.g.
    `model.weights_path` of a MobileNetV2 run): Hydra must not refuse them while composing.
    """
    return [
        f"++{arg}" if "=" in arg and overridable_on_resume(arg.split("=", 1)[0]) else arg
        for arg in argv
    ]


def cli() -> None:
    check_groups_or_fail(sys.argv[1:])
    try:
        resume = _resume_dir(command_line_overrides(sys.argv[1:]))
        if resume is not None:
            check_resume_dir(resume)  # before Hydra makes dirs
            sys.argv[1:] = _force_resume_overrides(sys.argv[1:])
    except UserInputError as err:
        fail(err)
    main()


if __name__ == "__main__":
    cli()
