"""Scoring a split with a Lightning trainer, so devices, precision and DDP are handled for us."""

from __future__ import annotations

import lightning as L
import torch

from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.evaluation.predictions import Predictions
from deepfake_detection.models.base import BaseDetector


def predict_split(
    trainer: L.Trainer,
    model: BaseDetector,
    datamodule: DeepfakeDataModule,
    split: str,
    ckpt_path: str | None = None,
) -> Predictions:
    """P(Fake) for every image of `split`, in dataset order, without augmentation."""
    batches = trainer.predict(model, dataloaders=datamodule.dataloader(split), ckpt_path=ckpt_path)
    outputs = {
        key: torch.cat([batch[key].flatten().cpu() for batch in batches])
        for key in ("probs", "targets", "indices")
    }
    return Predictions.from_indices(
        outputs["probs"], outputs["targets"], outputs["indices"], datamodule.index.splits[split]
    )


def last_test_predictions(
    model: BaseDetector, datamodule: DeepfakeDataModule, split: str
) -> Predictions:
    """The per-image scores the model kept from its last test pass over `split`."""
    if model.test_outputs is None:
        raise RuntimeError("the model has not run a test pass")
    probs, targets, indices = model.test_outputs
    return Predictions.from_indices(probs, targets, indices, datamodule.index.splits[split])
