"""Scoring a split through Lightning's test loop, so devices, precision and DDP are handled.

The test loop's `PredictionStore` gathers every process's scores, so a distributed run still
sees the whole split, each image once.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.metrics.predictions import Predictions
from deepfake_detection.models.base import BaseDetector


def score_split(
    trainer: L.Trainer,
    model: BaseDetector,
    datamodule: DeepfakeDataModule,
    split: str,
    ckpt_path: str | None = None,
    log_metrics: bool = True,
    **dataset_options: Any,
) -> Predictions:
    """P(Fake) for every image of `split`, unaugmented, in dataset order.

    The split's metrics, named `<split>/<metric>`, are left in `model.test_results`, and
    logged unless `log_metrics` is false. `dataset_options` go to the split's dataset (a
    perturbation, images decoded already).
    """
    model.test_split, model.log_test_metrics = split, log_metrics
    loader = datamodule.dataloader(split, training=False, **dataset_options)
    trainer.test(model, dataloaders=loader, ckpt_path=ckpt_path, verbose=False)
    if model.test_outputs is None:
        raise RuntimeError("the test pass kept no predictions")
    probs, targets, indices = model.test_outputs
    return Predictions.from_indices(probs, targets, indices, datamodule.index.splits[split])
