"""A training DataLoader whose every pass is seeded from (seed, epoch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from deepfake_detection.seeding import epoch_seed


class EpochSeededLoader(DataLoader):
    """Each `iter()` reseeds the loader's own generator from (seed, current epoch).

    The generator draws the shuffle order and the base seed of every worker process, from
    which Lightning's worker init seeds each worker's augmentation. Seeding it where the
    iterator is made is the only place that covers the first epoch of a fit too: Lightning
    makes that iterator before any epoch-start hook runs. An epoch resumed from a checkpoint
    then sees the same images in the same order with the same augmentations as it would have
    in an uninterrupted run.
    """

    def __init__(
        self, dataset: Dataset, *, seed: int, current_epoch: Callable[[], int], **kwargs: Any
    ) -> None:
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(dataset, **kwargs)
        self.seed = seed
        self.current_epoch = current_epoch

    def __iter__(self):
        self.generator.manual_seed(epoch_seed(self.seed, self.current_epoch()))
        return super().__iter__()
