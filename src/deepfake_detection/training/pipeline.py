"""Config → datamodule/model → trainer → metrics and artifacts, for one run."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from deepfake_detection.training.artifacts import atomic_write_bytes, save_state_dict, write_json
from deepfake_detection.training.callbacks import ConfigInCheckpoint

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.pth"
RESOLVED_CONFIG_FILE = ".hydra/config.yaml"


def _callbacks(cfg: DictConfig, resolved: dict) -> list[Callback]:
    callbacks: list[Callback] = [instantiate(cfg.checkpoint), ConfigInCheckpoint(resolved)]
    if cfg.get("early_stopping"):
        callbacks.append(instantiate(cfg.early_stopping))
    return callbacks


def _relative(path: str, start: Path) -> str:
    """`path` relative to the run dir when inside it, so the run dir can be moved."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(start.resolve()))
    except ValueError:
        return str(resolved)


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, and write `model.pth` and `metrics.json`.

    Returns the value of `cfg.optimized_metric`, which a Hydra sweeper maximises.
    """
    output_dir = Path(cfg.paths.output_dir)
    # Hydra saves the config with its interpolations; store the values this run really used
    # (environment variables, automatic defaults) so the run dir documents itself.
    resolved = OmegaConf.to_container(cfg, resolve=True)
    atomic_write_bytes(output_dir / RESOLVED_CONFIG_FILE, OmegaConf.to_yaml(resolved).encode())
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    log.info("data: %s", datamodule.describe())  # indexes the folders: bad paths fail here
    model = instantiate(cfg.model)
    counts = model.parameter_counts()
    log.info(
        "model: %s, freeze=%s, params trainable %d / total %d",
        model.model_name,
        model.freeze_spec.name,
        counts["params/trainable"],
        counts["params/total"],
    )

    callbacks = _callbacks(cfg, resolved)
    checkpoint = next(cb for cb in callbacks if isinstance(cb, ModelCheckpoint))
    logger = instantiate(cfg.logger)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    logger.log_metrics({k: float(v) for k, v in counts.items()}, step=0)

    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    train_seconds = time.perf_counter() - started
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    best_path = checkpoint.best_model_path or None
    if best_path is None:
        log.warning("no best checkpoint was saved (e.g. fast_dev_run): testing current weights")
    test_metrics = trainer.test(model, datamodule=datamodule, ckpt_path=best_path)[0]
    save_state_dict(output_dir / WEIGHTS_FILE, model.net)

    best_score = checkpoint.best_model_score
    metrics = {
        **{k: float(v) for k, v in test_metrics.items()},
        "val/auroc_best": fit_metrics.get("val/auroc_best"),
        "best/monitor": checkpoint.monitor,
        "best/score": float(best_score) if best_score is not None else None,
        "best/checkpoint": _relative(best_path, output_dir) if best_path else None,
        "epochs": trainer.current_epoch,
        "train_seconds": round(train_seconds, 3),
        **counts,
    }
    write_json(output_dir / METRICS_FILE, metrics)
    log.info("test metrics of the best checkpoint: %s", test_metrics)
    log.info("outputs in %s", output_dir)
    return metrics.get(cfg.get("optimized_metric") or "")
