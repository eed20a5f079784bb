"""A map-style dataset over (path, label) pairs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from deepfake_detection.data.images import load_rgb


class ImageFileDataset(Dataset):
    """Decodes one image per item, so decoding happens in the DataLoader's worker processes."""

    def __init__(self, samples: Sequence[tuple[Path, int]], transform: Callable) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        # The index travels with the batch so per-image scores can be traced back to their
        # file, even when a distributed sampler reorders the split.
        path, label = self.samples[index]
        image = self.transform(load_rgb(path))
        return image, torch.tensor(label, dtype=torch.float32), index
