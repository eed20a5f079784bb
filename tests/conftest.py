"""Shared fixtures: tiny generated Fake/Real datasets and composed Hydra configs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

from deepfake_detection.config import config_dir, register_resolvers

KAGGLE_SPLITS = {"Train": 8, "Validation": 4, "Test": 4}
LOWERCASE_SPLITS = {"train": 8, "valid": 4, "test": 4}


def write_image(path: Path, label: int, rng: np.random.Generator, size: int = 32) -> Path:
    """Real: smooth noise; Fake: the same with a checkerboard, like a generator's upsampling."""
    pixels = rng.normal(128, 30, (size // 2, size // 2, 3)).repeat(2, 0).repeat(2, 1)
    if label == 1:
        pixels += 40 * (np.indices((size, size)).sum(0) % 2)[..., None]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


def make_dataset(
    root: Path,
    splits: dict[str, int] | None = None,
    classes: Iterable[str] = ("Fake", "Real"),
    size: int = 32,
    seed: int = 0,
) -> Path:
    """Write `<root>/<split>/<class>/*.png` with `splits[split]` images per class."""
    rng = np.random.default_rng(seed)
    for split, per_class in (splits or KAGGLE_SPLITS).items():
        for class_name in classes:
            label = 1 if class_name.lower() == "fake" else 0
            for i in range(per_class):
                write_image(root / split / class_name / f"{i:03d}.png", label, rng, size)
    return root


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


def compose_config(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """The config `python -m <name>` would run with, writing into `output_dir`."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(
            name, overrides=[f"paths.output_dir={output_dir}", "data.num_workers=0", *overrides]
        )


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    return compose_config("train", overrides, output_dir)


def run_cli(
    args: list[str], cwd: Path, module: str = "train", **env: str
) -> subprocess.CompletedProcess:
    """Run `python -m <module> ...` as a user would, from `cwd`."""
    import os

    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MOBILENET_V2_WEIGHTS": "", **env},
    )
