"""The loggers of a run (`logger=tensorboard|csv|mlflow|wandb|many`), and what reaches each.

Lightning logs metrics to every logger of the Trainer. What it does not do is show the run's
figures: TensorBoard gets them as images, MLflow as artifacts of the run, W&B as images;
the CSV logger has no place for them (they are in `figures/` either way). The hyperparameters
go to every logger with the run's final metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig

from deepfake_detection.errors import ConfigError

log = logging.getLogger(__name__)


def instantiate_loggers(node: DictConfig | None) -> list[Logger]:
    """The logger `node` describes (`_target_`), or each logger of a mapping of them
    (`logger=many`); none for an empty node."""
    if node is None:
        return []
    if "_target_" in node:
        configs = [("logger", node)]
    else:
        configs = [(f"logger.{name}", value) for name, value in node.items()]
    loggers = []
    for key, config in configs:
        if not isinstance(config, DictConfig) or "_target_" not in config:
            raise ConfigError(f"{key}: expected a logger config with a _target_")
        try:
            loggers.append(instantiate(config))
        except ImportError as err:
            raise ConfigError(
                f"{key}: {err.name or err} is not installed: "
                'pip install "deepfake-detection[loggers]"'
            ) from None
        except Exception as err:  # a logger's own refusal (its package missing, say)
            cause = err.__cause__ or err
            if isinstance(cause, ModuleNotFoundError):
                raise ConfigError(
                    f"{key}: {cause.name} is not installed: "
                    'pip install "deepfake-detection[loggers]"'
                ) from None
            raise
    return loggers


def tensorboard_writer(loggers: Iterable[Logger]) -> Any:
    """The SummaryWriter of the first TensorBoard logger, if any (figures go there)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def share_figures(loggers: Iterable[Logger], paths: Iterable[Path], step: int = 0) -> None:
    """The written figure files to the loggers that show pictures beside TensorBoard's."""
    paths = list(paths)
    for logger in loggers:
        kind = type(logger).__name__
        if kind == "MLFlowLogger":
            for path in paths:
                logger.experiment.log_artifact(logger.run_id, str(path), "figures")
        elif kind == "WandbLogger":
            for path in paths:
                logger.log_image(key=f"figures/{path.stem}", images=[str(path)], step=step)


def log_hyperparameters(
    loggers: Iterable[Logger], params: Mapping[str, Any], final: Mapping[str, float]
) -> None:
    """The run's hyperparameters with its final metrics, on every logger: TensorBoard's
    HParams tab takes them together; the others get the metrics as a last point."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(dict(params), metrics=dict(final))
        else:
            # Under a prefix of their own: Lightning already logged the model's arguments
            # (`freeze/name`, ...), and MLflow cannot hold `freeze` beside `freeze/name`.
            logger.log_hyperparams({f"summary/{k}": v for k, v in params.items()})
            if final:
                logger.log_metrics(dict(final))
        logger.save()
