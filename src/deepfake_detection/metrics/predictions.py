"""Per-image scores: collected during a test pass, saved as CSV, read back for reports."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from deepfake_detection.files import atomic_write_bytes

CSV_COLUMNS = ("path", "label", "prob_fake")


@dataclass(frozen=True)
class Predictions:
    """P(Fake) per image with its label (1 = Fake) and source file, in dataset order."""

    probs: torch.Tensor
    targets: torch.Tensor
    paths: tuple[str, ...]

    def __post_init__(self) -> None:
        if not len(self.probs) == len(self.targets) == len(self.paths):
            raise ValueError("probs, targets and paths must have the same length")

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def from_indices(
        cls,
        probs: torch.Tensor,
        targets: torch.Tensor,
        indices: torch.Tensor,
        samples: Sequence[tuple[Path, int]],
    ) -> Predictions:
        order = torch.argsort(indices)
        return cls(
            probs[order].float().cpu(),
            targets[order].long().cpu(),
            tuple(str(samples[int(i)][0]) for i in indices[order]),
        )

    def save_csv(self, path: str | Path) -> Path:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for file, label, prob in zip(self.paths, self.targets, self.probs, strict=True):
            writer.writerow((file, int(label), f"{float(prob):.9g}"))  # exact for float32
        return atomic_write_bytes(path, buffer.getvalue().encode())

    @classmethod
    def load_csv(cls, path: str | Path) -> Predictions:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        return cls(
            torch.tensor([float(r["prob_fake"]) for r in rows]),
            torch.tensor([int(r["label"]) for r in rows]),
            tuple(r["path"] for r in rows),
        )


class PredictionStore(Metric):
    """Keeps every score, target and dataset index of a pass, gathered across processes.

    A torchmetrics `Metric` so that distributed runs sync it like any other metric. Indices
    that a distributed sampler padded in twice are kept once.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")
        self.add_state("indices", default=[], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor) -> None:
        self.probs.append(probs.detach().float().flatten())
        self.targets.append(targets.detach().long().flatten())
        self.indices.append(indices.detach().long().flatten())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        probs, targets, indices = (
            dim_zero_cat(self.probs),
            dim_zero_cat(self.targets),
            dim_zero_cat(self.indices),
        )
        unique, first = _first_occurrences(indices)
        return probs[first], targets[first], unique


def _first_occurrences(indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    unique, inverse = torch.unique(indices, return_inverse=True)
    positions = torch.arange(len(indices), device=indices.device)
    first = torch.full_like(unique, len(indices)).scatter_reduce(
        0, inverse, positions, reduce="amin"
    )
    return unique, first
