"""The protocol record: what produced a number, written beside it in every metrics.json.

Results that cannot be compared usually differ in something nobody wrote down: which files
were scored, the crop and image size, frames per clip, which checkpoint, which threshold.
Every command that reports metrics (training's test phase, `evaluate`, `robustness`) and
every export records the same block, and `deepfake-compare` ranks only results whose scored
data and preprocessing agree.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from dataclasses import fields
from importlib import metadata
from pathlib import Path
from typing import Any

import deepfake_detection
from deepfake_detection.data.preprocess import Preprocessing
from deepfake_detection.data.split_fingerprint import split_fingerprint
from deepfake_detection.detector.decision import is_best_of_run
from deepfake_detection.files import METRICS_FILE, read_json
from deepfake_detection.metrics.uncertainty import bootstrap_settings

#: Face-stage keys that say how the stage runs (caching), not what the model sees.
_FACE_OPERATIONAL = ("cache", "cache_dir", "model_path")
#: Video keys that decide which frames are scored and how a clip's verdict is formed.
_VIDEO_SAMPLING = ("frames", "fps", "max_frames", "aggregate", "topk", "faces")


def split_record(datamodule: Any, split: str) -> dict[str, Any]:
    """Root, split, fingerprint and class counts of the files of `split` that were scored."""
    index = datamodule.index
    record = split_fingerprint(index.root, index.splits[split], getattr(datamodule, "clip_of", {}))
    return {"root": str(index.root), "split": split, **record}


def preprocessing_record(preprocessing: Preprocessing, video: Any = None) -> dict[str, Any]:
    """What the model's input was made from each file: sizes, crop, normalisation, the face
    stage, and for clips the frame sampling and aggregation."""
    described = preprocessing.describe()
    face = None
    if preprocessing.face is not None:
        settings = preprocessing.face
        face = {
            f.name: getattr(settings, f.name)
            for f in fields(settings)
            if f.name not in _FACE_OPERATIONAL
        }
        if settings.model_path:
            face["model_file"] = Path(settings.model_path).name
    return {
        "image_size": described["image_size"],
        "resize_to": described["resize_to"],
        "crop_fraction": described["crop_fraction"],
        "mean": described["mean"],
        "std": described["std"],
        "face": face,
        "video": None
        if video is None
        else {key: getattr(video, key) for key in _VIDEO_SAMPLING if hasattr(video, key)},
    }


def datamodule_preprocessing(datamodule: Any) -> dict[str, Any]:
    """`preprocessing_record` of a data module's scoring settings (video when it read clips)."""
    preprocessing = Preprocessing(
        image_size=int(datamodule.image_size),
        crop_fraction=float(datamodule.eval_crop_fraction or 0.875),
        face=datamodule.face,
    )
    return preprocessing_record(preprocessing, datamodule.video if datamodule.clip_of else None)


def checkpoint_record(
    ckpt_file: Path, run_dir: Path | None, checkpoint: dict[str, Any]
) -> dict[str, Any]:
    """Which checkpoint scored: the training run's best (by what it monitored), or a file
    given as it is, with its epoch (counted from 1)."""
    epoch = checkpoint.get("epoch")
    record = {
        "rule": "the file given",
        "mode": None,
        "epoch": int(epoch) + 1 if isinstance(epoch, int) else None,
    }
    if is_best_of_run(run_dir, ckpt_file):
        metrics = read_json(run_dir / METRICS_FILE)
        trained = metrics.get("protocol", {}).get("checkpoint")
        if isinstance(trained, dict):  # as training recorded it
            record.update({k: trained.get(k) for k in ("rule", "mode")})
        else:
            monitor = metrics.get("best/monitor")
            record["rule"] = f"best {monitor}" if monitor else "the run's best"
    return {**record, "file": ckpt_file.name}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def versions(backbone_library: str | None = None) -> dict[str, Any]:
    """This package, Python, torch, torchvision, Lightning, torchmetrics and the backbone's
    library."""
    found = {
        "deepfake_detection": deepfake_detection.__version__,
        "python": platform.python_version(),
        **{name: _version(name) for name in ("torch", "torchvision", "lightning", "torchmetrics")},
    }
    if backbone_library:
        found["backbone"] = {backbone_library: _version(backbone_library)}
    return found


#: Seconds each git call may take: a result's record must not wait on a slow file system.
GIT_TIMEOUT_S = 3


@functools.cache
def git_state() -> dict[str, Any] | None:
    """{"commit", "dirty"} of the checkout this package runs from: `dirty` is whether any
    tracked file of the checkout differs from the commit (None when git could not tell).
    None when it runs from an installed copy, or git is missing."""
    package = Path(deepfake_detection.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=package, capture_output=True, text=True, timeout=GIT_TIMEOUT_S
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # Only a checkout that tracks this very package: not a venv that sits inside some repo.
    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def protocol_record(
    *,
    data: dict[str, Any],
    preprocessing: dict[str, Any],
    checkpoint: dict[str, Any],
    threshold: dict[str, Any],
    calibration: dict[str, Any],
    perturbation: str,
    backbone_library: str | None,
    validation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `protocol` block of a metrics.json (or model.json), with the bootstrap's settings,
    the versions and the git commit added."""
    record = {
        "data": data,
        "perturbation": perturbation,
        "preprocessing": preprocessing,
        "checkpoint": checkpoint,
        "threshold": threshold,
        "calibration": calibration,
        "bootstrap": bootstrap_settings(),
        "versions": versions(backbone_library),
        "git": git_state(),
    }
    if validation is not None:
        record["validation"] = validation
    return record
