"""Export is trusted only after the file scores real images like the PyTorch model does."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from deepfake_detection.data.demo import ensure_demo_dataset
from deepfake_detection.data.discovery import discover_as_configured
from deepfake_detection.data.images import BadImageError
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.detector.formats import (
    WRITERS,
    ProbabilityModel,
    Runner,
    failure_reason,
    load_runner,
    temporary_path,
    torch_runner,
)
from deepfake_detection.detector.spec import ExportError
from deepfake_detection.errors import UserInputError
from deepfake_detection.models.base import BaseDetector

log = logging.getLogger(__name__)

#: Largest |ΔP(Fake)| accepted between the exported file and PyTorch, per format.
TOLERANCES = {"onnx": 1e-4, "torch_export": 1e-6}


def labelled_split(data: Mapping[str, Any], split: str) -> list[tuple[Path, int]]:
    """(file, label) of the training run's `split`, as training split its root; empty (and
    logged) when the dataset is no longer there."""
    root = data.get("root")
    try:
        if root in (None, ""):
            root = ensure_demo_dataset(data.get("demo_cache_dir"))
        # The training run's root is split as in training: a flat one is not scored whole.
        index = discover_as_configured(root, data, ("train", "test", split))
    except (UserInputError, OSError) as err:
        log.info("the run's %s split is not available (%s)", split, err)
        return []
    return list(index.splits[split])


def split_images(data: Mapping[str, Any], split: str, count: int) -> list:
    """Up to `count` files of the training run's `split`, Fake and Real alternating."""
    samples = labelled_split(data, split)
    by_class = [[p for p, y in samples if y == label] for label in (1, 0)]
    picked = [p for pair in zip(*by_class, strict=False) for p in pair]
    return picked[:count]


def _generated(count: int, seed: int = 0) -> list[Image.Image]:
    """Seeded stand-ins when the run's split is gone: smooth colour fields with noise."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        base = rng.uniform(0, 255, size=(8, 8, 3)).astype(np.uint8)
        image = Image.fromarray(base).resize((256, 256), Image.BILINEAR)
        noise = rng.normal(0, 12, size=(256, 256, 3))
        images.append(Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8)))
    return images


def parity_inputs(
    data: Mapping[str, Any], split: str, count: int, preprocessing: Preprocessing
) -> tuple[torch.Tensor, str]:
    """(a batch of model inputs, where they came from): real images of the run's split when
    they can be read, else generated ones."""
    transform = preprocessing.transform()
    tensors = []
    for path in split_images(data, split, count):
        try:
            tensors.append(transform(preprocessing.decode_file(path)))
        except BadImageError as err:
            log.info("parity check: %s", err)
    if tensors:
        return torch.stack(tensors), f"{len(tensors)} images of the training run's {split} split"
    images = [transform(image) for image in _generated(count)]
    return torch.stack(images), f"{count} generated images (the run's {split} split is gone)"


def check_parity(fmt: str, reference: torch.Tensor, exported: torch.Tensor) -> float:
    """Largest |ΔP(Fake)|; an `ExportError` when it is over the format's tolerance."""
    if exported.shape != reference.shape:
        raise ExportError(
            f"parity check failed: the exported model returned shape {tuple(exported.shape)} "
            f"for {tuple(reference.shape)}"
        )
    difference = float((exported.double() - reference.double()).abs().max())
    if not difference <= TOLERANCES[fmt]:
        raise ExportError(
            f"parity check failed: format={fmt} differs from PyTorch by up to "
            f"{difference:.3g} in P(Fake), over the tolerance {TOLERANCES[fmt]:g}"
        )
    return difference


def write_checked(
    model: BaseDetector, temperature: float, fmt: str, model_file: Path, inputs: torch.Tensor
) -> tuple[Runner, float]:
    """Write `model` as `fmt` and load it back; returns (its runner, the largest |ΔP(Fake)|
    against PyTorch on `inputs`). On any failure no file is left behind."""
    module = ProbabilityModel(model, temperature).eval()
    # torch.export specialises a dimension whose example size is 1: give it two images.
    example = inputs[:4] if len(inputs) >= 2 else inputs.repeat(2, 1, 1, 1)
    try:
        try:
            WRITERS[fmt](module, example, model_file)
        except ExportError:
            raise
        except Exception as err:
            raise ExportError(f"format={fmt}: export failed ({failure_reason(err)})") from None
        runner = load_runner(model_file, fmt)
        return runner, parity(fmt, model, temperature, runner, inputs)
    except BaseException:
        for leftover in (model_file, temporary_path(model_file)):
            leftover.unlink(missing_ok=True)
        raise


def parity(
    fmt: str, model: BaseDetector, temperature: float, runner: Runner, inputs: torch.Tensor
) -> float:
    """Largest |ΔP(Fake)| between `runner` and PyTorch, for the whole batch and one image."""
    reference = torch_runner(model, temperature)(inputs)
    return max(
        check_parity(fmt, reference, runner(inputs)),
        check_parity(fmt, reference[:1], runner(inputs[:1])),
    )
