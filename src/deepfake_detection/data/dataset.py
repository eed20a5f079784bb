"""A map-style dataset over (path, label) pairs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from deepfake_detection.data.images import DEFAULT_MAX_PIXELS, BadImageError, load_rgb
from deepfake_detection.data.loader import SeededSample
from deepfake_detection.data.synthesis.mixing import SYNTHETIC, Synthesizer

log = logging.getLogger(__name__)


class ImageFileDataset(Dataset):
    """Decodes one image per item, so decoding happens in the DataLoader's worker processes.

    Files are checked before training; one that breaks afterwards (deleted, rewritten) is
    replaced by the next readable sample when `skip_bad` is set, so an epoch never crashes.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        transform: Callable,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        skip_bad: bool = False,
        index_seeds: int | None = None,
        decoded: Sequence[Image.Image] | None = None,
        read_from: Mapping[str, Path] | None = None,
        synthesizer: Synthesizer | None = None,
    ) -> None:
        self.samples = list(samples)
        #: Image path -> the file read in its place (its face crop, `deepfake_detection.faces`).
        self.read_from = read_from or {}
        #: Makes synthetic fakes from real images (`synth`); `samples` is its plan.
        self.synthesizer = synthesizer
        #: The split's images decoded already (`decode_all`), to score it many times over.
        self.decoded = decoded
        #: Unless None, an item asked for by its index alone draws from `index_seeds + index`.
        self.index_seeds = index_seeds
        self.transform = transform
        self.max_pixels = max_pixels
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.samples)

    def _transform(self, image: Image.Image, seed: int | None) -> torch.Tensor:
        if seed is None:
            return self.transform(image)
        # The augmentation draws from its own seed and leaves the process's generator as it
        # was: with no workers, that generator also drives dropout in the training step.
        # (The CPU generator alone: `torch.manual_seed` would reseed every device too.)
        outer = torch.get_rng_state()
        torch.default_generator.manual_seed(seed)
        try:
            return self.transform(image)
        finally:
            torch.set_rng_state(outer)

    def __getitem__(self, key: int | SeededSample) -> tuple[torch.Tensor, torch.Tensor, int]:
        # The index travels with the batch so per-image scores can be traced back to their
        # file, even when a distributed sampler reorders the split.
        index, seed = key if isinstance(key, tuple) else (key, None)
        if seed is None and self.index_seeds is not None:
            seed = self.index_seeds + index
        for offset in range(len(self.samples) if self.skip_bad else 1):
            position = (index + offset) % len(self.samples)
            path, label = self.samples[position]
            if self.synthesizer is not None and seed is not None:
                path, label = self.synthesizer.choose(self.samples, position, seed)
            try:
                decoded = (
                    self.decoded[position]
                    if self.decoded is not None
                    else load_rgb(self.read_from.get(str(path), path), self.max_pixels)
                )
                if label == SYNTHETIC and self.synthesizer is not None and seed is not None:
                    decoded, label = self.synthesizer.make(decoded, seed)[0], 1
                image = self._transform(decoded, seed)
            except BadImageError as err:
                if not self.skip_bad:
                    raise
                log.warning("skipping %s (it broke after the image check)", err)
                continue
            return image, torch.tensor(label, dtype=torch.float32), position
        raise BadImageError(self.samples[index][0], "no readable image left in this split")


def decode_all(
    samples: Sequence[tuple[Path, int]],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    read_from: Mapping[str, Path] | None = None,
) -> list[Image.Image]:
    """Every image of `samples` (or the file read in its place), decoded once, for a dataset
    that reads them many times."""
    read_from = read_from or {}
    return [load_rgb(read_from.get(str(path), path), max_pixels) for path, _ in samples]
