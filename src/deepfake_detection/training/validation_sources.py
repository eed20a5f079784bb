"""Validation per source: how each source of the validation split scores after every epoch,
and `val/auroc_sources`, their mean, a metric the checkpoint and early stopping can follow.

A validation split pooled from several sources (a per-source tree, `data.sampling=balanced`)
is dominated by its largest source: one pooled AUROC can rise while a small source gets
worse. The mean over sources weighs each the same. Without source folders the split is one
source, and `val/auroc_sources` is its AUROC.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.metrics.binary import auroc_of
from deepfake_detection.metrics.per_source import per_source_metrics
from deepfake_detection.metrics.predictions import Predictions, PredictionStore

log = logging.getLogger(__name__)

#: The mean AUROC over the validation split's sources, logged after each validation epoch.
VAL_SOURCES_AUROC = "val/auroc_sources"
#: The prefix of each source's own validation metrics (`val_sources/<source>/auroc`).
VAL_SOURCE_PREFIX = "val_sources"
#: The metrics logged per source.
LOGGED = ("auroc", "acc", "real_acc", "fake_acc")


class ValidationSources(Callback):
    """Keeps each validation batch's scores and logs per-source metrics at the epoch end."""

    def __init__(self, datamodule: DeepfakeDataModule) -> None:
        self.datamodule = datamodule
        #: Gathers the processes' shards (of any size) like any torchmetrics state.
        self.store = PredictionStore()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.store = self.store.to(pl_module.device)
        self.store.reset()

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking and isinstance(outputs, torch.Tensor):
            self.store.update(outputs, batch[1], torch.as_tensor(batch[2]))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.store.update_count == 0:
            return
        probs, targets, positions = (t.cpu() for t in self.store.compute())
        self.store.reset()
        samples = self.datamodule.index.splits["val"]
        predictions = Predictions.from_indices(probs, targets, positions, samples)
        index = self.datamodule.index
        per_source = per_source_metrics(predictions, index.sources, 0.5, index.source_depth)
        if per_source is None:
            mean = auroc_of(predictions.probs, predictions.targets)
        else:
            mean = per_source["mean"]["auroc"]
        # Every process holds the gathered scores, so each logs the same value.
        pl_module.log(VAL_SOURCES_AUROC, float(mean), sync_dist=trainer.world_size > 1)
        if per_source is None:
            return
        for source, row in per_source["sources"].items():
            for name in LOGGED:
                value = row[name]
                if value is not None and value == value:  # NaN: one class in this source
                    pl_module.log(
                        f"{VAL_SOURCE_PREFIX}/{source}/{name}",
                        float(value),
                        sync_dist=trainer.world_size > 1,
                    )
        log.info(
            "validation per source: %s; mean AUROC %.4f",
            ", ".join(f"{s} {row['auroc']:.4f}" for s, row in per_source["sources"].items()),
            mean,
        )
