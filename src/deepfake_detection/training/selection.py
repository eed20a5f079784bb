"""`data.select_on`: a labelled dataset the checkpoint may be chosen on, never trained on.

Validation comes from the training source, so the checkpoint it picks is the best one on that
source. When the goal is a detector that holds up on other sources, a set of them (e.g.
`cross-source/`) can be scored after every validation epoch instead, and the checkpoint
chosen on it (`checkpoint.monitor=select/auroc`, or `select/auroc_sources`, the mean over its
source folders). Its images never reach the optimiser; the test split stays untouched.
"""

from __future__ import annotations

import logging

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from deepfake_detection.data.datamodule import DeepfakeDataModule
from deepfake_detection.metrics.binary import compute_metrics
from deepfake_detection.metrics.per_source import per_source_metrics
from deepfake_detection.metrics.predictions import Predictions
from deepfake_detection.training.settings import SELECT_METRICS

log = logging.getLogger(__name__)

#: What the selection set logs after each validation epoch.
SELECT_AUROC, SELECT_SOURCES_AUROC = SELECT_METRICS


class SelectionSet(Callback):
    """Scores the test split of `root` (the whole of it without split folders) after every
    validation epoch and logs `select/auroc` and `select/auroc_sources`."""

    def __init__(self, datamodule: DeepfakeDataModule, root: str) -> None:
        self.root = root
        self.data = datamodule.for_root(root)
        log.info("select_on: %s", self.data.describe())  # indexes and checks it up front

    def _predictions(self, pl_module: L.LightningModule, trainer: L.Trainer) -> Predictions:
        dataset = self.data.dataset("test", training=False)
        # Every process scores the whole set (it is small next to training), so each logs
        # the same value and nothing needs gathering.
        loader = DataLoader(
            dataset, batch_size=self.data.batch_size, num_workers=self.data.num_workers
        )
        probs, targets, positions = [], [], []
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            for images, labels, index in loader:
                logits = pl_module(images.to(pl_module.device))
                probs.append(torch.sigmoid(logits.float()).cpu())
                targets.append(labels.long())
                positions.append(index)
        samples = self.data.index.splits["test"]
        return Predictions.from_indices(
            torch.cat(probs), torch.cat(targets), torch.cat(positions), samples
        )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        predictions = self._predictions(pl_module, trainer)
        auroc = compute_metrics(predictions.probs, predictions.targets)["auroc"]
        index = self.data.index
        per_source = per_source_metrics(predictions, index.sources, 0.5, index.source_depth)
        mean = per_source["mean"]["auroc"] if per_source is not None else auroc
        pl_module.log(SELECT_AUROC, auroc, prog_bar=True)
        pl_module.log(SELECT_SOURCES_AUROC, mean)
        sources = per_source["mean"]["sources_with_both_classes"] if per_source else 0
        log.info(
            "select_on %s: AUROC %.4f, mean over %d source(s) %.4f",
            self.root,
            auroc,
            sources,
            mean,
        )
