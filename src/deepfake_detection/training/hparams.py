"""The few hyperparameters that tell runs apart, for TensorBoard's HParams tab and `compare`."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from deepfake_detection.models.base import BaseDetector
from deepfake_detection.training.loggers import log_hyperparameters

#: Final metrics shown next to the hyperparameters in TensorBoard's HParams tab.
HPARAMS_METRICS = (
    "val/auroc_best",
    "test/auroc",
    "test/acc",
    "test/acc@val",
    "test/f1",
    "test/ap",
    "test/eer",
    "test/balanced_acc",
)


def _class_name(node: Any) -> str:
    target = node.get("_target_") if node else None
    return str(target).rsplit(".", 1)[-1] if target else "none"


def run_hparams(cfg: DictConfig, model: BaseDetector, image_size: int) -> dict[str, Any]:
    """Flat, scalar-valued summary of what this run chose."""
    optimizer = cfg.get("optimizer") or {}
    return {
        "model": model.display_name,
        "freeze": model.freeze_spec.name,
        "freeze_n": model.freeze_spec.n,
        # Runs made before the `augment` group existed trained with what is now `basic`.
        "augment": (cfg.get("augment") or {}).get("name", "basic"),
        # Runs made before the `face` group existed scored whole images.
        "face": (cfg.get("face") or {}).get("name", "none"),
        "optimizer": _class_name(optimizer),
        "lr": optimizer.get("lr"),
        "weight_decay": optimizer.get("weight_decay"),
        "scheduler": _class_name(cfg.get("scheduler")),
        "batch_size": cfg.data.batch_size,
        "image_size": image_size,
        "max_epochs": cfg.trainer.get("max_epochs"),
        "seed": cfg.get("seed"),
        "dropout": cfg.model.get("dropout"),
    }


def log_hparams(loggers: list[Any], hparams: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Log the hyperparameters with the run's final metrics, as `hp/<metric>` scalars, on
    every logger of the run.

    Distinct tags keep the extra step-0 points the HParams summary needs off the real curves.
    """
    if not loggers:
        return
    final = {
        f"hp/{name.replace('/', '_')}": float(metrics[name])
        for name in HPARAMS_METRICS
        if metrics.get(name) is not None
    }
    # TensorBoard's HParams plugin only accepts numbers, strings and booleans.
    params = {k: ("none" if v is None else v) for k, v in hparams.items()}
    log_hyperparameters(loggers, params, final)
