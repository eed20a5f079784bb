"""Lightning callbacks specific to this project."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class ConfigInCheckpoint(Callback):
    """Store the fully resolved run config in every checkpoint.

    A checkpoint is then enough to rebuild its model and data pipeline, even after the run
    directory's `.hydra/` folder is gone.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["config"] = self.config
