"""Scoring a split through Lightning's test loop, so devices, precision and DDP are handled.

A scoring pass is its own small LightningModule around the detector: the split, threshold
and temperature are the pass's arguments, never state set on the detector from outside. Its
`PredictionStore` gathers every process's scores, so a distributed run still sees the whole
split, each image once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch.nn import functional as F
from torchmetrics import MeanMetric

from deepfake_detection.config import auto_precision
from deepfake_detection.console import is_terminal
from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.metrics.binary import compute_metrics
from deepfake_detection.metrics.predictions import Predictions, PredictionStore
from deepfake_detection.models.base import BaseDetector


@dataclass(frozen=True)
class ScoredSplit:
    """What one scoring pass returns: the scores per image, and the split's metrics named
    `<split>/<metric>` (`<split>/loss` included) at the pass's threshold."""

    predictions: Predictions
    metrics: dict[str, float]


class ScoringPass(L.LightningModule):
    """One pass of `detector` over a split: P(Fake) = sigmoid(logit / temperature)."""

    def __init__(
        self,
        detector: BaseDetector,
        split: str,
        threshold: float = 0.5,
        temperature: float = 1.0,
        log_metrics: bool = True,
    ) -> None:
        super().__init__()
        # The detector's hyperparameters are what the logger records for the pass
        # (tensorboard/hparams.yaml), as when the detector itself ran the test loop.
        self.save_hyperparameters(dict(detector.hparams_initial), logger=True)
        self.detector = detector
        self.split, self.threshold, self.temperature = split, threshold, temperature
        self.log_metrics = log_metrics
        self.store = PredictionStore()
        self.loss = MeanMetric()
        #: (P(Fake), targets, dataset indices) and the metrics, once the pass has ended.
        self.outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.results: dict[str, float] = {}

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.detector(images) / self.temperature

    def test_step(self, batch, batch_idx: int) -> None:
        images, targets, indices = batch[0], batch[1], batch[2]
        logits = self.logits(images)
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        # P(Fake) in float32: fp16 would tie confident scores.
        self.store.update(torch.sigmoid(logits.detach().float()), targets, indices)
        self.loss.update(loss.detach(), weight=targets.numel())

    def predict_step(self, batch, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(P(Fake), dataset index) per image; labels, if any, are not looked at. The logit
        goes to float32 before the temperature, as `predict` always scored."""
        return torch.sigmoid(self.detector(batch[0]).float() / self.temperature), batch[2]

    def on_test_epoch_end(self) -> None:
        probs, targets, indices = self.store.compute()
        self.store.reset()
        self.outputs = (probs.cpu(), targets.cpu(), indices.cpu())
        values = {f"{self.split}/loss": float(self.loss.compute())}
        self.loss.reset()
        metrics = compute_metrics(probs, targets, self.threshold)
        values.update({f"{self.split}/{name}": value for name, value in metrics.items()})
        self.results = values
        if self.log_metrics:
            self.log_dict({name: float(value) for name, value in values.items()})


def score_split(
    trainer: L.Trainer,
    detector: BaseDetector,
    datamodule: DeepfakeDataModule,
    split: str,
    *,
    threshold: float = 0.5,
    temperature: float = 1.0,
    log_metrics: bool = True,
    **dataset_options: Any,
) -> ScoredSplit:
    """P(Fake) for every image of `split`, unaugmented, in dataset order, and its metrics.

    The metrics are logged unless `log_metrics` is false. `dataset_options` go to the split's
    dataset (a perturbation, images decoded already).
    """
    scoring = ScoringPass(detector, split, threshold, temperature, log_metrics)
    loader = datamodule.dataloader(split, training=False, **dataset_options)
    trainer.test(scoring, dataloaders=loader, verbose=False)
    if scoring.outputs is None:
        raise RuntimeError("the test pass kept no predictions")
    probs, targets, indices = scoring.outputs
    samples = datamodule.index.splits[split]
    return ScoredSplit(Predictions.from_indices(probs, targets, indices, samples), scoring.results)


def scoring_precision(given: Any, checkpoint: dict[str, Any]) -> str:
    """The given precision; else the training run's when it is full precision (it runs on any
    device and reproduces the run's numbers); else the automatic choice for this machine."""
    if given is not None:
        return str(given)
    trained = str(checkpoint["config"].get("trainer", {}).get("precision", ""))
    return trained if trained in {"32-true", "32", "64-true", "64"} else auto_precision()


def scoring_trainer(device: Any, checkpoint: dict[str, Any], logger: Any = False) -> L.Trainer:
    """A Trainer that only scores: the device the user asked for (`device` is the command's
    `trainer` config node), no checkpoints written."""
    return L.Trainer(
        accelerator=device.accelerator,
        devices=device.devices,
        precision=scoring_precision(device.get("precision"), checkpoint),
        logger=logger,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=is_terminal(),
        # The data module's loaders give each process its own images, each scored once.
        use_distributed_sampler=False,
    )
