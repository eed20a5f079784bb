"""Finding, safely loading and rebuilding a trained detector from its checkpoint."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from deepfake_detection.errors import UserInputError
from deepfake_detection.models.base import BaseDetector


class CheckpointError(UserInputError):
    """A checkpoint is missing, unreadable, unsafe, or not one of ours."""


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path | None]:
    """(checkpoint file, its run dir or None) for a run dir or a `.ckpt` path.

    A run dir stands for its best checkpoint, as recorded in its `metrics.json`.
    """
    path = Path(path).expanduser()
    if path.is_file():
        run_dir = path.parent.parent
        return path, run_dir if (run_dir / ".hydra").is_dir() else None
    if not path.is_dir():
        raise CheckpointError(f"ckpt_path={path}: no such file or directory")
    metrics_file = path / "metrics.json"
    if metrics_file.is_file():
        best = _read_json(metrics_file).get("best/checkpoint")
        if best and (path / best).is_file():
            return path / best, path
    candidates = sorted(p for p in (path / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt")
    if len(candidates) == 1:
        return candidates[0], path
    if not candidates and (path / "checkpoints" / "last.ckpt").is_file():
        return path / "checkpoints" / "last.ckpt", path
    found = ", ".join(p.name for p in candidates) or "none"
    raise CheckpointError(
        f"ckpt_path={path}: cannot tell which checkpoint to use (found: {found}); "
        "pass the .ckpt file itself"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with `weights_only=True`: tensors and plain containers only, so no code runs."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" not in str(err).lower():
            raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from None
        reason = next((line for line in str(err).splitlines() if "GLOBAL" in line), "")
        raise CheckpointError(
            f"{path}: refused to load, it holds objects that would need arbitrary code to "
            f"unpickle; nothing in it was run. {reason.strip()}"
        ) from None
    except Exception as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (corrupt, truncated or another format: "
            f"{type(err).__name__}: {err})"
        ) from None
    if not isinstance(checkpoint, dict) or not {"config", "state_dict"} <= checkpoint.keys():
        raise CheckpointError(
            f"{path}: not a deepfake-detection checkpoint (no saved run config); "
            "use a .ckpt written by `python -m train`"
        )
    return checkpoint


def rebuild_detector(checkpoint: dict[str, Any], path: Path) -> BaseDetector:
    """The detector described by the checkpoint's config, with the checkpoint's weights."""
    model_cfg = OmegaConf.create(checkpoint["config"]["model"])
    if "pretrained" in model_cfg:
        model_cfg.pretrained = False  # the checkpoint has the weights; nothing to download
    model_cfg.optimizer = None
    model_cfg.scheduler = None
    try:
        model = instantiate(model_cfg)
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except UserInputError:
        raise
    except Exception as err:
        reason = str(err).splitlines()[0][:300]
        raise CheckpointError(
            f"{path}: its weights do not fit its saved config ({reason})"
        ) from None
    model.history = dict(checkpoint.get("history", {}))
    model.eval()
    return model
